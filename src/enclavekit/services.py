"""The trust services of one VM data directory, started together on 127.0.0.1.

:func:`trust_services` runs, for the length of a ``with`` block, the collateral service
(PCCS) over the data directory, an attestation service (Azure Attestation compatible)
trusting only that directory's emulated root with collateral from the PCCS, and a
key-release service (Key Vault compatible, HTTPS with a self-signed certificate) trusting
only that attestation service's tokens. Everything is stopped on exit, also on error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .attest.maa import AttestationService, ServiceConfig
from .attest.maa import create_app as attest_app
from .attest.maa.dcap import DcapAppraiser, PccsCollateral
from .attest.maa.server import running as attest_running
from .attest.pccs.app import create_app as pccs_app
from .attest.pccs.publish import Publisher
from .attest.pccs.serve import running as pccs_running
from .kms.serve import KMSService, ServerThread, build_service
from .vm.provisioning import Provisioning

__all__ = ["Services", "trust_services"]


@dataclass
class Services:
    """The running trust services: their URLs, the key-release service's state (its TLS
    certificate and release log), the emulated root and the PCCS collateral source."""

    pccs_url: str
    attest_url: str
    kms_url: str
    kms: KMSService
    root: x509.Certificate
    collateral: PccsCollateral


@contextlib.contextmanager
def trust_services(home: Path, work: Path) -> Iterator[Services]:
    """The PCCS over the VM data directory ``home``, an attestation service and a key-release
    service keeping their state under ``work``; all stopped on exit, also on error."""
    root = Provisioning.open(home).root_certificate
    with contextlib.ExitStack() as stack:
        pccs_url = stack.enter_context(pccs_running(pccs_app(Publisher.open(home))))
        collateral = PccsCollateral(pccs_url)
        attest = AttestationService(ServiceConfig(work / "attest"),
                                    DcapAppraiser(collateral, [root]))
        attest_url = stack.enter_context(attest_running(attest_app(attest)))
        kms = build_service(work / "kms", [attest_url])
        stack.callback(kms.audit.close)
        server = ServerThread(kms.app, certfile=kms.cert_path, keyfile=kms.key_path).start()
        stack.callback(server.stop)
        yield Services(pccs_url, attest_url, f"https://127.0.0.1:{server.port}", kms, root,
                       collateral)

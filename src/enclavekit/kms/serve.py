"""Running the key-release service: HTTPS on 127.0.0.1 with a self-signed certificate.

Microsoft's Key Vault client refuses plain HTTP (maa-skr.md §0 item 8), so the service always
serves TLS. On first start a self-signed RSA-2048 certificate for ``localhost`` /
``127.0.0.1`` is generated into ``<data-dir>/tls/`` (``cert.pem``, and ``key.pem`` mode 0600);
clients trust it with ``connection_verify=<data-dir>/tls/cert.pem``. The same key signs the
release responses (``x5c`` in the JWS header), as a vault's TLS key does in Azure.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette

from .._fs import atomic_write, remove_stale_temps
from .._guard import Limits, uvicorn_config
from .._net import DEFAULT_HOST, base_url, listen, serving
from ..errors import KeyParameterError
from ..vm.endpoints import KMS, published
from .app import create_app
from .audit import AuditLog
from .release import ReleaseService, ReleaseSigner
from .store import KeyStore
from .tokens import TokenVerifier, TrustedAuthority

__all__ = ["KMSService", "ServerThread", "build_service", "ensure_tls", "run"]


def ensure_tls(data_dir: Path) -> tuple[Path, Path]:
    """The service's certificate and key paths, generating them on first use."""
    tls = data_dir / "tls"
    cert_path, key_path = tls / "cert.pem", tls / "key.pem"
    remove_stale_temps(tls)
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "enclavekit kms (self-signed)")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256()))
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


@dataclass
class KMSService:
    """Everything one running key service is made of."""

    app: Starlette
    store: KeyStore
    releaser: ReleaseService
    audit: AuditLog
    cert_path: Path
    key_path: Path


def build_service(data_dir: str | os.PathLike[str],
                  authorities: Iterable[str | TrustedAuthority], *,
                  require_debug_pin: bool = True, verifier: TokenVerifier | None = None
                  ) -> KMSService:
    """Open (or create) the data directory and assemble the app.

    Args:
        data_dir: keys, master key, TLS material and the release log live here.
        authorities: the attestation services whose tokens are trusted (URLs or objects).
        require_debug_pin: see :func:`~enclavekit.kms.policy.parse_release_policy`.
        verifier: a ready verifier (tests); default one over ``authorities``.
    """
    root = Path(data_dir)
    store = KeyStore(root, require_debug_pin=require_debug_pin)
    cert_path, key_path = ensure_tls(root)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signer = ReleaseSigner(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
    if verifier is None:
        verifier = TokenVerifier(a if isinstance(a, TrustedAuthority) else TrustedAuthority(a)
                                 for a in authorities)
    audit = AuditLog(root / "release-log.jsonl")
    releaser = ReleaseService(store, verifier, audit, signer)
    return KMSService(create_app(store, releaser), store, releaser, audit, cert_path, key_path)


class ServerThread:
    """uvicorn serving an app in a background thread (tests, benchmarks, the demo): HTTPS
    with ``certfile``/``keyfile``, plain HTTP without.

    ``start()`` returns once it serves; ``port`` is then the bound port (``port=0`` picks a
    free one); ``stop()`` shuts the server down (see ``_net.serving``).
    """

    def __init__(self, app: Starlette, *, host: str = DEFAULT_HOST, port: int = 0,
                 certfile: Path | None = None, keyfile: Path | None = None) -> None:
        self.host = host
        self.port = port
        self._config = _config(app, certfile, keyfile)
        self._running = contextlib.ExitStack()

    def start(self, timeout: float = 20.0) -> ServerThread:
        sock = listen(self.host, self.port, error=KeyParameterError)
        self.port = sock.getsockname()[1]
        self._running.enter_context(serving(uvicorn.Server(self._config), sock,
                                            name="kms-server", error=RuntimeError,
                                            timeout=timeout))
        return self

    def stop(self) -> None:
        self._running.close()


def _config(app: Starlette, certfile: Path | None, keyfile: Path | None) -> Any:
    """The ``uvicorn.Config`` of every key-release server (TLS when given a certificate)."""
    return uvicorn_config(app, Limits(), ssl_certfile=str(certfile) if certfile else None,
                          ssl_keyfile=str(keyfile) if keyfile else None)


def run(service: KMSService, host: str = "127.0.0.1", port: int = 8443, *,
        on_ready: Callable[[str], None] | None = None, record_in: Path | None = None) -> None:
    """Serve ``service`` over HTTPS in the foreground until interrupted; ``on_ready`` gets the
    base URL (the socket is bound first, so ``port=0`` reports the port it got).
    ``record_in``: the data directory in which to record where it runs
    (:mod:`enclavekit.vm.endpoints`)."""
    sock = listen(host, port, error=KeyParameterError)
    try:
        url = base_url(sock, "https")
        if on_ready is not None:
            on_ready(url)
        config = _config(service.app, service.cert_path, service.key_path)
        with published(record_in, KMS, url):
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()

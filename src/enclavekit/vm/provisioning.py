"""The installation's emulated provisioning PKI and each VM's PCK certificate.

One PKI per data directory, in ``<data dir>/pki/`` (directory 0700, keys 0600), made on
first use under a lock and moved into place with one rename, so a crash leaves no PKI or a
whole one::

    root.pem  root-key.pem            emulated SGX Root CA (self-signed)
    pck-ca.pem  pck-ca-key.pem        emulated SGX PCK Processor CA (issues PCK leaves)
    tcb-signing.pem  tcb-signing-key.pem   signs TCB info and QE identity
    arch-signer-key.pem               RSA-3072 e=3 key that signs the PCE and QE
    arch/                             the signed PCE and QE enclave files (a cache)

The PKI plays Intel's part: it knows each platform's fused secrets, so it derives the key
the platform's PCE will derive (:mod:`enclavekit.dcap.arch`) and certifies its public half
in ``<data dir>/vms/<name>/pck.pem`` when the VM is created.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .._fs import atomic_write
from ..dcap import pki
from ..dcap.arch import pce_identity, pck_key_request, pck_private_key
from ..dcap.pckext import PckExtension
from ..errors import ProvisioningError, SigningKeyError
from ..sgx.keys import egetkey
from ..sgx.signing import SigningKey
from .identity import PlatformIdentity, load_identity, platform_file

__all__ = ["Provisioning", "derive_pck_key"]

PKI_DIR = "pki"
_CERTS = {"root": "root.pem", "pck_ca": "pck-ca.pem", "tcb_signing": "tcb-signing.pem"}
_KEYS = {"root": "root-key.pem", "pck_ca": "pck-ca-key.pem",
         "tcb_signing": "tcb-signing-key.pem"}
ARCH_SIGNER = "arch-signer-key.pem"
PCK_FILE = "pck.pem"


def derive_pck_key(identity: PlatformIdentity, arch_mrsigner: bytes,
                   ) -> ec.EllipticCurvePrivateKey:
    """The PCK private key the platform's PCE derives at its current TCB (EGETKEY PROVISION)."""
    key = egetkey(identity.secrets, identity.cpusvn, pce_identity(arch_mrsigner, identity.pcesvn),
                  pck_key_request(identity.cpusvn, identity.pcesvn))
    return pck_private_key(key)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (flock on its descriptor) for the block."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _create(data_dir: Path) -> None:
    """Mint a whole PKI in a temporary directory and rename it to ``pki/``."""
    now = datetime.now(UTC).replace(microsecond=0)
    root_key, ca_key, tcb_key = pki.new_key(), pki.new_key(), pki.new_key()
    root = pki.make_root(root_key, issued=now)
    files = {
        _CERTS["root"]: _pem(root),
        _CERTS["pck_ca"]: _pem(pki.make_pck_ca(ca_key.public_key(), root, root_key, issued=now)),
        _CERTS["tcb_signing"]: _pem(pki.make_tcb_signing(tcb_key.public_key(), root, root_key,
                                                         issued=now)),
        _KEYS["root"]: _key_pem(root_key), _KEYS["pck_ca"]: _key_pem(ca_key),
        _KEYS["tcb_signing"]: _key_pem(tcb_key),
        ARCH_SIGNER: SigningKey.generate().to_pem(),
    }
    tmp = Path(tempfile.mkdtemp(prefix=".pki-", dir=data_dir))
    try:
        for name, data in files.items():
            atomic_write(tmp / name, data, mode=0o600 if name.endswith("key.pem") else 0o644)
        os.chmod(tmp, 0o700)
        os.rename(tmp, data_dir / PKI_DIR)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Provisioning:
    """The emulated provisioning PKI of one data directory (created on first use)."""

    root_certificate: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    pck_ca_certificate: x509.Certificate
    pck_ca_key: ec.EllipticCurvePrivateKey
    tcb_signing_certificate: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / PKI_DIR
        if not self.dir.is_dir():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with _locked(self.data_dir):
                if not self.dir.is_dir():
                    _create(self.data_dir)
        self.root_certificate = self._cert("root")
        self.root_key = self._key("root", self.root_certificate)
        self.pck_ca_certificate = self._cert("pck_ca")
        self.pck_ca_key = self._key("pck_ca", self.pck_ca_certificate)
        self.tcb_signing_certificate = self._cert("tcb_signing")
        self.tcb_signing_key = self._key("tcb_signing", self.tcb_signing_certificate)
        self._issued_by_root(self.root_certificate, "root")
        self._issued_by_root(self.pck_ca_certificate, "pck_ca")
        self._issued_by_root(self.tcb_signing_certificate, "tcb_signing")
        self._arch_signer: SigningKey | None = None

    @classmethod
    def open(cls, data_dir: Path) -> Provisioning:
        """The PKI of ``data_dir``, created on first use."""
        return cls(data_dir)

    def __repr__(self) -> str:
        return f"<Provisioning {self.dir}>"

    # ------------------------------------------------------------------ loading

    def _corrupt(self, name: str, what: str) -> ProvisioningError:
        return ProvisioningError(f"{self.dir / name}: {what}; the emulated PKI is corrupt "
                                 f"(restore it from a backup, or remove {self.dir} and "
                                 "re-create the VMs)")

    def _read(self, name: str) -> bytes:
        try:
            return (self.dir / name).read_bytes()
        except FileNotFoundError:
            raise self._corrupt(name, "missing") from None

    def _cert(self, which: str) -> x509.Certificate:
        name = _CERTS[which]
        try:
            return x509.load_pem_x509_certificate(self._read(name))
        except ValueError:
            raise self._corrupt(name, "not a PEM certificate") from None

    def _key(self, which: str, cert: x509.Certificate) -> ec.EllipticCurvePrivateKey:
        name = _KEYS[which]
        try:
            key = serialization.load_pem_private_key(self._read(name), password=None)
        except (ValueError, TypeError):
            raise self._corrupt(name, "not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
                key.curve, ec.SECP256R1):
            raise self._corrupt(name, "not an EC P-256 key")
        if key.public_key() != cert.public_key():
            raise self._corrupt(name, f"does not match the public key of {_CERTS[which]}")
        return key

    def _issued_by_root(self, cert: x509.Certificate, which: str) -> None:
        try:
            cert.verify_directly_issued_by(self.root_certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise self._corrupt(_CERTS[which], "not issued by root.pem") from None

    def arch_signer(self) -> SigningKey:
        """The RSA-3072 e=3 key that signs the architectural enclaves (PCE, QE)."""
        if self._arch_signer is None:
            try:
                self._arch_signer = SigningKey.load(self._read(ARCH_SIGNER))
            except SigningKeyError as exc:
                raise self._corrupt(ARCH_SIGNER, str(exc).rstrip(".")) from None
        return self._arch_signer

    # ------------------------------------------------------------------ PCK certificates

    def _pck_path(self, name: str) -> Path:
        return platform_file(self.data_dir, name).parent / PCK_FILE

    def issue_pck(self, identity: PlatformIdentity) -> x509.Certificate:
        """Certify the platform's PCK key at its current TCB; persist and return the leaf.

        Re-issuing (after a TCB recovery raised CPUSVN or PCESVN) replaces the old one.
        """
        key = derive_pck_key(identity, self.arch_signer().mrsigner())
        extension = PckExtension(
            ppid=identity.ppid, tcb_components=tuple(identity.cpusvn), pcesvn=identity.pcesvn,
            cpusvn=identity.cpusvn, pceid=identity.pceid, fmspc=identity.fmspc, sgx_type=0)
        now = datetime.now(UTC).replace(microsecond=0)
        cert = pki.make_pck_certificate(key.public_key(), extension, self.pck_ca_certificate,
                                        self.pck_ca_key, issued=now)
        path = self._pck_path(identity.name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, _pem(cert), mode=0o644)
        return cert

    def pck_certificate(self, name: str) -> x509.Certificate:
        """VM ``name``'s PCK certificate; issued now if it has none (a VM older than the
        PKI) or if its certificate was issued by a PKI that has since been re-created."""
        path = self._pck_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return self.issue_pck(load_identity(self.data_dir, name))
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise ProvisioningError(f"{path}: not a PEM certificate; the VM's PCK "
                                    "certificate is corrupt (delete it to re-issue it)") from None
        try:
            cert.verify_directly_issued_by(self.pck_ca_certificate)
        except (ValueError, TypeError, InvalidSignature):
            return self.issue_pck(load_identity(self.data_dir, name))
        return cert

    def pck_chain_pem(self, name: str) -> bytes:
        """PCK leaf ‖ PCK CA ‖ root as PEM: what certification data type 5 carries."""
        return (_pem(self.pck_certificate(name)) + _pem(self.pck_ca_certificate)
                + _pem(self.root_certificate))

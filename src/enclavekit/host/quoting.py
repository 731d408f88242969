"""The host side of quoting: load the PCE and QE on a VM, carry REPORTs and quotes.

:func:`quoter_for` gives the one :class:`Quoter` of a VM handle. On first use it builds the
architectural enclaves from ``enclavekit/enclave/arch`` (signed with the installation's
architectural signer, cached under ``<data dir>/pki/arch/``), loads them, has the QE
certified by the PCE and keeps them for the handle's lifetime; when the VM lost them (a
``vm restart``) they are loaded again. Every enclave can reach it through two built-in
ocalls the SDK always serves (:func:`builtin_ocall`), which is how
:func:`enclavekit.enclave.get_quote` works; tools that hold a REPORT call
:meth:`Quoter.quote` directly. The host is untrusted here: it relays bytes and can deny
service, but the REPORT is MACed for the QE alone and the quote is signed inside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from ..dcap.arch import ARCH_ATTRIBUTES, ARCH_XFRM, PCE_ISVPRODID, QE_ISVPRODID, QE_ISVSVN
from ..dcap.pckext import PckExtension
from ..errors import EnclaveKitError, EnclaveLost, InvalidStructure, QuotingError
from ..sgx.consts import AttributeFlags
from ..sgx.signing import SigningKey
from ..sgx.sigstruct import DEFAULT_ATTRIBUTEMASK, build_sigstruct, sign
from ..sgx.structs import Attributes
from ..vm.provisioning import Provisioning
from ..wire import CallSignature
from .enclave import Enclave
from .image import EnclaveFile
from .layout import build_layout
from .manifest import Manifest

__all__ = ["ARCH_DIR", "QUOTE_OCALLS", "Platform", "Quoter", "arch_image", "builtin_ocall",
           "quoter_for"]

ARCH_DIR = Path(__file__).resolve().parents[1] / "enclave" / "arch"
"""The architectural enclaves' app directories (``pce/``, ``qe/``)."""
QE_THREADS = 4
"""TCS of the QE (``enclave/arch/qe/enclave.toml``): at most this many quote calls at once."""
_SIGNED_FLAGS = ARCH_ATTRIBUTES & ~int(AttributeFlags.INIT)  # EINIT sets INIT
_MASK = Attributes(flags=DEFAULT_ATTRIBUTEMASK.flags | int(AttributeFlags.DEBUG),
                   xfrm=DEFAULT_ATTRIBUTEMASK.xfrm)
"""ATTRIBUTEMASK of the architectural SIGSTRUCTs: DEBUG is bound too (never a debug load)."""


def _qe_target_info() -> bytes:
    raise NotImplementedError


def _quote(report: bytes, version: int) -> bytes:
    raise NotImplementedError


QUOTE_OCALLS = {
    "enclavekit_qe_target_info": CallSignature.from_function(
        _qe_target_info, name="enclavekit_qe_target_info", kind="ocall"),
    "enclavekit_quote": CallSignature.from_function(_quote, name="enclavekit_quote",
                                                    kind="ocall"),
}
"""The built-in ocalls' signatures (the same as :data:`enclavekit.enclave.quote.QUOTE_OCALLS`)."""


def arch_image(which: str, svn: int, signer: SigningKey, cache: Path | None = None,
               ) -> EnclaveFile:
    """The signed PCE (``which="pce"``, ISVSVN ``svn`` = the platform's PCESVN) or QE.

    Built from :data:`ARCH_DIR` with PROVISIONKEY, never DEBUG, ISVPRODID from
    :mod:`enclavekit.dcap.arch`; cached in ``cache`` by the hash of everything measured and
    the signer (a cached file that does not load is rebuilt).
    """
    prodid = {"pce": PCE_ISVPRODID, "qe": QE_ISVPRODID}[which]
    manifest = replace(Manifest.load(ARCH_DIR / which), product_id=prodid,
                       security_version=svn, debug=False)
    digest = hashlib.sha256(manifest.canonical_json() + signer.mrsigner())
    for rel in manifest.trusted:
        digest.update(hashlib.sha256((manifest.root / rel).read_bytes()).digest())
    path = cache / f"{which}-{svn}-{digest.hexdigest()[:24]}.enclave" if cache else None
    if path is not None and path.is_file():
        with contextlib.suppress(EnclaveKitError, OSError):
            cached = EnclaveFile.load(path)
            if cached.mrsigner == signer.mrsigner():
                return cached
    image = EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict())
    unsigned = build_sigstruct(image.mrenclave,
                               attributes=Attributes(flags=_SIGNED_FLAGS, xfrm=ARCH_XFRM),
                               attributemask=_MASK, isvprodid=prodid, isvsvn=svn)
    image = replace(image, sigstruct=sign(unsigned, signer))
    if path is not None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        image.save(path)
    return image


class Platform(Protocol):
    """What the quoter needs of a VM handle (:class:`enclavekit.host.vm.VM` is one): its
    name, its data directory (the provisioning PKI) and loading an enclave file on it."""

    @property
    def name(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...

    def load(self, image: EnclaveFile) -> Enclave: ...


class Quoter:
    """The quoting service of one VM handle: its PCE and QE, loaded on first use."""

    def __init__(self, vm: Platform, provisioning: Provisioning | None = None) -> None:
        self.vm = vm
        self.provisioning = provisioning or Provisioning.open(vm.data_dir)
        self._lock = threading.Lock()
        self._pce: Enclave | None = None
        self._qe: Enclave | None = None
        self._chain = b""
        self._slots = threading.BoundedSemaphore(QE_THREADS)  # one per QE TCS: never refused
        self.loads = 0
        """How many times the architectural enclaves were loaded (1, plus one per loss)."""

    def __repr__(self) -> str:
        return f"<Quoter of VM {self.vm.name!r}>"

    @property
    def pce(self) -> Enclave:
        """The loaded PCE (loaded now if needed)."""
        self._ready()
        assert self._pce is not None
        return self._pce

    @property
    def qe(self) -> Enclave:
        """The loaded QE (loaded now if needed)."""
        return self._ready()[0]

    def _ready(self) -> tuple[Enclave, bytes]:
        with self._lock:
            if self._qe is None:
                self._load()
            assert self._qe is not None
            return self._qe, self._chain

    def _load(self) -> None:
        """Load the PCE and QE and have the QE certified (caller holds the lock)."""
        self._drop()
        prov, name = self.provisioning, self.vm.name
        pcesvn = PckExtension.from_certificate(prov.pck_certificate(name)).pcesvn
        cache = prov.dir / "arch"
        signer = prov.arch_signer()
        pce = self.vm.load(arch_image("pce", pcesvn, signer, cache))
        try:
            qe = self.vm.load(arch_image("qe", QE_ISVSVN, signer, cache))
        except BaseException:
            pce.close()
            raise
        try:
            request = qe.ecalls.certify_request(pce.ecalls.target())
            qe.ecalls.install(pce.ecalls.certify(request), pcesvn)
            self._chain = prov.pck_chain_pem(name)
        except BaseException:
            pce.close()
            qe.close()
            raise
        self._pce, self._qe = pce, qe
        self.loads += 1

    def _drop(self, lost: Enclave | None = None) -> None:
        if lost is not None and lost is not self._qe and lost is not self._pce:
            return  # another thread already replaced it
        for enclave in (self._qe, self._pce):
            if enclave is not None:
                with contextlib.suppress(EnclaveKitError, OSError):
                    enclave.close()
        self._pce = self._qe = None

    def _retry(self, call: Callable[[Enclave, bytes], Any]) -> Any:
        for attempt in (1, 2):
            qe, chain = self._ready()
            try:
                with self._slots:
                    return call(qe, chain)
            except EnclaveLost:
                if attempt == 2:
                    raise
                with self._lock:  # the VM lost power: load them again, once
                    self._drop(qe)
        raise AssertionError("unreachable")

    def target_info(self) -> bytes:
        """The QE's 512-byte TARGETINFO (make the REPORT to be quoted for it).

        Asked of the running QE each time, so a QE lost since (``vm restart``) is loaded
        again now rather than after a REPORT was made for a QE that is gone.
        """
        return bytes(self._retry(lambda qe, _: qe.ecalls.target()))

    def quote(self, report: bytes, *, version: int = 3) -> bytes:
        """The QE's quote (v3, or v4) of ``report``, a REPORT made for :meth:`target_info`.

        Raises:
            QuotingError: the QE refused the REPORT (not made for it on this platform) or
                the version.
        """
        if type(report) is not bytes or len(report) != 432:
            raise InvalidStructure("REPORT", "expected 432 bytes")
        if version not in (3, 4):
            raise QuotingError(f"quote version {version} is not produced (3 or 4)")
        return bytes(self._retry(lambda qe, chain: qe.ecalls.quote(report, chain, version)))

    def close(self) -> None:
        """Unload the PCE and QE (the next quote loads them again)."""
        with self._lock:
            self._drop()


_quoters_lock = threading.Lock()


def quoter_for(vm: Platform) -> Quoter:
    """The :class:`Quoter` of this VM handle (made on first use, kept with the handle)."""
    found: Quoter | None = getattr(vm, "_enclavekit_quoter", None)
    if found is not None:
        return found
    with _quoters_lock:
        found = getattr(vm, "_enclavekit_quoter", None)
        if found is None:
            found = Quoter(vm)
            vm._enclavekit_quoter = found  # type: ignore[attr-defined]
        return found


def builtin_ocall(vm: Platform, name: str) -> tuple[CallSignature, Callable[..., Any]] | None:
    """The signature and host function of built-in ocall ``name``, or None."""
    sig = QUOTE_OCALLS.get(name)
    if sig is None:
        return None
    if name == "enclavekit_qe_target_info":
        return sig, lambda: quoter_for(vm).target_info()
    return sig, lambda report, version: quoter_for(vm).quote(report, version=version)

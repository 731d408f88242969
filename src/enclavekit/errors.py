"""Every error enclavekit raises, named after what went wrong.

::

    EnclaveKitError
    ├─ InvalidStructure (ValueError)   bytes that do not parse (size, header, reserved)
    ├─ SGXError                        a leaf returned an SGX code (.leaf, .code, .sgx_name)
    │   ├─ InvalidSigStruct (1)        InvalidAttribute (2)    BlockState (3)
    │   ├─ InvalidMeasurement (4)      NotBlockable (5)        PageInvalid (6)
    │   ├─ EPCPageConflict (7)         InvalidSignature (8)    MACCompareFail (9)
    │   ├─ PageNotBlocked (10)         NotTracked (11)         VASlotOccupied (12)
    │   ├─ ChildPresent (13)           EnclaveAct (14)         EntryEpochLocked (15)
    │   ├─ InvalidEInitToken (16)      PrevTrackIncomplete (17)
    │   ├─ PageIsSECS (18)             PageAttributesMismatch (19)
    │   ├─ PageNotModifiable (20)      PageNotDebuggable (21)
    │   └─ InvalidCPUSVN (0x20)        InvalidISVSVN (0x40)    UnmaskedEvent (0x80)
    │      InvalidKeyname (0x100)
    ├─ SGXFault (.vector "#GP" / "#PF")  an instruction faulted instead of returning a code
    ├─ EPCExhausted                    no free EPC page; evict one first
    ├─ EnclaveLost                     EPC integrity broke or the platform lost power
    ├─ IntegrityError                  a tampered sealed blob, protected file or channel message
    ├─ EcallError
    │   ├─ UnknownEcall
    │   └─ EcallArgumentError (TypeError)
    ├─ ManifestError (ValueError)
    ├─ SigningKeyError (ValueError)
    ├─ DeviceError
    │   ├─ DeviceUnavailable (ConnectionError)
    │   └─ ProtocolError
    ├─ ServiceNotRunning (ConnectionError)  a local service a command needs is not running
    ├─ AttestationError
    │   ├─ QuoteFormatError (ValueError)
    │   ├─ CertificateChainError
    │   ├─ CollateralExpired
    │   ├─ PolicyError
    │   └─ InvalidToken (ValueError)
    └─ KeyReleaseError
        ├─ ReleasePolicyNotSatisfied
        └─ KeyNotFound

Messages are one line and say what was expected and what was found.
"""

from __future__ import annotations

from typing import ClassVar


class EnclaveKitError(Exception):
    """Base class of every error enclavekit raises on purpose."""


class InvalidStructure(EnclaveKitError, ValueError):
    """A buffer does not parse as the named structure."""

    def __init__(self, structure: str, detail: str) -> None:
        super().__init__(f"{structure}: {detail}")
        self.structure = structure
        self.detail = detail


# --------------------------------------------------------------------------- SGX codes


class SGXError(EnclaveKitError):
    """An emulated leaf function returned an architectural SGX error code (SDM RAX value)."""

    code: ClassVar[int] = 0
    sgx_name: ClassVar[str] = "SGX_SUCCESS"

    def __init__(self, leaf: str, detail: str) -> None:
        super().__init__(f"{leaf}: {self.sgx_name} ({self.code:#x}): {detail}")
        self.leaf = leaf
        self.detail = detail


class InvalidSigStruct(SGXError):
    """EINIT: SIGSTRUCT header, vendor, exponent or a reserved field is not as SGX requires."""

    code = 1
    sgx_name = "SGX_INVALID_SIG_STRUCT"


class InvalidAttribute(SGXError):
    """EINIT/EGETKEY: ATTRIBUTES or MISCSELECT do not satisfy SIGSTRUCT or the key's access rule."""

    code = 2
    sgx_name = "SGX_INVALID_ATTRIBUTE"


class BlockState(SGXError):
    """EBLOCK: the page is already blocked (informational)."""

    code = 3
    sgx_name = "SGX_BLKSTATE"


class InvalidMeasurement(SGXError):
    """EINIT: SIGSTRUCT.ENCLAVEHASH differs from the MRENCLAVE that was built."""

    code = 4
    sgx_name = "SGX_INVALID_MEASUREMENT"


class NotBlockable(SGXError):
    """EBLOCK: the page type cannot be blocked."""

    code = 5
    sgx_name = "SGX_NOTBLOCKABLE"


class PageInvalid(SGXError):
    """EBLOCK and others: the EPC page is not valid."""

    code = 6
    sgx_name = "SGX_PG_INVLD"


class EPCPageConflict(SGXError):
    """The page is in use by another SGX instruction."""

    code = 7
    sgx_name = "SGX_EPC_PAGE_CONFLICT"


class InvalidSignature(SGXError):
    """EINIT: the SIGSTRUCT RSA signature (or Q1/Q2) does not verify."""

    code = 8
    sgx_name = "SGX_INVALID_SIGNATURE"


class MACCompareFail(SGXError):
    """ELDU/ELDB: the evicted page, its PCMD or its version do not authenticate."""

    code = 9
    sgx_name = "SGX_MAC_COMPARE_FAIL"


class PageNotBlocked(SGXError):
    """EWB: the page was not blocked with EBLOCK first."""

    code = 10
    sgx_name = "SGX_PAGE_NOT_BLOCKED"


class NotTracked(SGXError):
    """EWB: no ETRACK cycle completed since the page was blocked."""

    code = 11
    sgx_name = "SGX_NOT_TRACKED"


class VASlotOccupied(SGXError):
    """EWB: the Version Array slot already held a version (it was overwritten)."""

    code = 12
    sgx_name = "SGX_VA_SLOT_OCCUPIED"


class ChildPresent(SGXError):
    """EWB/EREMOVE of a SECS that still has pages in the EPC."""

    code = 13
    sgx_name = "SGX_CHILD_PRESENT"


class EnclaveAct(SGXError):
    """EREMOVE: a thread is executing inside the enclave."""

    code = 14
    sgx_name = "SGX_ENCLAVE_ACT"


class EntryEpochLocked(SGXError):
    """EBLOCK: the entry epoch is locked."""

    code = 15
    sgx_name = "SGX_ENTRYEPOCH_LOCKED"


class InvalidEInitToken(SGXError):
    """EINIT: the launch token is invalid or the signer is not allowed to launch."""

    code = 16
    sgx_name = "SGX_INVALID_EINITTOKEN"


class PrevTrackIncomplete(SGXError):
    """ETRACK: the previous tracking cycle has not completed."""

    code = 17
    sgx_name = "SGX_PREV_TRK_INCMPL"


class PageIsSECS(SGXError):
    """EBLOCK: the page is a SECS."""

    code = 18
    sgx_name = "SGX_PG_IS_SECS"


class PageAttributesMismatch(SGXError):
    """EACCEPT: the EPCM does not match the given SECINFO."""

    code = 19
    sgx_name = "SGX_PAGE_ATTRIBUTES_MISMATCH"


class PageNotModifiable(SGXError):
    """EMODPR/EMODT: the page is pending or modified."""

    code = 20
    sgx_name = "SGX_PAGE_NOT_MODIFIABLE"


class PageNotDebuggable(SGXError):
    """EDBGRD/EDBGWR on a page of a production (non-DEBUG) enclave."""

    code = 21
    sgx_name = "SGX_PAGE_NOT_DEBUGGABLE"


class InvalidCPUSVN(SGXError):
    """EGETKEY/EINIT: the requested CPUSVN is beyond the platform's current CPUSVN."""

    code = 0x20
    sgx_name = "SGX_INVALID_CPUSVN"


class InvalidISVSVN(SGXError):
    """EGETKEY: the requested ISVSVN or CONFIGSVN is above the enclave's own."""

    code = 0x40
    sgx_name = "SGX_INVALID_ISVSVN"


class UnmaskedEvent(SGXError):
    """EINIT was interrupted; retry."""

    code = 0x80
    sgx_name = "SGX_UNMASKED_EVENT"


class InvalidKeyname(SGXError):
    """EGETKEY: KEYREQUEST.KEYNAME is not a known key."""

    code = 0x100
    sgx_name = "SGX_INVALID_KEYNAME"


SGX_ERRORS: dict[int, type[SGXError]] = {
    cls.code: cls
    for cls in (
        InvalidSigStruct, InvalidAttribute, BlockState, InvalidMeasurement, NotBlockable,
        PageInvalid, EPCPageConflict, InvalidSignature, MACCompareFail, PageNotBlocked,
        NotTracked, VASlotOccupied, ChildPresent, EnclaveAct, EntryEpochLocked,
        InvalidEInitToken, PrevTrackIncomplete, PageIsSECS, PageAttributesMismatch,
        PageNotModifiable, PageNotDebuggable, InvalidCPUSVN, InvalidISVSVN, UnmaskedEvent,
        InvalidKeyname,
    )
}
"""Architectural code → exception class, so a code sent over a wire re-raises the same class."""


def sgx_error(code: int, leaf: str, detail: str) -> SGXError:
    """Build the exception for an SGX return code (unknown codes become a plain SGXError)."""
    cls = SGX_ERRORS.get(code)
    if cls is None:
        return SGXError(leaf, f"unknown SGX code {code:#x}: {detail}")
    return cls(leaf, detail)


class SGXFault(EnclaveKitError):
    """An emulated instruction faulted (#GP or #PF) instead of returning an SGX code."""

    def __init__(self, leaf: str, vector: str, detail: str) -> None:
        super().__init__(f"{leaf}: {vector} fault: {detail}")
        self.leaf = leaf
        self.vector = vector
        self.detail = detail


class EPCExhausted(EnclaveKitError):
    """Every EPC page is in use; a page must be evicted (EWB) before another can be added."""


class EnclaveLost(EnclaveKitError):
    """The enclave can no longer run: its EPC integrity broke or the platform lost power."""


class IntegrityError(EnclaveKitError):
    """A sealed blob, protected file or channel message was tampered with or is not ours."""


# --------------------------------------------------------------------------- upper layers


class EcallError(EnclaveKitError):
    """An ecall could not be made or failed inside the enclave."""


class UnknownEcall(EcallError):
    """The named ecall is not declared by the enclave."""


class EcallArgumentError(EcallError, TypeError):
    """Ecall arguments do not match the declared signature or do not decode."""


class ManifestError(EnclaveKitError, ValueError):
    """An enclave manifest is missing, malformed or inconsistent."""


class SigningKeyError(EnclaveKitError, ValueError):
    """A signing key cannot be used for SGX (not RSA-3072, exponent not 3, unreadable)."""


class DeviceError(EnclaveKitError):
    """The SGX device service could not serve a request."""


class DeviceUnavailable(DeviceError, ConnectionError):
    """The SGX device service is not running or cannot be reached."""


class ProtocolError(DeviceError):
    """A device-protocol message is malformed, of an unknown version or out of order."""


class ServiceNotRunning(EnclaveKitError, ConnectionError):
    """A local service a command needs (collateral, attestation) runs from no data directory
    it was pointed at; the message says which to start."""


class AttestationError(EnclaveKitError):
    """Evidence (report, quote, collateral, token) cannot be evaluated."""


class QuoteFormatError(AttestationError, ValueError):
    """A quote (or its certification data) does not parse."""


class CollateralFormatError(AttestationError, ValueError):
    """Collateral (TCB info, QE identity, CRL, PEM chain, collateral JSON) does not parse."""


class VerificationFailed(AttestationError):
    """A quote failed a named verification check; ``check`` names it (e.g. ``quote_signature``)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


class CertificateChainError(VerificationFailed):
    """A certificate chain does not lead to a trusted root, or a certificate is revoked."""


class CollateralExpired(VerificationFailed):
    """Collateral is outside its validity window at the verification time."""


class ProvisioningError(AttestationError):
    """The emulated provisioning PKI cannot issue, find or update a certificate or collateral."""


class QuotingError(AttestationError):
    """The quoting or provisioning-certification enclave refused to produce a quote."""


class PolicyError(AttestationError):
    """An attestation policy does not parse or cannot be evaluated."""


class PolicySyntaxError(PolicyError, ValueError):
    """Policy text does not parse; ``line`` and ``column`` (1-based) say where."""

    def __init__(self, line: int, column: int, detail: str) -> None:
        super().__init__(f"line {line}, column {column}: {detail}")
        self.line = line
        self.column = column
        self.detail = detail


class PolicyEvaluationError(PolicyError):
    """Evaluation failed: a rule compared values of the wrong type, or a function failed."""


class AuthorizationDenied(PolicyError):
    """The policy's authorization rules did not permit the evidence (or a deny() fired)."""


class InvalidToken(AttestationError, ValueError):
    """A JWS or JWT (attestation token, policy JWS) fails a check: form, algorithm, key,
    signature, issuer or validity time."""


class AttestationRequestError(AttestationError, ValueError):
    """A request to the attestation service is malformed or not allowed (bad base64, JSON field,
    JWS, unsupported type, untrusted policy signer); ``code`` is the MAA error code to answer."""

    def __init__(self, message: str, code: str = "InvalidParameter") -> None:
        super().__init__(message)
        self.code = code


class KeyReleaseError(EnclaveKitError):
    """A key-release request was refused."""


class ReleasePolicyNotSatisfied(KeyReleaseError):
    """The attestation token does not satisfy the key's release policy."""


class KeyNotFound(KeyReleaseError):
    """No key of that name (and version) exists."""


class KeyParameterError(KeyReleaseError, ValueError):
    """A key-management request is invalid (key type, size, attributes, policy placement)."""


class ReleasePolicyInvalid(KeyParameterError):
    """A key release policy does not parse or breaks the release-policy grammar."""


class TokenRejected(KeyReleaseError):
    """An attestation token failed verification (format, algorithm, key, signature, iss, time)."""


class KeyStateError(KeyReleaseError):
    """The key's state forbids the operation (disabled, expired, not exportable, immutable)."""


class UnknownVMSize(EnclaveKitError, ValueError):
    """No VM size of that name is in the catalogue."""


class VMError(EnclaveKitError):
    """A confidential VM cannot be created, found or used."""


class VMNotFound(VMError, LookupError):
    """No VM of that name exists in the data directory."""


class VMExists(VMError):
    """A VM of that name already exists."""


class ProtectedFileTampered(IntegrityError):
    """A protected file's header, chunk table, chunk or length does not authenticate."""


class ProtectedFileMoved(IntegrityError):
    """An authentic protected file is bound to another path than the one it was opened at."""


class ProtectedFileRollback(IntegrityError):
    """A protected file is older than (or forked from) a version this enclave already saw."""


class ProtectedFileUsage(EnclaveKitError, ValueError):
    """A protected file was used against its mode or state (closed, read-only, wrong key kind)."""


# --------------------------------------------------------------------------- sealing, counters


class SealRuleError(IntegrityError):
    """A sealed blob was refused; ``rule`` names the sealing rule that refused it.

    Rules: ``format`` (lengths or fields do not parse), ``mrenclave`` (another build),
    ``mrsigner`` (another signer), ``isvprodid`` (another product), ``debug`` (DEBUG and
    production never share keys), ``platform`` (another platform, or modified),
    ``modified`` (the MAC does not verify), ``stale`` (older than the device's counter).
    SVN rules raise ``InvalidISVSVN`` / ``InvalidCPUSVN`` as EGETKEY does.
    """

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"sealed blob refused ({rule} rule): {detail}")
        self.rule = rule
        self.detail = detail


class CounterError(EnclaveKitError):
    """A device-held monotonic counter refused a request (unknown, not ours, or limit)."""


class CounterMismatch(CounterError):
    """Compare-and-increment found another value: another instance advanced the state."""

"""``get_quote``: a DCAP quote of this enclave, made by the platform's quoting enclave.

The host SDK serves two built-in ocalls for every enclave (``host.quoting``):
``enclavekit_qe_target_info`` (the quoting enclave's TARGETINFO) and ``enclavekit_quote``
(carry a REPORT to the quoting enclave, bring back its quote). The host is untrusted and
only relays: the REPORT is MACed for the quoting enclave alone, and the quote that comes
back must carry exactly this enclave's REPORT body (identity and REPORTDATA), or
``get_quote`` refuses it. Whether the quote is genuine is for the relying party to check
(its verifier: PCK chain, QE report, signatures).
"""

from __future__ import annotations

import hmac

from ..errors import QuotingError
from .api import report
from .dispatch import Registry

__all__ = ["QUOTE_OCALLS", "get_quote"]

_BUILTIN = Registry()
"""The built-in ocalls; not declared in the app's interface, served by every host SDK."""


@_BUILTIN.ocall
def enclavekit_qe_target_info() -> bytes:
    """The quoting enclave's 512-byte TARGETINFO."""
    raise NotImplementedError  # the stub sends the ocall


@_BUILTIN.ocall
def enclavekit_quote(report: bytes, version: int) -> bytes:
    """The quoting enclave's quote of ``report``."""
    raise NotImplementedError  # the stub sends the ocall


QUOTE_OCALLS = {name: sig for name, sig in _BUILTIN.ocalls.items()}
"""Signatures of the built-in quoting ocalls (the host SDK declares the same)."""

_MIN_QUOTE = 1020
_BODY = slice(48, 432)


def get_quote(report_data: bytes, *, version: int = 3) -> bytes:
    """A DCAP ECDSA quote (v3, or v4) of this enclave with ``report_data`` (≤ 64 bytes,
    zero-padded) in its REPORTDATA; call it inside an ecall.

    Raises:
        InvalidStructure: ``report_data`` is longer than 64 bytes.
        QuotingError: the quoting enclave refused, or the host returned a quote that is not
            of this enclave's REPORT (substituted or altered).
    """
    if version not in (3, 4):
        raise QuotingError(f"quote version {version} is not supported (3 or 4)")
    target = enclavekit_qe_target_info()
    if type(target) is not bytes or len(target) != 512:
        raise QuotingError("the host returned no quoting-enclave TARGETINFO (512 bytes)")
    made = report(target, report_data)
    quote = enclavekit_quote(made, version)
    if type(quote) is not bytes or len(quote) < _MIN_QUOTE:
        raise QuotingError(f"the host returned {len(quote) if isinstance(quote, bytes) else 0}"
                           f" bytes, not a quote (at least {_MIN_QUOTE})")
    if int.from_bytes(quote[:2], "little") != version:
        raise QuotingError(f"the host returned a version {int.from_bytes(quote[:2], 'little')} "
                           f"quote, {version} was asked for")
    if not hmac.compare_digest(quote[_BODY], made[:384]):
        raise QuotingError("the host returned a quote of another REPORT body than this "
                           "enclave's (substituted or altered); refused")
    return quote

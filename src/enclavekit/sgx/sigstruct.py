"""SIGSTRUCT creation, signing and verification (SDM "SIGSTRUCT", sgx-spec.md §3).

INTERFACE STUB — to be implemented (issue 2, item 4). The processor model relies on:

* ``signing_data(sig: SigStruct) -> bytes``: the 256 signed bytes (0–127 ‖ 900–1027).
* ``mrsigner(sig: SigStruct) -> bytes``: SHA-256 of the little-endian MODULUS as stored.
* ``verify(sig: SigStruct, *, leaf: str = "EINIT") -> None``: raises ``InvalidSigStruct``
  (header/vendor/exponent/reserved) or ``InvalidSignature`` (RSA or Q1/Q2), as EINIT would.
"""

from __future__ import annotations

from .structs import SigStruct


def signing_data(sig: SigStruct) -> bytes:
    raise NotImplementedError


def mrsigner(sig: SigStruct) -> bytes:
    raise NotImplementedError


def verify(sig: SigStruct, *, leaf: str = "EINIT") -> None:
    raise NotImplementedError

"""The boundary's wire: typed values (:mod:`.codec`) and device-protocol frames (:mod:`.frame`).

A pure library (rank 0): callers pass bytes or a connected socket; nothing here opens files,
sockets or processes. Used alike by the host SDK, the device service and the enclave runtime.
"""

from __future__ import annotations

from .codec import (
    DEFAULT_LIMITS,
    Arguments,
    CallSignature,
    Limits,
    check_hint,
    decode_value,
    encode_value,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Arguments",
    "CallSignature",
    "Limits",
    "check_hint",
    "decode_value",
    "encode_value",
]

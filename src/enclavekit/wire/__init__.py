"""The boundary's wire: typed values (:mod:`.codec`) and device-protocol frames (:mod:`.frame`).

A pure library (rank 0): callers pass bytes or an already connected socket; nothing here opens
files, sockets or processes. Used alike by the host SDK, the device service and the enclave
runtime.
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
from .frame import (
    FLAG_ERROR,
    FLAG_REPLY,
    PROTOCOL_VERSION,
    Frame,
    FrameReader,
    pack_frame,
    read_frame,
    recv_frame,
    send_frame,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FLAG_ERROR",
    "FLAG_REPLY",
    "PROTOCOL_VERSION",
    "Arguments",
    "CallSignature",
    "Frame",
    "FrameReader",
    "Limits",
    "check_hint",
    "decode_value",
    "encode_value",
    "pack_frame",
    "read_frame",
    "recv_frame",
    "send_frame",
]

"""The boundary's wire: typed values and device-protocol frames.

A pure library (rank 0): callers pass bytes or an already connected socket; nothing here opens
files, sockets or processes. Used alike by the host SDK, the device service and the enclave
runtime.

Typed values are msgpack checked against the receiver's declared type hint, one concern a
module (each imports only those listed before it):

* :mod:`._kinds` - what a msgpack value's first byte says it is;
* :mod:`._faults` - a refusal deep in a value and the one-line typed error it becomes;
* :mod:`.limits` - :class:`Limits` on one value, checked before anything is allocated;
* :mod:`._reader` - the streaming reader that peeks at each header before decoding;
* :mod:`._nodes` - the shape of each compiled hint (types, msgpack kinds, labels);
* :mod:`._encode` / :mod:`._decode` - the encoding and decoding rules of each node;
* :mod:`.hints` - which hints are supported, compiled once (:func:`check_hint`);
* :mod:`.values` - :func:`encode_value` / :func:`decode_value` of one value;
* :mod:`.calls` - :class:`CallSignature`: ecall and ocall arguments and results.

:mod:`.frame` frames messages, :mod:`.ring` carries them through shared memory (switchless
calls) and :mod:`.schema` describes call signatures to the host.

Why our own codec on msgpack and not a typed codec library such as msgspec: the runtime is
pinned by hash and executed from checked bytes (``vm/bootstrap.py``,
``enclave/importer.py``). A pinned C extension can be loaded that way too: the importer
hashes it and loads an in-memory copy (memfd) of the checked bytes, as it does for msgpack's
own ``_cmsgpack``; but the shared libraries it needs are resolved from the system outside
the pin, and its code joins the enclave's trusted base as machine code, not as Python that
is read and compiled in the enclave. The deciding reason is that msgspec (0.23, checked)
does not make the refusals the attack tests require: it keeps the last of repeated map keys
and of repeated dataclass fields, ignores unknown dataclass fields, decodes an int for a
float, accepts NaN and has no element or depth limit (a deep message ends in
``RecursionError``). Refusing those around it would re-implement this package around a second
parser. So the enclave keeps one C parser, msgpack's (pinned), under these pure-Python checks.
"""

from __future__ import annotations

from .calls import Arguments, CallSignature
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
from .hints import check_hint
from .limits import DEFAULT_LIMITS, Limits
from .values import decode_value, encode_value

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

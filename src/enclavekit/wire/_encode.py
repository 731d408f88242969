"""Encoding: a Python value checked against its compiled hint and packed as plain msgpack.

Each node's ``enc`` checks the value's exact type before any of its methods runs (``True``
is not an ``int``, an ``int`` or ``str`` subclass is refused, ``bytearray`` and
``memoryview`` are not ``bytes``) and returns plain msgpack types: ints in msgpack's range
-2**63 .. 2**64 - 1, an ``int`` given for a ``float`` only when it is exact
(``abs(x) <= 2**53``), NaN and ±inf only with ``Limits.allow_nonfinite``, no ``str`` with a
lone surrogate, and of a dataclass exactly its declared fields (an undeclared attribute
never leaves, IF-8). Element counts and depth are checked as the value is walked, the
encoded size once it is packed.
"""

from __future__ import annotations

import math
import threading

import msgpack  # type: ignore[import-untyped]  # no stubs published

from ._faults import Fault, fault_at, found, int_text, short
from ._kinds import INT, STR
from ._nodes import (
    LITERAL_TYPES,
    BlobNode,
    DataclassNode,
    DictNode,
    FloatNode,
    ListNode,
    LiteralNode,
    Node,
    ScalarNode,
    TupleNode,
    UnionNode,
)
from .limits import Limits, Tally, depth_fault, size_text

__all__ = ["BlobEnc", "DataclassEnc", "DictEnc", "FloatEnc", "ListEnc", "LiteralEnc",
           "ScalarEnc", "TupleEnc", "UnionEnc", "encode_node", "pack"]

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1
_EXACT_FLOAT_INT = 1 << 53


class ScalarEnc(ScalarNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is not self.pytype:
            raise Fault(f"expected {self.label}, found {found(value)}")
        if self.kind == INT and not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise Fault(f"{int_text(value)} is outside msgpack's 64-bit range")
        return value


class FloatEnc(FloatNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is int:
            if abs(value) > _EXACT_FLOAT_INT:
                raise Fault(f"{int_text(value)} has no exact float; pass a float")
            return float(value)
        if type(value) is not float:
            raise Fault(f"expected float, found {found(value)}")
        if not cx.limits.allow_nonfinite and not math.isfinite(value):
            raise Fault(f"{value} is not a finite float")
        return value


class BlobEnc(BlobNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is not self.pytype:
            hint = " (pass bytes(value))" if isinstance(value, bytearray | memoryview) else ""
            raise Fault(f"expected {self.label}, found {found(value)}{hint}")
        if self.kind == STR and not value.isascii():  # type: ignore[attr-defined]
            try:
                value.encode("utf-8")  # type: ignore[attr-defined]
            except UnicodeEncodeError as exc:
                raise Fault(f"str has a lone surrogate at index {exc.start}") from None
        return value


class LiteralEnc(LiteralNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if not self.accepts(value):
            if type(value) in LITERAL_TYPES:
                raise Fault(f"expected {self.label}, found {short(value)}")
            raise Fault(f"expected {self.label}, found {found(value)}")
        return value


class ListEnc(ListNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is not list:
            raise Fault(f"expected {self.label}, found {found(value)}")
        if depth >= cx.limits.max_depth:
            raise depth_fault(cx.limits)
        cx.count(len(value))
        enc, out, i = self.item.enc, [], 0
        try:
            for i, v in enumerate(value):  # noqa: B007 (i names the failing element)
                out.append(enc(v, cx, depth + 1))
        except Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return out


class TupleEnc(TupleNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is not tuple:
            raise Fault(f"expected {self.label}, found {found(value)}")
        self.check_len(len(value))
        if depth >= cx.limits.max_depth:
            raise depth_fault(cx.limits)
        cx.count(len(value))
        out, i = [], 0
        try:
            for i, v in enumerate(value):
                out.append(self.node(i).enc(v, cx, depth + 1))
        except Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return out


class DictEnc(DictNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is not dict:
            raise Fault(f"expected {self.label}, found {found(value)}")
        if depth >= cx.limits.max_depth:
            raise depth_fault(cx.limits)
        cx.count(len(value))
        out: dict[object, object] = {}
        for i, (k, v) in enumerate(value.items()):
            try:
                ek = self.key.enc(k, cx, depth + 1)
            except Fault as f:
                f.segments.append(f"<key #{i}>")
                raise
            try:
                out[ek] = self.value.enc(v, cx, depth + 1)
            except Fault as f:
                f.segments.append(f"[{short(k)}]")
                raise
        return out


class DataclassEnc(DataclassNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        if type(value) is not self.cls:
            raise Fault(f"expected {self.label}, found {found(value)}")
        if depth >= cx.limits.max_depth:
            raise depth_fault(cx.limits)
        cx.count(len(self.fields))
        out: dict[str, object] = {}
        for name, node in self.fields.items():  # declared fields only (IF-8)
            try:
                out[name] = node.enc(getattr(value, name), cx, depth + 1)
            except Fault as f:
                f.segments.append(f".{name}")
                raise
        return out


class UnionEnc(UnionNode):
    def enc(self, value: object, cx: Tally, depth: int) -> object:
        for m in self.members:
            if m.accepts(value):
                return m.enc(value, cx, depth)
        if self.float is not None and type(value) is int:
            return self.float.enc(value, cx, depth)
        raise Fault(f"expected {self.label}, found {found(value)}")


_PACKERS = threading.local()


def pack(plain: object) -> bytes:
    """msgpack bytes of a checked plain value (one reusable Packer per thread)."""
    try:
        packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True, datetime=False)
    data: bytes = packer.pack(plain)
    return data


def encode_node(node: Node, value: object, limits: Limits, label: str,
                root: str) -> bytes:
    """Check ``value`` against ``node`` and pack it; ``label 'root...'`` names a refusal.

    Raises:
        EcallArgumentError: the value does not match, or exceeds ``limits``.
    """
    try:
        plain = node.enc(value, Tally(limits), 0)
    except Fault as f:
        raise fault_at(f, label, root) from None
    data = pack(plain)
    if len(data) > limits.max_size:
        raise fault_at(Fault(f"{len(data)} bytes encoded exceeds the "
                             f"{size_text(limits.max_size)} limit"), label, root)
    return data

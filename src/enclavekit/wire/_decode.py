"""Decoding: hostile bytes read into a value of exactly the compiled hint, or refused.

Only plain msgpack is read (nil, bool, int, float, str, bin, array, map): extension types
are refused, no class name is ever read from the wire and the only classes built are the
dataclasses the receiver's own hint names. Types are exact as in encoding (a msgpack bool is
not an ``int``, a decoded ``bytes`` is always an immutable ``bytes``); an ``int`` is within
msgpack's range (no quadratic big-int parsing); a ``float`` must be a msgpack float, NaN and
±inf only with ``Limits.allow_nonfinite``; a ``str`` valid UTF-8 (no over-long forms, no
encoded or lone surrogates). An embedded NUL is a valid character and is kept: code that
passes a str to an OS or path API must refuse NUL there. Map keys and dataclass fields never
repeat, and a dataclass gets exactly its declared fields (missing or unknown ones refused).

Two paths, per node side by side so that they visibly accept the same values:

* ``conv``, the fast path: a message of at most :data:`FAST_MAX` bytes is unpacked in C
  (:func:`unpack_small`) and the result checked; anything it does not accept outright raises
  :class:`~._faults.Miss` and goes to the streaming path.
* ``dec``, the streaming path (:class:`~._reader.Reader`): peeks at every header first,
  checks each declared length and count before reading further, and names the exact fault.
"""

from __future__ import annotations

import math

import msgpack  # type: ignore[import-untyped]  # no stubs published

from ._faults import Fault, Miss, fault_at, short
from ._kinds import ARRAY, BIN, BOOL, EXT, FLOAT, INT, KIND, MAP, NIL, STR
from ._nodes import (
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
from ._reader import Reader, finish, snapshot
from .limits import Limits, Tally, depth_fault

__all__ = ["FAST_MAX", "BlobDec", "DataclassDec", "DictDec", "FloatDec", "ListDec",
           "LiteralDec", "ScalarDec", "TupleDec", "UnionDec", "decode_node", "unpack_small"]

FAST_MAX = 1024
"""Messages up to this size are unpacked in C first: lying nested counts in so small a
message cannot make msgpack pre-allocate more than a few MiB."""
_PLAIN_KIND = {type(None): NIL, bool: BOOL, int: INT, float: FLOAT, str: STR, bytes: BIN,
               tuple: ARRAY, list: MAP}
"""Types ``msgpack.unpackb(use_list=False, object_pairs_hook=list)`` returns, by kind."""


def _no_ext(code: int, data: bytes) -> object:
    raise Miss


def unpack_small(data: bytes) -> object:
    """Unpack a small message in C, or return :class:`~._faults.Miss` (the class itself) to
    send it to the streaming path."""
    n = len(data)
    if n > FAST_MAX:
        return Miss
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=False, object_pairs_hook=list, strict_map_key=False,
            ext_hook=_no_ext, max_str_len=n, max_bin_len=n, max_array_len=n,
            max_map_len=n // 2, max_ext_len=n,
        )
    except Exception:  # malformed, truncated, trailing bytes, ext: the slow path explains
        return Miss


class ScalarDec(ScalarNode):
    def dec(self, r: Reader, depth: int) -> object:
        first = r.peek()
        if KIND[first] != self.kind:
            raise r.mismatch(self.label, first)
        return r.unpack()

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not self.pytype:
            raise Miss
        return plain


class FloatDec(FloatNode):
    def dec(self, r: Reader, depth: int) -> object:
        first = r.peek()
        if KIND[first] != FLOAT:
            raise r.mismatch("float", first)
        value: float = r.unpack()
        if not r.limits.allow_nonfinite and not math.isfinite(value):
            raise Fault(f"{value} is not a finite float")
        return value

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not float or not (cx.limits.allow_nonfinite or math.isfinite(plain)):
            raise Miss
        return plain


class BlobDec(BlobNode):
    def dec(self, r: Reader, depth: int) -> object:
        first = r.peek()
        if KIND[first] != self.kind:
            raise r.mismatch(self.label, first)
        r.blob_length(first)
        return r.unpack()

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not self.pytype:
            raise Miss
        return plain


class LiteralDec(LiteralNode):
    def dec(self, r: Reader, depth: int) -> object:
        first = r.peek()
        kind = KIND[first]
        if kind not in self.kinds:
            raise r.mismatch(self.label, first)
        if kind in (STR, BIN):
            r.blob_length(first)
        value = r.unpack()
        if (type(value), value) not in self.allowed:
            raise Fault(f"expected {self.label}, found {short(value)}")
        return value

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if not self.accepts(plain):
            raise Miss
        return plain


class ListDec(ListNode):
    def dec(self, r: Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise depth_fault(r.limits)
        n = r.container(ARRAY, self.label)
        dec, out, i = self.item.dec, [], 0
        try:
            for i in range(n):  # noqa: B007
                out.append(dec(r, depth + 1))
        except Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return out

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not tuple or depth >= cx.limits.max_depth:
            raise Miss
        cx.count(len(plain))
        conv = self.item.conv
        return [conv(v, cx, depth + 1) for v in plain]


class TupleDec(TupleNode):
    def dec(self, r: Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise depth_fault(r.limits)
        n = r.container(ARRAY, self.label)
        self.check_len(n)
        out, i = [], 0
        try:
            for i in range(n):
                out.append(self.node(i).dec(r, depth + 1))
        except Fault as f:
            f.segments.append(f"[{i}]")
            raise
        return tuple(out)

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not tuple or depth >= cx.limits.max_depth:
            raise Miss
        if self.fixed is not None and len(plain) != len(self.fixed):
            raise Miss
        cx.count(len(plain))
        return tuple(self.node(i).conv(v, cx, depth + 1) for i, v in enumerate(plain))


class DictDec(DictNode):
    def dec(self, r: Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise depth_fault(r.limits)
        n = r.container(MAP, self.label)
        out: dict[object, object] = {}
        for i in range(n):
            try:
                k = self.key.dec(r, depth + 1)
                if k in out:  # exact str/int/bytes: hashing runs no foreign code
                    raise Fault(f"duplicate key {short(k)}")
            except Fault as f:
                f.segments.append(f"<key #{i}>")
                raise
            try:
                out[k] = self.value.dec(r, depth + 1)
            except Fault as f:
                f.segments.append(f"[{short(k)}]")
                raise
        return out

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not list or depth >= cx.limits.max_depth:
            raise Miss
        cx.count(len(plain))
        key, val = self.key.conv, self.value.conv
        out = {key(k, cx, depth + 1): val(v, cx, depth + 1) for k, v in plain}
        if len(out) != len(plain):  # a repeated key
            raise Miss
        return out


class DataclassDec(DataclassNode):
    def dec(self, r: Reader, depth: int) -> object:
        if depth >= r.limits.max_depth:
            raise depth_fault(r.limits)
        n = r.container(MAP, self.label)
        got: dict[str, object] = {}
        for _ in range(n):
            first = r.peek()
            if KIND[first] != STR:
                raise r.mismatch(f"a field name of {self.label}", first)
            r.blob_length(first)
            name = r.unpack()
            node = self.fields.get(name)
            if node is None:
                raise Fault(f"{self.label} has no field {short(name)} "
                            f"(declared: {', '.join(self.fields) or 'none'})")
            if name in got:
                raise Fault(f"field {name!r} of {self.label} appears twice")
            try:
                got[name] = node.dec(r, depth + 1)
            except Fault as f:
                f.segments.append(f".{name}")
                raise
        missing = [name for name in self.fields if name not in got]
        if missing:
            raise Fault(f"{self.label} is missing field {missing[0]!r}")
        try:
            return self.cls(**got)
        except (TypeError, ValueError) as exc:
            raise Fault(f"{self.label} refused the value: {exc}") from None

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        if type(plain) is not list or depth >= cx.limits.max_depth:
            raise Miss
        cx.count(len(plain))
        fields = self.fields
        got: dict[str, object] = {}
        for name, v in plain:
            if type(name) is not str or name not in fields:
                raise Miss
            got[name] = fields[name].conv(v, cx, depth + 1)
        if len(got) != len(plain) or len(got) != len(fields):  # repeated or missing field
            raise Miss
        try:
            return self.cls(**got)
        except (TypeError, ValueError):
            raise Miss from None


class UnionDec(UnionNode):
    def dec(self, r: Reader, depth: int) -> object:
        first = r.peek()
        member = self.by_kind.get(KIND[first])
        if member is None:
            raise r.mismatch(self.label, first)
        return member.dec(r, depth)

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        member = self.by_kind.get(_PLAIN_KIND.get(type(plain), EXT))
        if member is None:
            raise Miss
        return member.conv(plain, cx, depth)


def decode_node(node: Node, data: object, limits: Limits, label: str) -> object:
    """Decode one message against ``node``: the fast path, else the streaming one.

    Raises:
        ProtocolError: the bytes are not one well-formed msgpack value.
        EcallArgumentError: the value does not match the hint or exceeds ``limits``.
    """
    data = snapshot(data, limits, label)
    plain = unpack_small(data)
    if plain is not Miss:
        try:
            return node.conv(plain, Tally(limits), 0)
        except (Miss, Fault):
            pass  # the streaming path below finds and names what is wrong
    r = Reader(data, limits)
    try:
        value = node.dec(r, 0)
    except Fault as f:
        raise fault_at(f, label, "") from None
    finish(r, label)
    return value

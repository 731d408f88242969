"""Compiled type hints: what a value of each supported hint looks like on both sides.

A hint compiles (:mod:`.hints`) into a tree of nodes, one per part of the hint. This module
holds each node's shape: its Python type, the msgpack kinds it is sent as (a union picks its
member by the wire kind alone), its label for messages and ``accepts`` (is a Python value of
this node's exact type). What a node does with values is split by concern, one mixin per
node in each: :mod:`._encode` (``enc``: check a Python value and turn it into plain msgpack
types) and :mod:`._decode` (``dec``: the streaming reader; ``conv``: a value msgpack's C
unpacker already built). :mod:`.hints` combines them.
"""

from __future__ import annotations

from ._faults import Fault
from ._kinds import ARRAY, BIN, BOOL, FLOAT, INT, KIND_NAME, MAP, NIL, STR
from ._reader import Reader
from .limits import Tally

__all__ = ["LITERAL_TYPES", "BlobNode", "DataclassNode", "DictNode", "FloatNode", "ListNode",
           "LiteralNode", "Node", "ScalarNode", "TupleNode", "UnionNode"]


class Node:
    """One compiled type hint: how to check, encode and decode its values."""

    kinds: frozenset[int] = frozenset()
    label: str = "?"

    def accepts(self, value: object) -> bool:
        raise NotImplementedError

    def enc(self, value: object, cx: Tally, depth: int) -> object:
        raise NotImplementedError

    def dec(self, r: Reader, depth: int) -> object:
        raise NotImplementedError

    def conv(self, plain: object, cx: Tally, depth: int) -> object:
        """Fast path: a value already unpacked by ``msgpack.unpackb`` (arrays as tuples,
        maps as lists of pairs); anything unexpected raises :class:`~._faults.Miss`."""
        raise NotImplementedError


class ScalarNode(Node):
    """``int``, ``bool`` and ``None``: the msgpack kind and the Python type must both match."""

    def __init__(self, pytype: type, kind: int, label: str) -> None:
        self.pytype = pytype
        self.kinds = frozenset({kind})
        self.kind = kind
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is self.pytype


class FloatNode(Node):
    kinds = frozenset({FLOAT})
    label = "float"

    def accepts(self, value: object) -> bool:
        return type(value) is float


class BlobNode(Node):
    """``str`` and ``bytes``: declared length checked before the body is read."""

    def __init__(self, pytype: type, kind: int) -> None:
        self.pytype = pytype
        self.kind = kind
        self.kinds = frozenset({kind})
        self.label = pytype.__name__

    def accepts(self, value: object) -> bool:
        return type(value) is self.pytype


LITERAL_TYPES = {str: STR, bytes: BIN, int: INT, bool: BOOL, type(None): NIL}
"""The types a ``Literal`` value may have, and their msgpack kinds."""


class LiteralNode(Node):
    def __init__(self, values: tuple[object, ...], label: str) -> None:
        for v in values:
            if type(v) not in LITERAL_TYPES:
                raise TypeError(f"{label}: Literal values must be str, bytes, int, bool or None")
        self.allowed = frozenset((type(v), v) for v in values)
        self.kinds = frozenset(LITERAL_TYPES[type(v)] for v in values)
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) in LITERAL_TYPES and (type(value), value) in self.allowed


class ListNode(Node):
    kinds = frozenset({ARRAY})

    def __init__(self, item: Node, label: str) -> None:
        self.item = item
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is list


class TupleNode(Node):
    """``tuple[A, B]`` (fixed) or ``tuple[T, ...]`` (``fixed`` is None)."""

    kinds = frozenset({ARRAY})

    def __init__(self, fixed: tuple[Node, ...] | None, item: Node | None, label: str) -> None:
        self.fixed = fixed
        self.item = item
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is tuple

    def node(self, i: int) -> Node:
        """The node of element ``i``."""
        if self.fixed is not None:
            return self.fixed[i]
        assert self.item is not None
        return self.item

    def check_len(self, n: int) -> None:
        if self.fixed is not None and n != len(self.fixed):
            raise Fault(f"expected {self.label} of {len(self.fixed)} elements, found {n}")


class DictNode(Node):
    kinds = frozenset({MAP})

    def __init__(self, key: Node, value: Node, label: str) -> None:
        self.key = key
        self.value = value
        self.label = label

    def accepts(self, value: object) -> bool:
        return type(value) is dict


class DataclassNode(Node):
    """A dataclass: a map of exactly its declared fields, built by its own ``__init__``."""

    kinds = frozenset({MAP})

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.label = cls.__qualname__
        self.fields: dict[str, Node] = {}  # filled in after construction (recursive hints)

    def accepts(self, value: object) -> bool:
        return type(value) is self.cls


class UnionNode(Node):
    """Members of distinct msgpack kinds: the wire kind alone picks the member."""

    def __init__(self, members: tuple[Node, ...], label: str) -> None:
        self.members = members
        self.label = label
        self.by_kind: dict[int, Node] = {}
        for m in members:
            for k in m.kinds:
                if k in self.by_kind:
                    raise TypeError(
                        f"{label}: {self.by_kind[k].label} and {m.label} both encode as "
                        f"msgpack {KIND_NAME[k]}, so the receiver could not tell them apart"
                    )
                self.by_kind[k] = m
        self.kinds = frozenset(self.by_kind)
        self.float = next((m for m in members if isinstance(m, FloatNode)), None)

    def accepts(self, value: object) -> bool:
        return any(m.accepts(value) for m in self.members)

"""Type hints compiled for the boundary: which hints values may cross as, checked once.

Supported hints: ``bytes``, ``str``, ``int``, ``float``, ``bool``, ``None``, ``list[T]``,
``dict[K, V]`` (``K`` is ``str``, ``int`` or ``bytes``), ``tuple[T, ...]``, ``tuple[A, B]``,
``Literal[...]`` of str/int/bytes/bool/None, unions such as ``T | None`` whose members use
different msgpack kinds, ``Annotated[T, ...]`` (read as ``T``) and dataclasses of these,
nested or recursive. Anything else is refused when the hint is first used, with
``TypeError``. A hint compiles into a tree of nodes (:mod:`._nodes`) whose classes combine
each kind's encoding (:mod:`._encode`) and decoding (:mod:`._decode`); compiled hints are
cached, and published only once every part compiled.
"""

from __future__ import annotations

import dataclasses
import threading
import types
import typing
from typing import Literal, Union

from ._decode import (
    BlobDec,
    DataclassDec,
    DictDec,
    FloatDec,
    ListDec,
    LiteralDec,
    ScalarDec,
    TupleDec,
    UnionDec,
)
from ._encode import (
    BlobEnc,
    DataclassEnc,
    DictEnc,
    FloatEnc,
    ListEnc,
    LiteralEnc,
    ScalarEnc,
    TupleEnc,
    UnionEnc,
)
from ._kinds import BIN, BOOL, INT, NIL, STR
from ._nodes import Node

__all__ = ["check_hint", "compile_hint"]


class _Scalar(ScalarEnc, ScalarDec):
    pass


class _Float(FloatEnc, FloatDec):
    pass


class _Blob(BlobEnc, BlobDec):
    pass


class _Literal(LiteralEnc, LiteralDec):
    pass


class _List(ListEnc, ListDec):
    pass


class _Tuple(TupleEnc, TupleDec):
    pass


class _Dict(DictEnc, DictDec):
    pass


class _Dataclass(DataclassEnc, DataclassDec):
    pass


class _Union(UnionEnc, UnionDec):
    pass


_SUPPORTED = ("bytes, str, int, float, bool, None, list[T], dict[K, V], tuple[...], "
              "Literal[...], T | None and dataclasses of these")
_LEAVES: dict[object, Node] = {
    int: _Scalar(int, INT, "int"),
    bool: _Scalar(bool, BOOL, "bool"),
    None: _Scalar(type(None), NIL, "None"),
    type(None): _Scalar(type(None), NIL, "None"),
    float: _Float(),
    str: _Blob(str, STR),
    bytes: _Blob(bytes, BIN),
}
_CACHE: dict[object, Node] = dict(_LEAVES)
_LOCK = threading.RLock()


def _name(hint: object) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    if hint is None:
        return "None"
    return repr(hint).replace("typing.", "")


def compile_hint(hint: object) -> Node:
    """The node of ``hint``, compiled once and cached.

    Raises:
        TypeError: values cannot cross the boundary as ``hint``.
    """
    try:
        return _CACHE[hint]
    except KeyError:
        pass
    except TypeError:
        raise TypeError(f"type hint {hint!r} is not supported (supported: {_SUPPORTED})") \
            from None
    with _LOCK:
        pending: dict[object, Node] = {}
        node = _build(hint, pending)
        _CACHE.update(pending)  # published only once every part compiled
        return node


def _build(hint: object, pending: dict[object, Node]) -> Node:
    if hint in _CACHE:
        return _CACHE[hint]
    if hint in pending:
        return pending[hint]
    node = _build_new(hint, pending)
    pending[hint] = node
    return node


def _build_new(hint: object, pending: dict[object, Node]) -> Node:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    label = _name(hint)
    if isinstance(hint, str | typing.ForwardRef):
        raise TypeError(f"type hint {hint!r} is a string; resolve it first "
                        "(typing.get_type_hints)")
    if origin is typing.Annotated:
        return _build(args[0], pending)
    if origin is list:
        if len(args) != 1:
            raise TypeError(f"{label}: list needs one element type, e.g. list[int]")
        return _List(_build(args[0], pending), label)
    if origin is dict:
        if len(args) != 2:
            raise TypeError(f"{label}: dict needs key and value types, e.g. dict[str, int]")
        if args[0] not in (str, int, bytes):
            raise TypeError(f"{label}: dict keys must be str, int or bytes")
        return _Dict(_build(args[0], pending), _build(args[1], pending), label)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _Tuple(None, _build(args[0], pending), label)
        if Ellipsis in args:
            raise TypeError(f"{label}: write tuple[T, ...] or tuple[A, B]")
        return _Tuple(tuple(_build(a, pending) for a in args), None, label)
    if origin is Literal:
        return _Literal(args, label)
    if origin is Union or origin is types.UnionType:
        return _Union(tuple(_build(a, pending) for a in args), label)
    if hint in (list, dict, tuple):
        raise TypeError(f"{label}: give the element types, e.g. list[int] or dict[str, bytes]")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, pending)
    raise TypeError(f"type hint {label} is not supported (supported: {_SUPPORTED})")


def _build_dataclass(cls: type, pending: dict[object, Node]) -> Node:
    node = _Dataclass(cls)
    pending[cls] = node  # before the fields, so a recursive field finds it
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError, TypeError... from user annotations
        raise TypeError(f"cannot resolve the type hints of {cls.__qualname__}: {exc}") from None
    for f in dataclasses.fields(cls):
        if not f.init:
            raise TypeError(f"{cls.__qualname__}.{f.name}: fields with init=False cannot cross "
                            "the boundary")
        try:
            node.fields[f.name] = _build(hints[f.name], pending)
        except TypeError as exc:
            raise TypeError(f"{cls.__qualname__}.{f.name}: {exc}") from None
    return node


def check_hint(hint: object) -> None:
    """Refuse, with ``TypeError``, a type hint that values cannot cross the boundary as."""
    compile_hint(hint)

"""Ecall and ocall signatures: arguments and results checked against the declared hints.

:class:`CallSignature` is read from a function's hints (``@ecall``, ``@ocall``) or rebuilt
from a schema (:mod:`.schema`). Arguments are bound as a Python call would bind them and
cross as one msgpack map, each value checked against its parameter's hint on both sides; the
enclave re-checks every argument and every ocall result against its own hints, so the host's
copy is a convenience, not a trust decision. Small argument maps take the C fast path
(:func:`~._decode.unpack_small`), anything else the streaming reader, which names the fault.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from ..errors import EcallArgumentError
from ._decode import decode_node, unpack_small
from ._encode import encode_node, pack
from ._faults import Fault, Miss, fault_at, short
from ._kinds import KIND, MAP, STR
from ._nodes import Node
from ._reader import Reader, finish, snapshot
from .hints import compile_hint
from .limits import DEFAULT_LIMITS, Limits, Tally, size_text

__all__ = ["Arguments", "CallSignature"]


class Arguments(NamedTuple):
    """Decoded call arguments, ready for ``fn(*args, **kwargs)``."""

    args: tuple[object, ...]
    kwargs: dict[str, object]


_EMPTY = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True, eq=False)
class CallSignature:
    """The declared parameters and result of an ecall or ocall, checked on both sides.

    Arguments cross as a map from parameter name to value; a parameter left out takes the
    declared default on the receiving side, never one chosen by the sender.
    """

    name: str
    parameters: tuple[inspect.Parameter, ...]
    result: object
    kind: str = "ecall"
    _nodes: dict[str, Node] = dataclasses.field(init=False, repr=False)
    _result: Node = dataclasses.field(init=False, repr=False)
    _where: str = dataclasses.field(init=False, repr=False)
    _positional: tuple[inspect.Parameter, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"{self.kind} {self.name!r}"
        nodes: dict[str, Node] = {}
        for p in self.parameters:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{where}: *{p.name} / **{p.name} parameters cannot be declared; "
                                "list each parameter with its type")
            try:
                nodes[p.name] = compile_hint(p.annotation)
            except TypeError as exc:
                raise TypeError(f"{where}: parameter {p.name!r}: {exc}") from None
            if p.default is not _EMPTY:
                try:
                    encode_node(nodes[p.name], p.default, DEFAULT_LIMITS, "default", p.name)
                except EcallArgumentError as exc:
                    raise TypeError(f"{where}: the default of {p.name!r} does not match its "
                                    f"type ({exc})") from None
        try:
            result = compile_hint(self.result)
        except TypeError as exc:
            raise TypeError(f"{where}: return type: {exc}") from None
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_result", result)
        object.__setattr__(self, "_where", where)
        positional = tuple(p for p in self.parameters
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        object.__setattr__(self, "_positional", positional)

    @classmethod
    def from_function(cls, fn: Callable[..., object], *, name: str | None = None,
                      kind: str = "ecall") -> CallSignature:
        """Read the declared signature of ``fn``; every parameter and the return need a hint."""
        call: str = name or str(getattr(fn, "__name__", repr(fn)))
        where = f"{kind} {call!r}"
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # NameError etc. from user annotations
            raise TypeError(f"{where}: cannot resolve type hints: {exc}") from None
        params = []
        for p in inspect.signature(fn).parameters.values():
            if p.name not in hints and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{where}: parameter {p.name!r} has no type hint")
            params.append(p.replace(annotation=hints.get(p.name, _EMPTY)))
        if "return" not in hints:
            raise TypeError(f"{where}: no return type hint (write '-> None' if it returns "
                            "nothing)")
        return cls(call, tuple(params), hints["return"], kind)

    def _bind(self, args: Sequence[object], kwargs: Mapping[str, object]) -> dict[str, object]:
        """Match arguments to parameters as a Python call would (``inspect``'s rules)."""
        if not kwargs and len(args) == len(self._positional) == len(self.parameters):
            return dict(zip(self._nodes, args, strict=True))  # every parameter, in order
        if len(args) > len(self._positional):
            raise TypeError(f"takes {len(self._positional)} positional arguments but "
                            f"{len(args)} were given")
        bound = {p.name: v for p, v in zip(self._positional, args, strict=False)}
        for pname, value in kwargs.items():
            if pname in bound:
                raise TypeError(f"got multiple values for argument {pname!r}")
            if pname not in self._nodes:
                raise TypeError(f"got an unexpected keyword argument {pname!r}")
            bound[pname] = value
        for p in self.parameters:
            if p.name not in bound:
                if p.default is _EMPTY:
                    raise TypeError(f"missing a required argument: {p.name!r}")
            elif p.kind is p.POSITIONAL_ONLY and p.name in kwargs:
                raise TypeError(f"positional-only argument {p.name!r} passed by keyword")
        return bound

    def encode_args(self, args: Sequence[object] = (),
                    kwargs: Mapping[str, object] | None = None, *,
                    limits: Limits = DEFAULT_LIMITS) -> bytes:
        """Bind arguments as Python would call the function, check each, and encode them."""
        try:
            bound = self._bind(args, kwargs or {})
        except TypeError as exc:
            raise EcallArgumentError(f"{self._where}: {exc}") from None
        cx = Tally(limits)
        plain: dict[str, object] = {}
        for pname, value in bound.items():
            try:
                plain[pname] = self._nodes[pname].enc(value, cx, 1)
            except Fault as f:
                raise fault_at(f, "argument", pname) from None
        data = pack(plain)
        if len(data) > limits.max_size:
            raise EcallArgumentError(f"{self._where}: arguments encode to {len(data)} bytes, "
                                     f"over the {size_text(limits.max_size)} limit")
        return data

    def decode_args(self, data: bytes | bytearray | memoryview, *,
                    limits: Limits = DEFAULT_LIMITS) -> Arguments:
        """Decode hostile argument bytes against the declared parameters."""
        label = f"{self._where} arguments"
        data = snapshot(data, limits, label)
        got = self._fast_args(data, limits)
        if got is None:
            got = self._slow_args(data, limits, label)
        args: list[object] = []
        kwargs: dict[str, object] = {}
        for p in self.parameters:
            if p.name in got:
                value = got[p.name]
            elif p.default is not _EMPTY:
                value = p.default
            else:
                raise EcallArgumentError(f"{self._where}: missing argument {p.name!r}")
            if p.kind is p.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[p.name] = value
        return Arguments(tuple(args), kwargs)

    def _fast_args(self, data: bytes, limits: Limits) -> dict[str, object] | None:
        plain = unpack_small(data)
        if type(plain) is not list:  # Miss, or not a map
            return None
        cx = Tally(limits)
        got: dict[str, object] = {}
        try:
            cx.count(len(plain))
            for pname, value in plain:
                node = self._nodes.get(pname) if type(pname) is str else None
                if node is None:
                    return None
                got[pname] = node.conv(value, cx, 1)
        except (Miss, Fault):
            return None
        return got if len(got) == len(plain) else None

    def _slow_args(self, data: bytes, limits: Limits, label: str) -> dict[str, object]:
        r = Reader(data, limits)
        got: dict[str, object] = {}
        try:
            n = r.container(MAP, "a map of arguments")
            for _ in range(n):
                first = r.peek()
                if KIND[first] != STR:
                    raise r.mismatch("a parameter name", first)
                r.blob_length(first)
                pname = r.unpack()
                node = self._nodes.get(pname)
                if node is None:
                    raise Fault(f"{self._where} has no parameter {short(pname)}")
                if pname in got:
                    raise Fault(f"argument {pname!r} given twice")
                try:
                    got[pname] = node.dec(r, 1)
                except Fault as f:
                    raise fault_at(f, "argument", pname) from None
        except Fault as f:
            raise fault_at(f, label, "") from None
        finish(r, label)
        return got

    def encode_result(self, value: object, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
        """Check a return value against the declared return type and encode it."""
        return encode_node(self._result, value, limits, f"{self._where} result", "")

    def decode_result(self, data: bytes | bytearray | memoryview, *,
                      limits: Limits = DEFAULT_LIMITS) -> object:
        """Decode a (hostile, for ocalls) result against the declared return type."""
        return decode_node(self._result, data, limits, f"{self._where} result")

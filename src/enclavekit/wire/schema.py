"""Call signatures as JSON schemas, so the host can rebuild the types an enclave declares.

The enclave answers INTERFACE with one schema per ecall and ocall; the host rebuilds an
equivalent :class:`~enclavekit.wire.CallSignature` (dataclasses re-made, frozen, with
:func:`dataclasses.make_dataclass`). The enclave still checks everything against its own
hints: a schema is a convenience for the host, never a trust decision.

Schema (UTF-8 JSON object)::

    {"name": str, "kind": "ecall" | "ocall",
     "params": [{"name": str, "kind": "positional_only" | "positional_or_keyword" |
                 "keyword_only", "default": bool, "value": hex msgpack (when default)}],
     "returns": TYPE}

TYPE is one of ``{"t": "int" | "float" | "str" | "bytes" | "bool" | "none"}``,
``{"t": "list", "of": TYPE}``, ``{"t": "dict", "k": TYPE, "v": TYPE}``,
``{"t": "tuple", "items": [TYPE, ...]}``, ``{"t": "tuple", "of": TYPE}`` (variadic),
``{"t": "optional", "of": TYPE}``, ``{"t": "union", "of": [TYPE, ...]}``,
``{"t": "literal", "values": [["str" | "int" | "bytes" | "bool" | "none", value], ...]}``
(bytes as hex) and ``{"t": "dataclass", "name": N, "fields": [[field, TYPE], ...]}``; a
dataclass seen before in the same schema is written ``{"t": "dataclass", "name": N}``
(this is how recursive types are expressed).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import keyword
import re
import types
import typing
from typing import Any, Literal, Union

from ..errors import ProtocolError
from .calls import CallSignature
from .values import decode_value, encode_value

__all__ = ["MAX_SCHEMA", "signature_from_schema", "signature_schema"]

MAX_SCHEMA = 1 << 20
"""Bytes in one schema."""
_MAX_DEPTH = 64
_SCALARS: dict[object, str] = {int: "int", float: "float", str: "str", bytes: "bytes",
                               bool: "bool", None: "none", type(None): "none"}
_FROM_SCALAR: dict[str, object] = {"int": int, "float": float, "str": str, "bytes": bytes,
                                   "bool": bool, "none": type(None)}
_PARAM_KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
}
_KIND_NAMES: dict[Any, str] = {v: k for k, v in _PARAM_KINDS.items()}
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.<>]{0,199}$")


# --------------------------------------------------------------------------- writing


class _Writer:
    def __init__(self) -> None:
        self.names: dict[type, str] = {}

    def class_name(self, cls: type) -> tuple[str, bool]:
        if cls in self.names:
            return self.names[cls], False
        base = cls.__qualname__
        name, n = base, 1
        taken = set(self.names.values())
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        self.names[cls] = name
        return name, True

    def hint(self, hint: object) -> dict[str, Any]:
        if hint in _SCALARS:
            return {"t": _SCALARS[hint]}
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Annotated:
            return self.hint(args[0])
        if origin is list:
            return {"t": "list", "of": self.hint(args[0])}
        if origin is dict:
            return {"t": "dict", "k": self.hint(args[0]), "v": self.hint(args[1])}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"t": "tuple", "of": self.hint(args[0])}
            return {"t": "tuple", "items": [self.hint(a) for a in args]}
        if origin is Literal:
            return {"t": "literal", "values": [_literal_out(v) for v in args]}
        if origin is Union or origin is types.UnionType:
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1 and len(args) == 2:
                return {"t": "optional", "of": self.hint(rest[0])}
            return {"t": "union", "of": [self.hint(a) for a in args]}
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            name, new = self.class_name(hint)
            if not new:
                return {"t": "dataclass", "name": name}
            hints = typing.get_type_hints(hint)
            fields = [[f.name, self.hint(hints[f.name])] for f in dataclasses.fields(hint)]
            return {"t": "dataclass", "name": name, "fields": fields}
        raise TypeError(f"type hint {hint!r} has no schema form")


def _literal_out(value: object) -> list[object]:
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if value is None:
        return ["none", None]
    return [type(value).__name__, value]


def signature_schema(sig: CallSignature) -> bytes:
    """The JSON schema of a declared ecall or ocall signature."""
    w = _Writer()
    params = []
    for p in sig.parameters:
        entry: dict[str, Any] = {"name": p.name, "kind": _KIND_NAMES[p.kind],
                                 "type": w.hint(p.annotation),
                                 "default": p.default is not inspect.Parameter.empty}
        if entry["default"]:
            entry["value"] = encode_value(p.default, p.annotation).hex()
        params.append(entry)
    doc = {"name": sig.name, "kind": sig.kind, "params": params, "returns": w.hint(sig.result)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- reading


class _Bad(Exception):
    pass


def _obj(raw: object, keys: set[str], optional: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Bad(f"{where}: expected an object, found {type(raw).__name__}")
    missing = keys - set(raw)
    if missing:
        raise _Bad(f"{where}: missing key {sorted(missing)[0]!r}")
    extra = set(raw) - keys - optional
    if extra:
        raise _Bad(f"{where}: unknown key {sorted(extra)[0]!r}")
    return raw


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where}: expected a string, found {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{where}: expected an array, found {type(value).__name__}")
    return value


def _ident(value: object, where: str) -> str:
    name = _str(value, where)
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise _Bad(f"{where}: {name[:40]!r} is not a Python identifier")
    return name


class _Reader:
    def __init__(self) -> None:
        self.classes: dict[str, type] = {}
        self.fields: dict[str, list[tuple[str, object]]] = {}

    def hint(self, raw: object, where: str, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise _Bad(f"{where}: nested deeper than {_MAX_DEPTH} levels")
        if not isinstance(raw, dict) or "t" not in raw:
            raise _Bad(f"{where}: expected a type object with key 't'")
        t = raw["t"]
        d = depth + 1
        if t in _FROM_SCALAR:
            _obj(raw, {"t"}, set(), where)
            return _FROM_SCALAR[t]
        if t == "list":
            return list[self.hint(_obj(raw, {"t", "of"}, set(), where)["of"], where, d)]  # type: ignore[misc]
        if t == "dict":
            _obj(raw, {"t", "k", "v"}, set(), where)
            key = self.hint(raw["k"], where, d)
            if key not in (str, int, bytes):
                raise _Bad(f"{where}: dict keys must be str, int or bytes")
            return dict[key, self.hint(raw["v"], where, d)]  # type: ignore[valid-type,misc]
        if t == "tuple":
            if "of" in raw:
                _obj(raw, {"t", "of"}, set(), where)
                return tuple[self.hint(raw["of"], where, d), ...]  # type: ignore[misc]
            items = _list(_obj(raw, {"t", "items"}, set(), where)["items"], where)
            if not items:
                raise _Bad(f"{where}: a fixed tuple needs at least one item")
            return tuple[tuple(self.hint(i, where, d) for i in items)]  # type: ignore[misc]
        if t == "optional":
            inner = self.hint(_obj(raw, {"t", "of"}, set(), where)["of"], where, d)
            return Union[inner, None]  # noqa: UP007
        if t == "union":
            members = _list(_obj(raw, {"t", "of"}, set(), where)["of"], where)
            if len(members) < 2:
                raise _Bad(f"{where}: a union needs at least two members")
            union: Any = Union[tuple(self.hint(m, where, d) for m in members)]  # noqa: UP007
            if len(typing.get_args(union)) != len(members):
                raise _Bad(f"{where}: a union repeats a member")
            return union
        if t == "literal":
            values = _list(_obj(raw, {"t", "values"}, set(), where)["values"], where)
            if not values:
                raise _Bad(f"{where}: a literal needs at least one value")
            return Literal[tuple(_literal_in(v, where) for v in values)]
        if t == "dataclass":
            return self.dataclass(raw, where, d)
        raise _Bad(f"{where}: unknown type {str(t)[:40]!r}")

    def dataclass(self, raw: dict[str, Any], where: str, depth: int) -> type:
        _obj(raw, {"t", "name"}, {"fields"}, where)
        name = _str(raw["name"], where)
        if not _CLASS_NAME.match(name):
            raise _Bad(f"{where}: {name[:40]!r} is not a class name")
        if "fields" not in raw:
            if name not in self.classes:
                raise _Bad(f"{where}: dataclass {name!r} is used before it is defined")
            return self.classes[name]
        if name in self.classes:
            raise _Bad(f"{where}: dataclass {name!r} is defined twice")
        entries = _list(raw["fields"], where)
        names: list[str] = []
        for e in entries:
            if not isinstance(e, list) or len(e) != 2:
                raise _Bad(f"{where}: a field of {name} must be [name, type]")
            names.append(_ident(e[0], f"{where}: field of {name}"))
        if len(set(names)) != len(names):
            raise _Bad(f"{where}: dataclass {name!r} repeats a field name")
        cls = dataclasses.make_dataclass(name, [(n, object) for n in names], frozen=True)
        self.classes[name] = cls  # before the fields, so a recursive field finds it
        hints = {n: self.hint(e[1], f"{where}.{name}.{n}", depth)
                 for n, e in zip(names, entries, strict=True)}
        cls.__annotations__.update(hints)
        for f in dataclasses.fields(cls):
            f.type = hints[f.name]
        return cls


def _literal_in(raw: object, where: str) -> object:
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], str):
        raise _Bad(f"{where}: a literal value must be [kind, value]")
    kind, value = raw
    if kind == "bytes" and isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise _Bad(f"{where}: literal bytes are not hex") from None
    ok = {"str": str, "int": int, "bool": bool}
    if kind == "none" and value is None:
        return None
    if kind in ok and type(value) is ok[kind]:
        return value
    raise _Bad(f"{where}: literal value of kind {kind[:20]!r} does not match")


def _build(data: bytes) -> CallSignature:
    if not isinstance(data, bytes):
        raise _Bad(f"expected bytes, found {type(data).__name__}")
    if len(data) > MAX_SCHEMA:
        raise _Bad(f"{len(data)} bytes is over the {MAX_SCHEMA}-byte limit")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Bad(f"not JSON: {str(exc)[:80]}") from None
    _obj(doc, {"name", "kind", "params", "returns"}, set(), "schema")
    name = _str(doc["name"], "name")
    kind = _str(doc["kind"], "kind")
    if kind not in ("ecall", "ocall"):
        raise _Bad(f"kind must be 'ecall' or 'ocall', found {kind[:20]!r}")
    r = _Reader()
    params: list[inspect.Parameter] = []
    for i, raw in enumerate(_list(doc["params"], "params")):
        where = f"params[{i}]"
        _obj(raw, {"name", "kind", "type", "default"}, {"value"}, where)
        pname = _ident(raw["name"], where)
        pkind = _PARAM_KINDS.get(_str(raw["kind"], where))
        if pkind is None:
            raise _Bad(f"{where}: unknown parameter kind {raw['kind'][:30]!r}")
        hint = r.hint(raw["type"], where)
        default: object = inspect.Parameter.empty
        if raw["default"] is True:
            if "value" not in raw:
                raise _Bad(f"{where}: a default needs its 'value'")
            try:
                default = decode_value(bytes.fromhex(_str(raw["value"], where)), hint)
            except ValueError:
                raise _Bad(f"{where}: default value is not hex") from None
            except Exception as exc:  # the codec's typed refusals
                raise _Bad(f"{where}: default value does not decode ({exc})") from None
        elif raw["default"] is not False or "value" in raw:
            raise _Bad(f"{where}: 'default' must be true or false (and 'value' only with true)")
        params.append(inspect.Parameter(pname, pkind, default=default, annotation=hint))
    result = r.hint(doc["returns"], "returns")
    try:
        inspect.Signature(params)  # order, duplicates, defaults before non-defaults
        return CallSignature(name, tuple(params), result, kind)
    except (TypeError, ValueError) as exc:
        raise _Bad(str(exc)) from None


def signature_from_schema(data: bytes) -> CallSignature:
    """Rebuild the :class:`CallSignature` a schema describes.

    Raises:
        ProtocolError: the schema is not valid JSON, too large, or not of the form above.
    """
    try:
        return _build(data)
    except _Bad as exc:
        raise ProtocolError(f"call schema: {exc}") from None

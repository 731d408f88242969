"""Call schemas: round trips keep the declared types; malformed schemas are refused."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import EcallArgumentError, ProtocolError
from enclavekit.wire import CallSignature
from enclavekit.wire.schema import signature_from_schema, signature_schema


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Tree:
    label: str
    children: list[Tree]
    where: Point | None


def full(a: bytes, /, b: str, c: list[Tree], *, d: dict[str, tuple[int, ...]] = {},  # noqa: B006
         e: tuple[int, str, bool] = (1, "x", True), f: Literal["a", 1, b"z", None] = "a",
         g: Annotated[int, "n"] | None = None, h: int | str | bytes = 3) -> dict[bytes, Point]:
    return {}


SIG = CallSignature.from_function(full)


def test_round_trip_is_stable_and_equivalent() -> None:
    schema = signature_schema(SIG)
    rebuilt = signature_from_schema(schema)
    assert signature_schema(rebuilt) == schema
    assert [p.name for p in rebuilt.parameters] == list("abcdefgh")
    assert [p.kind for p in rebuilt.parameters] == [p.kind for p in SIG.parameters]
    assert rebuilt.parameters[4].default == (1, "x", True)
    # values encoded by the host's rebuilt signature decode under the enclave's own
    HTree = rebuilt.parameters[2].annotation.__args__[0]
    HPoint = dataclasses.fields(HTree)[2].type.__args__[0]
    tree = HTree("root", [HTree("leaf", [], HPoint(1, 2.5))], None)
    data = rebuilt.encode_args((b"k", "s", [tree]), {"h": b"h"})
    args = SIG.decode_args(data)
    assert args.args == (b"k",)
    assert args.kwargs["c"] == [Tree("root", [Tree("leaf", [], Point(1, 2.5))], None)]
    assert args.kwargs["h"] == b"h" and args.kwargs["f"] == "a"
    # the rebuilt classes are frozen and enforce the declared types
    with pytest.raises(dataclasses.FrozenInstanceError):
        tree.label = "x"
    with pytest.raises(EcallArgumentError):
        rebuilt.encode_args((b"k", "s", [HTree("r", [], HPoint("1", 2.0))]))
    result = SIG.encode_result({b"p": Point(3, 4.0)})
    out = rebuilt.decode_result(result)
    assert out == {b"p": HPoint(3, 4.0)}


def test_recursive_dataclass_is_written_once_then_by_name() -> None:
    doc = json.loads(signature_schema(SIG))
    text = json.dumps(doc)
    assert text.count('"fields"') == 2  # Tree and Point each defined once


@given(st.recursive(
    st.sampled_from([int, float, str, bytes, bool, type(None)]),
    lambda c: st.one_of(c.map(lambda h: list[h]), c.map(lambda h: tuple[h, ...]),  # type: ignore[valid-type]
                        st.tuples(c, c).map(lambda t: tuple[t[0], t[1]]),  # type: ignore[valid-type]
                        c.map(lambda h: dict[str, h])),  # type: ignore[valid-type]
    max_leaves=6))
def test_random_hints_round_trip(hint: object) -> None:
    def fn(x):  # type: ignore[no-untyped-def]
        return x
    fn.__annotations__ = {"x": hint, "return": hint}
    sig = CallSignature.from_function(fn)
    schema = signature_schema(sig)
    assert signature_schema(signature_from_schema(schema)) == schema


BASE = json.loads(signature_schema(CallSignature.from_function(full)))


def _with(**changes: object) -> bytes:
    doc = json.loads(json.dumps(BASE))
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data", [
    b"", b"not json", b"\xff\xfe", b"[]", b"{}", b"[" * 100_000,
    _with(kind="evil"), _with(extra=1), _with(name=3),
    _with(returns={"t": "pickle"}), _with(returns={"t": "int", "x": 1}),
    _with(returns={"t": "dict", "k": {"t": "float"}, "v": {"t": "int"}}),
    _with(returns={"t": "dataclass", "name": "Nope"}),
    _with(returns={"t": "dataclass", "name": "os.system; x", "fields": []}),
    _with(returns={"t": "dataclass", "name": "A", "fields": [["__class__x", {"t": "int"}],
                                                             ["class", {"t": "int"}]]}),
    _with(returns={"t": "dataclass", "name": "A", "fields": [["a", {"t": "int"}],
                                                             ["a", {"t": "int"}]]}),
    _with(returns={"t": "union", "of": [{"t": "int"}, {"t": "int"}]}),
    _with(returns={"t": "union", "of": [{"t": "list", "of": {"t": "int"}},
                                        {"t": "tuple", "of": {"t": "int"}}]}),
    _with(returns={"t": "literal", "values": [["float", 1.5]]}),
    _with(returns={"t": "literal", "values": [["int", True]]}),
    _with(returns=json.loads('{"t":"list","of":' * 70 + '{"t":"int"}' + "}" * 70)),
    _with(params=[{"name": "a", "kind": "positional_only", "type": {"t": "int"},
                   "default": True, "value": "a5"}]),
    _with(params=[{"name": "a", "kind": "var_positional", "type": {"t": "int"},
                   "default": False}]),
    _with(params=[{"name": "a", "kind": "keyword_only", "type": {"t": "int"}, "default": False},
                  {"name": "a", "kind": "keyword_only", "type": {"t": "int"}, "default": False}]),
    _with(params=[{"name": "a b", "kind": "keyword_only", "type": {"t": "int"},
                   "default": False}]),
    b"x" * (2 << 20),
])
def test_malformed_schemas_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="call schema"):
        signature_from_schema(data)

"""Typed value codec: round trips over random hints, exact types, call signatures, declarations."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Annotated, Literal, Optional

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import EcallArgumentError, ProtocolError
from enclavekit.wire import CallSignature, Limits, _decode, check_hint, decode_value, encode_value

# --------------------------------------------------------------------------- random hints

_names = itertools.count()


def _make_dataclass(hints: list[object], frozen: bool) -> type:
    cls = dataclasses.make_dataclass(
        f"DC{next(_names)}", [(f"f{i}", h) for i, h in enumerate(hints)], frozen=frozen
    )
    return cls


LEAVES = st.sampled_from(
    [int, float, str, bytes, bool, type(None), Literal["a", "b"], Literal[1, 2, b"x", False]]
)


def _extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    keys = st.sampled_from([str, int, bytes])
    return st.one_of(
        children.map(lambda h: list[h]),  # type: ignore[valid-type]
        st.tuples(keys, children).map(lambda kv: dict[kv[0], kv[1]]),  # type: ignore[valid-type]
        children.map(lambda h: tuple[h, ...]),  # type: ignore[valid-type]
        st.lists(children, max_size=3).map(lambda hs: tuple[tuple(hs)]),  # type: ignore[misc]
        children.map(lambda h: Optional[h]),  # noqa: UP045  # type: ignore[valid-type]
        st.tuples(st.lists(children, max_size=4), st.booleans()).map(
            lambda a: _make_dataclass(a[0], a[1])
        ),
    )


HINTS = st.recursive(LEAVES, _extend, max_leaves=8)


def values(hint: object) -> st.SearchStrategy[object]:
    """Values of exactly ``hint``, written from the hint grammar, not from the codec."""
    if hint is int:
        return st.integers(-(2**63), 2**64 - 1)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if hint is str:
        return st.text(max_size=20)
    if hint is bytes:
        return st.binary(max_size=20)
    if hint is bool:
        return st.booleans()
    if hint is type(None):
        return st.none()
    if dataclasses.is_dataclass(hint):
        assert isinstance(hint, type)
        return st.builds(hint, **{f.name: values(f.type) for f in dataclasses.fields(hint)})
    origin = getattr(hint, "__origin__", None)
    args = getattr(hint, "__args__", ())
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(values(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(values(args[0]), values(args[1]), max_size=4)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(values(args[0]), max_size=4).map(tuple)
        return st.tuples(*(values(a) for a in args))
    if str(origin) == "typing.Union":
        return st.one_of(*(values(a) for a in args))
    raise AssertionError(f"no strategy for {hint!r}")


def same(a: object, b: object) -> bool:
    """Equal with identical types all the way down (b"x" is not bytearray(b"x"))."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


@given(st.data())
def test_round_trip_of_random_hints_keeps_value_and_exact_types(data: st.DataObject) -> None:
    hint = data.draw(HINTS)
    value = data.draw(values(hint))
    encoded = encode_value(value, hint)
    assert same(decode_value(encoded, hint), value)


@given(st.data())
def test_encoding_is_plain_msgpack(data: st.DataObject) -> None:
    hint = data.draw(HINTS)
    value = data.draw(values(hint))
    plain = msgpack.unpackb(encode_value(value, hint), raw=False, strict_map_key=False,
                            ext_hook=lambda code, _: pytest.fail(f"ext type {code} emitted"))
    assert plain is not None or value is None or hint is not type(None)


# --------------------------------------------------------------------------- fixed behaviour


@dataclasses.dataclass(frozen=True)
class Record:
    name: str
    amount: int
    tags: list[str]
    note: bytes | None


@dataclasses.dataclass
class Tree:
    label: str
    children: list[Tree]


def test_dataclass_crosses_as_map_of_declared_fields() -> None:
    rec = Record("alice", 7, ["x"], None)
    assert msgpack.unpackb(encode_value(rec, Record)) == {
        "name": "alice", "amount": 7, "tags": ["x"], "note": None,
    }


def test_recursive_dataclass_round_trips() -> None:
    tree = Tree("root", [Tree("a", []), Tree("b", [Tree("c", [])])])
    assert decode_value(encode_value(tree, Tree), Tree) == tree


def test_float_accepts_exact_int_when_encoding_but_not_on_the_wire() -> None:
    assert decode_value(encode_value(3, float), float) == 3.0
    assert type(decode_value(encode_value(3, float), float)) is float
    with pytest.raises(EcallArgumentError, match="no exact float"):
        encode_value(2**53 + 1, float)
    with pytest.raises(EcallArgumentError, match="expected float, found int"):
        decode_value(msgpack.packb(3), float)


def test_float32_on_the_wire_is_a_float() -> None:
    assert decode_value(msgpack.packb(1.5, use_single_float=True), float) == 1.5


def test_int_range_is_msgpack_range() -> None:
    for edge in (-(2**63), 2**64 - 1):
        assert decode_value(encode_value(edge, int), int) == edge
    for outside in (-(2**63) - 1, 2**64):
        with pytest.raises(EcallArgumentError, match="64-bit range"):
            encode_value(outside, int)


def test_nonfinite_floats_only_when_allowed() -> None:
    loose = Limits(allow_nonfinite=True)
    for x in (math.inf, -math.inf):
        assert decode_value(encode_value(x, float, limits=loose), float, limits=loose) == x
    assert math.isnan(decode_value(encode_value(math.nan, float, limits=loose), float,
                                   limits=loose))


def test_union_picks_member_by_wire_kind() -> None:
    hint = int | str | None
    for v in (5, "5", None):
        assert same(decode_value(encode_value(v, hint), hint), v)
    assert decode_value(encode_value(4, float | None), float | None) == 4.0
    with pytest.raises(EcallArgumentError, match=r"expected int \| str \| None, found bytes"):
        encode_value(b"5", hint)


def test_annotated_reads_as_its_type() -> None:
    assert decode_value(encode_value(3, Annotated[int, "meta"]), Annotated[int, "meta"]) == 3


def test_empty_tuple_and_fixed_tuple_length() -> None:
    assert decode_value(encode_value((), tuple[()]), tuple[()]) == ()
    with pytest.raises(EcallArgumentError, match="of 2 elements, found 3"):
        decode_value(msgpack.packb([1, "a", 3]), tuple[int, str])
    with pytest.raises(EcallArgumentError, match="of 2 elements, found 1"):
        encode_value((1,), tuple[int, str])


def test_error_paths_name_the_failing_element() -> None:
    value = {"k": [Record("a", 1, [], None), Record("b", 2, ["t", 3], None)]}  # type: ignore[list-item]
    with pytest.raises(EcallArgumentError) as info:
        encode_value(value, dict[str, list[Record]])
    assert str(info.value) == "value '['k'][1].tags[1]': expected str, found int"
    assert info.value.path == "['k'][1].tags[1]"  # type: ignore[attr-defined]


def test_what_names_the_value_in_messages() -> None:
    with pytest.raises(EcallArgumentError, match=r"^ocall 'read' result: expected int, found str$"):
        decode_value(msgpack.packb("x"), int, what="ocall 'read' result")


def test_decoded_lists_and_dicts_are_fresh_objects() -> None:
    data = encode_value({"a": [1]}, dict[str, list[int]])
    one, two = decode_value(data, dict[str, list[int]]), decode_value(data, dict[str, list[int]])
    assert one == two and one is not two and one["a"] is not two["a"]


def test_dataclass_validation_in_post_init_becomes_a_typed_refusal() -> None:
    with pytest.raises(EcallArgumentError, match="Positive refused the value: must be > 0"):
        decode_value(msgpack.packb({"n": 0}), Positive)


@dataclasses.dataclass(frozen=True)
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("must be > 0")


# --------------------------------------------------------------------------- declarations


@pytest.mark.parametrize(
    ("hint", "message"),
    [
        (object, "object is not supported"),
        (list, "give the element types"),
        (dict[float, int], "dict keys must be str, int or bytes"),
        (set[int], "not supported"),
        (int | bool | Literal[3], "both encode as msgpack int"),
        (list[int] | tuple[int, ...], "both encode as msgpack list"),
        (Record | dict[str, int], "both encode as msgpack dict"),
        (Literal[1.5], "Literal values must be"),
        ("int", "is a string"),
        (tuple[int, str, ...], "tuple"),  # type: ignore[misc]
    ],
)
def test_unsupported_hints_are_refused_at_declaration(hint: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        check_hint(hint)


def test_dataclass_with_init_false_field_is_refused() -> None:
    @dataclasses.dataclass
    class Hidden:
        a: int
        secret: bytes = dataclasses.field(init=False, default=b"")

    with pytest.raises(TypeError, match="init=False"):
        check_hint(Hidden)


def test_dataclass_with_unsupported_field_names_the_field() -> None:
    @dataclasses.dataclass
    class Bad:
        when: complex

    with pytest.raises(TypeError, match=r"Bad\.when: type hint complex"):
        check_hint(Bad)


# --------------------------------------------------------------------------- call signatures


def summarise(records: list[Record], scale: float = 1.0, *, mode: Literal["sum", "avg"] = "sum"
              ) -> dict[str, float]:
    return {}


def positional(a: bytes, /, b: int) -> None:
    return None


def test_call_round_trip_fills_receiver_defaults() -> None:
    sig = CallSignature.from_function(summarise)
    recs = [Record("a", 1, [], b"n")]
    got = sig.decode_args(sig.encode_args([recs]))
    assert got.args == () and got.kwargs == {"records": recs, "scale": 1.0, "mode": "sum"}
    got = sig.decode_args(sig.encode_args([recs, 2.5], {"mode": "avg"}))
    assert got.kwargs == {"records": recs, "scale": 2.5, "mode": "avg"}


def test_positional_only_parameters_come_back_positional() -> None:
    sig = CallSignature.from_function(positional)
    got = sig.decode_args(sig.encode_args([b"x", 2]))
    assert got.args == (b"x",) and got.kwargs == {"b": 2}
    assert positional(*got.args, **got.kwargs) is None  # type: ignore[arg-type]


def test_call_binding_errors_are_typed() -> None:
    sig = CallSignature.from_function(summarise)
    with pytest.raises(EcallArgumentError, match="ecall 'summarise': missing a required"):
        sig.encode_args()
    with pytest.raises(EcallArgumentError, match="unexpected keyword argument 'evil'"):
        sig.encode_args([[]], {"evil": 1})
    with pytest.raises(EcallArgumentError,
                       match=r"^argument 'records\[0\]\.amount': expected int, found bool$"):
        sig.encode_args([[Record("a", True, [], None)]])


def test_result_round_trip_and_refusal() -> None:
    sig = CallSignature.from_function(summarise, kind="ocall")
    assert sig.decode_result(sig.encode_result({"mean": 1.5})) == {"mean": 1.5}
    with pytest.raises(EcallArgumentError, match=r"^ocall 'summarise' result '\['mean'\]': "
                                                 r"expected float, found str$"):
        sig.decode_result(msgpack.packb({"mean": "1.5"}))


def test_declaration_errors_are_plain_type_errors() -> None:
    def no_hint(x, y: int) -> int:  # type: ignore[no-untyped-def]
        return y

    def no_return(x: int):  # type: ignore[no-untyped-def]
        return x

    def varargs(*xs: int) -> None:
        return None

    def bad_default(x: int = b"") -> None:  # type: ignore[assignment]
        return None

    for fn, msg in [(no_hint, "parameter 'x' has no type hint"),
                    (no_return, "no return type hint"),
                    (varargs, r"\*xs"),
                    (bad_default, "the default of 'x' does not match")]:
        with pytest.raises(TypeError, match=msg) as info:
            CallSignature.from_function(fn)
        assert not isinstance(info.value, EcallArgumentError)


def test_missing_required_argument_on_the_wire() -> None:
    sig = CallSignature.from_function(summarise)
    with pytest.raises(EcallArgumentError, match="missing argument 'records'"):
        sig.decode_args(msgpack.packb({"scale": 2.0}))


def test_arguments_must_be_a_map_with_no_trailing_bytes() -> None:
    sig = CallSignature.from_function(positional)
    with pytest.raises(EcallArgumentError, match="expected a map of arguments, found list"):
        sig.decode_args(msgpack.packb([b"x", 1]))
    good = sig.encode_args([b"x", 1])
    with pytest.raises(ProtocolError, match="1 trailing byte after"):
        sig.decode_args(good + b"\x00")


# --------------------------------------------------------------------------- the two decoders

# Messages up to _decode.FAST_MAX bytes are unpacked in C and then checked; longer ones, and
# any message the fast path does not accept outright, go through the streaming decoder.


def _decode_both(data: bytes, hint: object) -> tuple[object, object]:
    def outcome() -> object:
        try:
            return ("ok", decode_value(data, hint))
        except (EcallArgumentError, ProtocolError) as exc:
            return (type(exc), str(exc))

    fast = outcome()
    saved, _decode.FAST_MAX = _decode.FAST_MAX, -1
    try:
        slow = outcome()
    finally:
        _decode.FAST_MAX = saved
    return fast, slow


@given(st.data())
def test_fast_and_streaming_decoders_agree_on_mutated_messages(data: st.DataObject) -> None:
    hint = data.draw(HINTS)
    wire = bytearray(encode_value(data.draw(values(hint)), hint))
    if data.draw(st.booleans()) and wire:
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    fast, slow = _decode_both(bytes(wire), hint)
    assert fast[0] == slow[0]
    if fast[0] == "ok":
        assert same(fast[1], slow[1])  # type: ignore[index]
    else:
        assert fast == slow


def test_streaming_decoder_round_trips_large_messages() -> None:
    recs = [Record(f"r{i}", i, ["t"] * 3, bytes(i % 7)) for i in range(500)]
    data = encode_value(recs, list[Record])
    assert len(data) > _decode.FAST_MAX
    assert decode_value(data, list[Record]) == recs

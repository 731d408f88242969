"""Attacks IF-3, IF-4 and IF-5 (attacks.md §1) at the codec: each is attempted and refused."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pickle
import struct
import time
import tracemalloc
from typing import Literal

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.errors import EcallArgumentError, ProtocolError
from enclavekit.wire import CallSignature, Limits, decode_value, encode_value

TYPED = (EcallArgumentError, ProtocolError)


@dataclasses.dataclass(frozen=True)
class Payment:
    payee: str
    amount: int


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node]


def pay(payment: Payment, memo: bytes) -> int:
    return payment.amount


PAY = CallSignature.from_function(pay)


def _str8(n: int) -> bytes:
    return b"\xd9" + bytes([n])


# --------------------------------------------------------------------------- IF-3 type confusion


def test_if3_true_is_not_an_int() -> None:
    with pytest.raises(EcallArgumentError, match="expected int, found bool"):
        encode_value(True, int)
    with pytest.raises(EcallArgumentError, match="expected int, found bool"):
        decode_value(b"\xc3", int)
    with pytest.raises(EcallArgumentError, match="expected bool, found int"):
        decode_value(b"\x01", bool)
    with pytest.raises(EcallArgumentError, match="found True"):
        encode_value(True, Literal[1, 2])


def test_if3_hostile_int_and_str_subclasses_are_refused_unused() -> None:
    touched: list[str] = []

    class EvilInt(int):
        def __eq__(self, other: object) -> bool:
            touched.append("__eq__")
            return True

        def __hash__(self) -> int:
            touched.append("__hash__")
            return 0

        def __index__(self) -> int:
            touched.append("__index__")
            return 2**70

        def __int__(self) -> int:
            touched.append("__int__")
            return -1

    class EvilStr(str):
        def __eq__(self, other: object) -> bool:
            touched.append("str.__eq__")
            return True

        def __hash__(self) -> int:
            touched.append("str.__hash__")
            return 0

        def encode(self, *args: object, **kwargs: object) -> bytes:  # type: ignore[override]
            touched.append("encode")
            return b"x"

    for value, hint in [(EvilInt(5), int), (EvilInt(1), Literal[1]), (EvilStr("a"), str),
                        (EvilStr("sum"), Literal["sum"]), (EvilInt(1), float),
                        ([EvilInt(1)], list[int])]:
        with pytest.raises(EcallArgumentError, match=r"found Evil(Int|Str)"):
            encode_value(value, hint)
    keyed = {EvilStr("k"): 1}
    touched.clear()  # building the dict hashed the key; encoding must not run it again
    with pytest.raises(EcallArgumentError, match="found EvilStr"):
        encode_value(keyed, dict[str, int])
    assert touched == []


def test_if3_spoofed_class_attribute_does_not_pass_as_the_type() -> None:
    class Liar:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return Payment

    liar = Liar()
    assert isinstance(liar, Payment)  # isinstance is fooled; the codec is not
    with pytest.raises(EcallArgumentError, match="expected Payment, found Liar"):
        encode_value(liar, Payment)


def test_if3_nan_and_infinities_are_refused_both_ways() -> None:
    for x in (math.nan, math.inf, -math.inf):
        with pytest.raises(EcallArgumentError, match="not a finite float"):
            encode_value(x, float)
        with pytest.raises(EcallArgumentError, match="not a finite float"):
            decode_value(struct.pack(">Bd", 0xCB, x), float)
        with pytest.raises(EcallArgumentError, match="not a finite float"):
            decode_value(struct.pack(">Bf", 0xCA, x), float)


def test_if3_none_is_not_an_absent_optional() -> None:
    with pytest.raises(EcallArgumentError, match="expected int, found None"):
        encode_value(None, int)
    with pytest.raises(EcallArgumentError, match="expected bytes, found None"):
        decode_value(b"\xc0", bytes)
    with pytest.raises(EcallArgumentError, match="argument 'memo': expected bytes, found None"):
        PAY.decode_args(msgpack.packb({"payment": {"payee": "a", "amount": 1}, "memo": None}))


def test_if3_mutable_buffers_are_not_bytes() -> None:
    for alias in (bytearray(b"k"), memoryview(b"k")):
        with pytest.raises(EcallArgumentError, match=r"expected bytes, found .*pass bytes"):
            encode_value(alias, bytes)
    shared = bytearray(encode_value(b"secret", bytes))
    got = decode_value(shared, bytes)
    shared[-1] ^= 0xFF  # the host rewrites its buffer after the enclave decoded it
    assert type(got) is bytes and got == b"secret"


def test_if3_decoding_snapshots_the_input_before_checking() -> None:
    args = bytearray(PAY.encode_args([Payment("bob", 5), b"m"]))
    view = memoryview(args)
    got = PAY.decode_args(view)
    args[:] = bytes(len(args))  # later writes to the shared buffer change nothing decoded
    assert got.kwargs["payment"] == Payment("bob", 5) and got.kwargs["memo"] == b"m"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"payee": "a", "amount": 1, "admin": True}, "Payment has no field 'admin'"),
        ({"payee": "a"}, "missing field 'amount'"),
        ({"payee": "a", "amount": 1, "__class__": "os.system"}, "no field '__class__'"),
        ({}, "missing field 'payee'"),
    ],
)
def test_if3_extra_or_missing_dataclass_fields(wire: dict[str, object], message: str) -> None:
    with pytest.raises(EcallArgumentError, match=message):
        decode_value(msgpack.packb(wire), Payment)


def test_if3_repeated_field_or_key_is_refused() -> None:
    twice = b"\x83" + msgpack.packb("payee") + msgpack.packb("a") + msgpack.packb("amount") \
        + msgpack.packb(1) + msgpack.packb("amount") + msgpack.packb(10**6)
    with pytest.raises(EcallArgumentError, match="field 'amount' of Payment appears twice"):
        decode_value(twice, Payment)
    dup = b"\x82" + msgpack.packb("k") + b"\x01" + msgpack.packb("k") + b"\x02"
    with pytest.raises(EcallArgumentError, match="duplicate key 'k'"):
        decode_value(dup, dict[str, int])
    dup_arg = b"\x83" + msgpack.packb("memo") + msgpack.packb(b"a") + msgpack.packb("payment") \
        + msgpack.packb({"payee": "a", "amount": 1}) + msgpack.packb("memo") + msgpack.packb(b"b")
    with pytest.raises(EcallArgumentError, match="argument 'memo' given twice"):
        PAY.decode_args(dup_arg)


def test_if3_field_names_must_be_str() -> None:
    with pytest.raises(EcallArgumentError, match="expected a field name of Payment, found int"):
        decode_value(msgpack.packb({1: "a"}), Payment)


def test_if3_out_of_range_literal() -> None:
    mode = Literal["sum", "avg"]
    with pytest.raises(EcallArgumentError, match=r"expected Literal\['sum', 'avg'\], found 'max'"):
        decode_value(msgpack.packb("max"), mode)
    with pytest.raises(EcallArgumentError, match="found bytes"):
        decode_value(msgpack.packb(b"sum"), mode)
    with pytest.raises(EcallArgumentError, match="found 'max'"):
        encode_value("max", mode)


@pytest.mark.parametrize(
    "ext",
    [
        msgpack.packb(msgpack.ExtType(1, b"os.system")),
        msgpack.packb(msgpack.Timestamp(1, 0)),  # ext -1, which msgpack would build
        msgpack.packb(msgpack.ExtType(5, b"x" * 300)),  # ext16
        msgpack.packb(msgpack.ExtType(127, b"x" * 70000)),  # ext32
        b"\xc7\x03\x02abc",  # ext8
    ],
)
def test_if3_extension_types_are_never_decoded(ext: bytes) -> None:
    for hint in (int, bytes, str, list[int], Payment, int | None):
        with pytest.raises(EcallArgumentError, match=r"msgpack ext type -?[0-9]+ .*never decoded"):
            decode_value(ext, hint)


def test_if3_class_name_maps_stay_plain_data() -> None:
    evil = {"__class__": "subprocess.Popen", "args": "rm -rf /", "__reduce__": "os.system"}
    got = decode_value(msgpack.packb(evil), dict[str, str])
    assert type(got) is dict and got == evil


def test_if3_pickle_on_the_wire_is_refused() -> None:
    blob = pickle.dumps(Payment("a", 1))
    for hint in (Payment, bytes, dict[str, str], int):
        with pytest.raises(TYPED):
            decode_value(blob, hint)
    with pytest.raises(TYPED):
        PAY.decode_args(blob)


def test_if3_unknown_parameter_is_refused() -> None:
    with pytest.raises(EcallArgumentError, match="ecall 'pay' has no parameter '__globals__'"):
        PAY.decode_args(msgpack.packb({"__globals__": 1}))


# --------------------------------------------------------------------------- IF-4 sizes


@pytest.mark.parametrize(
    "wire",
    [
        _str8(10) + b"abc",  # declared 10, has 3
        b"\xc4\x05ab",  # bin8 declares 5
        b"\x93\x01\x02",  # fixarray of 3 with 2
        b"\x82" + msgpack.packb("a") + b"\x01",  # map of 2 with 1
        b"\xcd\x01",  # uint16 cut short
        b"\xda\x00",  # str16 length cut short
    ],
)
def test_if4_declared_length_above_actual_is_truncation(wire: bytes) -> None:
    hint = {0xD9: str, 0xC4: bytes, 0x93: list[int], 0x82: dict[str, int], 0xCD: int,
            0xDA: str}[wire[0]]
    with pytest.raises(ProtocolError, match="truncated"):
        decode_value(wire, hint)


def test_if4_declared_length_below_actual_leaves_trailing_bytes() -> None:
    with pytest.raises(ProtocolError, match="2 trailing bytes"):
        decode_value(b"\xa1abc", str)


@pytest.mark.parametrize(
    ("wire", "hint", "message"),
    [
        (b"\xdb\x40\x00\x00\x00", str, "1073741824 bytes exceeds the 64 MiB limit"),  # 1 GiB str
        (b"\xc6\xff\xff\xff\xff", bytes, "4294967295 bytes exceeds"),
        (b"\xdd\xff\xff\xff\xff\x00", list[int], "declares 4294967295 elements but only 1"),
        (b"\xdf\xff\xff\xff\xff", dict[str, int], "declares 4294967295 entries"),
        (b"\xdd\x00\x10\x00\x00" * 4000, list[list[list[int]]], "declares 1048576 elements"),
    ],
)
def test_if4_huge_declared_sizes_are_refused_before_allocation(
    wire: bytes, hint: object, message: str
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TYPED, match=message):
            decode_value(wire, hint)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("head", [b"\xdd\x00\x00\x03\xe7", b"\xdc\x03\xe7", b"\xde\x01\xf3"])
def test_if4_lying_nested_counts_in_a_small_message_stay_bounded(head: bytes) -> None:
    # Small messages are unpacked in C first, which pre-allocates declared counts: each is
    # capped by the message size, so the worst 1 KiB message costs a few MiB, transiently.
    wire = (head * (1024 // len(head)))[:1024]
    tracemalloc.start()
    try:
        with pytest.raises(TYPED):
            decode_value(wire, list[list[list[int]]])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_if4_value_limits_name_the_argument() -> None:
    small = Limits(max_size=1 << 10)
    wire = msgpack.packb({"payment": {"payee": "a", "amount": 1}, "memo": b""})[:-2] \
        + b"\xc6\x00\x00\x10\x00"
    with pytest.raises(EcallArgumentError, match=r"^argument 'memo': 4096 bytes exceeds the "
                                                 r"1 KiB limit$"):
        PAY.decode_args(wire, limits=small)
    with pytest.raises(EcallArgumentError, match="exceeds the 1 KiB limit"):
        decode_value(bytes(2048), bytes, limits=small)
    with pytest.raises(EcallArgumentError, match="exceeds the 1 KiB limit"):
        encode_value(bytes(2048), bytes, limits=small)


def test_if4_element_count_limit() -> None:
    limits = Limits(max_items=1000)
    with pytest.raises(EcallArgumentError, match="1,000-element limit"):
        decode_value(msgpack.packb([[0] * 600, [0] * 600]), list[list[int]], limits=limits)
    with pytest.raises(EcallArgumentError, match="1,000-element limit"):
        encode_value([0] * 1001, list[int], limits=limits)
    assert decode_value(msgpack.packb([0] * 999), list[int], limits=limits) == [0] * 999


def test_if4_million_deep_nesting_is_refused_quickly() -> None:
    deep_lists = b"\x91" * 10**6 + b"\x00"
    deep_nodes = (b"\x82" + msgpack.packb("name") + b"\xa0" + msgpack.packb("children")
                  + b"\x91") * 10**6
    start = time.monotonic()
    for wire, hint in [(deep_lists, list[list[int]]), (deep_lists, list[int]),
                       (deep_nodes, Node), (deep_lists, int)]:
        with pytest.raises(TYPED):
            decode_value(wire, hint)
    with pytest.raises(EcallArgumentError, match="nested deeper than the 32-level limit"):
        decode_value(deep_nodes, Node)
    assert time.monotonic() - start < 5  # a bound on the attack, not a benchmark


def test_if4_deep_or_cyclic_values_are_refused_when_encoding() -> None:
    root = Node("r", [])
    root.children.append(root)  # a cycle
    with pytest.raises(EcallArgumentError, match="32-level limit"):
        encode_value(root, Node)


def test_if4_depth_limit_is_exact() -> None:
    def chain(n: int) -> Node:
        node = Node("leaf", [])
        for _ in range(n):
            node = Node("n", [node])
        return node

    limits = Limits(max_depth=8)
    ok = chain(3)  # Node/list pairs: 2 levels each, leaf map is level 8
    assert decode_value(encode_value(ok, Node, limits=limits), Node, limits=limits) == ok
    with pytest.raises(EcallArgumentError, match="8-level limit"):
        encode_value(chain(4), Node, limits=limits)
    with pytest.raises(EcallArgumentError, match="8-level limit"):
        decode_value(encode_value(chain(4), Node), Node, limits=limits)


def test_if4_big_ints() -> None:
    start = time.monotonic()
    with pytest.raises(EcallArgumentError, match="a 16610-bit int is outside msgpack's 64-bit"):
        encode_value(10**5000, int)  # refused without printing its 5001 digits
    with pytest.raises(EcallArgumentError, match="found a 16610-bit int"):
        encode_value(10**5000, Literal[1, 2])
    with pytest.raises(EcallArgumentError, match="a 16610-bit int has no exact float"):
        encode_value(10**5000, float)
    assert time.monotonic() - start < 1
    with pytest.raises(EcallArgumentError, match="outside"):
        encode_value(-(2**63) - 1, int)
    assert decode_value(b"\xcf" + b"\xff" * 8, int) == 2**64 - 1
    assert decode_value(b"\xd3\x80" + bytes(7), int) == -(2**63)


# --------------------------------------------------------------------------- IF-5 strings


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",  # never valid in UTF-8
        b"\xc0\xaf",  # over-long '/'
        b"\xe0\x80\xaf",  # over-long '/', three bytes
        b"\xed\xa0\x80",  # an encoded surrogate (CESU-8)
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"abc\x80",  # a stray continuation byte
        b"\xe2\x82",  # cut inside a character
    ],
)
def test_if5_invalid_utf8_is_refused_everywhere(raw: bytes) -> None:
    s = bytes([0xA0 | len(raw)]) + raw
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        decode_value(s, str)
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        decode_value(b"\x81" + s + b"\x01", dict[str, int])  # as a key
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        decode_value(b"\x81" + s + b"\x01", Payment)  # as a field name
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        PAY.decode_args(b"\x81" + s + b"\x01")  # as a parameter name


def test_if5_lone_surrogates_never_leave() -> None:
    for text in ("\ud800", "ok\udfff", "\udcff"):  # the last is what surrogateescape makes
        with pytest.raises(EcallArgumentError, match="lone surrogate"):
            encode_value(text, str)
        with pytest.raises(EcallArgumentError, match="lone surrogate"):
            encode_value({text: 1}, dict[str, int])


def test_if5_embedded_nul_is_kept_as_documented() -> None:
    # The codec keeps NUL (it is a valid character); OS-facing enclave APIs must refuse it.
    assert decode_value(encode_value("a\x00b", str), str) == "a\x00b"


# --------------------------------------------------------------------------- fuzz targets

HINTS = [int, str, bytes, float, bool, None, list[int], dict[str, bytes], tuple[int, str],
         Payment, Node, int | None, Literal["a", 1], list[Payment], dict[int, list[str]]]


@given(st.binary(max_size=200), st.sampled_from(HINTS))
def test_fuzz_random_bytes_give_only_typed_errors(data: bytes, hint: object) -> None:
    with contextlib.suppress(*TYPED):  # anything else fails the test
        decode_value(data, hint)


@given(st.binary(max_size=200))
def test_fuzz_call_arguments_give_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(*TYPED):
        PAY.decode_args(data)


@given(st.data())
def test_fuzz_mutated_valid_messages_give_only_typed_errors(data: st.DataObject) -> None:
    tree = Node("a", [Node("b", []), Node("c\x00", [Node("d" * 40, [])])])
    wire = bytearray(encode_value([tree, tree], list[Node]))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(wire) - 1)))
        if op == "flip" and wire:
            wire[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del wire[at:]
        else:
            wire[at:at] = data.draw(st.binary(min_size=1, max_size=6))
    try:
        got = decode_value(bytes(wire), list[Node])
    except TYPED:
        return
    assert type(got) is list and all(type(n) is Node for n in got)

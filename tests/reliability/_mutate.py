"""Mutations of a valid input, as hypothesis strategies: the inputs a parser must refuse with
a typed error (or accept), never crash on."""

from __future__ import annotations

from hypothesis import strategies as st

_EDITS = ("replace", "insert", "delete", "truncate", "splice", "interesting")
_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80",
                b"{", b"}", b"[", b'"', b"\\", b"-", b"9" * 400, b"e99999", b"\xc3\x28"]


@st.composite
def mutated(draw: st.DrawFn, sample: bytes, *, max_edits: int = 3) -> bytes:
    """``sample`` with one to ``max_edits`` random edits (or, one time in twenty, random
    bytes of about its size)."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=max(len(sample) * 2, 64)))
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        kind = draw(st.sampled_from(_EDITS))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "replace":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "splice":
            start = draw(st.integers(0, len(data) - 1))
            data[pos:pos] = data[start:start + draw(st.integers(1, 256))]
        else:
            data[pos:pos + 1] = draw(st.sampled_from(_INTERESTING))
    return bytes(data)


def mutated_text(sample: str, *, max_edits: int = 3) -> st.SearchStrategy[str]:
    """``sample`` mutated as bytes, decoded leniently (parsers of text get text)."""
    return mutated(sample.encode(), max_edits=max_edits).map(
        lambda b: b.decode("utf-8", "replace"))

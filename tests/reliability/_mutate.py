"""Mutations of a valid input: the inputs a parser must refuse with a typed error (or accept),
never crash on. One set of edits, drawn either by hypothesis (:func:`mutated`, the short
forms in the suite) or from a seeded ``random.Random`` (:func:`mutate`, the long runs)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

EDITS = ("replace", "insert", "delete", "truncate", "splice", "interesting")
BYTE_EDITS = EDITS[:5]
"""The edits without "interesting" bytes (the quote fuzzers of the QV-9 tests)."""
INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80",
               b"{", b"}", b"[", b'"', b"\\", b"-", b"9" * 400, b"e99999", b"\xc3\x28")


class Source(Protocol):
    """Where the random choices of one mutation come from."""

    def integer(self, lo: int, hi: int) -> int: ...
    def binary(self, lo: int, hi: int) -> bytes: ...
    def choice(self, items: Sequence[T]) -> T: ...


class Seeded:
    """Choices from a seeded ``random.Random`` (reproducible long runs)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self._rng.randint(lo, hi)

    def binary(self, lo: int, hi: int) -> bytes:
        return self._rng.randbytes(self._rng.randint(lo, hi))

    def choice(self, items: Sequence[T]) -> T:
        return self._rng.choice(items)


class _Drawn:
    """Choices drawn by hypothesis (so failures shrink)."""

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def binary(self, lo: int, hi: int) -> bytes:
        return self._draw(st.binary(min_size=lo, max_size=hi))

    def choice(self, items: Sequence[T]) -> T:
        return self._draw(st.sampled_from(items))


def mutate_with(source: Source, sample: bytes, *, max_edits: int = 3,
                edits: Sequence[str] = EDITS, noise: bool = True) -> bytes:
    """``sample`` with one to ``max_edits`` random ``edits`` (or, with ``noise``, one time in
    twenty, random bytes of about its size)."""
    if noise and source.integer(0, 19) == 0:
        return source.binary(0, max(len(sample) * 2, 64))
    data = bytearray(sample)
    for _ in range(source.integer(1, max_edits)):
        if not data:
            data += source.binary(1, 16)
            continue
        kind = source.choice(edits)
        pos = source.integer(0, len(data) - 1)
        if kind == "replace":
            chunk = source.binary(1, 8)
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = source.binary(1, 8)
        elif kind == "delete":
            del data[pos:pos + source.integer(1, 64)]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "splice":
            start = source.integer(0, len(data) - 1)
            data[pos:pos] = data[start:start + source.integer(1, 256)]
        else:
            data[pos:pos + 1] = source.choice(INTERESTING)
    return bytes(data)


def mutate(rng: random.Random, sample: bytes, **options: object) -> bytes:
    """:func:`mutate_with` choices from ``rng``."""
    return mutate_with(Seeded(rng), sample, **options)  # type: ignore[arg-type]


@st.composite
def mutated(draw: st.DrawFn, sample: bytes, *, max_edits: int = 3,
            edits: Sequence[str] = EDITS, noise: bool = True) -> bytes:
    """:func:`mutate_with` as a hypothesis strategy."""
    return mutate_with(_Drawn(draw), sample, max_edits=max_edits, edits=edits, noise=noise)


def mutated_text(sample: str, *, max_edits: int = 3) -> st.SearchStrategy[str]:
    """``sample`` mutated as bytes, decoded leniently (parsers of text get text)."""
    return mutated(sample.encode(), max_edits=max_edits).map(
        lambda b: b.decode("utf-8", "replace"))

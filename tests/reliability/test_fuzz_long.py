"""The long fuzz run's short form: it counts every input and returns 0 with no untyped error."""

from __future__ import annotations

import random

import pytest

from tests.reliability import fuzz_long


def test_the_long_run_counts_each_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz_long.main(["--count", "40", "--only", "quote", "ecall_values"]) == 0
    out = capsys.readouterr().out
    for name in ("quote", "ecall_values"):
        line = next(x for x in out.splitlines() if x.startswith(f"{name}:"))
        assert "40 inputs" in line and "0 untyped, 0 hangs" in line, out


def test_an_untyped_exception_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(data: bytes) -> None:
        raise KeyError("not typed")

    from tests.reliability import test_fuzz

    monkeypatch.setitem(test_fuzz.TARGETS, "quote", (lambda: b"sample", crash))
    outcomes, _, _ = fuzz_long.run("quote", 5, 1, 2.0)
    assert outcomes["untyped"] == 5


def test_mutations_change_the_sample() -> None:
    rng = random.Random(3)
    sample = bytes(range(256))
    changed = sum(fuzz_long.mutate(rng, sample) != sample for _ in range(200))
    assert changed >= 190


def test_a_changed_token_that_is_accepted_counts_as_forged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.reliability import test_fuzz

    monkeypatch.setitem(test_fuzz.TARGETS, "jwt", (lambda: b"a.b.c", lambda data: None))
    outcomes, _, _ = fuzz_long.run("jwt", 50, 1, 2.0)
    assert outcomes["forged"] == outcomes["accepted"] - outcomes["unchanged"] > 40

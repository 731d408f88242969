"""Each benchmark runs in its short form (no timing is asserted here; see bench/)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("bench_*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_in_short_form(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        module = importlib.import_module(name)
        module.main(["--short"])
    finally:
        sys.path.remove(str(BENCH))
    out = capsys.readouterr().out
    assert "ratio" in out
    if name == "bench_verify":  # the relying party's rate beside dcap-qvl's, same run
        assert "baseline dcap-qvl 0.7.0" in out, out

"""Shared helpers for benchmarks: timing, and one printed line per figure with its ratio."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call(fn: Callable[[], object], *, repeat: int, number: int = 1) -> list[float]:
    """Seconds per call of ``fn``, one sample per repeat (each sample averages ``number`` calls)."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def report(name: str, value: float, unit: str, baseline: str, base_value: float,
           ratio: float, goal: str, ok: bool) -> str:
    """Print and return one result line: figure, baseline, ratio, goal and verdict."""
    line = (f"{name}: {value:,.2f} {unit} | baseline {baseline}: {base_value:,.2f} {unit} | "
            f"ratio {ratio:.2f} (goal {goal}) {'PASS' if ok else 'FAIL'}")
    print(line, flush=True)
    return line

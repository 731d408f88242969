"""Shared helpers for benchmarks: timing, and one printed line per figure with its ratio."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path


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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds another process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    """What a load run saw: sorted latencies (s), errors, wall time and CPU of both sides."""

    latencies: list[float]
    errors: int
    elapsed: float
    service_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    @property
    def p50_ms(self) -> float:
        return self.latencies[len(self.latencies) // 2] * 1000

    @property
    def p99_ms(self) -> float:
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * 0.99))] * 1000


def load(session: Callable[[], AbstractContextManager[Callable[[], bool]]], *, threads: int,
         duration: float, service_cpu: Callable[[], float]) -> Load:
    """Run ``threads`` clients for ``duration`` seconds; each enters ``session()`` once (its
    connection) and calls the request it yields (True: a good answer) as fast as it can."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = [0.0]

    def client() -> None:
        mine: list[float] = []
        bad = 0
        with session() as request:
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                ok = request()
                mine.append(time.perf_counter() - t0)
                bad += not ok
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    cpu_before = service_cpu(), time.process_time()
    stop_at[0] = time.perf_counter() + duration
    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return Load(latencies, errors[0], elapsed, service_cpu() - cpu_before[0],
                time.process_time() - cpu_before[1])

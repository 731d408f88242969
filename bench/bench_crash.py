"""Crash consistency of every durable writer under ``kill -9`` at random moments.

Each writer of ``tests/reliability/_writers.py`` (key store, attestation policy and
signing-key state, PCCS state, platform identity, sealed counters, protected files) runs in a
child process that prints an acknowledgement after each write returns; the child is killed
with SIGKILL at a random moment, the store is opened again as a restarting service opens it,
and every acknowledged write is looked up. Printed per writer: iterations, acknowledged,
lost, corrupt, temp files left. Goal: 0 lost, 0 corrupt. Usage:
``python bench/bench_crash.py [--short] [--iterations N]`` (default 100 kills per writer;
``--short``, as ``tests/test_bench.py`` runs it: one kill of the key store's writer, the
suite's ``tests/reliability/test_crash.py`` covering every writer).
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import _common
from enclavekit._fs import TEMP_SUFFIX

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reliability._writers import WRITERS, check  # noqa: E402
from tests.reliability.test_crash import run_and_kill  # noqa: E402


def main(argv: list[str]) -> int:
    short = "--short" in argv
    iterations = 1 if short else 100
    if "--iterations" in argv:
        iterations = int(argv[argv.index("--iterations") + 1])
    total_acked = total_bad = 0
    for name in ["key store"] if short else list(WRITERS):
        rng = random.Random(name)
        directory = Path(tempfile.mkdtemp(prefix="bench-crash-"))
        acks: list[str] = []
        lost = corrupt = left = 0
        for _ in range(iterations):
            acks += run_and_kill(name, directory, rng)
            outcome = check(name, directory, acks)
            lost, corrupt = max(lost, outcome.lost), max(corrupt, outcome.corrupt)
            left += len(list((directory / "store").rglob(f"*{TEMP_SUFFIX}")))
        shown = "n/a (the device cleans the VM directory)" if name == "platform identity" \
            else str(left)
        print(f"crash {name}: iterations {iterations}, acknowledged {len(acks)}, lost {lost}, "
              f"corrupt {corrupt}, temp files left after open {shown}", flush=True)
        total_acked += len(acks)
        total_bad += lost + corrupt
    _common.report("crash consistency: lost or corrupt", total_bad, "writes",
                   "acknowledged", total_acked, total_bad / max(total_acked, 1), "== 0",
                   total_bad == 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Crash consistency: every durable writer is killed with SIGKILL at random moments while it
writes; after each kill the store is opened again as a restarting service opens it, and every
write acknowledged before the kill must be there and intact, and no temp file of the
interrupted write may be left. Prints iterations, acknowledged, lost, corrupt per writer.

Short form: 2 kills per writer; ``--slow``: 100. (The platform identity's directory is the
VM directory, whose temp files the device removes when it starts; they are not counted.)
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from enclavekit._fs import TEMP_SUFFIX

from ._writers import WRITERS, Outcome, check

ROOT = Path(__file__).resolve().parents[2]


def _iterations(request: pytest.FixtureRequest) -> int:
    return 100 if request.config.getoption("--slow") else 2


def run_and_kill(name: str, directory: Path, rng: random.Random) -> list[str]:
    """Start the writer, let it acknowledge a random number of writes, SIGKILL it at a random
    moment after that; the acknowledged tokens."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability._writers", name,
                             str(directory)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    acks: list[str] = []
    assert proc.stdout is not None

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ack "):
                acks.append(line[4:].strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not acks and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.25))  # a random point of the writes that follow
    proc.kill()
    proc.wait()
    reader.join(10)
    assert acks, proc.stderr.read() if proc.stderr else "the writer acknowledged nothing"
    return list(acks)


def _temps(directory: Path) -> list[Path]:
    return list(directory.rglob(f"*{TEMP_SUFFIX}"))


@pytest.mark.parametrize("name", list(WRITERS))
def test_kill_9_loses_nothing_acknowledged(name: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    rng = random.Random(name)
    iterations = _iterations(request)
    total = Outcome()
    acknowledged: list[str] = []
    leftovers = 0 if name != "platform identity" else -1
    for _ in range(iterations):
        acknowledged += run_and_kill(name, tmp_path, rng)
        outcome = check(name, tmp_path, acknowledged)  # opens the store: cleans its temps
        total.lost = max(total.lost, outcome.lost)
        total.corrupt = max(total.corrupt, outcome.corrupt)
        if name != "platform identity":  # its directory is cleaned by the device at start
            leftovers += len(_temps(tmp_path / "store"))
    total.acknowledged = len(acknowledged)
    print(f"\n{name}: iterations {iterations}, acknowledged {total.acknowledged}, "
          f"lost {total.lost}, corrupt {total.corrupt}, temp files left after open "
          f"{leftovers if leftovers >= 0 else 'n/a'}")
    assert (total.lost, total.corrupt) == (0, 0)
    assert leftovers <= 0

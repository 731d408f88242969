"""Parser fuzzing, long form: mutated inputs through every fuzzed parser, counted.

``python -m tests.reliability.fuzz_long [--count 1000000] [--only NAME ...] [--workers N]
[--seed N]`` runs ``--count`` mutated inputs through each parser of
``tests.reliability.test_fuzz.TARGETS`` (the same parsers and samples as the hypothesis short
form in CI), with the same edits (``tests.reliability._mutate``: replace, insert, delete,
truncate, splice, "interesting" bytes, one to three per input, or, one time in twenty, random
bytes of about the sample's size) drawn from a seeded generator. Each input ends in a result
or a typed refusal (an ``EnclaveKitError``); anything else is an untyped exception, printed
with its input (exit 1).
An input that takes longer than ``--hang`` seconds (default 2) counts as a hang (exit 1).
For a token (``jwt``) a changed input that is accepted is a forgery (exit 1); other parsers may
accept changed inputs (a quote with another byte still parses). Prints, per parser: inputs,
accepted (of them unchanged), typed refusals, untyped, hangs, slowest input and rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from collections import Counter

from enclavekit.errors import EnclaveKitError
from tests.reliability._mutate import mutate

SIGNED = frozenset({"jwt"})
"""Parsers of signed inputs: accepting a changed one is a forgery."""


def run(name: str, count: int, seed: int, hang: float) -> tuple[Counter[str], float, float]:
    """Fuzz one parser: the outcome counts, the slowest input's and all inputs' seconds."""
    from tests.reliability.test_fuzz import TARGETS

    sample_of, parse = TARGETS[name]
    sample = sample_of()
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    began = time.perf_counter()
    for _ in range(count):
        data = mutate(rng, sample)
        start = time.perf_counter()
        try:
            parse(data)
            outcomes["accepted"] += 1
            if data == sample:
                outcomes["unchanged"] += 1
            elif name in SIGNED:
                outcomes["forged"] += 1
                print(f"{name}: a changed input was accepted: {data.hex()}", file=sys.stderr)
        except EnclaveKitError:
            outcomes["typed"] += 1
        except Exception as exc:  # an untyped crash: the finding this run exists for
            outcomes["untyped"] += 1
            print(f"{name}: untyped {type(exc).__name__}: {exc}; input {data.hex()}",
                  file=sys.stderr, flush=True)
        took = time.perf_counter() - start
        slowest = max(slowest, took)
        if took > hang:
            outcomes["hangs"] += 1
            print(f"{name}: an input took {took:.1f} s; input {data.hex()}", file=sys.stderr)
    return outcomes, slowest, time.perf_counter() - began


def _work(args: tuple[str, int, int, float]) -> tuple[str, Counter[str], float, float]:
    name = args[0]
    return (name, *run(*args))


def main(argv: list[str] | None = None) -> int:
    from tests.reliability.test_fuzz import TARGETS

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs per parser")
    parser.add_argument("--only", nargs="*", choices=sorted(TARGETS), default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang", type=float, default=2.0)
    args = parser.parse_args(argv)
    names = args.only or sorted(TARGETS)
    share = -(-args.count // args.workers)
    jobs = [(name, share, args.seed * 1000 + i, args.hang)
            for name in names for i in range(args.workers)]
    totals: dict[str, Counter[str]] = {name: Counter() for name in names}
    slowest = dict.fromkeys(names, 0.0)
    rate = dict.fromkeys(names, 0.0)
    parts = Counter[str]()
    bad = 0
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for name, outcomes, slow, seconds in pool.imap_unordered(_work, jobs):
            totals[name] += outcomes
            slowest[name] = max(slowest[name], slow)
            rate[name] += share / max(seconds, 1e-9)
            parts[name] += 1
            if parts[name] == args.workers:
                t = totals[name]
                bad += t["untyped"] + t["hangs"] + t["forged"]
                forged = f", {t['forged']} forged" if name in SIGNED else ""
                print(f"{name}: {share * args.workers:,} inputs, {t['accepted']:,} accepted "
                      f"({t['unchanged']:,} unchanged){forged}, {t['typed']:,} typed refusals, "
                      f"{t['untyped']} untyped, {t['hangs']} hangs, slowest "
                      f"{slowest[name] * 1e3:.1f} ms, {rate[name]:,.0f}/s", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

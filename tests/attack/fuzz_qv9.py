"""QV-9 long fuzz run: mutated quotes through the full verifier give only typed refusals.

``python -m tests.attack.fuzz_qv9 --count 1000000 [--seed N] [--workers N]`` mutates a quote made
by a test PKI (``tests.dcap._forge``) — byte replacements, insertions, deletions, truncations and
splices, one to three per input — verifies each one with its collateral, and counts the outcomes:
accepted (only an unchanged quote may be), typed refusal (QuoteFormatError, CollateralFormatError,
VerificationFailed), or anything else (an untyped crash: printed with its input, exit 1).
The suite runs a short form (``tests/attack/test_qv_verifier.py``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from collections import Counter

from enclavekit.dcap.verify import Verifier
from enclavekit.errors import CollateralFormatError, QuoteFormatError, VerificationFailed
from tests.dcap._forge import forge
from tests.reliability._mutate import BYTE_EDITS
from tests.reliability._mutate import mutate as shared_mutate

TYPED = (QuoteFormatError, CollateralFormatError, VerificationFailed)


def mutate(rng: random.Random, quote: bytes) -> bytes:
    """One to three random edits of ``quote`` (no interesting bytes, no random noise: every
    input starts as the quote)."""
    return shared_mutate(rng, quote, edits=BYTE_EDITS, noise=False)


def run(count: int, seed: int) -> Counter[str]:
    """Fuzz ``count`` inputs from ``seed``; an untyped exception propagates with its input."""
    base = forge()
    verifier = Verifier(base.roots)
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    for _ in range(count):
        data = mutate(rng, base.quote)
        try:
            verifier.verify(data, base.collateral, at=base.at)
        except TYPED as exc:
            outcomes[type(exc).__name__] += 1
            continue
        except Exception as exc:
            raise RuntimeError(f"untyped {type(exc).__name__}: {exc}; input {data.hex()}") from exc
        outcomes["accepted" if data == base.quote else "ACCEPTED-MUTATED"] += 1
    return outcomes


def _work(args: tuple[int, int]) -> Counter[str]:
    return run(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.monotonic()
    share = -(-args.count // args.workers)
    jobs = [(min(share, args.count - i * share), args.seed * 1000 + i)
            for i in range(args.workers) if args.count - i * share > 0]
    total: Counter[str] = Counter()
    try:
        if args.workers == 1:
            total = run(*jobs[0])
        else:
            with multiprocessing.Pool(args.workers) as pool:
                for part in pool.imap_unordered(_work, jobs):
                    total.update(part)
    except RuntimeError as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - start
    print(f"{sum(total.values()):,} inputs in {elapsed:.0f} s: " +
          ", ".join(f"{k} {v:,}" for k, v in sorted(total.items())))
    return 1 if total["ACCEPTED-MUTATED"] else 0


if __name__ == "__main__":
    sys.exit(main())

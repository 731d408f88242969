"""The joint-statistics example's data: two owners' synthetic records and the reference
computation in the clear (what the enclave's result must equal)."""

from __future__ import annotations

import random

__all__ = ["FIELDS", "OWNERS", "all_records", "plain_statistics", "records"]

OWNERS = {"alice": ("Alice", 300, 11), "bob": ("Bob", 240, 29)}
"""owner id → (display name, record count, random seed)."""
FIELDS = ("age", "income")


def records(owner: str) -> list[dict[str, int]]:
    """The owner's synthetic records (deterministic): integer age and yearly income."""
    _, count, seed = OWNERS[owner]
    rng = random.Random(seed)
    return [{"age": rng.randint(18, 90), "income": rng.randrange(18_000, 250_000, 7)}
            for _ in range(count)]


def all_records() -> list[dict[str, int]]:
    """Every owner's records, owners in sorted order."""
    return [r for owner in sorted(OWNERS) for r in records(owner)]


def plain_statistics(rows: list[dict[str, int]]) -> dict[str, dict[str, float]]:
    """The reference computation, in the clear: count, mean (2 decimals), min, max."""
    stats: dict[str, dict[str, float]] = {}
    for name in FIELDS:
        column = sorted(r[name] for r in rows)
        stats[name] = {"count": len(column), "mean": round(sum(column) / len(column), 2),
                       "min": column[0], "max": column[-1]}
    return stats

"""Published test vectors, read in place from ``../shared/vectors`` (never copied here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(
    os.environ.get(
        "ENCLAVEKIT_VECTORS", Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
    )
)


def vector(rel: str) -> Path:
    """The path of one vector file; fails the test (not skips) when it is missing."""
    path = VECTORS / rel
    if not path.is_file():
        pytest.fail(f"missing test vector {path}; set ENCLAVEKIT_VECTORS")
    return path


def expected() -> dict[str, Any]:
    """The parsed ``expected.json``."""
    return json.loads(vector("expected.json").read_text())  # type: ignore[no-any-return]


def cases(kind: str, *needs: str) -> list[Any]:
    """One pytest case per ``expected.json`` entry of ``kind`` that has every key in ``needs``."""
    entries = expected()[kind]
    return [
        pytest.param(e, id=e.get("id", e.get("cert", kind)))
        for e in entries
        if all(k in e for k in needs)
    ]

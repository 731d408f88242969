"""Published test vectors, read in place from ``../shared/vectors`` (never copied here).

Without the vectors (a fresh clone with nothing beside it) the tests that need them are
skipped, all with the one reason :data:`MISSING`, and the rest of the suite runs; with ``CI``
set in the environment they fail instead, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

VECTORS = Path(
    os.environ.get(
        "ENCLAVEKIT_VECTORS", Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
    )
)
MISSING = f"test vectors not found at {VECTORS}: set ENCLAVEKIT_VECTORS to their directory"
"""The reason of every skip for want of the vectors."""


def available() -> bool:
    """Whether the vectors are there (their ``expected.json`` is)."""
    return (VECTORS / "expected.json").is_file()


def _missing(path: Path) -> NoReturn:
    if os.environ.get("CI") or available():  # a file missing from present vectors is a bug
        pytest.fail(f"missing test vector {path}; set ENCLAVEKIT_VECTORS")
    pytest.skip(MISSING, allow_module_level=True)


def vector(rel: str) -> Path:
    """The path of one vector file; without the vectors the test (or, at import, the module)
    is skipped — or fails under ``CI``; a file missing from present vectors always fails."""
    path = VECTORS / rel
    if not path.is_file():
        _missing(path)
    return path


def expected() -> dict[str, Any]:
    """The parsed ``expected.json``."""
    return json.loads(vector("expected.json").read_text())  # type: ignore[no-any-return]


def _placeholder() -> list[Any]:
    """The parameter list of a vector-driven test when the vectors are absent: one skipped
    case, so collection does not error; under ``CI`` the collection fails, naming the path."""
    if os.environ.get("CI"):
        pytest.fail(f"missing test vectors at {VECTORS} (CI is set); set ENCLAVEKIT_VECTORS")
    return [pytest.param(None, id="missing-vectors", marks=pytest.mark.skip(reason=MISSING))]


def cases(kind: str, *needs: str, where: Callable[[dict[str, Any]], bool] | None = None
          ) -> list[Any]:
    """One pytest case per ``expected.json`` entry of ``kind`` that has every key in ``needs``
    (and satisfies ``where``)."""
    if not available():
        return _placeholder()
    entries = expected()[kind]
    return [
        pytest.param(e, id=e.get("id", e.get("cert", kind)))
        for e in entries
        if all(k in e for k in needs) and (where is None or where(e))
    ]


def entry(kind: str, *needs: str, id: str | None = None) -> dict[str, Any]:
    """The first ``expected.json`` entry of ``kind`` with every key in ``needs`` (and ``id``);
    without the vectors the test, or at import the module, is skipped (fails under ``CI``)."""
    found = [e for e in expected()[kind]
             if all(k in e for k in needs) and (id is None or e.get("id") == id)]
    if not found:
        pytest.fail(f"expected.json has no {kind} entry with {', '.join(needs)} {id or ''}")
    return found[0]  # type: ignore[no-any-return]


def names(rel: str, pattern: str) -> list[Any]:
    """The paths (relative to ``rel``, sorted) of the vector files matching ``pattern``."""
    if not available():
        return _placeholder()
    base = VECTORS / rel
    return sorted(p.relative_to(base).as_posix() for p in base.glob(pattern))


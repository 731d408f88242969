"""Run every benchmark in this folder: ``python bench/run.py [--short]``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(HERE))
    failed = 0
    for path in sorted(HERE.glob("bench_*.py")):
        print(f"== {path.stem}", flush=True)
        module = importlib.import_module(path.stem)
        failed += module.main(args)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

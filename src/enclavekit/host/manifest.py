"""The enclave app manifest (``enclave.toml``): what is measured into the image and how.

``Manifest.load`` is the one place where defaults are resolved; the canonical form
(:meth:`Manifest.canonical_json`) is what the image carries and measures.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ManifestError
from ..vm.bootstrap import runtime_files

MANIFEST_NAME = "enclave.toml"
PAGE = 4096

_KEYS = {"name", "entry", "trusted", "product_id", "security_version", "debug",
         "heap_size", "stack_size", "threads", "runtime", "switchless_workers"}
_RUNTIME_KEYS = {"python"}
_DEFAULTS: dict[str, Any] = {
    "entry": "app.py",
    "trusted": [],
    "product_id": 0,
    "security_version": 0,
    "debug": False,
    "heap_size": "1M",
    "stack_size": "256K",
    "threads": 1,
    "switchless_workers": 0,
}
_MAX_THREADS = 256
_MAX_MEMORY = 1 << 40
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PYTHON_RE = re.compile(r"^3\.\d{1,2}$")


def default_python() -> str:
    """The building interpreter's CPython major.minor, e.g. ``"3.11"``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A resolved enclave manifest: every field has its final value; ``trusted`` is expanded.

    ``trusted`` lists every file of the bundle as sorted POSIX paths relative to ``root``
    (always including ``enclave.toml`` and the entry module).
    """

    root: Path
    name: str
    entry: str
    trusted: tuple[str, ...]
    product_id: int
    security_version: int
    debug: bool
    heap_size: int
    stack_size: int
    threads: int
    python: str
    switchless_workers: int = 0
    """Worker threads serving switchless ecalls (0: off); measured, since it changes how
    the enclave is called (``host.switchless``)."""

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and check ``enclave.toml`` (or the app directory holding it).

        Raises:
            ManifestError: the file is missing or unparsable, a key is unknown, of the wrong
                type or out of range, or a path is missing or escapes the app directory.
        """
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        where = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ManifestError(f"{where}: not found; create one with 'enclavekit new'") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{where}: cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{where}: not valid TOML: {exc}") from exc
        return _resolve(raw, path.parent.resolve(), where)

    def to_dict(self) -> dict[str, Any]:
        """The resolved manifest as plain JSON values (without the local root directory).

        ``runtime.pin`` maps each enclave runtime file to its SHA-256, so MRENCLAVE covers
        the exact runtime the enclave will import. ``switchless_workers`` appears only when
        set, so manifests without it measure as before.
        """
        extra = {"switchless_workers": self.switchless_workers} if self.switchless_workers \
            else {}
        return {**extra,
            "name": self.name, "entry": self.entry, "trusted": list(self.trusted),
            "product_id": self.product_id, "security_version": self.security_version,
            "debug": self.debug, "heap_size": self.heap_size, "stack_size": self.stack_size,
            "threads": self.threads,
            "runtime": {"python": self.python, "pin": runtime_files()},
        }

    def canonical_json(self) -> bytes:
        """The measured form: JSON of :meth:`to_dict` with sorted keys and no whitespace."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def parse_size(value: object, key: str, where: str) -> int:
    """A byte count from an int or a string like ``"4M"``/``"256K"``; a positive page multiple."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ManifestError(f"{where}: {key} must be an integer or a size like \"4M\", "
                            f"found {type(value).__name__}")
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise ManifestError(f"{where}: {key} {value!r} is not a size (e.g. 4096, \"256K\", "
                                "\"4M\")")
        size = int(match.group(1)) * _UNITS[match.group(2).upper()]
    else:
        size = value
    if size <= 0 or size % PAGE or size > _MAX_MEMORY:
        raise ManifestError(f"{where}: {key} must be a positive multiple of {PAGE} bytes up to "
                            f"1 TiB, found {size}")
    return size


def _int(raw: dict[str, Any], key: str, lo: int, hi: int, where: str) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"{where}: {key} must be an integer, found {type(value).__name__}")
    if not lo <= value <= hi:
        raise ManifestError(f"{where}: {key} must be in {lo}..{hi}, found {value}")
    return value


def _resolve(raw: dict[str, Any], root: Path, where: str) -> Manifest:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ManifestError(f"{where}: unknown key {unknown[0]!r} (known: "
                            f"{', '.join(sorted(_KEYS))})")
    runtime = raw.get("runtime", {})
    if not isinstance(runtime, dict):
        raise ManifestError(f"{where}: [runtime] must be a table, found "
                            f"{type(runtime).__name__}")
    unknown = sorted(set(runtime) - _RUNTIME_KEYS)
    if unknown:
        raise ManifestError(f"{where}: unknown key 'runtime.{unknown[0]}' (known: runtime.python)")
    values = {**_DEFAULTS, **{k: v for k, v in raw.items() if k != "runtime"}}
    if "name" not in values:
        raise ManifestError(f"{where}: missing key 'name' (the enclave's name)")
    name = values["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(f"{where}: name must be 1-64 letters, digits, '_', '-' or '.', "
                            f"found {name!r}")
    python = runtime.get("python", default_python())
    if not isinstance(python, str) or not _PYTHON_RE.match(python):
        raise ManifestError(f"{where}: runtime.python must be a CPython major.minor like "
                            f"\"3.11\", found {python!r}")
    debug = values["debug"]
    if not isinstance(debug, bool):
        raise ManifestError(f"{where}: debug must be true or false, found {debug!r}")
    entry = values["entry"]
    if not isinstance(entry, str) or not entry.endswith(".py"):
        raise ManifestError(f"{where}: entry must be a relative path to a .py file, "
                            f"found {entry!r}")
    entry = _check_path(root, entry, "entry", where)
    if not (root / entry).is_file():
        raise ManifestError(f"{where}: entry {entry!r} does not exist in {root}")
    trusted = values["trusted"]
    if not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted):
        raise ManifestError(f"{where}: trusted must be a list of relative paths or globs")
    files = {MANIFEST_NAME, entry}
    for pattern in trusted:
        files |= _expand(root, pattern, where)
    return Manifest(
        root=root, name=name, entry=entry, trusted=tuple(sorted(files)),
        product_id=_int(values, "product_id", 0, 0xFFFF, where),
        security_version=_int(values, "security_version", 0, 0xFFFF, where),
        debug=debug,
        heap_size=parse_size(values["heap_size"], "heap_size", where),
        stack_size=parse_size(values["stack_size"], "stack_size", where),
        threads=_int(values, "threads", 1, _MAX_THREADS, where),
        python=python,
        switchless_workers=_int(values, "switchless_workers", 0, 64, where),
    )


def _check_path(root: Path, rel: str, key: str, where: str) -> str:
    """``rel`` as a normalised POSIX path that stays inside ``root`` (symlinks resolved)."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise ManifestError(f"{where}: {key} {rel!r} must be a path inside the app directory "
                            "(no '..', not absolute)")
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise ManifestError(f"{where}: {key} {rel!r} resolves outside the app directory "
                            f"(to {target}); symlinks must stay inside it")
    return pure.as_posix()


def _expand(root: Path, pattern: str, where: str) -> set[str]:
    """The files a trusted path or glob names (directories are walked)."""
    _check_path(root, pattern.replace("*", "x").replace("?", "x"), "trusted entry", where)
    found: set[str] = set()
    for match in sorted(root.glob(pattern)):
        candidates = [match] if match.is_file() else sorted(match.rglob("*"))
        for path in candidates:
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(root).as_posix()
                found.add(_check_path(root, rel, "trusted file", where))
    if not found:
        raise ManifestError(f"{where}: trusted entry {pattern!r} matches no file in {root}")
    return found

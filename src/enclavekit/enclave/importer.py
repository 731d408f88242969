"""The enclave's only way to import: measured bundle, pinned runtime, interpreter stdlib (RT-3).

:class:`PinnedFinder` sits first on ``sys.meta_path`` inside an enclave process:

* **App modules** come from the bundle bytes the device read out of the enclave's
  measured pages; each file is checked against the SHA-256 its bundle entry records, and
  executed from memory (never from the host's files, never cached as ``.pyc``).
* **Runtime modules** (``enclavekit``'s runtime files, ``msgpack``, ``cryptography``) are
  read from the runtime root, hashed, compared with ``runtime.pin`` of the measured
  manifest, and the checked bytes are executed. Parent packages whose ``__init__.py`` is
  not pinned (``enclavekit``, ``enclavekit.sgx``, ``enclavekit.vm``) are empty namespaces.
* **Extension modules** in the pin are read once, hashed, copied into a sealed
  ``memfd`` and loaded from ``/proc/self/fd/N``, so the bytes loaded are the bytes
  checked. Residual TOCTOU: the dynamic loader resolves the extension's own shared-library
  dependencies (libc, libssl if not bundled) by name from the system, which the pin does
  not cover; on hosts without ``memfd_create`` the file is loaded by path after the check,
  and a writer racing between the check and ``dlopen`` could swap it.
* **The standard library** comes from the interpreter's own directories only (``sys.path``
  is cut down to them); every other name is refused with ``ModuleNotFoundError`` naming
  the module and the reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import linecache
import os
import struct
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Loader as _LoaderBase
    from importlib.abc import MetaPathFinder as _FinderBase
else:  # importlib.abc costs an enclave ~11 ms to import; the import system needs no base
    _LoaderBase = _FinderBase = object

__all__ = ["BUNDLE_MAGIC", "PinnedFinder", "install", "parse_bundle", "trusted_file"]

BUNDLE_MAGIC = b"EKBUNDL1"
RUNTIME_TOPS = frozenset({"enclavekit", "msgpack", "cryptography", "_cffi_backend"})
_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<H")
_TAIL = struct.Struct("<Q32s")
_finder: PinnedFinder | None = None


def parse_bundle(data: bytes) -> dict[str, bytes]:
    """The trusted files of a bundle, each checked against its recorded SHA-256.

    Raises:
        ImportError: the bundle is malformed or a file does not match its hash.
    """
    if data[:8] != BUNDLE_MAGIC or len(data) < 12:
        raise ImportError("enclave bundle: bad magic (not an enclavekit bundle)")
    (count,) = _U32.unpack_from(data, 8)
    pos = 12
    entries: list[tuple[str, int, bytes]] = []
    try:
        for _ in range(count):
            (n,) = _HEAD.unpack_from(data, pos)
            path = data[pos + 2 : pos + 2 + n].decode()
            size, digest = _TAIL.unpack_from(data, pos + 2 + n)
            entries.append((path, size, digest))
            pos += 2 + n + _TAIL.size
    except (struct.error, UnicodeDecodeError) as exc:
        raise ImportError(f"enclave bundle: malformed file table ({exc})") from None
    files: dict[str, bytes] = {}
    for path, size, digest in entries:
        body = data[pos : pos + size]
        pos += size
        if len(body) != size or hashlib.sha256(body).digest() != digest:
            raise ImportError(f"enclave bundle: {path} does not match its recorded SHA-256")
        files[path] = body
    return files


def _module_name(rel: str) -> tuple[str, bool] | None:
    """(module name, is package) for a .py or extension file path; None for data files."""
    parts = rel.split("/")
    if rel.endswith(".py"):
        parts[-1] = parts[-1][:-3]
        if parts[-1] == "__init__":
            return ".".join(parts[:-1]), True
        return ".".join(parts), False
    if rel.endswith(".so"):
        parts[-1] = parts[-1].split(".", 1)[0]
        return ".".join(parts), False
    return None


class _BytesLoader(_LoaderBase):
    """Executes one module's checked source bytes (or the code the device compiled from them).

    A plain class, not an ``importlib.abc.Loader``: that module costs an enclave ~11 ms to
    import (it pulls in ``importlib.resources``); the import system only needs the methods.
    """

    def __init__(self, code: bytes | types.CodeType | None, filename: str) -> None:
        self.code = code
        self.filename = filename

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if self.code is None:  # an empty parent package
            return
        module.__file__ = self.filename
        code = self.code
        if not isinstance(code, types.CodeType):
            code = compile(code, self.filename, "exec", dont_inherit=True)
        exec(code, module.__dict__)


class PinnedFinder(_FinderBase):
    """Finds modules in the bundle, the pinned runtime and the stdlib; refuses the rest.

    ``compiled`` maps a runtime file's path to (SHA-256 hex, code object): code the device
    compiled from that file after checking it against the same pin (see
    :mod:`enclavekit.vm.bootstrap`); it is used only when its hash equals this enclave's pin
    for the file, otherwise the file is read, checked and compiled here.
    """

    def __init__(self, pin: dict[str, str], roots: Sequence[str],
                 app: dict[str, bytes] | None = None,
                 compiled: dict[str, tuple[str, types.CodeType]] | None = None) -> None:
        self.pin = dict(pin)
        self.roots = [r for r in roots if r]
        self.compiled = {rel: code for rel, (digest, code) in (compiled or {}).items()
                         if self.pin.get(rel) == digest and isinstance(code, types.CodeType)}
        self.runtime: dict[str, tuple[str, bool]] = {}
        self.parents: set[str] = set()
        for rel in self.pin:
            found = _module_name(rel)
            if found is not None:
                self.runtime[found[0]] = (rel, found[1])
                pieces = found[0].split(".")
                self.parents.update(".".join(pieces[:i]) for i in range(1, len(pieces)))
        self.app: dict[str, tuple[str, bool]] = {}
        self.files: dict[str, bytes] = {}
        if app:
            self.add_app(app)

    def add_app(self, files: dict[str, bytes]) -> None:
        """Register the bundle's files (app modules and data)."""
        for rel, body in files.items():
            found = _module_name(rel)
            if found is not None and rel.endswith(".py"):
                if found[0].split(".")[0] in RUNTIME_TOPS:
                    raise ImportError(f"enclave bundle: {rel} would shadow the runtime "
                                      f"package {found[0].split('.')[0]!r}")
                self.app[found[0]] = (rel, found[1])
            self.files[rel] = body

    def _read(self, rel: str) -> tuple[bytes, str]:
        for root in self.roots:
            path = os.path.join(root, rel)
            try:
                with open(path, "rb") as f:
                    return f.read(), path
            except OSError:
                continue
        raise ModuleNotFoundError(f"pinned runtime file {rel} is not in the runtime root")

    def _checked(self, name: str, rel: str) -> tuple[bytes, str]:
        data, path = self._read(rel)
        got = hashlib.sha256(data).hexdigest()
        if got != self.pin[rel]:
            raise ModuleNotFoundError(
                f"module {name!r} refused in the enclave: {rel} does not match its pin in the "
                f"measured manifest (SHA-256 {got[:16]}…, pinned {self.pin[rel][:16]}…); "
                "the runtime changed since the build: rebuild the enclave", name=name)
        return data, path

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        """The spec of an allowed module; ``None`` hands a stdlib name to the stdlib finders."""
        if fullname in self.app:
            rel, pkg = self.app[fullname]
            filename = f"<enclave>/{rel}"
            code = self.files[rel]
            text = code.decode("utf-8", "replace")
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
            return importlib.util.spec_from_loader(
                fullname, _BytesLoader(code, filename), origin=filename, is_package=pkg)
        top = fullname.split(".")[0]
        if top in RUNTIME_TOPS:
            return self._runtime_spec(fullname)
        if top in sys.stdlib_module_names or fullname in sys.builtin_module_names:
            return None
        raise ModuleNotFoundError(
            f"module {fullname!r} refused in the enclave: it is not in the measured bundle, "
            "the runtime pin or the standard library (add it to 'trusted' in enclave.toml)",
            name=fullname)

    def _runtime_spec(self, fullname: str) -> importlib.machinery.ModuleSpec:
        if fullname in self.runtime:
            rel, pkg = self.runtime[fullname]
            code = self.compiled.get(rel)
            if code is not None:
                spec = importlib.util.spec_from_loader(
                    fullname, _BytesLoader(code, code.co_filename), origin=code.co_filename,
                    is_package=pkg)
                assert spec is not None
                spec.has_location = True
                return spec
            data, path = self._checked(fullname, rel)
            if rel.endswith(".so"):
                return _extension_spec(fullname, data, path)
            spec = importlib.util.spec_from_loader(
                fullname, _BytesLoader(data, path), origin=path, is_package=pkg)
            assert spec is not None
            spec.has_location = True
            return spec
        if fullname in self.parents:
            spec = importlib.util.spec_from_loader(
                fullname, _BytesLoader(None, ""), is_package=True)
            assert spec is not None
            return spec
        raise ModuleNotFoundError(
            f"module {fullname!r} refused in the enclave: it is not in the runtime pin of "
            "the measured manifest", name=fullname)


def _extension_spec(fullname: str, data: bytes, path: str) -> importlib.machinery.ModuleSpec:
    """An extension module loaded from a sealed in-memory copy of its checked bytes."""
    load_path = path
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd = memfd(fullname, getattr(os, "MFD_ALLOW_SEALING", 0))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if hasattr(fcntl, "F_ADD_SEALS"):  # the checked bytes cannot change before dlopen
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK
                        | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        load_path = f"/proc/self/fd/{fd}"
    loader = importlib.machinery.ExtensionFileLoader(fullname, load_path)
    spec = importlib.util.spec_from_file_location(fullname, load_path, loader=loader)
    assert spec is not None
    return spec


def _stdlib_paths() -> list[str]:
    base = os.path.realpath(sys.base_prefix)
    return [p for p in sys.path if p and os.path.realpath(p).startswith(base + os.sep)]


def install(manifest: dict[str, Any], roots: Sequence[str],
            compiled: dict[str, tuple[str, types.CodeType]] | None = None) -> PinnedFinder:
    """Make :class:`PinnedFinder` the first importer and cut ``sys.path`` to the stdlib."""
    global _finder
    pin = manifest.get("runtime", {}).get("pin", {})
    finder = PinnedFinder(pin, roots, compiled=compiled)
    sys.path[:] = _stdlib_paths()
    sys.path_importer_cache.clear()
    sys.meta_path.insert(0, finder)
    sys.dont_write_bytecode = True
    _finder = finder
    return finder


def add_bundle(bundle: bytes) -> None:
    """Register the app's trusted files from the BOOT bundle."""
    if _finder is None:
        raise ImportError("not inside an enclave: the enclave importer is not installed")
    _finder.add_app(parse_bundle(bundle))


def trusted_file(path: str) -> bytes:
    """A trusted (measured) file of the app, by its path relative to the app directory."""
    if _finder is None:
        raise ImportError("not inside an enclave: the enclave importer is not installed")
    try:
        return _finder.files[path]
    except KeyError:
        raise FileNotFoundError(f"{path!r} is not a trusted file of this enclave") from None

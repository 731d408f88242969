"""The enclave process's first code: the fixed ``-c`` source and the pinned runtime files.

The device starts an enclave with ``sys.executable -I -S -B -c BOOTSTRAP_SOURCE`` (fd 3:
private channel, fd 4: ecall socket). The bootstrap hardens the process (RLIMIT_CORE 0,
``PR_SET_PDEATHSIG(SIGKILL)``, ``PR_SET_DUMPABLE(0)`` for production enclaves), reads the
BOOT frame (or WARM first, see below), ignores the host's catchable signals (RT-5), removes
fork/exec/spawn from ``os`` (RT-6), checks the interpreter against ``runtime.python`` and
the importer's bytes against ``runtime.pin`` from the measured manifest, executes those
checked bytes, and hands over to the importer and the dispatcher. Until then it uses the
standard library only: BOOT and WARM payloads are read by a small msgpack reader below
(maps, ints, str, bin, bool, nil).

**Warm processes.** So that ``vm.load`` does not wait for an interpreter and the runtime
imports, the device keeps one enclave process pre-started: spawned exactly as above, it
first receives WARM (the device's own runtime pin, its Python version and compiled
runtime), hardens itself, checks and installs the importer for that pin and imports the
pinned runtime modules - no app code, no enclave identity, no secret, no heap limit, not
dumpable - and blocks until BOOT. A LOAD gives it to an enclave only when the measured
manifest pins exactly that runtime and Python; the bootstrap checks the pin equality again
on BOOT and exits otherwise, then continues exactly as a cold start (debug → dumpable,
app import from the bundle, heap limit, dispatcher). Each warm process serves exactly one
enclave and is never returned to the pool, so nothing is shared between enclaves; what it
ran before BOOT is only code the enclave's own pin names, so MRENCLAVE still covers it.
A first frame BOOT (no WARM) is the cold path.

``runtime_files()`` is what ``build`` records as ``runtime.pin``: relative path → SHA-256
of every file the enclave may import outside the standard library; ``runtime_root()``
says where those files live (directories joined with ``os.pathsep``; location is only a
hint, the hash decides). ``compiled_runtime()`` is the device's compiled copy of those
files, sent in BOOT so that enclaves do not recompile the runtime at every start.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import os
import types
from pathlib import Path

IGNORED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                   "SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGVTALRM", "SIGPROF")
"""Catchable signals a host could send; the enclave process starts with them blocked
(``vm.spawn``) and ignores them from its first instruction on (RT-5)."""

__all__ = ["BOOTSTRAP_SOURCE", "IGNORED_SIGNALS", "RUNTIME_MODULES", "compiled_runtime",
           "runtime_files", "runtime_root"]

RUNTIME_MODULES = (
    "enclavekit/errors.py",
    "enclavekit/_fs.py",
    "enclavekit/wire/__init__.py",
    "enclavekit/wire/_kinds.py",
    "enclavekit/wire/_faults.py",
    "enclavekit/wire/limits.py",
    "enclavekit/wire/_reader.py",
    "enclavekit/wire/_nodes.py",
    "enclavekit/wire/_encode.py",
    "enclavekit/wire/_decode.py",
    "enclavekit/wire/hints.py",
    "enclavekit/wire/values.py",
    "enclavekit/wire/calls.py",
    "enclavekit/wire/frame.py",
    "enclavekit/wire/schema.py",
    "enclavekit/wire/ring.py",
    "enclavekit/sgx/_layout.py",
    "enclavekit/sgx/consts.py",
    "enclavekit/sgx/structs.py",
    "enclavekit/vm/protocol.py",
    "enclavekit/enclave/__init__.py",
    "enclavekit/enclave/api.py",
    "enclavekit/enclave/boot.py",
    "enclavekit/enclave/dispatch.py",
    "enclavekit/enclave/importer.py",
    "enclavekit/enclave/local.py",
    "enclavekit/enclave/files.py",
    "enclavekit/enclave/seal.py",
    "enclavekit/enclave/counters.py",
    "enclavekit/enclave/switchless.py",
    "enclavekit/enclave/quote.py",
    "enclavekit/enclave/keyrelease.py",
    "enclavekit/sgx/keys.py",
    "enclavekit/dcap/arch.py",
    "enclavekit/dcap/ecdsa.py",
    "enclavekit/dcap/certdata.py",
    "enclavekit/dcap/quote.py",
    *(f"enclavekit/{m}.py" for m in ("enclave/peer", "_codec", "_fs", "dcap/collateral", "dcap/crl", "dcap/memo", "dcap/pckext", "dcap/policy", "dcap/roots", "dcap/tcbinfo", "dcap/verify")),  # noqa: E501 (peer attestation, enclave/peer.py)
)
"""The enclavekit files the runtime consists of (their packages' other files never load)."""
THIRD_PARTY = ("msgpack", "cryptography", "_cffi_backend")
"""Whole packages (every .py and extension module) pinned with the runtime."""


def _origin(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin)


def _roots() -> list[Path]:
    roots = [Path(__file__).resolve().parents[2]]
    for name in THIRD_PARTY:
        origin = _origin(name)
        if origin is None:
            continue
        root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
        if root.resolve() not in roots:
            roots.append(root.resolve())
    return roots


def runtime_root() -> str:
    """The directories holding the runtime files, joined with ``os.pathsep``."""
    return os.pathsep.join(str(r) for r in _roots())


@functools.lru_cache(maxsize=4)
def _pin(key: tuple[tuple[str, str, int, int], ...]) -> tuple[tuple[str, str], ...]:
    """Hashes of the files ``key`` names (cached while their mtimes and sizes stay)."""
    return tuple((rel, hashlib.sha256(Path(path).read_bytes()).hexdigest())
                 for rel, path, _, _ in key)


def runtime_files() -> dict[str, str]:
    """Relative path → SHA-256 hex of every pinned runtime file, sorted by path."""
    roots = _roots()
    files: dict[str, Path] = {rel: roots[0] / rel for rel in RUNTIME_MODULES}
    for name in THIRD_PARTY:
        origin = _origin(name)
        if origin is None:
            continue
        if origin.name == "__init__.py":
            base = origin.parent.parent
            for path in sorted(origin.parent.rglob("*")):
                if (path.suffix in (".py", ".so") and path.is_file()
                        and "__pycache__" not in path.parts):
                    files[path.relative_to(base).as_posix()] = path
        else:
            files[origin.name] = origin
    key = []
    for rel in sorted(files):
        st = files[rel].stat()
        key.append((rel, str(files[rel]), st.st_mtime_ns, st.st_size))
    return dict(_pin(tuple(key)))


COMPILED_PREFIXES = ("enclavekit/", "msgpack/")
"""Pinned runtime files the device compiles for enclaves (``cryptography`` loads lazily, in
the enclave, only when an app uses keys or local attestation)."""


@functools.lru_cache(maxsize=64)
def _compile(rel: str, digest: str, roots: str) -> types.CodeType | None:
    for root in roots.split(os.pathsep):
        path = os.path.join(root, rel)
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            return None  # changed since the build: the enclave's own check will refuse it
        return compile(data, path, "exec", dont_inherit=True)
    return None


@functools.lru_cache(maxsize=8)
def _compiled(items: frozenset[tuple[str, str]], roots: str) -> bytes:
    out: dict[str, tuple[str, types.CodeType]] = {}
    for rel, digest in sorted(items):
        code = _compile(rel, digest, roots)
        if code is not None:
            out[rel] = (digest, code)
    return marshal.dumps((importlib.util.MAGIC_NUMBER, out))


def compiled_runtime(pin: dict[str, str], roots: str) -> bytes:
    """BOOT's ``runtime_code``: the device's compiled copies of an enclave's pinned runtime.

    Each ``.py`` file under :data:`COMPILED_PREFIXES` named in ``pin`` is read from
    ``roots``, checked against its pinned SHA-256 *by the device* and compiled once per
    device (cached by path and hash); the result is ``marshal``-ed as ``(MAGIC_NUMBER,
    {path: (sha256 hex, code)})``. A file that no longer matches its pin is left out, so the
    enclave's importer reads it, checks it and refuses it itself.

    Why ``marshal`` is acceptable here: it is not safe against hostile input, and it is
    only ever read from the device's private channel (fd 3 of the enclave process, a
    socketpair the device created before exec) - never from the host. The device is
    already trusted with the platform secrets and with choosing the bytes the enclave runs
    (it reads BOOT out of the EPC), and it checks each file against the enclave's own
    measured pin before compiling it, so the enclave still executes only pinned code; it
    just skips recompiling it at every start (~25 ms).
    """
    items = frozenset((rel, str(digest)) for rel, digest in pin.items()
                      if rel.endswith(".py") and rel.startswith(COMPILED_PREFIXES))
    return _compiled(items, roots)


_BOOTSTRAP_BODY = r'''
import os, sys
def _enclave_boot():
    import ctypes, hashlib, json, resource, struct
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: die with the device
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0 until BOOT says debug
    import signal as _signal  # RT-5: the host's catchable signals are ignored, not handled
    _ignored = [getattr(_signal, n) for n in IGNORED_SIGNALS]
    for _sig in _ignored:  # the device spawned us with these blocked: none arrived yet
        _signal.signal(_sig, _signal.SIG_IGN)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _ignored)
    def _no_fork(*args, **kwargs):  # RT-6: an enclave cannot be cloned from inside
        raise OSError("fork/exec is not available inside an enclave (RT-6): a copy of an "
                      "enclave would share its state; start another enclave instead")
    for _name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv",
                  "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
                  "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "popen"):
        if hasattr(os, _name):
            setattr(os, _name, _no_fork)
    libc.mallopt(-8, 1)  # M_ARENA_MAX 1: no per-thread 64 MiB arenas under RLIMIT_AS
    if os.getppid() == 1:
        raise SystemExit("enclave: the device is gone")
    def fail(msg):
        sys.stderr.write("enclave bootstrap: " + msg + "\n")
        raise SystemExit(2)
    def read(n):
        buf = b""
        while len(buf) < n:
            got = os.read(3, n - len(buf))
            if not got:
                fail("private channel closed before BOOT arrived")
            buf += got
        return buf
    def frame(want, what):
        magic, version, mtype, flags, rid, length = struct.unpack("<4sHHIQI", read(24))
        if magic != b"\x89EKP" or version != 1 or mtype not in want or flags \
                or length > 1 << 30:
            fail(what)
        return mtype, read(length)
    def parse(payload, what):
        pos = 0
        def take(n):
            nonlocal pos
            if pos + n > len(payload):
                fail(what + " payload is truncated")
            pos += n
            return payload[pos - n:pos]
        def value(depth=0):
            b = take(1)[0]
            if b <= 0x7F: return b
            if b >= 0xE0: return b - 0x100
            if 0xA0 <= b <= 0xBF: return take(b & 0x1F).decode()
            if b in (0xC0, 0xC2, 0xC3): return (None, False, True)[b - 0xC0 - (b > 0xC0)]
            ints = {0xCC: "B", 0xCD: "H", 0xCE: "I", 0xCF: "Q", 0xD0: "b", 0xD1: "h",
                    0xD2: "i", 0xD3: "q"}
            if b in ints:
                f = ">" + ints[b]
                return struct.unpack(f, take(struct.calcsize(f)))[0]
            lens = {0xC4: "B", 0xC5: "H", 0xC6: "I", 0xD9: "B", 0xDA: "H", 0xDB: "I"}
            if b in lens:
                f = ">" + lens[b]
                data = take(struct.unpack(f, take(struct.calcsize(f)))[0])
                return data if b <= 0xC6 else data.decode()
            if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
                n = b & 0x0F if b <= 0x8F else struct.unpack(">H" if b == 0xDE else ">I",
                                                             take(2 if b == 0xDE else 4))[0]
                if depth:
                    fail(what + " payload nests maps")
                return {value(1): value(1) for _ in range(n)}
            fail(what + " payload has an unexpected msgpack byte 0x%02X" % b)
        got = value()
        if not isinstance(got, dict) or pos != len(payload):
            fail(what + " payload is not one map")
        return got
    have = "%d.%d" % sys.version_info[:2]
    def runtime_importer(pin, roots, cached):
        rel = "enclavekit/enclave/importer.py"
        for root in roots:
            try:
                with open(os.path.join(root, rel), "rb") as f:
                    code = f.read()
                break
            except OSError:
                continue
        else:
            fail(rel + " is not in the runtime root")
        if hashlib.sha256(code).hexdigest() != pin.get(rel):
            fail(rel + " does not match its pin in the measured manifest (runtime changed "
                 "since the build: rebuild the enclave)")
        compiled = {}
        if isinstance(cached, bytes) and cached:  # the device's private channel only
            import marshal
            from importlib._bootstrap_external import MAGIC_NUMBER
            try:
                tag, compiled = marshal.loads(cached)
            except Exception:
                tag = None
            if tag != MAGIC_NUMBER or not isinstance(compiled, dict):
                compiled = {}
        mod = type(sys)("enclavekit.enclave.importer")
        mod.__file__ = os.path.join(root, rel)
        entry = compiled.get(rel)
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == pin.get(rel) \
                and type(entry[1]) is type(_enclave_boot.__code__):
            code = entry[1]  # compiled by the device from the file it checked against the pin
        else:
            code = compile(code, mod.__file__, "exec", dont_inherit=True)
        exec(code, mod.__dict__)
        sys.modules[mod.__name__] = mod
        mod.install({"runtime": {"pin": pin}}, roots, compiled)
    mtype, payload = frame((20, 23), "the first frame is not BOOT or WARM")
    warm_pin = None
    if mtype == 23:  # WARM: load the pinned runtime now, the enclave's BOOT comes later
        warm = parse(payload, "WARM")
        try:
            warm_pin = json.loads(warm.get("pin"))
        except (TypeError, ValueError):
            warm_pin = None
        if not isinstance(warm_pin, dict):
            fail("WARM carries no runtime pin")
        if warm.get("python") != have:
            fail("WARM pins CPython %s but this interpreter is %s" % (warm.get("python"), have))
        runtime_importer(warm_pin, str(warm.get("runtime_root", "")).split(os.pathsep),
                         warm.get("runtime_code"))
        del warm, payload
        import enclavekit.enclave, enclavekit.enclave.boot  # noqa: F401 (pinned, checked)
        mtype, payload = frame((20,), "the frame after WARM is not BOOT")
    boot = parse(payload, "BOOT")
    if boot.get("debug") is True:
        libc.prctl(4, 1, 0, 0, 0)
    blob = boot.get("manifest")
    if not isinstance(blob, bytes) or blob[:8] != b"EKMANIF1":
        fail("BOOT carries no measured manifest")
    (size,) = struct.unpack("<I", blob[8:12])
    manifest = json.loads(blob[12:12 + size])
    runtime = manifest.get("runtime", {})
    want = runtime.get("python")
    if want != have:
        fail("the manifest pins CPython %s but this interpreter is %s" % (want, have))
    pin = runtime.get("pin") or {}
    if warm_pin is None:
        runtime_importer(pin, str(boot.get("runtime_root", "")).split(os.pathsep),
                         boot.get("runtime_code"))
    elif pin != warm_pin:  # the device checked this too: a warm process serves one runtime
        fail("the measured manifest pins a different runtime than this warm enclave process "
             "loaded (the device must start a fresh process for it)")
    from enclavekit.enclave import boot as enclave_boot
    enclave_boot.run(payload, 3, 4)
_enclave_boot()
'''

BOOTSTRAP_SOURCE = f"IGNORED_SIGNALS = {IGNORED_SIGNALS!r}\n" + _BOOTSTRAP_BODY
"""The enclave process's ``-c`` source (fixed; the device never edits it)."""

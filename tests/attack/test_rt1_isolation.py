"""RT-1 (attacks.md): an unprivileged host reads enclave memory — refused for production
enclaves, possible for debug builds (the reason never to ship one).

The host program, its device and the attacker all run as one unprivileged user created
here (the test itself must run as root to create it). What decides the result is the
kernel's ptrace access check (``PTRACE_MODE_ATTACH``; ``/proc/PID/mem``, ``environ``,
``maps`` and ``process_vm_readv`` use the same check): a process that is not dumpable
(``PR_SET_DUMPABLE 0``, set by the bootstrap of every production enclave and by the
device) is refused to any process without ``CAP_SYS_PTRACE``, whatever the uid.
``/proc/sys/kernel/yama/ptrace_scope`` narrows this further: absent (no Yama) or 0 — the
classic rule, so a same-uid attacker *can* read the dumpable debug enclave; 1 — only
ancestors may attach, so the debug reads would fail too (the positive controls are then
skipped); 2 — only CAP_SYS_PTRACE; 3 — no attach at all. Production refusals hold for
every setting.

The secret: the production enclave draws 32 random bytes, keeps them, and returns them
XOR a mask the host chose, so the secret itself never exists outside the enclave. The
attacker then searches the host process's memory, the host's captured socket traffic, the
data directory, /tmp and swap files for it — and finds nothing; the same search of the
debug enclave's memory finds the debug enclave's secret (so the search works).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enclavekit.host import build
from tests.sgx.conftest import session_signing_key

USER = "ekrt1"
DEV_USER, HOST_USER = "ekdevice", "ekhost"

APP = '''
import os

from enclavekit.enclave import ecall

_KEPT: list[bytes] = []


@ecall
def keep_secret(mask: bytes) -> bytes:
    secret = os.urandom(32)
    _KEPT.append(secret)
    return bytes(a ^ b for a, b in zip(secret, mask, strict=True))


@ecall
def add(a: int, b: int) -> int:
    return a + b
'''

HOST = r'''
import json, os, socket, sys
import enclavekit.host.enclave as host_enclave
import enclavekit.host.vm as host_vm
from enclavekit.errors import EnclaveLost, PageNotDebuggable
from enclavekit.host import VM
from enclavekit.vm.platform import PlatformStore

work = sys.argv[1]
traffic = open(os.path.join(work, "traffic.bin"), "wb")
_recv = host_enclave._spin_recv
def spy_recv(sock):  # the host captures every byte it receives from its enclaves ...
    data = _recv(sock); traffic.write(data); return data
host_enclave._spin_recv = spy_recv
_send = host_enclave.Enclave._send
def spy_send(self, data):  # ... and sends to them
    traffic.write(data); return _send(self, data)
host_enclave.Enclave._send = spy_send
_recv_fds = socket.recv_fds
def spy_recv_fds(sock, *args):  # ... and receives from its device
    got = _recv_fds(sock, *args); traffic.write(got[0]); return got
host_vm.socket.recv_fds = spy_recv_fds

from pathlib import Path
store = PlatformStore(Path(work) / "data")
store.create("rt1", "Standard_DC1s_v2")
vm = VM.start("rt1", store.root)
try:
    prod = vm.load(os.path.join(work, "prod.enclave"))
    dbg = vm.load(os.path.join(work, "debug.enclave"))
    mask = os.urandom(32)
    out = {"mask": mask.hex(), "prod_xor": prod.ecalls.keep_secret(mask).hex(),
           "debug_xor": dbg.ecalls.keep_secret(mask).hex(), "host_pid": os.getpid(),
           "device_pid": vm.pid}
    pids = {e.enclave_id: e.pid for e in vm.status().enclaves}
    out["prod_pid"], out["debug_pid"] = pids[prod.enclave_id], pids[dbg.enclave_id]
    try:
        prod.debug_read(0, 8)
        out["prod_debug_read"] = "read"
    except PageNotDebuggable as exc:
        out["prod_debug_read"] = "PageNotDebuggable: " + str(exc)
    out["debug_debug_read"] = dbg.debug_read(0, 8).hex()
    traffic.flush()
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the attacker runs now; it crashes the production enclave last
    try:
        prod.ecalls.add(1, 2)
        print("still running", flush=True)
    except EnclaveLost as exc:
        print("EnclaveLost: " + str(exc), flush=True)
finally:
    vm.stop()
'''

ATTACK = r'''
import ctypes, json, os, signal, sys, time

info = json.loads(sys.argv[1])
work = sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 16, 17, 0x4206, 0x4207


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc.process_vm_readv.restype = ctypes.c_ssize_t
libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(IOVec), ctypes.c_ulong,
                                  ctypes.POINTER(IOVec), ctypes.c_ulong, ctypes.c_ulong]


def errname(err):
    import errno
    return errno.errorcode.get(err, str(err))


def ptrace(pid, request):
    if libc.ptrace(request, pid, None, None) == -1:
        return errname(ctypes.get_errno())
    if request == PTRACE_SEIZE:
        libc.ptrace(PTRACE_INTERRUPT, pid, None, None)
    os.waitpid(pid, 0x40000000)  # __WALL: the tracee stops
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return "attached"


def regions(pid):
    out = []
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split()
        if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]")):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi))
    return out


def dump(pid):
    """Every readable byte of process ``pid`` via /proc/PID/mem (raises if refused)."""
    chunks = []
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for lo, hi in regions(pid):
            try:
                chunks.append(os.pread(mem.fileno(), hi - lo, lo))
            except OSError:
                pass
    return b"".join(chunks)


def try_(fn):
    try:
        return "ok", fn()
    except OSError as exc:
        return errname(exc.errno), None


def vm_readv(pid, addr):
    buf = ctypes.create_string_buffer(64)
    local, remote = IOVec(ctypes.cast(buf, ctypes.c_void_p), 64), IOVec(addr, 64)
    if libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) < 0:
        return errname(ctypes.get_errno())
    return "read"


def secret(kind):
    return bytes(a ^ b for a, b in zip(bytes.fromhex(info[kind + "_xor"]),
                                       bytes.fromhex(info["mask"])))


def files_under(root, limit=64 << 20):
    for base, _, names in os.walk(root):
        for name in names:
            path = os.path.join(base, name)
            try:
                if os.path.isfile(path) and not os.path.islink(path) and \
                        os.path.getsize(path) < limit:
                    with open(path, "rb") as handle:
                        yield path, handle.read()
            except OSError:
                pass


res = {"uid": os.getuid()}
for kind in ("prod", "debug"):
    pid = info[kind + "_pid"]
    res[kind + "_ptrace_attach"] = ptrace(pid, PTRACE_ATTACH)
    res[kind + "_ptrace_seize"] = ptrace(pid, PTRACE_SEIZE)
    status, data = try_(lambda: dump(pid))
    res[kind + "_proc_mem"] = status
    res[kind + "_secret_in_memory"] = data is not None and secret(kind) in data
    res[kind + "_environ"] = try_(lambda: open(f"/proc/{pid}/environ", "rb").read())[0]
    addr = regions(pid)[0][0] if status == "ok" else regions(os.getpid())[0][0]
    res[kind + "_process_vm_readv"] = vm_readv(pid, addr)
    limits = open(f"/proc/{pid}/limits").read()
    res[kind + "_core_limit"] = [ln.split()[4] for ln in limits.splitlines()
                                 if ln.startswith("Max core file size")][0]
res["device_proc_mem"] = try_(lambda: dump(info["device_pid"]))[0]

# search everything the host can read for the production enclave's secret
hidden, found = secret("prod"), []
status, host_mem = try_(lambda: dump(info["host_pid"]))
res["host_proc_mem"] = status
res["host_memory_bytes"] = len(host_mem or b"")
res["host_has_xor"] = host_mem is not None and bytes.fromhex(info["prod_xor"]) in host_mem
if host_mem and hidden in host_mem:
    found.append("host memory")
traffic = open(os.path.join(work, "traffic.bin"), "rb").read()
res["traffic_bytes"] = len(traffic)
res["traffic_has_xor"] = bytes.fromhex(info["prod_xor"]) in traffic
if hidden in traffic:
    found.append("socket traffic")
scanned = 0
for root in (os.path.join(work, "data"), "/tmp"):
    for path, data in files_under(root):
        scanned += 1
        if hidden in data:
            found.append(path)
res["files_scanned"] = scanned
swaps = [ln.split()[0] for ln in open("/proc/swaps").read().splitlines()[1:]]
def swap_search(path):
    status, hit = try_(lambda: hidden in open(path, "rb").read())
    return status if status != "ok" else ("found" if hit else "clean")


res["swaps"] = {path: swap_search(path) for path in swaps}  # readable only by root
res["found"] = found

# crash the production enclave: no core dump anywhere (RLIMIT_CORE 0, not dumpable)
before = {p for root in ("/", work, "/tmp") for p in os.listdir(root) if p.startswith("core")}
os.kill(info["prod_pid"], signal.SIGSEGV)
for _ in range(200):
    if not os.path.exists(f"/proc/{info['prod_pid']}") or \
            open(f"/proc/{info['prod_pid']}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
        break
    time.sleep(0.01)
after = {p for root in ("/", work, "/tmp") for p in os.listdir(root) if p.startswith("core")}
res["new_core_files"] = sorted(after - before)
print(json.dumps(res), flush=True)
'''


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                           "/usr/sbin/nologin", name], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot create user {name!r}: {done.stderr.strip()}")
    return pwd.getpwnam(name)


def _require_root() -> None:
    if os.geteuid() != 0:
        print("RT-1 skipped: creating unprivileged users needs root", file=sys.stderr)
        pytest.skip("RT-1 needs root to create its unprivileged users (useradd)")
    if shutil.which("useradd") is None:
        pytest.skip("RT-1 needs useradd to create its unprivileged users")


def _python() -> str:
    """An interpreter every user can run, of this interpreter's version.

    The test's own interpreter may live under a directory only root can enter (e.g.
    pyenv under /root); the system one of the same minor version runs this package from
    the source tree with the virtualenv's site-packages.
    """
    want = "python{}.{}".format(*sys.version_info[:2])
    for path in (sys.executable, f"/usr/bin/{want}", f"/usr/local/bin/{want}"):
        real = os.path.realpath(path)
        if os.path.exists(real) and all(os.stat(d).st_mode & 0o001 for d in
                                        _parents(real)) and os.stat(real).st_mode & 0o001:
            return path
    pytest.skip(f"no {want} that an unprivileged user can run (the test's own interpreter "
                f"{sys.executable} is not reachable by other users)")


def _parents(path: str) -> list[str]:
    parts = Path(path).parents
    return [str(p) for p in parts]


def _pythonpath() -> str:
    import msgpack

    import enclavekit

    keep = {str(Path(enclavekit.__file__).parents[1]), str(Path(msgpack.__file__).parents[1])}
    return os.pathsep.join(sorted(keep))


def _as(user: pwd.struct_passwd, work: Path) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "PYTHONPATH": _pythonpath(),
           "ENCLAVEKIT_HOME": str(work / "home")}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": env,
            "cwd": str(work)}


def _images(work: Path) -> None:
    key = session_signing_key()
    for kind, debug in (("prod", "false"), ("debug", "true")):
        app = work / f"app-{kind}"
        app.mkdir()
        (app / "enclave.toml").write_text(
            f'name = "rt1{kind}"\nentry = "app.py"\ndebug = {debug}\nheap_size = "256K"\n'
            'stack_size = "64K"\nthreads = 2\n')
        (app / "app.py").write_text(APP)
        build(app).sign(key).save(work / f"{kind}.enclave")


@pytest.fixture()
def workdir() -> Iterator[Path]:
    _require_root()
    work = Path(tempfile.mkdtemp(prefix="ek-rt1-", dir="/tmp"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ptrace_scope() -> str:
    try:
        return Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        return "absent"


def test_rt1_unprivileged_host_cannot_read_a_production_enclave(workdir: Path) -> None:
    user = _ensure_user(USER)
    _images(workdir)
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    (workdir / "host.py").write_text(HOST)
    (workdir / "attack.py").write_text(ATTACK)
    host = subprocess.Popen([_python(), str(workdir / "host.py"), str(workdir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            **_as(user, workdir))
    try:
        assert host.stdout is not None and host.stdin is not None
        line = host.stdout.readline()
        assert line, f"host program failed (exit {host.wait()})"
        info = json.loads(line)
        attack = subprocess.run([_python(), str(workdir / "attack.py"), line.strip(),
                                 str(workdir)], capture_output=True, text=True, timeout=120,
                                **_as(user, workdir))
        assert attack.returncode == 0, attack.stderr
        res = json.loads(attack.stdout)
        host.stdin.write("go\n")
        host.stdin.flush()
        after_crash = host.stdout.readline()
        assert host.wait(timeout=30) == 0
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    print(f"RT-1 attacker results (ptrace_scope {_ptrace_scope()}): {res}", file=sys.stderr)
    assert res["uid"] == user.pw_uid != 0
    # production: every read path is refused (the kernel's ptrace access check)
    assert res["prod_ptrace_attach"] == "EPERM"
    assert res["prod_ptrace_seize"] == "EPERM"
    assert res["prod_proc_mem"] in ("EACCES", "EPERM")
    assert res["prod_environ"] in ("EACCES", "EPERM")
    assert res["prod_process_vm_readv"] == "EPERM"
    assert res["prod_secret_in_memory"] is False
    assert res["device_proc_mem"] in ("EACCES", "EPERM")  # the device is not dumpable either
    assert info["prod_debug_read"].startswith("PageNotDebuggable")
    # a core dump after crashing it: none (RLIMIT_CORE 0 and not dumpable)
    assert res["prod_core_limit"] == "0"
    assert res["new_core_files"] == []
    assert after_crash.startswith("EnclaveLost")
    # the secret is nowhere the host can read, though the search saw real data
    assert res["host_proc_mem"] == "ok" and res["host_memory_bytes"] > 1 << 20
    assert res["host_has_xor"] and res["traffic_has_xor"]  # what the host did see
    assert res["files_scanned"] > 0
    assert "found" not in res["swaps"].values()
    assert res["found"] == []
    # debug: the host-side debug API works; the same kernel reads succeed where the
    # ptrace_scope allows a same-uid attach, and find the debug enclave's secret
    assert bytes.fromhex(info["debug_debug_read"]) == b"EKMANIF1"
    scope = _ptrace_scope()
    if scope in ("absent", "0"):
        assert res["debug_ptrace_attach"] == "attached"
        assert res["debug_ptrace_seize"] == "attached"
        assert res["debug_proc_mem"] == "ok"
        assert res["debug_environ"] == "ok"
        assert res["debug_process_vm_readv"] == "read"
        assert res["debug_secret_in_memory"] is True
    else:
        print(f"ptrace_scope={scope}: a same-uid attacker cannot attach even to the debug "
              "enclave; its positive controls are not checked", file=sys.stderr)
        assert res["debug_ptrace_attach"] == "EPERM"


def test_device_user_keeps_the_platform_secrets_from_the_host_user(workdir: Path) -> None:
    dev, host = _ensure_user(DEV_USER), _ensure_user(HOST_USER)
    os.chmod(workdir, 0o755)
    _images(workdir)
    data = workdir / "data"
    cli = [_python(), "-m", "enclavekit", "vm", "--data-dir", str(data)]
    root_env = {**os.environ, "PYTHONPATH": _pythonpath()}
    subprocess.run([*cli, "create", "iso"], check=True, capture_output=True, env=root_env)
    os.chmod(data, 0o755)
    os.chmod(data / "vms", 0o755)
    started = subprocess.run([*cli, "start", "iso", "--user", DEV_USER], capture_output=True,
                             text=True, check=False, env=root_env)
    assert started.returncode == 0, started.stderr
    try:
        vm_dir = data / "vms" / "iso"
        info = json.loads((vm_dir / "device.json").read_text())
        status = Path(f"/proc/{info['pid']}/status").read_text()
        uids = next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(dev.pw_uid)}  # real, effective, saved, fs: all dropped
        platform = vm_dir / "platform.json"
        st = platform.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (dev.pw_uid, 0o600)
        assert vm_dir.stat().st_mode & 0o777 == 0o711
        probe = r'''
import json, sys
from enclavekit.host import VM
out = {}
try:
    open(sys.argv[1] + "/vms/iso/platform.json", "rb").read()
    out["platform"] = "read"
except PermissionError:
    out["platform"] = "EACCES"
try:
    import os
    os.listdir(sys.argv[1] + "/vms/iso")
    out["list"] = "listed"
except PermissionError:
    out["list"] = "EACCES"
with VM.open("iso", sys.argv[1]) as vm, vm.load(sys.argv[2]) as enc:
    out["add"] = enc.ecalls.add(2, 3)
print(json.dumps(out))
'''
        ran = subprocess.run([_python(), "-c", probe, str(data),
                              str(workdir / "prod.enclave")], capture_output=True, text=True,
                             timeout=60, check=False, **_as(host, workdir))
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout) == {"platform": "EACCES", "list": "EACCES", "add": 5}
    finally:
        subprocess.run([*cli, "stop", "iso"], capture_output=True, check=False, env=root_env)


def test_start_user_is_refused_for_an_unknown_user(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "enclavekit", "vm", "--data-dir", str(tmp_path)]
    subprocess.run([*cli, "create", "iso"], check=True, capture_output=True)
    done = subprocess.run([*cli, "start", "iso", "--user", "no-such-user-ek"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "VMError: --user 'no-such-user-ek': no such user" in done.stderr

"""Starting an enclave process the way architecture.md fixes it.

``sys.executable -I -S -B -c BOOTSTRAP`` with the private channel on fd 3 and the
enclave's end of the ecall socket on fd 4, an empty environment and the device's cwd
(``/``: the device changes to it at start). ``posix_spawn`` places the two descriptors
(its DUP2 actions clear close-on-exec on the targets only), so nothing else is inherited
and no Python code runs between fork and exec.

The bootstrap source and the pinned runtime root come from :mod:`.bootstrap`, which lives
in the device's layer: it is the device's code for starting an enclave, and the runtime
(``enclavekit.enclave``) is only ever loaded inside the enclave process, by that bootstrap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import time

from .bootstrap import BOOTSTRAP_SOURCE, IGNORED_SIGNALS, runtime_root

PRIVATE_FD = 3
ECALL_FD = 4
_BLOCKED = frozenset(getattr(signal, name) for name in IGNORED_SIGNALS)
"""Blocked from exec until the bootstrap ignores them, so no host signal lands in between."""


def runtime() -> tuple[str, str]:
    """(BOOTSTRAP_SOURCE, runtime_root()) of the installed enclave runtime."""
    return BOOTSTRAP_SOURCE, runtime_root()


def _high(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered above the target descriptors."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def spawn_enclave(private_fd: int, ecall_fd: int, *, source: str | None = None) -> int:
    """Start an enclave process with ``private_fd`` as its fd 3 and ``ecall_fd`` as fd 4.

    Returns its pid. The caller keeps (and closes) its own descriptors.
    """
    if source is None:
        source, _ = runtime()
    a, b = _high(private_fd), _high(ecall_fd)
    try:
        return os.posix_spawn(
            sys.executable, [sys.executable, "-I", "-S", "-B", "-c", source], {},
            file_actions=[(os.POSIX_SPAWN_DUP2, a, PRIVATE_FD),
                          (os.POSIX_SPAWN_DUP2, b, ECALL_FD)],
            setsigmask=_BLOCKED,
        )
    finally:
        os.close(a)
        os.close(b)


def kill_and_reap(pid: int, timeout: float = 2.0) -> None:
    """SIGKILL ``pid`` (our child) and wait for it; a pid already reaped is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.002)

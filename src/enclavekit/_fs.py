"""Durable file writes: temp file, fsync, rename, fsync of the directory; and the clean-up of
the temp files a killed writer leaves.

A temp file is named ``.<target name>.<random>.ektmp`` (:data:`TEMP_SUFFIX`) and holds an
exclusive ``flock`` from its creation until it has been renamed over the target, so
:func:`remove_stale_temps` — called by every durable store when it opens — removes exactly the
temp files whose writer is gone, never one that a live process is still writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path

__all__ = ["TEMP_SUFFIX", "atomic_write", "locked_temp", "remove_stale_temps"]

TEMP_SUFFIX = ".ektmp"
"""The suffix of every temp file of an atomic write."""


def locked_temp(target: str | os.PathLike[str]) -> tuple[int, str]:
    """A new temp file beside ``target``, opened read-write and exclusively flocked.

    Returns:
        the descriptor and the path; the caller renames or unlinks the path, then closes.
    """
    directory, name = os.path.split(os.path.abspath(target))
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # a clean-up may have removed it between mkstemp and flock: then take another
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file.

    The bytes go to a temporary file in the same directory, which is flushed and
    fsynced, then renamed over ``path``; the directory is fsynced so the rename
    itself survives a power loss.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = locked_temp(target)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(tmp, target)  # still locked: a clean-up never takes it mid-write
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(directory: str | os.PathLike[str], target: str | None = None) -> int:
    """Remove the temp files of interrupted atomic writes in ``directory`` (only those of
    ``target`` when named); a temp file whose writer still holds its lock is left alone.

    Returns:
        how many were removed.
    """
    prefix = f".{target}." if target is not None else "."
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    removed = 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
                removed += 1
        os.close(fd)
    return removed

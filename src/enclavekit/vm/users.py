"""A device that runs as a dedicated user (``vm start --user NAME``, started by root).

The device reads the platform identity as root, hands the VM directory to the user
(directory 0711: hosts reach ``device.json`` and ``device.sock`` by name but cannot list
it; every file in it 0600 and owned by the user, so ``platform.json`` — the fused secrets —
is readable by that user only), then drops to the user for good before it starts any
enclave process. Hosts of other users connect to the socket (0666, like
``/dev/sgx_enclave``) and read ``device.json`` (0644: pid and socket only).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from ..errors import VMError

VM_DIR_MODE = 0o711
SOCKET_MODE = 0o666
INFO_MODE = 0o644


def resolve(name: str) -> tuple[int, int]:
    """(uid, gid) of user ``name``; refused unless this process is root."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise VMError(f"--user {name!r}: no such user (create it, e.g. 'useradd --system "
                      f"{name}')") from None
    if os.geteuid() != 0:
        raise VMError(f"--user {name!r} needs the device to be started by root "
                      f"(this process runs as uid {os.geteuid()})")
    if entry.pw_uid == 0:
        raise VMError(f"--user {name!r} is root: name an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def hand_over(vm_dir: Path, uid: int, gid: int) -> None:
    """Give ``vm_dir`` and its files to the user: directory 0711, files 0600."""
    os.chown(vm_dir, uid, gid)
    os.chmod(vm_dir, VM_DIR_MODE)
    for entry in vm_dir.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chown(entry, uid, gid)
            os.chmod(entry, 0o600)


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (no supplementary groups); checked afterwards."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        raise VMError(f"could not drop privileges to uid {uid}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise VMError(f"privileges were not dropped: uid {uid} could become root again")

"""Ray on loopback only: run a Ray program inside a network namespace that has only ``lo``.

Ray chooses its node address by probing a public address and binds to the machine's
interface address even when told 127.0.0.1. In a fresh network namespace the only
interface is the loopback one, so every socket Ray opens is on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from ..errors import EnclaveKitError

__all__ = ["can_isolate", "check_loopback_only", "isolated_command", "listening_addresses",
           "loopback_only"]

_SETUP = 'ip link set lo up && exec "$@"'


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but ``lo``."""
    return _interfaces() == ["lo"]


def _interfaces() -> list[str]:
    # the namespace's own list (sysfs may still show the parent namespace's)
    return sorted(name for _, name in socket.if_nameindex())


def can_isolate() -> str:
    """"" if :func:`isolated_command` can run here, else why not."""
    if os.geteuid() != 0:
        return "a network namespace needs root here (unshare -n); run as root"
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH"
    return ""


def isolated_command(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace with only ``lo``, up (needs root).

    Raises:
        EnclaveKitError: it cannot be done here (the message says why).
    """
    why = can_isolate()
    if why:
        raise EnclaveKitError(f"cannot run Ray on loopback only: {why}")
    return ["unshare", "--net", "sh", "-c", _SETUP, "sh", *argv]


def python_isolated(args: list[str]) -> list[str]:
    """``python args...`` (this interpreter) in a loopback-only network namespace."""
    return isolated_command([sys.executable, *args])


def check_loopback_only() -> None:
    """Refuse to start Ray where it could bind a non-loopback address.

    Raises:
        EnclaveKitError: this network namespace has interfaces besides ``lo``.
    """
    if not loopback_only():
        names = ", ".join(_interfaces())
        raise EnclaveKitError(
            f"this network namespace has interfaces {names}: Ray would bind its node address "
            "to one of them, not 127.0.0.1; run inside a namespace with only lo "
            "(as root: unshare -n, then 'ip link set lo up')")


def listening_addresses() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket in this network namespace."""
    found: list[tuple[str, int]] = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # TCP_LISTEN
                continue
            raw, port = fields[1].split(":")
            found.append((_address(raw), int(port, 16)))
    return found


def _address(raw: str) -> str:
    import ipaddress

    data = bytes.fromhex(raw)
    if len(data) == 4:
        return str(ipaddress.IPv4Address(data[::-1]))
    words = b"".join(data[i:i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)

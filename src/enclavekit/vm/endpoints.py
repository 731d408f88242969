"""Where a data directory's local services listen, so the others find them with no flags.

A service started from the command line (``pccs serve``, ``attest serve``, ``kms serve``)
writes ``<data dir>/run/NAME.json`` (``pid``, ``url``, and the ``issuer`` when it writes
another one into its tokens) once its socket listens, replaced atomically, and removes it
when it stops. A record counts only while its process lives and its port accepts a
connection, so one left by a killed service is ignored.

:func:`local_collateral` is what ``attest serve`` with neither ``--pccs`` nor ``--collateral``
uses (the running collateral service and the data directory's emulated root);
:func:`local_authority` is the attestation service ``kms serve`` trusts with no
``--trust-authority``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from .._fs import atomic_write
from ..errors import ServiceNotRunning
from .provisioning import Provisioning

__all__ = ["ATTEST", "KMS", "PCCS", "Endpoint", "LocalCollateral", "find", "local_authority",
           "local_collateral", "published", "record_path"]

PCCS = "pccs"
ATTEST = "attest"
KMS = "kms"
_NAMES = (PCCS, ATTEST, KMS)


@dataclass(frozen=True)
class Endpoint:
    """A running local service: its process, base URL and token issuer (default: the URL)."""

    name: str
    pid: int
    url: str
    issuer: str | None = None


@dataclass(frozen=True)
class LocalCollateral:
    """The running collateral service of a data directory and the root its PKI chains to."""

    url: str
    root: x509.Certificate
    home: Path


def record_path(home: Path, name: str) -> Path:
    """``<home>/run/<name>.json``, the record of service ``name``."""
    if name not in _NAMES:
        raise ValueError(f"unknown local service {name!r}; expected one of {', '.join(_NAMES)}")
    return home / "run" / f"{name}.json"


@contextlib.contextmanager
def published(home: Path | None, name: str, url: str, *,
              issuer: str | None = None) -> Iterator[None]:
    """Record this process as service ``name`` at ``url`` in ``home`` for the ``with`` block
    (nothing when ``home`` is None); the record is removed on exit if it is still ours."""
    if home is None:
        yield
        return
    path = record_path(home, name)
    doc = {"pid": os.getpid(), "url": url, **({"issuer": issuer} if issuer else {})}
    atomic_write(path, json.dumps(doc).encode() + b"\n", mode=0o600)
    try:
        yield
    finally:
        if _read(path, name) == Endpoint(name, os.getpid(), url, issuer):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _read(path: Path, name: str) -> Endpoint | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    pid, url, issuer = doc.get("pid"), doc.get("url"), doc.get("issuer")
    if not (isinstance(pid, int) and pid > 0 and isinstance(url, str)
            and (issuer is None or isinstance(issuer, str))):
        return None
    return Endpoint(name, pid, url, issuer)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _accepts(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return True
    except OSError:
        return False


def find(home: Path, name: str, *, timeout: float = 1.0) -> Endpoint | None:
    """The running service ``name`` of data directory ``home``, or None (no record, or one
    whose process is gone or whose port does not accept a connection)."""
    found = _read(record_path(home, name), name)
    if found is None or not _alive(found.pid) or not _accepts(found.url, timeout):
        return None
    return found


def local_collateral(home: Path) -> LocalCollateral:
    """The collateral service running from ``home`` and ``home``'s emulated SGX root CA.

    Raises:
        ServiceNotRunning: no collateral service runs from ``home``.
    """
    pccs = find(home, PCCS)
    if pccs is None:
        raise ServiceNotRunning(f"no collateral service runs from data dir {home}; start "
                                "'enclavekit pccs serve' there first (or give --pccs URL or "
                                "--collateral FILE)")
    return LocalCollateral(pccs.url, Provisioning.open(home).root_certificate, home)


def local_authority(home: Path) -> Endpoint:
    """The attestation service running from ``home``.

    Raises:
        ServiceNotRunning: no attestation service runs from ``home``.
    """
    attest = find(home, ATTEST)
    if attest is None:
        raise ServiceNotRunning(f"no attestation service runs from data dir {home}; start "
                                "'enclavekit attest serve' there first (or give "
                                "--trust-authority URL)")
    return attest

"""The release log: one JSON line per release decision, appended and fsynced before the answer.

Each record has ``time`` (Unix seconds), ``client`` (address:port), ``subject`` (the bearer
token's unverified ``oid``/``sub``/``appid`` claim, if it is a JWT — the service does not
authenticate callers, so this is informational), ``key``, ``version``, ``issuer``, the enclave
identity claims of the verified token (``x-ms-sgx-*``), ``nonce``, ``decision``
(``allowed``/``refused``) and ``reason``. The file is opened ``O_APPEND`` and never rewritten;
concurrent records share one fsync (group commit), and ``record`` returns only once its own
line is on disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from .._codec import JSONError, b64url_decode, strict_json

__all__ = ["IDENTITY_CLAIMS", "AuditLog", "bearer_subject"]

IDENTITY_CLAIMS: Final = ("x-ms-sgx-mrenclave", "x-ms-sgx-mrsigner", "x-ms-sgx-product-id",
                          "x-ms-sgx-svn", "x-ms-sgx-is-debuggable", "x-ms-attestation-type")


def bearer_subject(authorization: str | None) -> str | None:
    """The unverified subject of a bearer JWT (``oid``, ``sub`` or ``appid``), else ``None``."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    parts = authorization[7:].strip().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = strict_json(b64url_decode(parts[1]))
    except (JSONError, ValueError):
        return None
    if isinstance(claims, dict):
        for name in ("oid", "sub", "appid"):
            if isinstance(claims.get(name), str):
                return str(claims[name])[:200]
    return None


class AuditLog:
    """Append-only JSON-lines log at ``path`` (mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd: int | None = None
        self._written = 0
        self._synced = 0

    def record(self, *, client: str, subject: str | None, key: str, version: str | None,
               decision: str, reason: str, issuer: str | None = None,
               claims: Mapping[str, Any] | None = None, nonce: str | None = None) -> None:
        """Append one record and fsync it."""
        entry: dict[str, Any] = {
            "time": round(time.time(), 3), "client": client, "subject": subject, "key": key,
            "version": version, "issuer": issuer,
            "enclave": {c: claims[c] for c in IDENTITY_CLAIMS if claims and c in claims},
            "nonce": nonce, "decision": decision, "reason": reason}
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fd = self._fd
            os.write(fd, line)
            self._written += 1
            mine = self._written
        # Group commit: one fsync covers every record written before it, so concurrent
        # releases share a disk flush; nobody returns before its own record is durable.
        with self._sync_lock:
            if self._synced < mine:
                with self._lock:
                    upto = self._written
                os.fsync(fd)
                self._synced = upto

    def close(self) -> None:
        """Close the log file (records after this reopen it)."""
        with self._lock, self._sync_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, oldest first (a torn last line is skipped)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    yield entry

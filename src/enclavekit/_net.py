"""Listening sockets for enclavekit's HTTP services (loopback unless told otherwise)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["DEFAULT_HOST", "base_url", "listen", "listener_of", "read_body", "serving"]

DEFAULT_HOST = "127.0.0.1"


def listen(host: str = DEFAULT_HOST, port: int = 0, *, backlog: int = 512,
           error: Callable[[str], Exception] = OSError) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one), inheritable.

    Failures (a port out of range, an address in use) raise ``error(message)``.
    """
    if not 0 <= port <= 0xFFFF:
        raise error(f"port must be in 0..65535, found {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket says it is TCP; without it Nagle + delayed ACK cost ~40 ms per keep-alive request
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        held = f" (held by {listener_of(port)})" if exc.errno == errno.EADDRINUSE else ""
        raise error(f"cannot listen on {host}:{port}: {exc.strerror}{held}") from exc
    sock.set_inheritable(True)
    return sock


def listener_of(port: int) -> str:
    """Who listens on TCP ``port``: ``pid N (command)`` for this user's processes, from
    ``/proc/net/tcp{,6}`` and ``/proc/*/fd``; ``another user's process`` when not visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and inodes & _sockets_of(entry)]
    if not pids:
        return "another user's process"
    names = []
    for pid in sorted(pids)[:4]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = " ".join(handle.read().decode(errors="replace").replace("\0", " ")
                                   .split())
        except OSError:
            command = "?"
        names.append(f"pid {pid} ({command[:60]})")
    more = f" and {len(pids) - 4} more" if len(pids) > 4 else ""
    return ", ".join(names) + more


def _sockets_of(pid: str) -> set[str]:
    """The ``socket:[inode]`` names of a process's open files (empty when not readable)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    names = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own fd is)
            names.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return names


def base_url(sock: socket.socket, scheme: str = "http") -> str:
    """``scheme://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@contextlib.contextmanager
def serving(server: Any, sock: socket.socket, *, name: str,
            error: Callable[[str], Exception], timeout: float = 10.0) -> Iterator[None]:
    """Run a ``uvicorn.Server`` on ``sock`` in a thread for the ``with`` block.

    Waits until it serves (``error(...)`` if it does not within ``timeout``); on exit asks it
    to stop, and forces the exit after a second if a client keeps a connection open.
    """
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name,
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise error(f"{name} did not start")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(1.0)
        if thread.is_alive():  # a client kept a connection open: do not wait for it
            server.force_exit = True
            thread.join(timeout)
        sock.close()


async def read_body(request: Request, limit: int, error: Callable[[str], Exception]) -> bytes:
    """A request body of at most ``limit`` bytes, refused (``error``) as soon as it is larger,
    whether the Content-Length says so or the stream does."""
    message = f"request body is larger than {limit} bytes"
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise error(message)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise error(message)
        chunks.append(chunk)
    return b"".join(chunks)

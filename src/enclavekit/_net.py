"""Listening sockets for enclavekit's HTTP services (loopback unless told otherwise)."""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = ["DEFAULT_HOST", "base_url", "listen"]

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
        raise error(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket, scheme: str = "http") -> str:
    """``scheme://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

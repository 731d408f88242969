"""Run the attestation service with uvicorn: in the foreground or from a thread (tests).

A socket is bound first (port 0: a free one) so the URL is known before the first request;
the default host is the loopback address. TLS when a certificate and key are given.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from ...errors import AttestationRequestError

__all__ = ["DEFAULT_HOST", "bind", "run", "running"]

DEFAULT_HOST = "127.0.0.1"


def bind(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port``."""
    if not 0 <= port <= 0xFFFF:
        raise AttestationRequestError(f"port must be in 0..65535, found {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for such sockets
    # (with proto 0 every keep-alive response waits ~40 ms for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise AttestationRequestError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _url(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _server(app: ASGIApp, tls_cert: str | None, tls_key: str | None) -> uvicorn.Server:
    if (tls_cert is None) != (tls_key is None):
        raise AttestationRequestError("--tls-cert and --tls-key go together")
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    return uvicorn.Server(config)


def run(app: ASGIApp, host: str = DEFAULT_HOST, port: int = 0, *, tls_cert: str | None = None,
        tls_key: str | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``on_ready`` gets the URL first."""
    server = _server(app, tls_cert, tls_key)
    sock = bind(host, port)
    try:
        if on_ready is not None:
            on_ready(_url(sock, tls_cert is not None))
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def running(app: ASGIApp, host: str = DEFAULT_HOST, *, tls_cert: str | None = None,
            tls_key: str | None = None, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` from a thread on a free port for the ``with`` block; yields the base URL,
    then stops the server and joins its thread."""
    server = _server(app, tls_cert, tls_key)
    sock = bind(host, 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="maa-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AttestationRequestError("the attestation service did not start")
            time.sleep(0.01)
        yield _url(sock, tls_cert is not None)
    finally:
        server.should_exit = True
        thread.join(1.0)
        if thread.is_alive():  # a client kept a connection open: do not wait for it
            server.force_exit = True
            thread.join(timeout)
        sock.close()

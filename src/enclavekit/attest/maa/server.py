"""Run the attestation service with uvicorn: in the foreground or from a thread (tests).

A socket is bound first (port 0: a free one) so the URL is known before the first request;
the default host is the loopback address. TLS when a certificate and key are given.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from ..._guard import uvicorn_config
from ..._net import DEFAULT_HOST, base_url, listen, serving
from ...errors import AttestationRequestError
from ...vm.endpoints import ATTEST, published
from .app import LIMITS

__all__ = ["DEFAULT_HOST", "bind", "run", "running"]


def bind(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port``."""
    return listen(host, port, error=AttestationRequestError)


def _url(sock: socket.socket, tls: bool) -> str:
    return base_url(sock, "https" if tls else "http")


def _server(app: ASGIApp, tls_cert: str | None, tls_key: str | None) -> uvicorn.Server:
    if (tls_cert is None) != (tls_key is None):
        raise AttestationRequestError("--tls-cert and --tls-key go together")
    return uvicorn.Server(uvicorn_config(app, LIMITS, ssl_certfile=tls_cert,
                                         ssl_keyfile=tls_key))


def run(app: ASGIApp, host: str = DEFAULT_HOST, port: int = 0, *, tls_cert: str | None = None,
        tls_key: str | None = None, on_ready: Callable[[str], None] | None = None,
        workers: int = 1, record_in: Path | None = None, issuer: str | None = None) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); ``on_ready`` gets the URL first.

    ``workers`` > 1: that many processes forked after the socket is bound, each serving it
    (the kernel spreads the connections); the parent forwards SIGINT/SIGTERM and waits. A
    worker dies with the parent, however it ends (``kill -9`` included): none is left
    serving the port.
    ``record_in``: the data directory in which to record where this service runs and the
    ``issuer`` its tokens name when it is not the URL (:mod:`enclavekit.vm.endpoints`), for
    ``kms serve`` with no ``--trust-authority``.
    """
    if not 1 <= workers <= 64:
        raise AttestationRequestError(f"workers must be in 1..64, found {workers}")
    server = _server(app, tls_cert, tls_key)
    sock = bind(host, port)
    try:
        url = _url(sock, tls_cert is not None)
        if on_ready is not None:
            on_ready(url)
        with published(record_in, ATTEST, url, issuer=issuer):
            if workers == 1:
                server.run(sockets=[sock])
            else:
                _prefork(app, sock, tls_cert, tls_key, workers)
    finally:
        sock.close()


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` (the forking thread) ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(1)  # serving without the guarantee would leave an orphan bound to the port
    if os.getppid() != parent:  # the parent died before the prctl: nothing will signal us
        os._exit(1)


def _prefork(app: ASGIApp, sock: socket.socket, tls_cert: str | None, tls_key: str | None,
             workers: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    children: list[int] = []
    parent = os.getpid()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve until told to stop, never return into the caller
            code = 1
            try:
                _die_with(parent)
                _server(app, tls_cert, tls_key).run(sockets=[sock])
                code = 0
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            os.waitpid(child, 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def running(app: ASGIApp, host: str = DEFAULT_HOST, *, tls_cert: str | None = None,
            tls_key: str | None = None, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` from a thread on a free port for the ``with`` block; yields the base URL,
    then stops the server and joins its thread."""
    server = _server(app, tls_cert, tls_key)
    sock = bind(host, 0)
    with serving(server, sock, name="the attestation service", error=AttestationRequestError,
                 timeout=timeout):
        yield _url(sock, tls_cert is not None)

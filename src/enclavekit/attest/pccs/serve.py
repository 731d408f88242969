"""Run the collateral service: in the foreground (``enclavekit pccs serve``) or in a thread.

Both bind a socket first (port 0 picks a free one) and hand it to uvicorn, so the URL is known
before the first request; the default host is the loopback address.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from ..._guard import Limits, uvicorn_config
from ..._net import DEFAULT_HOST, base_url, listen, serving
from ...errors import ProvisioningError
from ...vm.endpoints import PCCS, published

__all__ = ["DEFAULT_HOST", "bind", "run", "running", "url_of"]


def bind(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one)."""
    return listen(host, port, backlog=128, error=ProvisioningError)


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    return base_url(sock)


def _server(app: ASGIApp) -> uvicorn.Server:
    return uvicorn.Server(uvicorn_config(app, Limits(body=0)))


def run(app: ASGIApp, host: str = DEFAULT_HOST, port: int = 0,
        on_ready: Callable[[str], None] | None = None, *, record_in: Path | None = None) -> None:
    """Serve ``app`` until interrupted (SIGINT/SIGTERM); ``on_ready`` gets the URL first.

    ``record_in``: the data directory in which to record where this service runs
    (:mod:`enclavekit.vm.endpoints`), for ``attest serve`` with no collateral flags.
    """
    sock = bind(host, port)
    try:
        url = url_of(sock)
        if on_ready is not None:
            on_ready(url)
        with published(record_in, PCCS, url):
            _server(app).run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def running(app: ASGIApp, host: str = DEFAULT_HOST, *,
            timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` from a thread on a free port for the ``with`` block; yields the base URL
    and stops the server (and joins its thread) on exit."""
    sock = bind(host, 0)
    with serving(_server(app), sock, name="the collateral service", error=ProvisioningError,
                 timeout=timeout):
        yield url_of(sock)

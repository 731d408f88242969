"""The request-validation layer of every HTTP service: uvicorn/h11 settings and one middleware.

Before a request reaches a service's routes it has passed, in this order:

* **h11** (``http="h11"``, ``h11_max_incomplete_event_size``): a request line and headers
  that do not fit in :attr:`Limits.header_bytes` while they arrive, or that are not HTTP/1.1,
  get h11's 400 and the connection is closed; idle keep-alive connections close after
  :attr:`Limits.keep_alive` seconds.
* **:class:`Guard`** (a Starlette middleware): more than :attr:`Limits.headers` headers or
  :attr:`Limits.header_bytes` of them in total (431), a target longer than
  :attr:`Limits.target` (414), a ``Content-Length`` that is not a number or over
  :attr:`Limits.body` (400), a body that is larger when streamed (400) or not complete within
  :attr:`Limits.body_seconds` of the request's start (408). The body is read here, whole,
  and handed to the app from memory, so no route ever waits on a slow client.

Numbers, strings and nesting inside JSON bodies are bounded by
:func:`enclavekit._codec.strict_json` (digits per number, depth) and by the body limit. Every
refusal is answered in the service's own error body (``error(status, message)``), never a 5xx.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ErrorBody", "Guard", "Limits", "uvicorn_config"]

ErrorBody = Callable[[int, str], Response]
"""A service's error response for a status and a one-line message."""


@dataclass(frozen=True)
class Limits:
    """What one request may be: sizes in bytes, times in seconds."""

    body: int = 1 << 20
    headers: int = 64
    header_bytes: int = 16 * 1024
    target: int = 8 * 1024
    body_seconds: float = 10.0
    keep_alive: int = 5


def uvicorn_config(app: ASGIApp, limits: Limits, **options: Any) -> uvicorn.Config:
    """The ``uvicorn.Config`` of every enclavekit server: the pure-Python h11 parser with a
    bounded header buffer, no access log, no lifespan; ``options`` add TLS and the like."""
    return uvicorn.Config(app, http="h11", h11_max_incomplete_event_size=limits.header_bytes,
                          timeout_keep_alive=limits.keep_alive, log_level="warning",
                          lifespan="off", access_log=False, **options)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Guard:
    """ASGI middleware refusing requests outside ``limits`` with ``error(status, message)``."""

    def __init__(self, app: ASGIApp, limits: Limits, error: ErrorBody) -> None:
        self.app = app
        self.limits = limits
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_head(scope)
            body = await self._read_body(scope, receive)
        except _Refused as exc:
            await self.error(exc.status, str(exc))(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect remains

        await self.app(scope, replay, send)

    def _check_head(self, scope: Scope) -> None:
        limits = self.limits
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if len(headers) > limits.headers:
            raise _Refused(431, f"{len(headers)} request headers, at most {limits.headers}")
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if size > limits.header_bytes:
            raise _Refused(431, f"request headers are {size} bytes, at most "
                                f"{limits.header_bytes}")
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > limits.target:
            raise _Refused(414, f"request target is {target} bytes, at most {limits.target}")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limits = self.limits
        too_large = f"request body is larger than {limits.body} bytes"
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            if len(declared) > 1 or not declared[0].isdigit():
                raise _Refused(400, "Content-Length must be one decimal number")
            if len(declared[0]) > 12 or int(declared[0]) > limits.body:
                raise _Refused(400, too_large)
        deadline = time.monotonic() + limits.body_seconds
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise _Refused(408, f"request body not received within "
                                    f"{limits.body_seconds:g} s") from None
            if message["type"] != "http.request":
                raise _Refused(400, "the client disconnected before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.body:
                raise _Refused(400, too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

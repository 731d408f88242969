"""The request-validation layer: every request outside the limits gets the service's own 4xx,
over a real uvicorn/h11 server and raw sockets (what a hostile client sends), and the server
keeps answering."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from enclavekit._guard import Guard, Limits, uvicorn_config
from enclavekit._net import listen, serving

LIMITS = Limits(body=1000, headers=20, header_bytes=4096, target=512, body_seconds=0.5)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"code": "Refused", "message": message}}, status_code=status)


async def _echo(request: Request) -> Response:
    return JSONResponse({"size": len(await request.body())})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST"])],
                    middleware=[Middleware(Guard, limits=LIMITS, error=_error)])
    sock = listen()
    with serving(uvicorn.Server(uvicorn_config(app, LIMITS)), sock, name="guard test",
                 error=RuntimeError):
        yield sock.getsockname()[:2]


def _exchange(address: tuple[str, int], raw: bytes, *, pause: float = 0.0,
              rest: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(raw)
        if pause:
            time.sleep(pause)
            with contextlib.suppress(OSError):  # the server may have answered and closed
                conn.sendall(rest)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _length(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return 1 << 30  # no Content-Length: read until the server closes


def _request(target: str = "/echo", headers: dict[str, str] | None = None,
             body: bytes = b"", method: str = "POST") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: t", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _refused(reply: tuple[int, bytes], status: int, words: str) -> None:
    code, body = reply
    assert code == status, body
    message = json.loads(body)["error"]["message"]
    assert words in message and "\n" not in message


def test_a_valid_request_passes(server: tuple[str, int]) -> None:
    code, body = _exchange(server, _request(body=b"x" * 1000))
    assert code == 200 and json.loads(body) == {"size": 1000}


def test_too_many_headers(server: tuple[str, int]) -> None:
    headers = {f"x-h{i}": "v" for i in range(30)}
    _refused(_exchange(server, _request(headers=headers)), 431, "request headers")


def test_headers_too_large_in_total(server: tuple[str, int]) -> None:
    _refused(_exchange(server, _request(headers={"x-a": "a" * 3000, "x-b": "b" * 3000})),
             431, "bytes, at most 4096")


def test_one_huge_header_is_refused_by_h11_while_it_arrives(server: tuple[str, int]) -> None:
    try:
        code, _ = _exchange(server, _request(headers={"x-big": "a" * 150_000}))
    except ConnectionResetError:  # h11 answered 400 and closed while the rest still came
        code = 400
    assert code in (400, 431)
    test_a_valid_request_passes(server)


def test_long_target(server: tuple[str, int]) -> None:
    _refused(_exchange(server, _request(target="/echo?" + "q" * 1000)), 414, "request target")


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "99999999999999999999999"])
def test_bad_or_huge_content_length(server: tuple[str, int], value: str) -> None:
    raw = (f"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {value}"
           "\r\n\r\n").encode()
    code, _ = _exchange(server, raw)
    assert 400 <= code < 500


def test_body_over_the_limit_when_streamed(server: tuple[str, int]) -> None:
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n")
    _refused(_exchange(server, raw), 400, "larger than 1000 bytes")


def test_a_body_sent_too_slowly_times_out(server: tuple[str, int]) -> None:
    head = _request(body=b"0123456789")[:-10]
    _refused(_exchange(server, head + b"01", pause=2.0, rest=b"23456789"), 408,
             "not received within 0.5 s")
    test_a_valid_request_passes(server)


def test_still_serving_after_the_refusals(server: tuple[str, int]) -> None:
    test_a_valid_request_passes(server)

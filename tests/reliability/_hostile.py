"""Malformed HTTP requests, as raw bytes, across the classes a hostile client sends: broken
request lines and headers, framing tricks, oversized parts, bad JSON and wrong JSON types,
unknown paths and methods. Each request is sent on its own connection."""

from __future__ import annotations

import contextlib
import json
import random
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

Maker = Callable[[random.Random, "Target"], bytes]


@dataclass(frozen=True)
class Target:
    """A service's operations: (method, path) pairs, the extra headers a valid request needs
    (and a query suffix), and the JSON bodies its operations take."""

    operations: Sequence[tuple[str, str]]
    headers: dict[str, str]
    query: str = ""
    bodies: Sequence[object] = ()

    def pick(self, rng: random.Random) -> tuple[str, str]:
        method, path = rng.choice(self.operations)
        return method, path + self.query


def _head(method: str, target: str, headers: dict[str, str], extra: Sequence[str] = ()) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _with_body(t: Target, rng: random.Random, body: bytes,
               extra: Sequence[str] = ()) -> bytes:
    method, path = t.pick(rng)
    return _head(method if method != "GET" else "POST", path, t.headers,
                 [f"Content-Length: {len(body)}", "Content-Type: application/json",
                  *extra]) + body


def _garbage_line(rng: random.Random, t: Target) -> bytes:
    return rng.randbytes(rng.randint(1, 200)) + b"\r\n\r\n"


def _bad_request_line(rng: random.Random, t: Target) -> bytes:
    method, path = t.pick(rng)
    line = rng.choice([
        f"{method} {path}", f"{method} {path} HTTP/9.9", f"{method}  {path} HTTP/1.1",
        f"{method.lower()} {path} HTTP/1.1", f"{'G' * 300} {path} HTTP/1.1",
        f"{method} {path}\x00 HTTP/1.1", f"{method} /\x80\xff{path} HTTP/1.1",
        f"{method} {path}?{'%zz' * 10}\x7f HTTP/1.1", f"{method} http://evil/{path} HTTP/1.1",
        f"{method} * HTTP/1.1", f"{method} {path} HTTP/1.1 extra", f"{method}"])
    return (line + "\r\nHost: x\r\nConnection: close\r\n\r\n").encode("latin-1")


def _bad_headers(rng: random.Random, t: Target) -> bytes:
    method, path = t.pick(rng)
    bad = rng.choice([
        ["NoColonHere"], ["Bad Name: v"], ["X-A : v"], ["X-A: v\x00w"], ["X-A: \x80\xff"],
        [" folded: v"], ["X-A: v", "\tcontinued"], ["Content-Length: 1", "Content-Length: 2"],
        ["Content-Length: -1"], ["Content-Length: 1e3"], ["Content-Length: 99999999999999"],
        ["Transfer-Encoding: gzip"], ["Transfer-Encoding: chunked, chunked"],
        [":authority: x"], ["Authorization: Bearer " + "a" * 20_000],
        [f"X-H{i}: v" for i in range(100)], ["X-Big: " + "b" * 70_000],
        ["Expect: 100-continue"], ["Upgrade: websocket", "Connection: Upgrade"]])
    return _head(method, path, t.headers, bad)


def _bad_framing(rng: random.Random, t: Target) -> bytes:
    method, path = t.pick(rng)
    head = _head(method, path, t.headers, ["Transfer-Encoding: chunked"])
    return head + rng.choice([
        b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nabc\r\n0\r\n\r\n", b"-1\r\n\r\n",
        b"3;ext=\x00\r\nabc\r\n0\r\n\r\n", b"0\r\nTrailer: \x80\r\n\r\n",
        b"48000\r\n" + b"a" * 0x48000 + b"\r\n0\r\n\r\n"])


def _oversized(rng: random.Random, t: Target) -> bytes:
    method, path = t.pick(rng)
    kind = rng.randrange(3)
    if kind == 0:
        return _head(method, path + "?" + "q=" + "a" * rng.randint(9000, 40_000), t.headers)
    if kind == 1:
        return _with_body(t, rng, b'{"a": "' + b"x" * (2 << 20) + b'"}')
    return _head(method, "/" + "p/" * rng.randint(5000, 20_000), t.headers)


def _bad_json(rng: random.Random, t: Target) -> bytes:
    body = rng.choice([
        b"{", b"[" * 10_000, b'{"a": ' * 5000, b"\xff\xfe{}", b'{"a": NaN}', b'{"a": Infinity}',
        b'{"a": 1, "a": 2}', b'{"a": ' + b"9" * 5000 + b"}", b'{"a": 1e999999}',
        b'{"a": "\\ud800"}', b'"\\u0000"', b"null", b"true", b"[]", b"12", b'{"a": -0.0e-999}',
        b'{"a": "' + b"\\u12" + b'"}', rng.randbytes(rng.randint(1, 300))])
    return _with_body(t, rng, body)


def _random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**64), 10**39, 1.5, 1e308])
    if kind == 3:
        return rng.choice(["", "x" * rng.randint(1, 5000), "\u0000", "é", "AAAA", "a.b.c"])
    if kind == 4:
        return rng.choice(["RSA", "oct", "EC", "SgxEnclave", "quote", "target", "enc"])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["quote", "runtimeData", "initTimeData", "draftPolicyForAttestation", "nonce",
            "data", "dataType", "kty", "key_size", "attributes", "release_policy", "target",
            "enc", "key", "tags", "exp", "nbf", "enabled", "exportable", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _wrong_types(rng: random.Random, t: Target) -> bytes:
    if t.bodies and rng.random() < 0.5:  # a valid body with one field replaced
        body = json.loads(json.dumps(rng.choice(t.bodies)))
        if isinstance(body, dict) and body:
            body[rng.choice(sorted(body))] = _random_json(rng, 2)
    else:
        body = _random_json(rng)
    return _with_body(t, rng, json.dumps(body).encode())


def _unknown(rng: random.Random, t: Target) -> bytes:
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND",
                         "HEAD", "CONNECT"])
    path = rng.choice(["/", "/..", "/%2e%2e/etc/passwd", "/keys/../../x", "/a" * 50,
                       "/policies/Nope", "/attest/", "/sgx/certification/v4/", "//", "/keys/%00",
                       t.pick(rng)[1] + "/extra", t.pick(rng)[1] + "?api-version=1&api-version=2"])
    return _head(method, path, t.headers)


MAKERS: tuple[Maker, ...] = (_garbage_line, _bad_request_line, _bad_headers, _bad_framing,
                             _oversized, _bad_json, _wrong_types, _unknown)
"""The classes of malformed request, drawn in turn."""


def requests(target: Target, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` malformed requests (class name, bytes), reproducible from ``seed``."""
    rng = random.Random(seed)
    for i in range(count):
        maker = MAKERS[i % len(MAKERS)]
        yield maker.__name__.lstrip("_"), maker(rng, target)


def send(address: tuple[str, int], raw: bytes, timeout: float = 15.0) -> int | None:
    """Send ``raw`` on a new connection; the status code answered, or ``None`` if the server
    closed without an answer (a request it could not even frame)."""
    with socket.create_connection(address, timeout=timeout) as conn:
        with contextlib.suppress(OSError):  # the server may answer and close mid-request
            conn.sendall(raw)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while _final_status(data) is None:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    return _final_status(data)


def _final_status(data: bytes) -> int | None:
    """The first non-1xx status in ``data`` (``100 Continue`` precedes the real answer)."""
    while data.startswith(b"HTTP/1.") and b"\r\n\r\n" in data:
        head, _, data = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status >= 200:
            return status
    return None


def barrage(address: tuple[str, int], target: Target, count: int, seed: int
            ) -> tuple[Counter[int | None], list[tuple[str, int, bytes]]]:
    """Send the malformed requests; the histogram of answers and every 5xx (class, status,
    first bytes of the request)."""
    statuses: Counter[int | None] = Counter()
    server_errors = []
    batch = list(requests(target, count, seed))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda item: send(address, item[1]), batch)
        for (kind, raw), status in zip(batch, answers, strict=True):
            statuses[status] += 1
            if status is not None and status >= 500:
                server_errors.append((kind, status, raw[:120]))
    return statuses, server_errors

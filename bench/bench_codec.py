"""The typed wire codec against untyped baselines measured in the same run.

1. A small ecall's arguments (three records and a mode), typed encode + decode with
   ``CallSignature``, against ``json.dumps`` + ``json.loads`` of the same value (no checks).
   Informational goal: <= 4 x json (the codec checks every value against its hint).
2. Everything the wire adds to an empty ecall (encode args, frame, read frame, decode args,
   then the same for the result) against one raw Unix socketpair round trip of one byte
   between two Python processes (the issue-3 baseline: an empty ecall must stay within
   1.3 x that round trip, so the wire may take at most a fraction of it). Goal: <= 0.3 x.
Usage: ``python bench/bench_codec.py [--short]``.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from typing import Literal

import _common
from enclavekit.wire import CallSignature, FrameReader, pack_frame


@dataclasses.dataclass(frozen=True)
class Record:
    name: str
    amount: int
    tags: list[str]


def summarise(records: list[Record], mode: Literal["sum", "avg"]) -> dict[str, float]:
    return {}


def empty() -> None:
    return None


ECHO = ("import socket, sys\n"
        "s = socket.socket(fileno=int(sys.argv[1]))\n"
        "while data := s.recv(64):\n"
        "    s.sendall(data)\n")


def main(argv: list[str]) -> int:
    short = "--short" in argv
    number, repeat = (200, 5) if short else (5000, 9)
    sig, nop = CallSignature.from_function(summarise), CallSignature.from_function(empty)
    records = [Record(f"owner{i}", 1000 * i, ["eu", "q3"]) for i in range(3)]
    plain = {"records": [dataclasses.asdict(r) for r in records], "mode": "avg"}
    if sig.decode_args(sig.encode_args([records, "avg"])).kwargs["records"] != records:
        print("bench_codec: typed round trip lost the value")
        return 1

    def typed() -> object:
        return sig.decode_args(sig.encode_args([records, "avg"]))

    def untyped() -> object:
        return json.loads(json.dumps(plain))

    reader = FrameReader()

    def wire_overhead() -> object:
        (call,) = reader.feed(pack_frame(1, 7, nop.encode_args()))
        nop.decode_args(call.payload)
        (reply,) = reader.feed(pack_frame(1, 7, nop.encode_result(None)))
        return nop.decode_result(reply.payload)

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    echo = subprocess.Popen([sys.executable, "-I", "-S", "-c", ECHO, str(b.fileno())],
                            pass_fds=[b.fileno()])
    b.close()

    def round_trip() -> object:
        a.sendall(b"x")
        return a.recv(1)

    try:
        t_typed = _common.median(_common.per_call(typed, repeat=repeat, number=number))
        t_json = _common.median(_common.per_call(untyped, repeat=repeat, number=number))
        t_wire = _common.median(_common.per_call(wire_overhead, repeat=repeat, number=number))
        t_rt = _common.median(_common.per_call(round_trip, repeat=repeat, number=number))
    finally:
        a.close()
        echo.wait(timeout=10)
    us = 1e6
    _common.report("small call, typed encode+decode", t_typed * us, "us", "json dumps+loads",
                   t_json * us, t_typed / t_json, "<= 4", t_typed / t_json <= 4)
    _common.report("empty call, wire overhead (args+result, framed)", t_wire * us, "us",
                   "2-process socketpair round trip", t_rt * us, t_wire / t_rt, "<= 0.3",
                   t_wire / t_rt <= 0.3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

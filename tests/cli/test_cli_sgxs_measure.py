"""`enclavekit sgxs measure FILE`: MRENCLAVE on stdout; bad input is one line on stderr, exit 1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from enclavekit.cli import main
from enclavekit.sgx.sgxs import SgxsPage, write_sgxs
from tests.vectors import cases, entry, vector

SGXS_CASES = cases("measurement_vectors", "sgxs")
ENARX = entry("measurement_vectors", "image")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["sgxs", "measure", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("v", SGXS_CASES)
def test_prints_mrenclave_of_published_stream(v: dict[str, str]) -> None:
    code, out, err = run(str(vector(v["sgxs"])))
    assert (code, out, err) == (0, v["mrenclave"] + "\n", "")


def test_prints_mrenclave_of_enarx_image_exported_as_sgxs(tmp_path: Path) -> None:
    image = vector(ENARX["image"]).read_bytes()
    pages = [SgxsPage(i * 4096, 0x100 if i == 0 else 0x207, image[i * 4096 : (i + 1) * 4096])
             for i in range(6)]
    path = tmp_path / "encl.sgxs"
    path.write_bytes(write_sgxs(pages, ssaframesize=1, size=32768))
    assert run(str(path)) == (0, ENARX["mrenclave"] + "\n", "")


def reordered_fortanix_stream() -> tuple[bytes, bytes]:
    """The Fortanix stream with each page's chunks reversed and its first chunk repeated.

    Returns the stream and, computed here with hashlib, the SHA-256 of its records.
    """
    raw = vector(SGXS_CASES[0].values[0]["sgxs"]).read_bytes()
    out, pos = [raw[:64]], 64
    while pos < len(raw):
        out.append(raw[pos : pos + 64])  # EADD
        pos += 64
        chunks = []
        while raw[pos : pos + 8] == b"EEXTEND\0":
            chunks.append(raw[pos : pos + 320])
            pos += 320
        out.extend([*reversed(chunks), *chunks[:1]])
    stream = b"".join(out)
    return stream, hashlib.sha256(stream).digest()


def test_prints_mrenclave_of_stream_with_chunks_in_any_order(tmp_path: Path) -> None:
    stream, expected = reordered_fortanix_stream()
    path = tmp_path / "reordered.sgxs"
    path.write_bytes(stream)
    assert run(str(path)) == (0, expected.hex() + "\n", "")
    assert expected.hex() != SGXS_CASES[0].values[0]["mrenclave"]


def _truncated() -> bytes:
    return vector(entry("measurement_vectors", "sgxs")["sgxs"]).read_bytes()[:1000]


def _garbled() -> bytes:
    raw = bytearray(vector(entry("measurement_vectors", "sgxs")["sgxs"]).read_bytes())
    raw[64:72] = b"GARBLED!"
    return bytes(raw)


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("truncated", _truncated, "truncated"),
        ("garbled", _garbled, "unknown record tag"),
        ("not sgxs", lambda: vector(ENARX["image"]).read_bytes(), "expected an ECREATE record"),
        ("empty", lambda: b"", "truncated"),
    ],
)
def test_bad_file_is_one_line_invalid_structure(
    tmp_path: Path, name: str, content: object, detail: str
) -> None:
    path = tmp_path / "bad.sgxs"
    path.write_bytes(content())  # type: ignore[operator]
    code, out, err = run(str(path))
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "InvalidStructure: SGXS: " in lines[0]
    assert detail in lines[0]
    assert "Traceback" not in err


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nope.sgxs"))
    assert code == 2
    assert "does not exist" in err and "Traceback" not in err


def test_missing_argument_is_a_usage_error() -> None:
    code, _, err = run()
    assert code == 2
    assert "Missing argument 'FILE'" in err

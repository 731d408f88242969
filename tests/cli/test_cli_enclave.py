"""`enclavekit new / build / sign / info` end to end in a temporary directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from enclavekit.cli import main
from enclavekit.host.image import EnclaveFile
from tests.sgx.conftest import session_signing_key


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_new_build_sign_info(tmp_path: Path) -> None:
    app = tmp_path / "hello"
    code, out, _ = run("new", str(app), "--name", "hello")
    assert code == 0 and (app / "enclave.toml").is_file() and (app / "app.py").is_file()

    sgxs = tmp_path / "hello.sgxs"
    code, out, _ = run("build", str(app), "--sgxs", str(sgxs))
    assert code == 0, out
    image_path = app / "hello.enclave"
    image = EnclaveFile.load(image_path)
    assert f"MRENCLAVE {image.mrenclave.hex()}" in out
    assert f"EPC needed {image.epc_pages} pages" in out
    assert hashlib.sha256(sgxs.read_bytes()).digest() == image.mrenclave

    code, out, _ = run("info", str(image_path), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["mrsigner"] is None and shown["signed"] is False
    assert shown["attributes"]["debug"] is True
    code, out, _ = run("info", str(image_path))
    assert code == 0 and "unsigned" in out and image.mrenclave.hex() in out

    key = tmp_path / "key.pem"
    session_signing_key().save(key)
    signed_path = tmp_path / "hello.signed.enclave"
    code, out, _ = run("sign", str(image_path), "--key", str(key), "-o", str(signed_path))
    assert code == 0
    assert f"MRSIGNER  {session_signing_key().mrsigner().hex()}" in out

    code, out, _ = run("info", str(signed_path), "--json")
    shown = json.loads(out)
    assert shown["mrsigner"] == session_signing_key().mrsigner().hex()
    assert shown["mrenclave"] == image.mrenclave.hex()
    assert shown["epc_pages"] == image.epc_pages
    assert "Standard_DC1s_v2" in shown["fits"]
    assert [r["name"] for r in shown["regions"]][:2] == ["manifest", "bundle"]


def test_big_heap_does_not_fit_small_sizes(tmp_path: Path) -> None:
    app = tmp_path / "big"
    assert run("new", str(app))[0] == 0
    toml = (app / "enclave.toml").read_text().replace('heap_size = "1M"', 'heap_size = "40M"')
    (app / "enclave.toml").write_text(toml)
    out_path = tmp_path / "big.enclave"
    code, out, _ = run("build", str(app), "-o", str(out_path))
    assert code == 0, out
    shown = json.loads(run("info", str(out_path), "--json")[1])
    assert "Standard_DC1s_v2" not in shown["fits"] and "Standard_DC2s_v2" in shown["fits"]


def test_new_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = run("new", str(tmp_path))
    assert code == 1 and "not empty" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_invalid_inputs_exit_1_with_one_line(tmp_path: Path) -> None:
    code, _, err = run("build", str(tmp_path))
    assert code == 1 and err.startswith("Error: ManifestError:") and err.count("\n") == 1
    bogus = tmp_path / "x.enclave"
    bogus.write_bytes(b"not an enclave file at all")
    code, _, err = run("info", str(bogus))
    assert code == 1 and "InvalidStructure" in err and "magic" in err
    app = tmp_path / "a"
    run("new", str(app))
    run("build", str(app))
    raw = bytearray((app / "a.enclave").read_bytes())
    raw[raw.index(b"hello, ")] ^= 1  # a byte of app.py inside the measured pages
    (app / "a.enclave").write_bytes(bytes(raw))
    code, _, err = run("info", str(app / "a.enclave"))
    assert code == 1 and "MRENCLAVE mismatch" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("sign", str(tmp_path / "x.enclave"))[0] == 2  # --key missing
    assert run("build")[0] == 2
    assert run("info", "a", "b")[0] == 2

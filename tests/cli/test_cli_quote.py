"""``enclavekit quote show`` and ``quote verify`` on the vectors: fields, exit codes, JSON."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.cli import main
from enclavekit.cli.quote import describe
from enclavekit.dcap.collateral import Collateral
from enclavekit.dcap.quote import Quote
from enclavekit.errors import QuoteFormatError
from tests.dcap._collateral_sets import cases
from tests.vectors import vector

PHALA_Q = "phala_dcap_qvl/sgx_quote"
PHALA_C = "phala_dcap_qvl/sgx_quote_collateral.json"
PHALA_AT = "2025-07-19T10:01:17Z"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["quote", *args])


def _one_line_error(result: Result, *texts: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for text in texts:
        assert text in lines[0]


def test_show_json_decodes_every_field() -> None:
    result = _run("show", str(vector(PHALA_Q)), "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["header"]["version"] == 3 and view["header"]["qe_vendor_is_intel"]
    body = view["report_body"]
    assert body["mrenclave"] == "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    assert body["isvprodid"] == 0 and body["attributes"]["flags"] == 5
    assert view["qe_report"]["isvsvn"] == 10
    assert view["qe_auth_data"] == bytes(range(32)).hex()
    assert view["certification_data"]["type"] == 5 and len(view["certification_data"]["pem"]) == 3
    assert view["pck"]["sgx_extension"]["fmspc"] == "00a067110000"
    assert view["size"] == 4600 and view["trailing_bytes"] == 0
    assert not view["oe_report_header_stripped"]


def test_show_text_and_oe_report(tmp_path: Path) -> None:
    text = _run("show", str(vector(PHALA_Q)))
    assert text.exit_code == 0
    assert "report_body.mrenclave" in text.stdout and "pck.sgx_extension.pcesvn" in text.stdout
    oe = json.loads(vector("azure_samples_maa/oe_sdk_quotes/enclave.info.release.json")
                    .read_text())
    path = tmp_path / "oe.hex"
    path.write_text(oe["QuoteHex"])
    view = json.loads(_run("show", str(path), "--json").stdout)
    assert view["oe_report_header_stripped"]
    assert view["report_body"]["mrenclave"].upper() == oe["MrEnclaveHex"].upper()


def test_show_qvl_type_1_and_tdx() -> None:
    qvl = json.loads(_run("show", str(vector("intel_qvl_sample_testroot/quote.dat")),
                          "--json").stdout)
    assert qvl["certification_data"]["type"] == 1 and "pck" not in qvl
    tdx = json.loads(_run("show", str(vector("phala_dcap_qvl/tdx_quote")), "--json",
                          "--allow-trailing").stdout)
    assert tdx["header"]["tee"] == "TDX" and tdx["trailing_bytes"] == 70


def test_show_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(vector(PHALA_Q).read_bytes()[:500])
    _one_line_error(_run("show", str(bad)), "QuoteFormatError", "shorter than the minimum")


def test_verify_prints_status_and_exits_0() -> None:
    result = _run("verify", str(vector(PHALA_Q)), "--collateral", str(vector(PHALA_C)),
                  "--at", PHALA_AT)
    assert result.exit_code == 0, result.output
    assert "ConfigurationAndSWHardeningNeeded" in result.stdout
    assert "INTEL-SA-00289, INTEL-SA-00615" in result.stdout


REQUIRED = ("status", "advisory_ids", "mrenclave", "mrsigner", "isvprodid", "isvsvn", "debug",
            "report_data", "fmspc", "tcb_date")


def test_verify_json() -> None:
    result = _run("verify", str(vector(PHALA_Q)), "--collateral", str(vector(PHALA_C)),
                  "--at", "1752919277", "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert set(REQUIRED) <= set(view)
    assert view["status"] == "ConfigurationAndSWHardeningNeeded"
    assert view["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert view["fmspc"] == "00a067110000" and view["debug"] is False


def test_verify_failure_names_the_check() -> None:
    args = ["verify", str(vector(PHALA_Q)), "--collateral", str(vector(PHALA_C)),
            "--at", "2025-07-19T10:01:18Z"]
    _one_line_error(_run(*args), "CollateralExpired", "qe_identity_expired")
    result = _run(*args, "--json")
    assert result.exit_code == 1
    view = json.loads(result.stdout)
    assert view["error"] == "qe_identity_expired" and view["status"] is None


def test_verify_untrusted_root_and_trust_root_option(tmp_path: Path) -> None:
    case = cases()["intel_qvl_sample_testroot"]
    coll = tmp_path / "qvl.json"
    case.collateral.save(coll)
    quote = str(vector("intel_qvl_sample_testroot/quote.dat"))
    refused = _run("verify", quote, "--collateral", str(coll), "--at", "2020-01-01", "--json")
    assert refused.exit_code == 1 and json.loads(refused.stdout)["error"] == "root_untrusted"
    root = str(vector("intel_qvl_sample_testroot/trustedRootCaCert.pem"))
    ok = _run("verify", quote, "--collateral", str(coll), "--at", "2020-01-01T00:00:00",
              "--trust-root", root, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["status"] == "UpToDate"


def test_verify_crl_grace_option(tmp_path: Path) -> None:
    case = cases()["mobilecoin_sgx_2023"]
    coll = tmp_path / "mc.json"
    case.collateral.save(coll)
    args = ["verify", str(vector("mobilecoin_attestation/hw_quote.dat")), "--collateral",
            str(coll), "--at", "2023-07-12T20:48:25Z", "--json"]
    assert json.loads(_run(*args).stdout)["error"] == "crl_expired"
    ok = _run(*args, "--crl-grace-days", "90")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["status"] == "SWHardeningNeeded"


@pytest.mark.parametrize("args, text", [
    (["--at", PHALA_AT], "exactly one of"),
    (["--collateral", "X", "--pccs", "http://127.0.0.1:1", "--at", PHALA_AT], "exactly one"),
    (["--collateral", "C", "--at", "yesterday"], "not an ISO-8601"),
])
def test_verify_usage_errors(args: list[str], text: str) -> None:
    coll = str(vector(PHALA_C))
    args = [coll if a in ("X", "C") else a for a in args]
    result = _run("verify", str(vector(PHALA_Q)), *args)
    assert result.exit_code == 2 and text in result.output


def test_verify_garbled_collateral(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"pck_crl": "00"}')
    _one_line_error(_run("verify", str(vector(PHALA_Q)), "--collateral", str(bad)),
                    "CollateralFormatError", "lacks")
    result = _run("verify", str(vector(PHALA_Q)), "--collateral", str(bad), "--json")
    assert json.loads(result.stdout)["error"] == "collateral_format"


@pytest.fixture()
def pcs_server() -> Iterator[str]:
    coll = Collateral.load(vector(PHALA_C))

    def body(key: str, raw: bytes, sig: bytes) -> bytes:
        return b'{"' + key.encode() + b'":' + raw + b',"signature":"' + sig.hex().encode() + b'"}'

    routes: dict[str, tuple[bytes, dict[str, str]]] = {
        "/sgx/certification/v4/pckcrl": (coll.pck_crl, {
            "SGX-PCK-CRL-Issuer-Chain": urllib.parse.quote(coll.pck_crl_issuer_chain.decode())}),
        "/sgx/certification/v4/tcb": (body("tcbInfo", coll.tcb_info, coll.tcb_info_signature), {
            "TCB-Info-Issuer-Chain": urllib.parse.quote(coll.tcb_info_issuer_chain.decode())}),
        "/sgx/certification/v4/qe/identity": (
            body("enclaveIdentity", coll.qe_identity, coll.qe_identity_signature),
            {"SGX-Enclave-Identity-Issuer-Chain":
             urllib.parse.quote(coll.qe_identity_issuer_chain.decode())}),
        "/sgx/certification/v4/rootcacrl": (coll.root_ca_crl.hex().encode(), {}),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            content, headers = routes.get(path, (b"", {}))
            self.send_response(200 if path in routes else 404)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_verify_with_pccs_url(pcs_server: str) -> None:
    result = _run("verify", str(vector(PHALA_Q)), "--pccs", pcs_server, "--at", PHALA_AT,
                  "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "ConfigurationAndSWHardeningNeeded"


def test_verify_with_unreachable_pccs() -> None:
    result = _run("verify", str(vector(PHALA_Q)), "--pccs", "http://127.0.0.1:9", "--at",
                  PHALA_AT, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "attestation"



_PHALA_BYTES = vector(PHALA_Q).read_bytes()


@given(st.integers(0, len(_PHALA_BYTES) - 1), st.integers(0, 7))
def test_show_of_a_flipped_quote_is_decoded_or_typed(offset: int, bit: int) -> None:
    data = bytearray(_PHALA_BYTES)
    data[offset] ^= 1 << bit
    try:
        quote = Quote.parse(bytes(data), allow_trailing=True)
        json.dumps(describe(quote, oe_header=False, trailing=0))
    except QuoteFormatError:
        pass


def test_show_and_verify_a_chain_wrapped_at_76_columns_with_crlf(tmp_path: Path) -> None:
    """The real quote's chain re-wrapped here (76 columns, CRLF, certificates root first)."""
    import dataclasses

    from enclavekit.dcap.certdata import CertificationData
    from tests.dcap.test_certdata import DERS, QUOTE, wrap

    quote = dataclasses.replace(QUOTE, certification_data=CertificationData(
        5, wrap(DERS[::-1], 76, b"\r\n")))
    path = tmp_path / "q76.bin"
    path.write_bytes(quote.to_bytes())
    view = json.loads(_run("show", str(path), "--json").stdout)
    assert view["pck"]["sgx_extension"]["fmspc"] == "00a067110000"
    assert "SGX PCK Certificate" in view["pck"]["certificates"][0]["subject"]
    assert view["certification_data"]["pem"][0].startswith("-----BEGIN CERTIFICATE-----\r\n")
    result = _run("verify", str(path), "--collateral", str(vector(PHALA_C)), "--at", PHALA_AT)
    assert result.exit_code == 0, result.output
    assert "ConfigurationAndSWHardeningNeeded" in result.stdout


@pytest.mark.parametrize(("offset", "value", "text"), [
    (2, (3).to_bytes(2, "little"), "attestation key type 3 (ECDSA-384-with-P-384)"),
    (4, (0x81).to_bytes(4, "little"), "TEE type 0x81 (TDX)"),
])
def test_verify_other_key_or_tee_type_is_unsupported_quote(
        tmp_path: Path, offset: int, value: bytes, text: str) -> None:
    data = bytearray(vector(PHALA_Q).read_bytes())
    data[offset:offset + len(value)] = value
    path = tmp_path / "q.bin"
    path.write_bytes(bytes(data))
    args = ("verify", str(path), "--collateral", str(vector(PHALA_C)), "--at", PHALA_AT)
    _one_line_error(_run(*args), "unsupported_quote", text)
    view = json.loads(_run(*args, "--json").stdout)
    assert view["error"] == "unsupported_quote" and text in view["detail"]


def test_trailing_bytes_one_rule_for_show_and_verify(tmp_path: Path) -> None:
    """Refused by both by default with the same message; accepted and reported by both with
    --allow-trailing (the verdict is the quote's: the extra bytes are never read)."""
    path = tmp_path / "padded.bin"
    path.write_bytes(vector(PHALA_Q).read_bytes() + bytes(70))
    verify = ("verify", str(path), "--collateral", str(vector(PHALA_C)), "--at", PHALA_AT)
    refusals = [_run("show", str(path)), _run(*verify)]
    for result in refusals:
        _one_line_error(result, "QuoteFormatError: 70 trailing bytes after the signature data")
    assert refusals[0].stderr == refusals[1].stderr
    assert json.loads(_run(*verify, "--json").stdout)["error"] == "quote_format"
    shown = json.loads(_run("show", str(path), "--json", "--allow-trailing").stdout)
    assert shown["trailing_bytes"] == 70 and shown["size"] == 4600
    verified = json.loads(_run(*verify, "--json", "--allow-trailing").stdout)
    assert verified["trailing_bytes"] == 70
    assert verified["status"] == "ConfigurationAndSWHardeningNeeded"
    plain = json.loads(_run("verify", str(vector(PHALA_Q)), "--collateral", str(vector(PHALA_C)),
                            "--at", PHALA_AT, "--json").stdout)
    assert plain["trailing_bytes"] == 0
    assert {k: v for k, v in verified.items() if k != "trailing_bytes"} == \
        {k: v for k, v in plain.items() if k != "trailing_bytes"}


def test_verify_type_1_quote_says_what_it_needs_and_works_with_pck_cert(tmp_path: Path) -> None:
    """Intel's QVL sample quote carries PPID, CPUSVN, PCESVN (type 1), not its PCK chain."""
    import dataclasses

    case = cases()["intel_qvl_sample_testroot"]
    assert case.collateral.pck_certificate_chain is not None
    bare = tmp_path / "c.json"
    dataclasses.replace(case.collateral, pck_certificate_chain=None).save(bare)
    root = tmp_path / "root.pem"
    root.write_bytes(vector("intel_qvl_sample_testroot/trustedRootCaCert.pem").read_bytes())
    chain = tmp_path / "pck.pem"
    chain.write_bytes(case.collateral.pck_certificate_chain)
    args = ("verify", str(vector("intel_qvl_sample_testroot/quote.dat")), "--collateral",
            str(bare), "--trust-root", str(root), "--at", case.at.isoformat())
    _one_line_error(_run(*args), "unsupported_quote", "type 1 (PPID_CLEARTEXT) carries no PCK "
                    "chain", "--pck-cert", "PCCS that serves it by PPID")
    ok = _run(*args, "--pck-cert", str(chain), "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["status"] == case.status
    pccs = _run("verify", str(vector("intel_qvl_sample_testroot/quote.dat")), "--pccs",
                "http://127.0.0.1:9", "--json")  # refused before any request is made
    assert json.loads(pccs.stdout)["error"] == "unsupported_quote"


def test_show_decodes_certification_data_types(tmp_path: Path) -> None:
    import dataclasses

    from enclavekit.dcap.certdata import CertificationData

    qvl = json.loads(_run("show", str(vector("intel_qvl_sample_testroot/quote.dat")),
                          "--json").stdout)["certification_data"]
    assert qvl["type_name"] == "PPID_CLEARTEXT" and len(qvl["ppid"]) == 32
    assert len(qvl["cpusvn"]) == 32 and isinstance(qvl["pcesvn"], int) and qvl["pceid"] is None
    base = Quote.parse(vector(PHALA_Q).read_bytes())
    leaf = base.certification_data.pck_chain()[0].public_bytes(Encoding.DER)
    for cert_type, data, key in ((3, bytes(384) + bytes(16) + bytes(4), "encrypted_ppid"),
                                 (4, leaf, "certificate"), (7, b"manifest", "data")):
        path = tmp_path / f"t{cert_type}.bin"
        path.write_bytes(dataclasses.replace(
            base, certification_data=CertificationData(cert_type, data)).to_bytes())
        view = json.loads(_run("show", str(path), "--json").stdout)["certification_data"]
        assert view["type"] == cert_type and key in view, view
        assert "pck" not in json.loads(_run("show", str(path), "--json").stdout)

"""Collateral: the one-object JSON layout, PCS pieces, fetching from a PCS v4-style service."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from enclavekit.dcap.collateral import Collateral, crl_der, fetch, fetch_for_quote, pck_ca_kind
from enclavekit.dcap.quote import Quote
from enclavekit.dcap.verify import Verifier
from enclavekit.errors import AttestationError, CollateralFormatError, VerificationFailed
from tests.dcap._collateral_sets import cases
from tests.vectors import vector

PHALA = "phala_dcap_qvl/sgx_quote_collateral.json"


def _phala() -> Collateral:
    return Collateral.from_json(vector(PHALA).read_bytes())


def test_dcap_qvl_layout_round_trips() -> None:
    original = json.loads(vector(PHALA).read_text())
    coll = _phala()
    assert coll.to_dict() == original
    assert Collateral.from_json(coll.to_json()) == coll
    assert coll.tcb_info == original["tcb_info"].encode()
    assert len(coll.tcb_info_signature) == 64


def test_save_and_load(tmp_path: Path) -> None:
    coll = _phala()
    coll.save(tmp_path / "c.json")
    assert Collateral.load(tmp_path / "c.json") == coll
    with pytest.raises(CollateralFormatError, match="cannot read"):
        Collateral.load(tmp_path / "missing.json")


def test_digest_is_content_keyed() -> None:
    a, b = _phala(), _phala()
    assert a.digest() == b.digest()
    other = Collateral.from_json(vector("phala_dcap_qvl/sgx_quote_collateral_2023-11.json")
                                 .read_bytes())
    assert other.digest() != a.digest()


def _mutated(**changes: object) -> str:
    obj = json.loads(vector(PHALA).read_text())
    for key, value in changes.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


@pytest.mark.parametrize("text, match", [
    ("", "does not parse"),
    ("[1]", "one object"),
    ("{", "does not parse"),
    (_mutated(pck_crl=None), "lacks pck_crl"),
    (_mutated(tcb_info=5), "tcb_info must be a string"),
    (_mutated(tcb_info_signature="00"), "128 hex"),
    (_mutated(qe_identity_signature="zz" * 64), "not hex"),
    (_mutated(pck_crl="zz"), "neither DER, PEM nor hex"),
    (_mutated(root_ca_crl="3082"), "DER does not parse"),
    (_mutated(tcb_info_issuer_chain="garbage"), "no PEM certificate"),
    (_mutated(tcb_info='{"version":3}'), "missing property"),
    (_mutated(qe_identity="{"), "not JSON"),
])
def test_garbled_collateral_refused(text: str, match: str) -> None:
    with pytest.raises(CollateralFormatError, match=match):
        Collateral.from_json(text)


def test_duplicate_keys_refused() -> None:
    text = vector(PHALA).read_text().replace('"pck_crl"', '"pck_crl": "", "pck_crl"', 1)
    with pytest.raises(CollateralFormatError, match="duplicate key 'pck_crl'"):
        Collateral.from_json(text)


def test_crl_forms() -> None:
    der = vector("mobilecoin_attestation/root_crl.der").read_bytes()
    crl = x509.load_der_x509_crl(der)
    assert crl_der(der) == der
    assert crl_der(der.hex()) == der
    assert crl_der(der.hex().upper().encode() + b"\n") == der
    assert crl_der(crl.public_bytes(Encoding.PEM)) == der
    with pytest.raises(CollateralFormatError, match="PEM does not parse"):
        crl_der(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    with pytest.raises(CollateralFormatError, match="odd-length"):
        crl_der("abc")


def test_pcs_pieces_from_mobilecoin() -> None:
    root = vector("mobilecoin_attestation/root_ca.pem").read_bytes()
    coll = Collateral.from_pcs(
        tcb_info=vector("mobilecoin_attestation/fmspc_00906ED50000_2023_07_12.json").read_bytes(),
        qe_identity=vector("mobilecoin_attestation/qe_identity.json").read_bytes(),
        tcb_info_issuer_chain=vector("mobilecoin_attestation/tcb_signer.pem").read_bytes() + root,
        pck_crl=vector("mobilecoin_attestation/processor_crl.der").read_bytes(),
        root_ca_crl=vector("mobilecoin_attestation/root_crl.der").read_bytes(),
        pck_crl_issuer_chain=vector("mobilecoin_attestation/processor_ca.pem").read_bytes() + root)
    assert coll.qe_identity_issuer_chain == coll.tcb_info_issuer_chain
    assert coll.parse_tcb_info().fmspc.hex() == "00906ed50000"
    assert Collateral.from_json(coll.to_json()) == coll


# --- fetch ------------------------------------------------------------------------------------


def _pcs_app(coll: Collateral, *, hex_root_crl: bool = False, drop: str = "",
             status: int = 200) -> httpx.MockTransport:
    seen: list[str] = []

    def quoted(pem: bytes) -> str:
        return urllib.parse.quote(pem.decode(), safe="")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        path, params = request.url.path, dict(request.url.params)
        if status != 200:
            return httpx.Response(status)
        if path == "/sgx/certification/v4/pckcrl":
            assert params == {"ca": "processor", "encoding": "der"}
            headers = {"SGX-PCK-CRL-Issuer-Chain": quoted(coll.pck_crl_issuer_chain)}
            return httpx.Response(200, content=coll.pck_crl, headers=headers)
        if path == "/sgx/certification/v4/tcb":
            assert params == {"fmspc": "00A067110000"}
            body = b'{"tcbInfo":' + coll.tcb_info + b',"signature":"' + \
                coll.tcb_info_signature.hex().encode() + b'"}'
            headers = {"TCB-Info-Issuer-Chain": quoted(coll.tcb_info_issuer_chain)}
            return httpx.Response(200, content=body, headers=headers)
        if path == "/sgx/certification/v4/qe/identity":
            body = b'{"enclaveIdentity":' + coll.qe_identity + b',"signature":"' + \
                coll.qe_identity_signature.hex().encode() + b'"}'
            headers = {"SGX-Enclave-Identity-Issuer-Chain":
                       quoted(coll.qe_identity_issuer_chain)}
            if drop == "qe":
                headers = {}
            return httpx.Response(200, content=body, headers=headers)
        if path == "/sgx/certification/v4/rootcacrl":
            body = coll.root_ca_crl.hex().encode() if hex_root_crl else coll.root_ca_crl
            return httpx.Response(200, content=body)
        return httpx.Response(404)

    transport = httpx.MockTransport(handler)
    transport.seen = seen  # type: ignore[attr-defined]
    return transport


@pytest.mark.parametrize("hex_root_crl", [False, True])
def test_fetch_from_a_pcs_v4_service(hex_root_crl: bool) -> None:
    coll = _phala()
    transport = _pcs_app(coll, hex_root_crl=hex_root_crl)
    with httpx.Client(transport=transport) as client:
        fetched = fetch("http://pcs.test/", "00a067110000", "processor", client=client)
    assert fetched == coll
    assert len(transport.seen) == 4  # type: ignore[attr-defined]


def test_fetch_for_quote_reads_fmspc_and_ca() -> None:
    quote = Quote.parse(vector("phala_dcap_qvl/sgx_quote").read_bytes())
    assert pck_ca_kind(quote) == (bytes.fromhex("00a067110000"), "processor")
    platform = Quote.parse(vector("automata_onchain_v3/sgx_quote_v3.bin").read_bytes())
    assert pck_ca_kind(platform)[1] == "platform"
    with httpx.Client(transport=_pcs_app(_phala())) as client:
        assert fetch_for_quote("http://pcs.test", quote, client=client) == _phala()


def test_fetch_errors_are_typed() -> None:
    with httpx.Client(transport=_pcs_app(_phala(), status=404)) as client, \
            pytest.raises(AttestationError, match="HTTP 404"):
        fetch("http://pcs.test", "00a067110000", client=client)
    with httpx.Client(transport=_pcs_app(_phala(), drop="qe")) as client, \
            pytest.raises(CollateralFormatError, match="SGX-Enclave-Identity-Issuer-Chain"):
        fetch("http://pcs.test", "00a067110000", client=client)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client, \
            pytest.raises(AttestationError, match="connection refused"):
        fetch("http://pcs.test", "00a067110000", client=client)
    with pytest.raises(CollateralFormatError, match="12 hex"):
        fetch("http://pcs.test", "00a0", client=None)
    with pytest.raises(CollateralFormatError, match="processor"):
        fetch("http://pcs.test", "00a067110000", "both")


# --- mutated collateral: typed errors only, by the check that covers each piece -------------


_CASE = cases()["phala_sgx_2025"]
_VERIFIER = Verifier()
_VERIFIER.verify(_CASE.quote, _CASE.collateral, at=_CASE.at)
_EXPECTED = {
    "root_ca_crl": {"format", "crl"},
    "pck_crl": {"format", "crl"},
    "tcb_info": {"format", "tcb_info_signature"},
    "tcb_info_signature": {"tcb_info_signature"},
    "qe_identity": {"format", "qe_identity_signature"},
    "qe_identity_signature": {"qe_identity_signature"},
    "tcb_info_issuer_chain": {"format", "tcb_info_chain", "root_untrusted"},
    "qe_identity_issuer_chain": {"format", "qe_identity_chain", "root_untrusted"},
}


@given(st.sampled_from(sorted(_EXPECTED)), st.data())
def test_flipped_collateral_piece_refused_by_its_check(field: str, data: st.DataObject) -> None:
    value = getattr(_CASE.collateral, field)
    offset = data.draw(st.integers(0, len(value) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(value)
    flipped[offset] ^= 1 << bit
    coll = dataclasses.replace(_CASE.collateral, **{field: bytes(flipped)})
    try:
        _VERIFIER.verify(_CASE.quote, coll, at=_CASE.at)
    except CollateralFormatError:
        outcome = "format"
    except VerificationFailed as exc:
        outcome = exc.check
    else:
        outcome = "accepted"
    if outcome == "accepted" and field.endswith("chain"):
        # PEM line breaks and the like: only harmless if the certificates are unchanged
        from enclavekit.dcap.roots import load_pem_chain

        assert load_pem_chain(bytes(flipped)) == load_pem_chain(value)
        return
    assert outcome in _EXPECTED[field], (field, offset, bit, outcome)


@given(st.text(max_size=400))
def test_random_json_text_is_a_typed_error(text: str) -> None:
    with pytest.raises(CollateralFormatError):
        Collateral.from_json(text)


def test_crl_with_an_invalid_version_is_a_format_error() -> None:
    """pyca raises InvalidVersion (not a ValueError) for a CRL version outside v1..v2."""
    der = bytearray(vector("mobilecoin_attestation/root_crl.der").read_bytes())
    assert der[7:10] == b"\x02\x01\x01"  # tbsCertList: version INTEGER 1 (v2)
    der[9] = 5
    with pytest.raises(CollateralFormatError, match="does not parse"):
        crl_der(bytes(der))
    coll = dataclasses.replace(_CASE.collateral, root_ca_crl=bytes(der))
    with pytest.raises(CollateralFormatError, match="does not parse"):
        _VERIFIER.verify(_CASE.quote, coll, at=_CASE.at)

"""The PCE and QE on a real device: quote structure, every binding, and their refusals."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.dcap import arch
from enclavekit.dcap.ecdsa import public_key_from_raw, public_key_to_raw, verify_raw
from enclavekit.dcap.pckext import PckExtension
from enclavekit.dcap.quote import INTEL_QE_VENDOR_ID, Quote
from enclavekit.errors import QuotingError
from enclavekit.host import VM, Enclave, EnclaveFile, build
from enclavekit.host.quoting import QUOTE_OCALLS, Quoter, arch_image, quoter_for
from enclavekit.sgx.consts import AttributeFlags
from enclavekit.sgx.keys import egetkey
from enclavekit.sgx.signing import SigningKey
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

APP = '''
from enclavekit.enclave import ecall, report, target_info


@ecall
def make_report(target: bytes, data: bytes) -> bytes:
    return report(target, data)


@ecall
def own_target() -> bytes:
    return target_info()
'''


def _app(root: Path, name: str, *, product_id: int = 0, debug: bool = False) -> Path:
    app = root / name
    app.mkdir()
    (app / "enclave.toml").write_text(
        f'name = "{name}"\nentry = "app.py"\ndebug = {str(debug).lower()}\n'
        f'product_id = {product_id}\nheap_size = "256K"\nstack_size = "64K"\nthreads = 1\n')
    (app / "app.py").write_text(APP)
    return app


@dataclass
class Setup:
    vm: VM
    store: PlatformStore
    prov: Provisioning
    quoter: Quoter
    app: Enclave
    root: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("quoting")
    image = build(_app(tmp, "reporter")).sign(session_signing_key())
    with device_server(tmp, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm, vm.load(image) as app:
        yield Setup(vm, store, Provisioning.open(store.root), quoter_for(vm), app, tmp)


def _quote(s: Setup, data: bytes = b"nonce", version: int = 3) -> tuple[bytes, Quote]:
    report = s.app.ecalls.make_report(s.quoter.target_info(), data)
    raw = s.quoter.quote(report, version=version)
    return report, Quote.parse(raw)


def test_quote_v3_structure_and_every_binding(setup: Setup) -> None:
    report, q = _quote(setup)
    ident = setup.store.load("testvm")
    h = q.header
    assert (h.version, h.att_key_type, h.tee_type) == (3, 2, 0)
    assert (h.qe_svn, h.pce_svn) == (arch.QE_ISVSVN, ident.pcesvn)
    assert h.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert h.user_data[16:] == bytes(4) and any(h.user_data[:16])
    assert q.report_body == report[:384]
    assert q.body.reportdata == b"nonce".ljust(64, b"\0")
    # the attestation key is bound in the QE report, which the PCK key signed
    assert q.qe_auth_data == arch.QE_AUTH_DATA
    binding = hashlib.sha256(q.attestation_key + q.qe_auth_data).digest()
    assert q.qe_body.reportdata == binding + bytes(32)
    chain = q.certification_data.pck_chain()
    assert q.certification_data.type == 5
    assert q.certification_data.data == setup.prov.pck_chain_pem("testvm")
    leaf = chain[0]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert verify_raw(leaf.public_key(), q.qe_report_signature, q.qe_report)  # type: ignore[arg-type]
    assert verify_raw(public_key_from_raw(q.attestation_key), q.signature, q.signed_bytes())
    assert q.signed_bytes() == q.to_bytes()[:432]
    # the chain leads to this installation's emulated root
    leaf.verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(setup.prov.root_certificate)
    assert chain[2] == setup.prov.root_certificate
    # the QE is a production architectural enclave with PROVISIONKEY
    qe = q.qe_body
    assert qe.mrsigner == setup.prov.arch_signer().mrsigner()
    assert (qe.isvprodid, qe.isvsvn) == (arch.QE_ISVPRODID, arch.QE_ISVSVN)
    assert qe.attributes.flags & AttributeFlags.PROVISIONKEY
    assert not qe.attributes.flags & AttributeFlags.DEBUG


def test_quote_v4_wraps_the_chain_in_type_6(setup: Setup) -> None:
    report, q = _quote(setup, b"v4", version=4)
    raw = q.to_bytes()
    assert q.version == 4 and q.report_body == report[:384]
    assert int.from_bytes(raw[436 + 128 : 436 + 130], "little") == 6
    assert q.certification_data.type == 5
    assert verify_raw(public_key_from_raw(q.attestation_key), q.signature, q.signed_bytes())
    with pytest.raises(QuotingError, match="version 5"):
        setup.quoter.quote(report, version=5)


def test_each_quote_is_fresh_but_the_attestation_key_is_stable(setup: Setup) -> None:
    _, a = _quote(setup, b"one")
    _, b = _quote(setup, b"two")
    assert a.attestation_key == b.attestation_key and a.qe_report == b.qe_report
    assert a.body.reportdata != b.body.reportdata and a.signature != b.signature


def test_qe_refuses_a_report_not_targeted_at_it(setup: Setup) -> None:
    to_itself = setup.app.ecalls.make_report(setup.app.ecalls.own_target(), b"x")
    with pytest.raises(QuotingError, match="not made for this quoting enclave"):
        setup.quoter.quote(to_itself)
    pce_target = setup.quoter.pce.ecalls.target()
    with pytest.raises(QuotingError, match="not made for this quoting enclave"):
        setup.quoter.quote(setup.app.ecalls.make_report(pce_target, b"x"))


@pytest.mark.parametrize("offset", [0, 64, 320, 383, 384, 431])
def test_qe_refuses_a_forged_or_altered_report(setup: Setup, offset: int) -> None:
    report = bytearray(setup.app.ecalls.make_report(setup.quoter.target_info(), b"x"))
    report[offset] ^= 1
    with pytest.raises(QuotingError, match="MAC does not verify"):
        setup.quoter.quote(bytes(report))


def test_pce_derives_the_certified_pck_key(setup: Setup) -> None:
    leaf = setup.prov.pck_certificate("testvm")
    raw = setup.quoter.pce.ecalls.pck_public_key()
    assert raw == public_key_to_raw(leaf.public_key())  # type: ignore[arg-type]


def test_pce_refuses_a_report_from_another_signer(setup: Setup) -> None:
    pce = setup.quoter.pce
    report = setup.app.ecalls.make_report(pce.ecalls.target(), b"")
    with pytest.raises(QuotingError, match=r"MRSIGNER .* is not the architectural signer"):
        pce.ecalls.certify(report)
    with pytest.raises(QuotingError, match="not made for this PCE"):
        pce.ecalls.certify(setup.app.ecalls.make_report(setup.quoter.target_info(), b""))


@pytest.mark.parametrize("product_id, debug, message", [
    (arch.PCE_ISVPRODID, False, "ISVPRODID 3 is not the quoting enclave's"),
    (arch.QE_ISVPRODID, True, "DEBUG build"),
])
def test_pce_refuses_arch_signed_enclaves_that_are_not_a_production_qe(
        setup: Setup, product_id: int, debug: bool, message: str) -> None:
    """Even the architectural signer's own enclaves: only a production QE is certified."""
    app = _app(setup.root, f"impostor{product_id}{debug}", product_id=product_id, debug=debug)
    image = build(app).sign(setup.prov.arch_signer())
    pce = setup.quoter.pce
    with setup.vm.load(image) as impostor:
        report = impostor.ecalls.make_report(pce.ecalls.target(), b"\x01" * 32)
        with pytest.raises(QuotingError, match=message):
            pce.ecalls.certify(report)


def test_a_rogue_provisioning_enclave_cannot_derive_the_pck_key(setup: Setup) -> None:
    """PROVISION keys bind MRSIGNER: an enclave of another signer with PROVISIONKEY and the
    PCE's product id and SVN gets another key, so it cannot sign as the platform's PCK."""
    ident = setup.store.load("testvm")
    rogue = arch.pce_identity(SigningKey.generate().mrsigner(), ident.pcesvn)
    key = egetkey(ident.secrets, ident.cpusvn, rogue,
                  arch.pck_key_request(ident.cpusvn, ident.pcesvn))
    leaf_key = setup.prov.pck_certificate("testvm").public_key()
    assert arch.pck_private_key(key).public_key() != leaf_key


def test_qe_refuses_another_platforms_chain(setup: Setup, tmp_path: Path) -> None:
    """The host cannot make VM A's quote carry VM B's PCK: the QE checks the leaf key."""
    setup.store.create("other", "DC1s_v2")
    other_chain = setup.prov.pck_chain_pem("other")
    report = setup.app.ecalls.make_report(setup.quoter.target_info(), b"x")
    qe = setup.quoter.qe
    with pytest.raises(QuotingError, match="did not sign this QE's REPORT"):
        qe.ecalls.quote(report, other_chain, 3)
    with pytest.raises(QuotingError, match="not PEM certificates"):
        qe.ecalls.quote(report, b"garbage", 3)
    # and the honest path still works afterwards
    q = Quote.parse(setup.quoter.quote(report))
    other_leaf = x509.load_pem_x509_certificates(other_chain)[0]
    assert q.certification_data.pck_chain()[0] != other_leaf
    assert PckExtension.from_certificate(q.certification_data.pck_chain()[0]).ppid == \
        setup.store.load("testvm").ppid


def test_qe_certification_steps_are_checked(setup: Setup) -> None:
    qe = setup.quoter.qe
    with pytest.raises(QuotingError, match="64 bytes"):
        qe.ecalls.install(b"short", 1)


def test_arch_images_are_cached_and_signed_with_provisionkey(setup: Setup) -> None:
    signer = setup.prov.arch_signer()
    cache = setup.prov.dir / "arch"
    first = arch_image("pce", 13, signer, cache)
    assert len(list(cache.glob("pce-13-*.enclave"))) == 1
    again = arch_image("pce", 13, signer, cache)
    assert again.to_bytes() == first.to_bytes()
    sig = first.sigstruct
    assert sig is not None
    assert sig.attributes.flags & AttributeFlags.PROVISIONKEY
    assert not sig.attributes.flags & AttributeFlags.DEBUG
    assert sig.attributemask.flags & AttributeFlags.DEBUG  # a debug launch fails EINIT
    assert (sig.isvprodid, sig.isvsvn) == (arch.PCE_ISVPRODID, 13)
    other = arch_image("pce", 14, signer, cache)
    assert other.sigstruct is not None and other.sigstruct.isvsvn == 14
    assert other.mrenclave != first.mrenclave  # the measured manifest carries the ISVSVN
    for path in cache.glob("*.enclave"):  # a corrupt cache entry is rebuilt
        path.write_bytes(b"junk")
    assert arch_image("pce", 13, signer, cache).mrsigner == signer.mrsigner()
    assert EnclaveFile.load(next(cache.glob("pce-13-*.enclave"))).mrsigner == signer.mrsigner()


def test_builtin_ocall_signatures_match_the_enclave_side() -> None:
    from enclavekit.enclave.quote import QUOTE_OCALLS as ENCLAVE_SIDE

    assert set(QUOTE_OCALLS) == set(ENCLAVE_SIDE)
    for name, sig in QUOTE_OCALLS.items():
        theirs = ENCLAVE_SIDE[name]
        assert [(p.name, p.annotation) for p in sig.parameters] == \
            [(p.name, p.annotation) for p in theirs.parameters]
        assert sig.result == theirs.result


def test_vm_restart_reloads_the_architectural_enclaves(tmp_path: Path) -> None:
    image = build(_app(tmp_path, "reporter")).sign(session_signing_key())
    with device_server(tmp_path, fake=False) as (_, path, store), \
            VM("testvm", path, store=store) as vm:
        quoter = quoter_for(vm)
        with vm.load(image) as app:
            quoter.quote(app.ecalls.make_report(quoter.target_info(), b"a"))
        assert quoter.loads == 1
        assert vm.restart() >= 2  # the PCE and QE lost power
        with vm.load(image) as app:
            q = Quote.parse(quoter.quote(app.ecalls.make_report(quoter.target_info(), b"b")))
        assert quoter.loads == 2
        assert q.body.reportdata[:1] == b"b"


@pytest.mark.parametrize("version", [3, 4])
def test_quotes_verify_with_the_collateral_service_and_only_under_the_emulated_root(
        setup: Setup, version: int) -> None:
    """DCAP verification end to end in-process (the multi-process one is
    tests/attest/test_remote_e2e.py); QV-12 both ways for our quotes."""
    from enclavekit.attest.pccs.operator import Operator
    from enclavekit.dcap.collateral import Collateral
    from enclavekit.dcap.policy import AppraisalPolicy
    from enclavekit.dcap.roots import intel_sgx_root_ca
    from enclavekit.dcap.verify import verify_quote
    from enclavekit.errors import CertificateChainError, VerificationFailed

    _, q = _quote(setup, b"remote nonce", version=version)
    collateral = Collateral.from_json(json.dumps(Operator(setup.store.root).collateral("testvm")))
    result = verify_quote(q.to_bytes(), collateral, trusted_roots=[setup.prov.root_certificate])
    # a VM a host user created is a development platform: its quotes say so
    assert result.status == "ConfigurationNeeded" and result.advisory_ids == ("EK-DEV-0001",)
    with pytest.raises(VerificationFailed, match="tcb_status"):  # the default appraisal
        AppraisalPolicy().check(result)
    allowing = AppraisalPolicy.build(allowed_statuses=["UpToDate", "ConfigurationNeeded"],
                                     allowed_advisory_ids=["EK-DEV-0001"])
    assert allowing.check(result) is result
    with pytest.raises(VerificationFailed, match="advisories not allowed: EK-DEV-0001"):
        AppraisalPolicy.build(allowed_statuses=["ConfigurationNeeded"]).check(result)
    assert result.mrenclave == setup.app.mrenclave and result.mrsigner == setup.app.mrsigner
    assert result.report_data == b"remote nonce".ljust(64, b"\0")
    assert not result.debug
    assert result.pck_serial == setup.prov.pck_certificate("testvm").serial_number
    with pytest.raises(CertificateChainError):  # pinned to Intel's root: never an emulated quote
        verify_quote(q.to_bytes(), collateral)
    with pytest.raises(CertificateChainError):
        verify_quote(q.to_bytes(), collateral, trusted_roots=[intel_sgx_root_ca()])


def test_demo_app_key_transfer_by_quote_and_its_refusals(setup: Setup) -> None:
    """examples/joint_stats's direct key transfer by quote (``quote_for`` / ``receive_key``;
    the demo now releases keys through the key service instead): an owner's nonce and the
    enclave's key are bound in the quote; a stale nonce, swapped or replayed wrapped keys and a
    second key for an owner are refused."""
    import os

    from enclavekit.attest.pccs.operator import Operator
    from enclavekit.dcap.collateral import Collateral
    from enclavekit.errors import EcallError, VerificationFailed
    from enclavekit.jointstats.owner import RemoteVerifier, quote_binding, wrap_for

    examples = Path(__file__).resolve().parents[2] / "examples"
    image = build(examples / "joint_stats").sign(session_signing_key())
    collateral = Collateral.from_json(json.dumps(Operator(setup.store.root).collateral("testvm")))
    verifier = RemoteVerifier(setup.prov.root_certificate, collateral, ("EK-DEV-0001",))
    strict = RemoteVerifier(setup.prov.root_certificate, collateral)
    assert image.mrsigner is not None
    identity = (image.mrenclave, image.mrsigner)
    keys = {owner: os.urandom(32) for owner in ("alice", "bob")}
    with setup.vm.load(image) as compute:
        offers = {}
        for owner in keys:
            nonce = os.urandom(32)
            answer = compute.ecalls.quote_for(owner, nonce)
            quote, public = answer[:-32], answer[-32:]
            with pytest.raises(VerificationFailed, match="tcb_status"):  # a development VM
                strict.check(quote, *identity, quote_binding(owner, public, nonce))
            result = verifier.check(quote, *identity, quote_binding(owner, public, nonce))
            assert result.status == "ConfigurationNeeded" and result.mrenclave == image.mrenclave
            with pytest.raises(VerificationFailed, match="report_data"):  # a stale nonce
                verifier.check(quote, *identity, quote_binding(owner, public, os.urandom(32)))
            with pytest.raises(VerificationFailed, match="report_data"):  # the host's key
                verifier.check(quote, *identity, quote_binding(owner, os.urandom(32), nonce))
            offers[owner] = wrap_for(owner, keys[owner], public)
        with pytest.raises(EcallError, match="authentication failed"):  # swapped by the host
            compute.ecalls.receive_key("alice", *offers["bob"])
        with pytest.raises(EcallError, match="no quote was made for 'alice'"):  # used once
            compute.ecalls.receive_key("alice", *offers["alice"])
        assert compute.ecalls.receive_key("bob", *offers["bob"]) == ["bob"]
        fresh = compute.ecalls.quote_for("bob", os.urandom(32))
        with pytest.raises(EcallError, match="bob already gave its key"):
            compute.ecalls.receive_key("bob", *wrap_for("bob", os.urandom(32), fresh[-32:]))


def test_concurrent_quotes_beyond_the_qe_tcs_count_all_succeed(setup: Setup) -> None:
    """More threads than the QE has TCS (the Quoter admits at most that many at once): every
    quote succeeds and carries its own REPORT body."""
    from concurrent.futures import ThreadPoolExecutor

    from enclavekit.host.quoting import QE_THREADS

    manifest = (Path(__file__).resolve().parents[2] / "src" / "enclavekit" / "enclave" / "arch"
                / "qe" / "enclave.toml").read_text()
    assert f"threads = {QE_THREADS}\n" in manifest
    target = setup.quoter.target_info()
    reports = [setup.app.ecalls.make_report(target, bytes([i])) for i in range(QE_THREADS * 3)]
    with ThreadPoolExecutor(QE_THREADS * 3) as pool:
        quotes = list(pool.map(setup.quoter.quote, reports))
    assert [Quote.parse(q).report_body for q in quotes] == [r[:384] for r in reports]


@pytest.fixture(scope="module")
def verified(setup: Setup) -> tuple[bytes, Any, Any]:
    """An emulated quote, its collateral and a warmed cached verifier trusting the emulated root."""
    from enclavekit.attest.pccs.operator import Operator
    from enclavekit.dcap.collateral import Collateral
    from enclavekit.dcap.verify import Verifier

    _, q = _quote(setup, b"flip me")
    collateral = Collateral.from_json(json.dumps(Operator(setup.store.root).collateral("testvm")))
    verifier = Verifier([setup.prov.root_certificate])
    assert verifier.verify(q.to_bytes(), collateral).status == "ConfigurationNeeded"
    return q.to_bytes(), collateral, verifier


def _expected_checks(offset: int, auth_end: int) -> set[str]:
    if offset < 8 or 432 <= offset < 436 or offset in (1012, 1013) \
            or auth_end <= offset < auth_end + 6:
        return {"format", "unsupported_quote"}  # versions, types and lengths: the parser
    if 12 <= offset < 28:
        return {"unsupported_quote"}  # QE vendor id
    if offset < 500:
        return {"quote_signature"}  # header, ISV report body, quote signature
    if offset < 564 or 1014 <= offset < auth_end:
        return {"qe_report_data"}  # attestation key, QE auth data: the binding
    if offset < 1012:
        return {"qe_report_signature"}  # QE report and its PCK signature
    return {"format", "pck_chain", "root_untrusted", "pck_extension"}  # the PEM chain


@settings(max_examples=1000, deadline=None)
@given(bit=st.integers(0, 8 * 4500 - 1))
def test_any_bit_flip_of_an_emulated_quote_is_refused_by_its_check(
        verified: tuple[bytes, Any, Any], bit: int) -> None:
    """The property the verifier has on Intel's quotes holds on the QE's own quotes: every
    single-bit flip is refused, by the check covering the flipped field (1,000 cases)."""
    from enclavekit.errors import QuoteFormatError, VerificationFailed

    quote, collateral, verifier = verified
    offset = bit // 8 % len(quote)
    data = bytearray(quote)
    data[offset] ^= 1 << (bit % 8)
    try:
        verifier.verify(bytes(data), collateral)
        outcome = "accepted"
    except QuoteFormatError:
        outcome = "format"
    except VerificationFailed as exc:
        outcome = exc.check
    auth_end = 1014 + int.from_bytes(quote[1012:1014], "little")
    assert outcome in _expected_checks(offset, auth_end), (offset, outcome)

"""Published collateral: Intel's shapes and field order, signatures over the exact text, CRLs
with AKI and CRL Number, validity windows that are re-published and never extended."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from enclavekit.attest.pccs.publish import (
    QE_ATTRIBUTES,
    QE_ATTRIBUTES_MASK,
    Publication,
    Publisher,
    publish,
)
from enclavekit.attest.pccs.state import CollateralState, StateStore
from enclavekit.dcap.arch import ARCH_ATTRIBUTES, ARCH_XFRM, QE_ISVPRODID
from enclavekit.errors import ProvisioningError
from enclavekit.sgx.consts import AttributeFlags
from enclavekit.vm.devmode import PLATFORM_FMSPC
from enclavekit.vm.platform import EMULATED_FMSPC
from enclavekit.vm.provisioning import Provisioning
from tests.vectors import vector

from ._pccs import T0, Clock, signed_by

FMSPC = EMULATED_FMSPC.hex().upper()


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pccs-pki")
    Provisioning.open(path)
    return path


@pytest.fixture(scope="module")
def authority(pki_dir: Path) -> Provisioning:
    return Provisioning.open(pki_dir)


@pytest.fixture
def data_dir(pki_dir: Path, tmp_path: Path) -> Path:
    """A fresh data directory sharing the module's PKI (copying it is much faster than RSA)."""
    import shutil

    shutil.copytree(pki_dir / "pki", tmp_path / "pki")
    return tmp_path


@pytest.fixture(scope="module")
def pub(authority: Provisioning) -> Publication:
    return publish(CollateralState.initial(T0).with_next_crl_number(), authority, T0)


def _intel(name: str) -> str:
    doc = json.loads(vector("phala_dcap_qvl/sgx_quote_collateral.json").read_text())
    return str(doc[name])


def _key_order(doc: object) -> object:
    """The nested key order of a JSON document (lists reduced to their first element)."""
    if isinstance(doc, dict):
        return [(k, _key_order(v)) for k, v in doc.items()]
    if isinstance(doc, list):
        return [_key_order(doc[0])] if doc else []
    return None


@pytest.mark.parametrize("fmspc", [FMSPC, PLATFORM_FMSPC.hex().upper()])
def test_tcb_info_has_intels_fields_in_intels_order(pub: Publication, fmspc: str) -> None:
    text = pub.tcb_info[fmspc].text
    ours, intel = json.loads(text), json.loads(_intel("tcb_info"))
    level = intel["tcbLevels"][0]
    assert "advisoryIDs" in level
    if fmspc != FMSPC:  # the platform-mode FMSPC's UpToDate level has no advisories
        level = {k: v for k, v in level.items() if k != "advisoryIDs"}
    assert _key_order(ours) == _key_order({**intel, "tcbLevels": [level]})
    assert text == json.dumps(ours, separators=(",", ":"))  # compact, as Intel serves it
    assert (ours["id"], ours["version"], ours["tcbType"], ours["fmspc"], ours["pceId"]) == (
        "SGX", 3, 0, fmspc, "0000")
    assert (ours["issueDate"], ours["nextUpdate"]) == ("2026-03-01T12:00:00Z",
                                                       "2026-03-31T12:00:00Z")
    (level,) = ours["tcbLevels"]
    svns = [c["svn"] for c in level["tcb"]["sgxtcbcomponents"]]
    assert svns == [7, 9, 3, 3, 255, 255, 1] + [0] * 9
    if fmspc == FMSPC:
        assert (level["tcbStatus"], level["advisoryIDs"]) == ("ConfigurationNeeded",
                                                              ["EK-DEV-0001"])
    else:
        assert level["tcbStatus"] == "UpToDate" and "advisoryIDs" not in level


def test_a_development_fmspc_is_published_configuration_needed_with_ek_dev_0001(
        pub: Publication) -> None:
    dev = json.loads(pub.tcb_info[FMSPC].text)["tcbLevels"]
    assert [(lv["tcbStatus"], lv["advisoryIDs"]) for lv in dev] == [
        ("ConfigurationNeeded", ["EK-DEV-0001"])]
    platform = json.loads(pub.tcb_info[PLATFORM_FMSPC.hex().upper()].text)["tcbLevels"]
    assert [(lv["tcbStatus"], "advisoryIDs" in lv) for lv in platform] == [("UpToDate", False)]
    # the state keeps what the operator decided; only the publication adds the mark
    assert CollateralState.initial(T0).levels(EMULATED_FMSPC)[0].status == "UpToDate"


def test_a_recovery_on_a_development_fmspc_keeps_the_mark_and_adds_its_advisory() -> None:
    state = CollateralState.initial(T0).with_recovery(
        EMULATED_FMSPC, tuple([8, 9, 3, 3, 255, 255, 1, 0] + [0] * 8), 13, "INTEL-SA-00999",
        "2026-03-02T00:00:00Z")
    marked = [(lv.status, lv.advisory_ids) for lv in state.published_levels(FMSPC)]
    assert marked == [("ConfigurationNeeded", ("EK-DEV-0001",)),
                      ("OutOfDateConfigurationNeeded", ("EK-DEV-0001", "INTEL-SA-00999"))]


def test_qe_identity_matches_intels_shape_and_the_emulated_qe(pub: Publication,
                                                              pki_dir: Path) -> None:
    text = pub.qe_identity.text
    ours, intel = json.loads(text), json.loads(_intel("qe_identity"))
    assert _key_order(ours) == _key_order({**intel, "tcbLevels": intel["tcbLevels"][:1]})
    assert text == json.dumps(ours, separators=(",", ":"))
    # The same required attributes and masks as Intel's QE identity...
    for name in ("miscselect", "miscselectMask", "attributes", "attributesMask"):
        assert ours[name] == intel[name], name
    assert ours["mrsigner"] == Provisioning.open(pki_dir).arch_signer().mrsigner().hex().upper()
    assert ours["isvprodid"] == QE_ISVPRODID
    # ...which the emulated QE's REPORT satisfies, and a DEBUG QE would not
    report_attrs = ARCH_ATTRIBUTES.to_bytes(8, "little") + ARCH_XFRM.to_bytes(8, "little")
    masked = bytes(a & m for a, m in zip(report_attrs, QE_ATTRIBUTES_MASK, strict=True))
    assert masked == QE_ATTRIBUTES
    debug = (ARCH_ATTRIBUTES | AttributeFlags.DEBUG).to_bytes(8, "little") + bytes(8)
    assert bytes(a & m for a, m in zip(debug, QE_ATTRIBUTES_MASK, strict=True)) != QE_ATTRIBUTES


def test_signatures_cover_the_exact_text(pub: Publication, authority: Provisioning) -> None:
    signer = authority.tcb_signing_certificate
    for signed in (pub.tcb_info[FMSPC], pub.qe_identity):
        assert signed_by(signer, signed.signature, signed.text)
        # the same object re-serialised with whitespace or another key order is not signed
        doc = json.loads(signed.text)
        assert not signed_by(signer, signed.signature, json.dumps(doc))
        assert not signed_by(signer, signed.signature,
                             json.dumps(dict(reversed(doc.items())), separators=(",", ":")))
        assert not signed_by(authority.root_certificate, signed.signature, signed.text)


@pytest.mark.parametrize("which", ["pck", "root"])
def test_crls_carry_aki_and_crl_number_and_verify_with_their_issuer(
        pub: Publication, authority: Provisioning, which: str) -> None:
    der, issuer = ((pub.pck_crl, authority.pck_ca_certificate) if which == "pck"
                   else (pub.root_ca_crl, authority.root_certificate))
    crl = x509.load_der_x509_crl(der)
    assert crl.issuer == issuer.subject
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    other = authority.root_certificate if which == "pck" else authority.pck_ca_certificate
    assert not crl.is_signature_valid(other.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert (crl.last_update_utc, crl.next_update_utc) == (pub.issue_date, pub.next_update)


def test_issuer_chains_are_signer_then_root(pub: Publication, authority: Provisioning) -> None:
    pck = x509.load_pem_x509_certificates(pub.pck_crl_issuer_chain.encode())
    tcb = x509.load_pem_x509_certificates(pub.tcb_info_issuer_chain.encode())
    assert pck == [authority.pck_ca_certificate, authority.root_certificate]
    assert tcb == [authority.tcb_signing_certificate, authority.root_certificate]


def test_collateral_has_the_one_object_layout(pub: Publication) -> None:
    doc = pub.collateral(FMSPC.lower())
    intel = json.loads(vector("phala_dcap_qvl/sgx_quote_collateral.json").read_text())
    assert list(doc) == list(intel)
    assert doc["tcb_info"] == pub.tcb_info[FMSPC].text
    assert bytes.fromhex(doc["pck_crl"]) == pub.pck_crl
    with pytest.raises(ProvisioningError, match="no TCB info for FMSPC 00A067110000"):
        pub.collateral("00a067110000")


def test_revoked_serials_are_in_the_pck_crl(authority: Provisioning) -> None:
    state = CollateralState.initial(T0).with_revoked([12345, 2**150], "a", "2026-02-01T00:00:00Z")
    crl = x509.load_der_x509_crl(publish(state, authority, T0).pck_crl)
    assert {r.serial_number for r in crl} == {12345, 2**150}
    entry = crl.get_revoked_certificate_by_serial_number(12345)
    assert entry is not None
    assert entry.revocation_date_utc.isoformat() == "2026-02-01T00:00:00+00:00"


def test_publication_round_trips_through_its_file(pub: Publication) -> None:
    assert Publication.from_json(pub.to_json()) == pub
    with pytest.raises(ProvisioningError, match="corrupt published-collateral"):
        Publication.from_json(b'{"format": "enclavekit-pccs-published/2"}')


def test_a_publication_signed_before_the_development_mark_is_signed_again(
        data_dir: Path, authority: Provisioning) -> None:
    first = Publisher(data_dir, authority, Clock()).current()
    old = json.loads(first.to_json())
    old["format"] = "enclavekit-pccs-published/1"  # as an earlier release wrote it
    (data_dir / "pki" / "pccs-published.json").write_text(json.dumps(old))
    again = Publisher(data_dir, authority, Clock()).current()
    assert again.crl_number == first.crl_number + 1  # a new publication, not the old file
    level = json.loads(again.tcb_info[FMSPC].text)["tcbLevels"][0]
    assert level["advisoryIDs"] == ["EK-DEV-0001"]


# --------------------------------------------------------------------------- the publisher


def test_publisher_serves_one_publication_for_its_whole_window(data_dir: Path) -> None:
    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    first = publisher.current()
    assert first.issue_date == T0 and first.next_update == T0 + timedelta(days=30)
    clock.advance(timedelta(days=29, hours=23, minutes=59, seconds=59))
    assert Publisher.open(data_dir, clock).current() == first  # from the file, unchanged


def test_after_next_update_a_new_window_is_published_never_the_old_one_extended(
        data_dir: Path) -> None:
    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    first = publisher.current()
    clock.advance(timedelta(days=30))  # nextUpdate is exclusive
    second = publisher.current()
    assert second.issue_date == clock.now and second.next_update == clock.now + timedelta(days=30)
    assert second.crl_number == first.crl_number + 1
    assert json.loads(second.tcb_info[FMSPC].text)["issueDate"] == "2026-03-31T12:00:00Z"
    # the old texts still say what they said: nothing was re-signed with a longer window
    assert json.loads(first.tcb_info[FMSPC].text)["nextUpdate"] == "2026-03-31T12:00:00Z"
    assert second.tcb_info[FMSPC].text != first.tcb_info[FMSPC].text


def test_a_state_change_re_publishes_at_once_with_a_fresh_window(data_dir: Path) -> None:
    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    first = publisher.current()
    clock.advance(timedelta(days=3))
    publisher.update(lambda s: s.with_revoked([99], "a", "2026-03-04T12:00:00Z"))
    second = publisher.current()
    assert second.issue_date == clock.now and second.crl_number == first.crl_number + 1
    assert 99 in {r.serial_number for r in x509.load_der_x509_crl(second.pck_crl)}
    # a change made through another publisher (another process) is seen too
    Publisher.open(data_dir, clock).update(
        lambda s: s.with_revoked([100], "a", "2026-03-04T12:00:00Z"))
    assert 100 in {r.serial_number for r in x509.load_der_x509_crl(publisher.current().pck_crl)}


def test_a_change_that_alters_nothing_published_does_not_re_sign(data_dir: Path) -> None:
    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    first = publisher.current()
    publisher.update(lambda s: s.with_pck_serial("a", 7))
    assert publisher.current() == first


def test_a_shorter_window_from_the_state(data_dir: Path) -> None:
    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    publisher.update(lambda s: s.with_window(timedelta(hours=1)))
    pub = publisher.current()
    assert pub.next_update - pub.issue_date == timedelta(hours=1)
    clock.advance(timedelta(hours=1))
    assert publisher.current().issue_date == clock.now


def test_crl_numbers_only_go_up_even_if_the_published_file_is_lost(data_dir: Path) -> None:
    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    first = publisher.current()
    publisher.path.unlink()
    assert publisher.current().crl_number > first.crl_number
    assert StateStore(data_dir).load().crl_number == first.crl_number + 1


def test_a_crash_while_publishing_loses_no_change(data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is saved before it is published: if signing or writing the publication
    fails, the old publication stays whole and the next request publishes the change."""
    from enclavekit.attest.pccs import publish as publish_module

    clock = Clock()
    publisher = Publisher.open(data_dir, clock)
    first = publisher.current()
    before = publisher.path.read_bytes()

    def crash(path: object, data: bytes, *, mode: int = 0o600) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(publish_module, "atomic_write", crash)
    with pytest.raises(OSError, match="power lost"):
        publisher.update(lambda s: s.with_revoked([4242], "a", "2026-03-01T12:00:00Z"))
    monkeypatch.undo()
    assert publisher.path.read_bytes() == before  # the old publication, untouched
    assert Publication.from_json(before) == first
    again = Publisher.open(data_dir, clock).current()
    assert 4242 in {r.serial_number for r in x509.load_der_x509_crl(again.pck_crl)}
    assert again.crl_number > first.crl_number

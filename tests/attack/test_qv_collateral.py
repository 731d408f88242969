"""QV-2 / QV-4 on the service side: the collateral enclavekit's PCCS publishes makes a verifier
refuse a revoked PCK, stale collateral and collateral for another platform — with real quotes
from emulated VMs, fetched over HTTP from the running service.

The quotes come from the VMs' quoting enclaves (``quote sample``); each test works on its own
copy of the data directory, so one test's revocation or recovery never leaks into another.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from enclavekit.attest.pccs.app import create_app
from enclavekit.attest.pccs.operator import Operator
from enclavekit.attest.pccs.publish import Publisher
from enclavekit.attest.pccs.serve import running
from enclavekit.cli.quote_sample import sample_quote
from enclavekit.dcap.collateral import Collateral, fetch, fetch_for_quote
from enclavekit.dcap.quote import Quote
from enclavekit.dcap.verify import verify_quote
from enclavekit.errors import CollateralExpired, VerificationFailed
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning

from ..attest._pccs import Clock


@dataclasses.dataclass(frozen=True)
class Site:
    """A data directory with VMs ``a`` and ``b`` and one quote from each."""

    data_dir: Path
    quote_a: bytes
    quote_b: bytes


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    path = tmp_path_factory.mktemp("qv-collateral")
    store = PlatformStore(path)
    store.create("a", "Standard_DC1s_v2")
    store.create("b", "Standard_DC1s_v2")
    return Site(path, sample_quote(store, "a", b"nonce a"), sample_quote(store, "b", b"nonce b"))


@pytest.fixture
def data_dir(site: Site, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(site.data_dir, copy)
    return copy


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def service(data_dir: Path, clock: Clock) -> Iterator[str]:
    with running(create_app(Publisher.open(data_dir, clock))) as url:
        yield url


def _roots(data_dir: Path) -> list[x509.Certificate]:
    return [Provisioning.open(data_dir).root_certificate]


def _parse(quote: bytes) -> Quote:
    return Quote.parse(quote)


DEV = ("ConfigurationNeeded", ("EK-DEV-0001",))
"""What a current development platform (VMs a and b) verifies as."""


def test_baseline_both_quotes_verify_up_to_date(site: Site, data_dir: Path, service: str,
                                                clock: Clock) -> None:
    for quote in (site.quote_a, site.quote_b):
        result = verify_quote(quote, fetch_for_quote(service, _parse(quote)),
                              trusted_roots=_roots(data_dir), at=clock.now)
        assert (result.status, result.advisory_ids) == DEV


def test_qv2_revoked_pck_is_refused_and_only_that_platform(site: Site, data_dir: Path,
                                                            service: str, clock: Clock) -> None:
    Operator(data_dir, clock).revoke("a")
    fresh = fetch_for_quote(service, _parse(site.quote_a))
    with pytest.raises(VerificationFailed) as refused:
        verify_quote(site.quote_a, fresh, trusted_roots=_roots(data_dir), at=clock.now)
    assert refused.value.check == "pck_revoked"
    ok = verify_quote(site.quote_b, fresh, trusted_roots=_roots(data_dir), at=clock.now)
    assert (ok.status, ok.advisory_ids) == DEV


def test_qv2_pre_revocation_crl_is_no_way_around_after_it_expires(
        site: Site, data_dir: Path, service: str, clock: Clock) -> None:
    """An attacker who kept the PCK CRL from before the revocation can use it only until its
    nextUpdate; after that the verifier refuses it and the service only serves the new one."""
    old = fetch_for_quote(service, _parse(site.quote_a))
    Operator(data_dir, clock).revoke("a")
    clock.advance(timedelta(days=30, seconds=1))  # a CRL's nextUpdate itself is still valid
    fresh = fetch_for_quote(service, _parse(site.quote_a))
    spliced = dataclasses.replace(fresh, pck_crl=old.pck_crl)
    with pytest.raises(CollateralExpired) as refused:
        verify_quote(site.quote_a, spliced, trusted_roots=_roots(data_dir), at=clock.now)
    assert refused.value.check == "crl_expired"
    with pytest.raises(VerificationFailed, match="pck_revoked"):
        verify_quote(site.quote_a, fresh, trusted_roots=_roots(data_dir), at=clock.now)


def test_qv4_stale_collateral_is_refused_and_the_service_serves_fresh(
        site: Site, data_dir: Path, service: str, clock: Clock) -> None:
    old = fetch_for_quote(service, _parse(site.quote_a))
    clock.advance(timedelta(days=30))  # exactly nextUpdate: exclusive
    with pytest.raises(CollateralExpired) as refused:
        verify_quote(site.quote_a, old, trusted_roots=_roots(data_dir), at=clock.now)
    assert refused.value.check in ("crl_expired", "tcb_info_expired", "qe_identity_expired")
    # the stale TCB info alone, with fresh CRLs, is refused by name too
    fresh = fetch_for_quote(service, _parse(site.quote_a))
    stale_tcb = dataclasses.replace(fresh, tcb_info=old.tcb_info,
                                    tcb_info_signature=old.tcb_info_signature)
    with pytest.raises(CollateralExpired, match="tcb_info_expired"):
        verify_quote(site.quote_a, stale_tcb, trusted_roots=_roots(data_dir), at=clock.now)
    stale_qe = dataclasses.replace(fresh, qe_identity=old.qe_identity,
                                   qe_identity_signature=old.qe_identity_signature)
    with pytest.raises(CollateralExpired, match="qe_identity_expired"):
        verify_quote(site.quote_a, stale_qe, trusted_roots=_roots(data_dir), at=clock.now)
    # asking the service again gives collateral with a new window, which verifies
    assert verify_quote(site.quote_a, fresh, trusted_roots=_roots(data_dir),
                        at=clock.now).status == DEV[0]


def test_qv4_collateral_for_another_fmspc_is_refused(site: Site, data_dir: Path, service: str,
                                                     clock: Clock) -> None:
    other = bytes.fromhex("00a067110000")
    publisher = Publisher.open(data_dir, clock)
    publisher.update(lambda s: dataclasses.replace(
        s, revision=s.revision + 1,
        tcb_levels={**s.tcb_levels, other.hex().upper(): next(iter(s.tcb_levels.values()))}))
    foreign = fetch(service, other)
    with pytest.raises(VerificationFailed) as refused:
        verify_quote(site.quote_a, foreign, trusted_roots=_roots(data_dir), at=clock.now)
    assert refused.value.check == "fmspc_mismatch"


def test_qv4_collateral_signed_by_another_installation_is_refused(
        site: Site, data_dir: Path, service: str, clock: Clock, tmp_path: Path) -> None:
    """Another enclavekit installation's PCCS signs with its own TCB signing key under its own
    root: its TCB info and QE identity do not chain to the root the quote chains to."""
    elsewhere = tmp_path / "elsewhere"
    mine = fetch_for_quote(service, _parse(site.quote_a))
    theirs = Collateral.from_json(_export(elsewhere, clock))
    for fields in (("tcb_info", "tcb_info_signature", "tcb_info_issuer_chain"),
                   ("qe_identity", "qe_identity_signature", "qe_identity_issuer_chain")):
        mixed = dataclasses.replace(mine, **{f: getattr(theirs, f) for f in fields})
        with pytest.raises(VerificationFailed) as refused:
            verify_quote(site.quote_a, mixed, trusted_roots=_roots(data_dir), at=clock.now)
        assert refused.value.check in ("tcb_info_chain", "qe_identity_chain", "root_untrusted")
    # the signed text alone, kept with our chain, fails its signature check
    swapped = dataclasses.replace(mine, tcb_info=theirs.tcb_info,
                                  tcb_info_signature=theirs.tcb_info_signature)
    with pytest.raises(VerificationFailed, match="tcb_info_signature"):
        verify_quote(site.quote_a, swapped, trusted_roots=_roots(data_dir), at=clock.now)


def _export(data_dir: Path, clock: Clock) -> str:
    PlatformStore(data_dir).create("z", "Standard_DC1s_v2")
    return json.dumps(Operator(data_dir, clock).collateral("z"))

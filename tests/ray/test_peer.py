"""enclave/peer.py without Ray: two enclaves on two VMs (two platforms) attest each other.

The Ray cluster tests cover the same protocol over Ray; these run wherever VMs run (no
network namespace needed) and attempt the attacks directly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import enclavekit
from enclavekit.enclave.peer import hello_report_data, split_hello, wrap_secret
from enclavekit.errors import EcallError, IntegrityError, VerificationFailed
from enclavekit.vm.platform import PlatformStore

APP = Path(__file__).resolve().parents[2] / "examples" / "ray_stats"
DEV = ["EK-DEV-0001"]
"""The advisory a development platform's quotes carry: the job names it (both VMs are ones)."""


@dataclass
class Pair:
    a: Any
    b: Any
    rogue: Any
    roots: bytes
    collateral: dict[str, str]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from enclavekit.ray.mesh import job_collateral, job_roots

    tmp = tmp_path_factory.mktemp("peer")
    key = enclavekit.SigningKey.generate()
    image = enclavekit.build(APP).sign(key)
    other = tmp / "other"
    shutil.copytree(APP, other)
    toml = other / "enclave.toml"
    toml.write_text(toml.read_text().replace("product_id = 7", "product_id = 9"))
    rogue_image = enclavekit.build(other).sign(key)
    home = tmp / "home"
    store = PlatformStore(home)
    vms = []
    try:
        for name in ("pa", "pb"):
            store.create(name, "Standard_DC1s_v2")
            vms.append(enclavekit.VM.start(name, home))
        with vms[0].load(image) as a, vms[1].load(image) as b, \
                vms[1].load(rogue_image) as rogue:
            yield Pair(a, b, rogue, job_roots(home), job_collateral(home, ["pa", "pb"]))
    finally:
        for vm in vms:
            vm.stop()


def test_two_platforms_attest_each_other_and_talk(pair: Pair) -> None:
    ha = pair.a.ecalls.join(b"job-1", pair.roots, [], DEV)
    hb = pair.b.ecalls.join(b"job-1", pair.roots, [], DEV)
    fa = pair.a.ecalls.accept("b", hb, pair.collateral["pb"])
    fb = pair.b.ecalls.accept("a", ha, pair.collateral["pa"])
    assert fa == fb and len(fa) == 8
    first = pair.a.ecalls.send("b", 1000)
    second = pair.a.ecalls.send("b", 10)
    with pytest.raises(IntegrityError, match="sequence number 1, expected 0"):
        pair.b.ecalls.receive("a", second)  # reordered
    assert pair.b.ecalls.receive("a", first) == 1000
    assert pair.b.ecalls.receive("a", second) == 10
    # the data owner's wrap reaches only the enclave whose hello key it names
    _, public = split_hello(hb)
    sender, blob = wrap_secret(b"job-1", public, bytes(range(32)))
    with pytest.raises(IntegrityError, match="not for this enclave"):
        pair.a.ecalls.provision(sender, blob)
    assert pair.b.ecalls.provision(sender, blob) == 0


def test_a_job_that_names_no_advisory_refuses_a_development_platform(pair: Pair) -> None:
    hb = pair.b.ecalls.join(b"job-dev", pair.roots, [], DEV)
    pair.a.ecalls.join(b"job-dev", pair.roots, [], [])
    with pytest.raises(VerificationFailed, match="tcb_status: TCB status ConfigurationNeeded"):
        pair.a.ecalls.accept("b", hb, pair.collateral["pb"])
    pair.a.ecalls.join(b"job-dev", pair.roots, [], ["INTEL-SA-00615"])  # another advisory
    with pytest.raises(VerificationFailed, match="advisories not allowed: EK-DEV-0001"):
        pair.a.ecalls.accept("b", hb, pair.collateral["pb"])
    with pytest.raises(VerificationFailed, match="no attested channel"):
        pair.a.ecalls.send("b", 4)


def test_a_hello_for_another_job_or_reflected_is_refused(pair: Pair) -> None:
    hb = pair.b.ecalls.join(b"job-2", pair.roots, [], DEV)
    pair.a.ecalls.join(b"job-3", pair.roots, [], DEV)
    with pytest.raises(VerificationFailed, match="report_data"):
        pair.a.ecalls.accept("b", hb, pair.collateral["pb"])
    ha = pair.a.ecalls.join(b"job-3", pair.roots, [], DEV)
    with pytest.raises(VerificationFailed, match="reflected"):
        pair.a.ecalls.accept("self", ha, pair.collateral["pa"])


def test_a_forged_hello_key_is_refused(pair: Pair) -> None:
    hb = pair.b.ecalls.join(b"job-4", pair.roots, [], DEV)
    pair.a.ecalls.join(b"job-4", pair.roots, [], DEV)
    quote, public = split_hello(hb)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    mine = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert hello_report_data(b"job-4", public) != hello_report_data(b"job-4", mine)
    with pytest.raises(VerificationFailed, match="report_data"):
        pair.a.ecalls.accept("b", quote + mine, pair.collateral["pb"])  # host swaps the key


def test_another_root_or_another_mrenclave_is_refused(pair: Pair) -> None:
    from enclavekit.dcap.roots import INTEL_SGX_ROOT_CA_PEM

    hr = pair.rogue.ecalls.join(b"job-5", pair.roots, [], DEV)
    pair.a.ecalls.join(b"job-5", pair.roots, [], DEV)
    with pytest.raises(VerificationFailed, match="mrenclave"):
        pair.a.ecalls.accept("rogue", hr, pair.collateral["pb"])
    hb = pair.b.ecalls.join(b"job-5", pair.roots, [], DEV)
    pair.a.ecalls.join(b"job-5", INTEL_SGX_ROOT_CA_PEM, [], DEV)  # a job trusting Intel
    with pytest.raises(VerificationFailed, match=r"root|chain|trusted"):
        pair.a.ecalls.accept("b", hb, pair.collateral["pb"])
    with pytest.raises(VerificationFailed, match="no attested channel"):
        pair.a.ecalls.send("rogue", 4)


def test_a_build_that_pins_the_job_roots_refuses_others(
        pair: Pair, tmp_path: Path) -> None:
    from enclavekit.dcap.roots import INTEL_SGX_ROOT_CA_PEM
    from enclavekit.ray.jointstats import pin_roots

    app = pin_roots(pair.roots, tmp_path / "pinned")
    image = enclavekit.build(app).sign(enclavekit.SigningKey.generate())
    assert image.mrenclave != enclavekit.build(APP).mrenclave  # the roots are measured
    vm = pair.a._vm
    with vm.load(image) as pinned:
        with pytest.raises(EcallError, match="pins its job's trust roots"):
            pinned.ecalls.join(b"job-6", INTEL_SGX_ROOT_CA_PEM, [], DEV)
        hello = pinned.ecalls.join(b"job-6", b"", [], DEV)  # the measured roots
        assert len(split_hello(hello)[1]) == 65

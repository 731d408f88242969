"""Development platforms: the rule (vm.devmode) and its mark in the identity and PCK."""

from __future__ import annotations

from pathlib import Path

from enclavekit.dcap.pckext import PckExtension
from enclavekit.vm.devmode import (
    DEVELOPMENT_ADVISORY,
    DEVELOPMENT_LABEL,
    PLATFORM_FMSPC,
    development_level,
    is_development,
    label,
)
from enclavekit.vm.identity import EMULATED_FMSPC, PlatformIdentity
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning


def test_a_vm_a_host_user_creates_is_a_development_platform_and_its_pck_says_so(
        tmp_path: Path) -> None:
    ident = PlatformStore(tmp_path).create("dev", "Standard_DC1s_v2")
    assert ident.development and ident.fmspc == EMULATED_FMSPC
    assert PlatformStore(tmp_path).load("dev").development  # persisted: the FMSPC
    ext = PckExtension.from_certificate(Provisioning.open(tmp_path).pck_certificate("dev"))
    assert is_development(ext.fmspc)  # a verifier sees it in every quote's PCK certificate
    assert label(ident.development) == DEVELOPMENT_LABEL


def test_only_an_identity_made_for_platform_mode_is_not_one() -> None:
    ident = PlatformIdentity.new("svc", "Standard_DC1s_v2", development=False)
    assert not ident.development and ident.fmspc == PLATFORM_FMSPC
    again = PlatformIdentity.from_json(ident.to_json())
    assert not again.development
    assert "host user" not in label(again.development)
    assert is_development(bytes.fromhex("00ee0c000000"))  # any other FMSPC is development


def test_the_published_status_adds_configuration_needed_and_the_advisory_first() -> None:
    assert development_level("UpToDate", ()) == ("ConfigurationNeeded", (DEVELOPMENT_ADVISORY,))
    assert development_level("OutOfDate", ("INTEL-SA-1",)) == (
        "OutOfDateConfigurationNeeded", (DEVELOPMENT_ADVISORY, "INTEL-SA-1"))
    assert development_level("SWHardeningNeeded", ()) == (
        "ConfigurationAndSWHardeningNeeded", (DEVELOPMENT_ADVISORY,))
    assert development_level("Revoked", (DEVELOPMENT_ADVISORY,)) == (
        "Revoked", (DEVELOPMENT_ADVISORY,))

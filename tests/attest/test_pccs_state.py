"""Collateral state: recovery and revocation rules, persistence, corrupt files refused."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from enclavekit.attest.pccs.state import (
    CollateralState,
    QeLevel,
    StateStore,
    TcbLevel,
    check_advisory,
    format_time,
    parse_time,
)
from enclavekit.errors import ProvisioningError
from enclavekit.vm.platform import DEFAULT_CPUSVN, DEFAULT_PCESVN, EMULATED_FMSPC

from ._pccs import T0

FMSPC = EMULATED_FMSPC.hex().upper()
BASE = tuple(DEFAULT_CPUSVN)


def _raised(index: int, by: int = 1) -> tuple[int, ...]:
    comps = list(BASE)
    comps[index] += by
    return tuple(comps)


def test_initial_state_has_the_default_tcb_up_to_date() -> None:
    state = CollateralState.initial(T0)
    (level,) = state.levels(EMULATED_FMSPC)
    assert level.components == BASE and level.pcesvn == DEFAULT_PCESVN
    assert level.status == "UpToDate" and level.tcb_date == "2026-03-01T00:00:00Z"
    assert state.tcb_evaluation_data_number == 1 and state.revision == 1
    assert state.window_seconds == 30 * 86400
    assert [q.status for q in state.qe_levels] == ["UpToDate"]


def test_unknown_fmspc_is_refused() -> None:
    with pytest.raises(ProvisioningError, match="no TCB info for FMSPC 00A067110000"):
        CollateralState.initial(T0).levels(bytes.fromhex("00a067110000"))


def test_recovery_adds_an_up_to_date_level_and_outdates_the_ones_below() -> None:
    state = CollateralState.initial(T0)
    new = state.with_recovery(EMULATED_FMSPC, BASE, DEFAULT_PCESVN + 1, "ENCLAVEKIT-SA-0001",
                              "2026-03-02T00:00:00Z")
    top, old = new.levels(EMULATED_FMSPC)
    assert (top.components, top.pcesvn, top.status, top.advisory_ids) == (
        BASE, DEFAULT_PCESVN + 1, "UpToDate", ())
    assert (old.pcesvn, old.status, old.advisory_ids) == (
        DEFAULT_PCESVN, "OutOfDate", ("ENCLAVEKIT-SA-0001",))
    assert new.tcb_evaluation_data_number == 2 and new.revision == 2
    # a second recovery accumulates advisories on the oldest level, like Intel's lists
    newer = new.with_recovery(EMULATED_FMSPC, _raised(0), DEFAULT_PCESVN + 1, "ENCLAVEKIT-SA-0002",
                              "2026-03-03T00:00:00Z")
    statuses = [(lv.key, lv.status, lv.advisory_ids) for lv in newer.levels(EMULATED_FMSPC)]
    assert statuses == [
        ((_raised(0), DEFAULT_PCESVN + 1), "UpToDate", ()),
        ((BASE, DEFAULT_PCESVN + 1), "OutOfDate", ("ENCLAVEKIT-SA-0002",)),
        ((BASE, DEFAULT_PCESVN), "OutOfDate", ("ENCLAVEKIT-SA-0001", "ENCLAVEKIT-SA-0002")),
    ]
    assert newer.tcb_evaluation_data_number == 3


def test_recovery_keeps_levels_it_does_not_dominate_and_maps_configuration_statuses() -> None:
    state = CollateralState.initial(T0)
    side = TcbLevel(_raised(1), DEFAULT_PCESVN, "2026-01-01T00:00:00Z", "ConfigurationNeeded")
    cfg = TcbLevel(BASE, DEFAULT_PCESVN - 1, "2025-01-01T00:00:00Z",
                   "ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00615",))
    state = replace(state, tcb_levels={FMSPC: (side, *state.levels(EMULATED_FMSPC), cfg)})
    new = state.with_recovery(EMULATED_FMSPC, _raised(0), DEFAULT_PCESVN, "EK-1",
                              "2026-03-02T00:00:00Z")
    by_key = {lv.key: lv for lv in new.levels(EMULATED_FMSPC)}
    assert by_key[side.key] == side  # component 2 above the new level: not superseded
    assert by_key[cfg.key].status == "OutOfDateConfigurationNeeded"
    assert by_key[cfg.key].advisory_ids == ("INTEL-SA-00615", "EK-1")
    assert by_key[(BASE, DEFAULT_PCESVN)].status == "OutOfDate"
    keys = [lv.key for lv in new.levels(EMULATED_FMSPC)]
    assert keys == sorted(keys, reverse=True)  # highest first, as verifiers read them


def test_recovery_to_a_published_level_changes_nothing() -> None:
    state = CollateralState.initial(T0)
    assert state.with_recovery(EMULATED_FMSPC, BASE, DEFAULT_PCESVN, "EK-1", "x") is state


@pytest.mark.parametrize("advisory", ["", "has space", "-lead", "a/b", "x" * 65])
def test_malformed_advisory_ids_are_refused(advisory: str) -> None:
    with pytest.raises(ProvisioningError, match="advisory id"):
        check_advisory(advisory)


def test_bad_levels_are_refused() -> None:
    with pytest.raises(ProvisioningError, match="16 component SVNs"):
        TcbLevel((1,) * 15, 0, "d", "UpToDate")
    with pytest.raises(ProvisioningError, match="16 component SVNs"):
        TcbLevel((256,) + (0,) * 15, 0, "d", "UpToDate")
    with pytest.raises(ProvisioningError, match="PCESVN"):
        TcbLevel((0,) * 16, 65536, "d", "UpToDate")
    with pytest.raises(ProvisioningError, match="tcbStatus 'Fine'"):
        TcbLevel((0,) * 16, 0, "d", "Fine")
    with pytest.raises(ProvisioningError, match="QE tcbStatus"):
        QeLevel(8, "d", "SWHardeningNeeded")


def test_revocation_is_idempotent_and_bumps_the_revision_once() -> None:
    state = CollateralState.initial(T0)
    once = state.with_revoked([5, 7, 5], "a", "2026-03-01T12:00:00Z")
    assert once.revoked_serials == {5, 7} and once.revision == state.revision + 1
    assert once.with_revoked([7, 5], "a", "later") is once


def test_window_must_be_positive() -> None:
    from datetime import timedelta

    state = CollateralState.initial(T0)
    assert state.with_window(timedelta(days=7)).window == timedelta(days=7)
    with pytest.raises(ProvisioningError, match="at least 1 s"):
        state.with_window(timedelta(0))


def test_state_round_trips_through_its_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = (CollateralState.initial(T0)
             .with_recovery(EMULATED_FMSPC, BASE, DEFAULT_PCESVN + 2, "EK-1",
                            "2026-03-02T00:00:00Z")
             .with_revoked([2**159 + 3], "a", "2026-03-02T00:00:00Z")
             .with_pck_serial("a", 2**159 + 3).with_next_crl_number())
    store.save(state)
    assert store.load() == state
    assert (tmp_path / "pki" / "pccs-state.json").stat().st_mode & 0o777 == 0o600


def test_load_without_a_file_gives_the_initial_state_without_writing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load(T0) == CollateralState.initial(T0)
    assert not store.path.exists()


@pytest.mark.parametrize("content", [
    b"", b"[]", b"{not json", b'{"format": "other/1"}',
    b'{"format": "enclavekit-pccs-state/1", "revision": 1}',
])
def test_corrupt_state_file_is_refused_with_a_typed_error(tmp_path: Path, content: bytes) -> None:
    store = StateStore(tmp_path)
    store.dir.mkdir(parents=True)
    store.path.write_bytes(content)
    with pytest.raises(ProvisioningError, match="PCCS state"):
        store.load()


def test_a_crash_while_saving_leaves_the_old_state(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    old = CollateralState.initial(T0)
    store.save(old)

    def crash(src: str, dst: str) -> None:
        raise OSError("power lost")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power lost"):
        store.save(old.with_revoked([1], "a", "d"))
    monkeypatch.undo()
    assert store.load() == old
    assert sorted(p.name for p in store.dir.iterdir()) == ["pccs-state.json"]  # no temp left


def test_the_lock_serialises_read_modify_write(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(CollateralState.initial(T0))

    def add(serial: int) -> None:
        with store.locked():
            store.save(store.load().with_revoked([serial], "a", "d"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load().revoked_serials == set(range(1, 9))


def test_times_are_intel_iso_8601_utc() -> None:
    assert format_time(T0) == "2026-03-01T12:00:00Z"
    assert parse_time("2026-03-01T12:00:00Z") == T0
    with pytest.raises(ValueError):
        parse_time("2026-03-01 12:00:00")

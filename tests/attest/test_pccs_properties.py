"""Property: after any sequence of TCB recoveries, the published TCB info is valid for Intel's
parser and evaluates every TCB the platform ever had correctly — the latest UpToDate, every
earlier one OutOfDate naming the advisories of the recoveries that superseded it."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from enclavekit.attest.pccs.publish import tcb_info_text
from enclavekit.attest.pccs.state import CollateralState
from enclavekit.dcap.tcbinfo import TcbInfo
from enclavekit.vm.platform import DEFAULT_CPUSVN, DEFAULT_PCESVN, EMULATED_FMSPC

from ._pccs import T0

# one recovery: which component to raise (16 = PCESVN) and by how much
_step = st.tuples(st.integers(0, 16), st.integers(1, 3))


@given(st.lists(_step, min_size=1, max_size=6))
def test_recoveries_evaluate_every_past_tcb_correctly(steps: list[tuple[int, int]]) -> None:
    state = CollateralState.initial(T0)
    comps, pcesvn = list(DEFAULT_CPUSVN), DEFAULT_PCESVN
    history: list[tuple[tuple[int, ...], int]] = [(tuple(comps), pcesvn)]
    for i, (which, by) in enumerate(steps):
        if which == 16:
            pcesvn += by
        else:
            comps[which] = min(255, comps[which] + by)
        state = state.with_recovery(EMULATED_FMSPC, tuple(comps), pcesvn, f"EK-{i}",
                                    "2026-03-01T00:00:00Z")
        history.append((tuple(comps), pcesvn))

    text = tcb_info_text(state.levels(EMULATED_FMSPC), fmspc=EMULATED_FMSPC.hex(),
                         pce_id="0000", eval_number=state.tcb_evaluation_data_number,
                         issue=T0, next_update=T0 + timedelta(days=30))
    info = TcbInfo.parse(text, bytes(64))  # format only; signatures are tested elsewhere
    keys = [(lv.components, lv.pcesvn) for lv in info.levels]
    assert keys == sorted(set(keys), reverse=True)  # highest first, no duplicates

    distinct = list(dict.fromkeys(history))
    assert info.tcb_evaluation_data_number == len(distinct)
    latest = info.match(*distinct[-1])
    assert latest is not None and latest.status == "UpToDate" and not latest.advisory_ids
    for n, tcb in enumerate(distinct[:-1]):
        level = info.match(*tcb)
        assert level is not None and level.status == "OutOfDate"
        # the level selected is that TCB's own, superseded by every later recovery
        assert (level.components, level.pcesvn) == tcb
        applied = [i for i in range(len(steps)) if history[i + 1] not in history[:i + 1]]
        later = {f"EK-{i}" for i in applied if distinct.index(history[i + 1]) > n}
        assert set(level.advisory_ids) == later

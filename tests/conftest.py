"""Shared test configuration: the ``--slow`` flag and hypothesis profiles."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large]

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("slow", max_examples=5000, deadline=None, suppress_health_check=_SUPPRESS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run long property runs and full-size benchmarks",
    )


def pytest_configure(config: pytest.Config) -> None:
    slow = config.getoption("--slow")
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "slow" if slow else "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _leftover_devices(marker: str) -> list[int]:
    """Pids of device processes whose command line names this session's temp directory."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if b"enclavekit.vm.device" in cmdline and marker.encode() in cmdline:
            found.append(int(entry))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests stop what they start: a device process left behind fails the run (and is killed)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    marker = str(factory.getbasetemp())
    leftovers = _leftover_devices(marker)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        print(f"\nERROR: the tests left device processes running (killed): {leftovers}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""Shared test configuration: the ``--slow`` flag and hypothesis profiles."""

from __future__ import annotations

import os

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

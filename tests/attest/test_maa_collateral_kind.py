"""The PCCS collateral source remembers each quote's (FMSPC, CA) by its exact certification
data: parsed once per PCK chain, never shared between different chains."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from enclavekit.attest.maa import dcap
from enclavekit.dcap.quote import CertificationData


class _Quote:
    def __init__(self, data: bytes) -> None:
        self.certification_data = CertificationData(5, data)


def test_kind_is_parsed_once_per_certification_data(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []

    def kind(quote: Any) -> tuple[bytes, str]:
        calls.append(quote.certification_data.data)
        return quote.certification_data.data[:6], "processor"

    monkeypatch.setattr(dcap, "pck_ca_kind", kind)
    source = dcap.PccsCollateral("http://127.0.0.1:9")
    fetched: list[tuple[bytes, str]] = []

    def fetch(key: tuple[bytes, str]) -> str:
        fetched.append(key)
        return f"collateral {len(fetched)}"

    monkeypatch.setattr(source, "_fetch", fetch)
    one, other = _Quote(b"AAAAAA-chain"), _Quote(b"BBBBBB-chain")
    for _ in range(3):
        source(one)  # type: ignore[arg-type]
    source(_Quote(b"AAAAAA-chain"))  # type: ignore[arg-type]  # equal bytes, another object
    source(other)  # type: ignore[arg-type]
    assert calls == [b"AAAAAA-chain", b"BBBBBB-chain"]
    assert fetched[-1] == (b"BBBBBB", "processor")
    assert source.refresh(one) is not None  # type: ignore[arg-type]
    assert fetched[-1] == (b"AAAAAA", "processor") and len(calls) == 2


def test_certification_data_of_another_type_is_another_key() -> None:
    a = CertificationData(5, b"x")
    assert a != replace(a, type=6) and hash(a) == hash(CertificationData(5, b"x"))

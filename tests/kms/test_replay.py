"""The nonce cache: one use per key while the token is valid, bounded in memory, pruned as
tokens expire, and no nonce carried across a restart by a token issued before it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from enclavekit.errors import TokenRejected
from enclavekit.kms.replay import NonceCache

from ._support import FakeAuthority, KMSHarness, sgx_policy

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_nonce_releases_a_key_once_while_its_token_is_valid() -> None:
    clock = Clock()
    cache = NonceCache(clock=clock)
    cache.use("k", "n", issued=clock.now, expires=clock.now + 60)
    with pytest.raises(TokenRejected, match="'n' was already used"):
        cache.use("k", "n", issued=clock.now, expires=clock.now + 60)
    cache.use("other-key", "n", issued=clock.now, expires=clock.now + 60)
    clock.now += 61  # the token expired: it can no longer be replayed, and the entry goes
    cache.use("k", "n", issued=clock.now, expires=clock.now + 60)


def test_entries_are_pruned_as_their_tokens_expire() -> None:
    clock = Clock()
    cache = NonceCache(clock=clock)
    for i in range(50_000):  # a long load: each token lives 10 s, one release per 1 ms
        clock.now += 0.001
        cache.use("k", f"n{i}", issued=clock.now, expires=clock.now + 10)
        assert len(cache) <= 10_001
    assert len(cache) == 10_000 and len(cache._heap) == 10_000
    clock.now += 11
    cache.use("k", "last", issued=clock.now, expires=clock.now + 10)
    assert len(cache) == 1 and len(cache._heap) == 1


def test_a_full_cache_refuses_rather_than_forgets() -> None:
    clock = Clock()
    cache = NonceCache(capacity=10, clock=clock)
    for i in range(10):
        cache.use("k", f"n{i}", issued=clock.now, expires=clock.now + 60)
    with pytest.raises(TokenRejected, match="10 unexpired nonces are held"):
        cache.use("k", "n10", issued=clock.now, expires=clock.now + 60)
    with pytest.raises(TokenRejected, match="already used"):  # still remembered
        cache.use("k", "n0", issued=clock.now, expires=clock.now + 60)
    clock.now += 61
    cache.use("k", "n10", issued=clock.now, expires=clock.now + 60)


@pytest.mark.parametrize("issued", [999_999.0, None])
def test_tokens_issued_before_the_start_carry_no_nonce(issued: float | None) -> None:
    cache = NonceCache(clock=Clock(1_000_000.5))
    with pytest.raises(TokenRejected, match="issued since the key service started"):
        cache.use("k", "n", issued=issued, expires=2_000_000)
    cache.use("k", "n", issued=1_000_000, expires=2_000_000)  # the start's own second


def test_a_replayed_nonce_after_a_restart_is_refused(tmp_path: Path) -> None:
    """The attack: release with a nonce, restart the service, replay token and nonce."""
    authority = FakeAuthority()
    kms = KMSHarness(tmp_path, [authority])
    assert kms.create("k", sgx_policy()).status_code == 200
    token = authority.token()
    assert kms.release("k", token, nonce="once").status_code == 200
    time.sleep(1.1)  # the restart comes in a later second than the token's iat
    restarted = KMSHarness(tmp_path, [authority])  # same data directory, a new process' state
    replay = restarted.release("k", token, nonce="once")
    assert replay.status_code == 403
    assert restarted.audit()[-1]["decision"] == "refused"
    assert "issued since the key service started" in restarted.audit()[-1]["reason"]
    fresh = authority.token()
    assert restarted.release("k", fresh, nonce="twice").status_code == 200

"""Fixtures for SIGSTRUCT tests: one RSA-3072/e=3 key per session (generation takes ~1 s)."""

from __future__ import annotations

import functools

import pytest

from enclavekit.sgx.signing import SigningKey


@functools.cache
def session_signing_key() -> SigningKey:
    """The one SGX signing key generated for this test session (shared with the CLI tests)."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """A fresh RSA-3072, exponent-3 signing key, generated once per session."""
    return session_signing_key()

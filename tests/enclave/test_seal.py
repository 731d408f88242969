"""Sealing rules over enclaves of real ``sgx.Processor`` instances (no device process).

Each enclave is initialised in a Processor; its trusted API channel is replaced by a
direct one that serves EREPORT / EGETKEY from that Processor for that enclave's SECS
(identity from the channel, as the device does). The grid covers every combination of
platform, CPUSVN, signer, build (MRENCLAVE), ISVSVN, ISVPRODID and DEBUG.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from enclavekit.enclave import api
from enclavekit.enclave.seal import HEADER_SIZE, SealPolicy, seal, unseal
from enclavekit.errors import InvalidCPUSVN, InvalidISVSVN, SealRuleError
from enclavekit.sgx.keys import FusedSecrets
from enclavekit.sgx.processor import Processor
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.structs import KeyRequest, TargetInfo
from enclavekit.vm.protocol import (
    Boot,
    EGetKeyRequest,
    EReportRequest,
    Msg,
    error_info,
    rebuild_error,
)
from enclavekit.wire import decode_value
from tests.enclave._harness import acting_as, boot_for
from tests.sgx._cpu import CPUSVN, enclave, signed
from tests.sgx.conftest import session_signing_key

NEWER_CPUSVN = bytes(b + 1 for b in CPUSVN)


class DirectChannel(api._Channel):
    """The trusted API's channel, served in-process by ``proc`` for enclave ``secs``."""

    def __init__(self, proc: Processor, secs: int, boot: Boot) -> None:
        self.proc, self.secs, self.boot, self.cpusvn = proc, secs, boot, None

    def call(self, msg: Msg, payload: bytes) -> bytes:
        try:
            if msg == Msg.EGETKEY:
                kr = decode_value(payload, EGetKeyRequest).keyrequest
                return self.proc.egetkey(self.secs, KeyRequest.from_bytes(kr))
            if msg == Msg.EREPORT:
                req = decode_value(payload, EReportRequest)
                return self.proc.ereport(self.secs, TargetInfo.from_bytes(req.targetinfo),
                                         req.reportdata).to_bytes()
        except Exception as exc:  # as the wire would carry it
            raise rebuild_error(error_info(exc)) from None
        raise AssertionError(f"unexpected message {msg}")


@dataclass
class Enc:
    """One initialised enclave and the facts the rules depend on."""

    platform: int
    cpu_new: bool
    signer: int
    build: int
    isvsvn: int
    prod: int
    debug: bool
    channel: DirectChannel

    @contextmanager
    def active(self) -> Iterator[None]:
        with acting_as(self.channel):
            yield


@functools.cache
def other_key() -> SigningKey:
    return SigningKey.generate()


def make_enclave(proc: Processor, *, build: int, key: SigningKey, isvsvn: int, prod: int,
                 debug: bool) -> DirectChannel:
    npages = 2 + build
    secs = enclave(proc, npages, debug=debug)
    proc.einit(secs, signed(npages, key, isvsvn=isvsvn, isvprodid=prod))  # type: ignore[arg-type]
    return DirectChannel(proc, secs, boot_for(proc, secs, debug=debug))


AXES = ("platform", "cpu_new", "signer", "build", "isvsvn", "prod", "debug")


@functools.cache
def grid() -> dict[tuple[object, ...], Enc]:
    """Every combination of the seven axes (2^7 enclaves on four processors)."""
    secrets = [FusedSecrets.generate(), FusedSecrets.generate()]
    procs = {(p, new): Processor(160, secrets[p], NEWER_CPUSVN if new else CPUSVN)
             for p in (0, 1) for new in (False, True)}
    keys = [session_signing_key(), other_key()]
    out: dict[tuple[object, ...], Enc] = {}
    for combo in itertools.product((0, 1), (False, True), (0, 1), (0, 1), (1, 2), (1, 2),
                                   (False, True)):
        platform, new, signer, build, isvsvn, prod, debug = combo
        chan = make_enclave(procs[(platform, new)], build=build, key=keys[signer],
                            isvsvn=isvsvn, prod=prod, debug=debug)
        out[combo] = Enc(platform, new, signer, build, isvsvn, prod, debug, chan)
    return out


def base() -> Enc:
    """Production enclave, platform 0, current CPUSVN, signer 0, build 0, ISVSVN 2."""
    return grid()[(0, False, 0, 0, 2, 1, False)]


def expected(sealer: Enc, unsealer: Enc, policy: SealPolicy) -> str | None:
    """The rule that must refuse, in the order unseal reports them (None: it unseals)."""
    if policy is SealPolicy.MRENCLAVE and sealer.build != unsealer.build:
        return "mrenclave"
    if policy is SealPolicy.MRSIGNER and sealer.signer != unsealer.signer:
        return "mrsigner"
    if sealer.prod != unsealer.prod:
        return "isvprodid"
    if sealer.debug != unsealer.debug:
        return "debug"
    if sealer.cpu_new and not unsealer.cpu_new:
        return "cpusvn"
    if sealer.isvsvn > unsealer.isvsvn:
        return "isvsvn"
    if sealer.platform != unsealer.platform:
        return "platform"
    return None


def outcome(unsealer: Enc, blob: bytes) -> str | None:
    with unsealer.active():
        try:
            unseal(blob)
        except SealRuleError as exc:
            return exc.rule
        except InvalidCPUSVN:
            return "cpusvn"
        except InvalidISVSVN:
            return "isvsvn"
    return None


def test_round_trip_returns_the_data_and_the_aad() -> None:
    e = base()
    with e.active():
        for policy in SealPolicy:
            blob = seal(b"secret state", policy, aad=b"label")
            assert unseal(blob) == (b"secret state", b"label")
            assert unseal(bytearray(blob)).data == b"secret state"
        assert unseal(seal(b"")) == (b"", b"")


def test_blob_has_the_intel_sdk_layout() -> None:
    e = base()
    with e.active():
        blob = seal(b"x" * 100, SealPolicy.MRSIGNER, aad=b"abc")
    kr = KeyRequest.from_bytes(blob[:512])
    assert (kr.keyname, kr.keypolicy, kr.isvsvn) == (4, 2, 2)
    assert kr.cpusvn == CPUSVN
    assert kr.attributemask.flags == 0xFF0000000000000B and kr.attributemask.xfrm == 0
    assert kr.miscmask == 0xF0000000
    enc_len, payload = struct.unpack_from("<I12xI", blob, 512)
    assert enc_len == 100 and payload == len(blob) - HEADER_SIZE
    assert blob[516:528] == bytes(12) and blob[532:544] == bytes(12)
    assert len(blob) == HEADER_SIZE + 100 + 96 + 3 and blob.endswith(b"abc")
    # the ciphertext is AES-128-GCM with a zero IV under EGETKEY(stored KEYREQUEST)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = e.channel.proc.egetkey(e.channel.secs, kr)
    ct, text, tag = blob[HEADER_SIZE:HEADER_SIZE + 100], blob[HEADER_SIZE + 100:], blob[544:560]
    assert AESGCM(key).decrypt(bytes(12), ct + tag, text) == b"x" * 100


def test_newer_isvsvn_and_cpusvn_unseal_older_never_the_reverse() -> None:
    g = grid()
    old = g[(0, False, 0, 0, 1, 1, False)]
    new = g[(0, True, 0, 0, 2, 1, False)]  # same build, newer ISVSVN and CPUSVN
    with old.active():
        old_blob = seal(b"v1")
    with new.active():
        assert unseal(old_blob).data == b"v1"
        new_blob = seal(b"v2")
    with old.active(), pytest.raises(InvalidCPUSVN, match="only the same or a newer"):
        unseal(new_blob)
    same_cpu = g[(0, False, 0, 0, 2, 1, False)]
    with same_cpu.active():
        blob = seal(b"v2")
    with old.active(), pytest.raises(InvalidISVSVN, match=r"sealed by ISVSVN 2, this enclave "
                                     r"is ISVSVN 1: only the same or a newer version can unseal"):
        unseal(blob)


@pytest.mark.parametrize("policy", list(SealPolicy))
def test_every_combination_of_platform_cpusvn_signer_build_svn_product_debug(
        policy: SealPolicy) -> None:
    """All 128 × 128 sealer/unsealer pairs: the rule that refuses is exactly the expected one."""
    enclaves = list(grid().values())
    wrong = []
    for sealer in enclaves:
        with sealer.active():
            blob = seal(b"state", policy, aad=b"a")
        for unsealer in enclaves:
            want, got = expected(sealer, unsealer, policy), outcome(unsealer, blob)
            if want != got:
                wrong.append((sealer, unsealer, want, got))
    assert not wrong, f"{len(wrong)} mismatches, first: {wrong[0]}"


def test_messages_name_the_rule() -> None:
    g = grid()
    with base().active():
        blob = seal(b"s")
    cases = {
        (0, False, 1, 0, 2, 1, False): "MRSIGNER-sealed data unseals only under the same signer",
        (0, False, 0, 0, 2, 2, False): "only the same product unseals",
        (0, False, 0, 0, 2, 1, True): "DEBUG is always bound",
        (1, False, 0, 0, 2, 1, False): "another platform, or the blob was modified",
    }
    for combo, words in cases.items():
        with g[combo].active(), pytest.raises(SealRuleError, match=words):
            unseal(blob)
    with base().active():
        blob = seal(b"s", SealPolicy.MRENCLAVE)
    with g[(0, False, 0, 1, 2, 1, False)].active(), pytest.raises(
            SealRuleError, match="MRENCLAVE-sealed data unseals only in the same build"):
        unseal(blob)

"""Mutual remote attestation between enclaves and the channels it keys (trusted side).

Each enclave of a job makes an ECDH P-256 key pair in here and a DCAP quote whose
REPORTDATA is ``SHA-256(label ‖ job context ‖ public key)``: its *hello* (quote ‖ public
key). Given a peer's hello and the collateral for the peer's platform, :meth:`Peers.accept`
verifies the quote in here with the DCAP verifier against the job's trust roots, appraises
it (UpToDate unless the job names the advisories it accepts, not DEBUG, one of the admitted
MRENCLAVEs, the REPORTDATA binding) and
derives the pair's channel keys: HKDF-SHA256 over the ECDH secret, salted with both
quotes' hashes, one AES-256-GCM key per direction. Payloads carry a sequence number in
their nonce and associated data; :meth:`Peers.open` accepts each number once and in order,
so a replayed, reordered, truncated or altered payload is refused.

The host relays hellos, collateral and payloads and sees none of the keys. What the trust
roots, admitted MRENCLAVEs and accepted advisories are is the job's decision; pass them from
measured data (a trusted file) in production, where the host cannot choose them.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError, VerificationFailed
from .api import identity
from .quote import get_quote

__all__ = ["HELLO_LABEL", "Peers", "hello_report_data", "split_hello", "unwrap_secret",
           "wrap_secret"]

HELLO_LABEL = b"enclavekit/peer/v1/hello/"
_CHANNEL = b"enclavekit/peer/v1/channel/"
PUBLIC = 65
"""Bytes of an uncompressed P-256 public key (the tail of a hello)."""
_SEQ = struct.Struct(">Q")
_TAG = 16


def hello_report_data(context: bytes, public: bytes) -> bytes:
    """REPORTDATA of a hello: SHA-256(label ‖ len(context) ‖ context ‖ public key) ‖ 32 zeros."""
    digest = hashlib.sha256(HELLO_LABEL + struct.pack(">I", len(context)) + context + public)
    return digest.digest() + bytes(32)


def split_hello(hello: bytes) -> tuple[bytes, bytes]:
    """A hello's quote and public key.

    Raises:
        VerificationFailed: too short to hold a quote and a P-256 public key.
    """
    if len(hello) < 1020 + PUBLIC or hello[-PUBLIC] != 4:
        raise VerificationFailed("peer_hello", f"a hello of {len(hello)} bytes is not a quote "
                                 "followed by an uncompressed P-256 public key")
    return hello[:-PUBLIC], hello[-PUBLIC:]


@dataclass
class _Channel:
    send_key: AESGCM
    recv_key: AESGCM
    binding: bytes
    sent: int = 0
    received: int = 0
    mrenclave: bytes = field(default=b"")


class Peers:
    """This enclave's side of a job's mutual attestation and its channels."""

    def __init__(self, context: bytes, trusted_roots_pem: bytes, *,
                 mrenclaves: list[bytes] | None = None,
                 advisories: list[str] | None = None) -> None:
        """``context`` names the job (bound into every hello and key); peers must present
        quotes chaining to ``trusted_roots_pem`` with an MRENCLAVE in ``mrenclaves``
        (default: this enclave's own), from an UpToDate platform or, when ``advisories``
        names them, a ConfigurationNeeded one whose every advisory is named (a development
        platform: ``EK-DEV-0001``)."""
        self.context = bytes(context)
        self._roots_pem = bytes(trusted_roots_pem)
        me = identity()
        self.mrenclave = me.mrenclave
        self.mrsigner = me.mrsigner
        self._admitted = [bytes(m) for m in mrenclaves] if mrenclaves else [me.mrenclave]
        self._advisories = [str(a) for a in advisories or ()]
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self._quote = get_quote(hello_report_data(self.context, self.public))
        self._channels: dict[str, _Channel] = {}

    def hello(self) -> bytes:
        """This enclave's hello: its quote followed by its channel public key."""
        return self._quote + self.public

    def accept(self, peer: str, hello: bytes, collateral_json: str) -> bytes:
        """Verify ``peer``'s hello and key the channel with it; returns a fingerprint of the
        channel binding (the same on both sides).

        Raises:
            VerificationFailed: the quote does not verify under the job's roots, or the
                appraisal refuses it (TCB, DEBUG, MRENCLAVE, REPORTDATA binding).
            QuoteFormatError, CollateralFormatError: the hello or collateral do not parse.
        """
        from ..dcap.collateral import Collateral
        from ..dcap.policy import AppraisalPolicy
        from ..dcap.roots import load_pem_chain
        from ..dcap.verify import verify_quote

        quote, public = split_hello(hello)
        if hmac.compare_digest(public, self.public):
            raise VerificationFailed("peer_hello", "the peer's hello carries this enclave's own "
                                     "key (a reflected hello)")
        roots = load_pem_chain(self._roots_pem, "job trust roots")
        result = verify_quote(quote, Collateral.from_json(collateral_json), trusted_roots=roots)
        statuses = ("UpToDate", "ConfigurationNeeded") if self._advisories else ("UpToDate",)
        AppraisalPolicy.build(mrenclave=self._admitted, allowed_statuses=statuses,
                              allowed_advisory_ids=self._advisories,
                              report_data=hello_report_data(self.context, public)).check(result)
        peer_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
        secret = self._key.exchange(ec.ECDH(), peer_key)
        mine, theirs = hashlib.sha256(self._quote).digest(), hashlib.sha256(quote).digest()
        low, high = sorted((mine, theirs))
        material = HKDF(algorithm=hashes.SHA256(), length=64, salt=low + high,
                        info=_CHANNEL + self.context).derive(secret)
        first, second = material[:32], material[32:]
        send, recv = (first, second) if mine < theirs else (second, first)
        binding = hashlib.sha256(_CHANNEL + low + high + self.context).digest()
        self._channels[peer] = _Channel(AESGCM(send), AESGCM(recv), binding,
                                        mrenclave=result.mrenclave)
        return binding[:8]

    def peers(self) -> list[str]:
        """The peers with a keyed channel."""
        return sorted(self._channels)

    def _channel(self, peer: str) -> _Channel:
        channel = self._channels.get(peer)
        if channel is None:
            raise VerificationFailed("peer_channel", f"no attested channel with {peer!r}; "
                                     "accept its hello first")
        return channel

    def seal(self, peer: str, plaintext: bytes) -> bytes:
        """``plaintext`` for ``peer``: sequence number ‖ AES-GCM ciphertext and tag."""
        channel = self._channel(peer)
        seq = channel.sent
        channel.sent += 1
        head = _SEQ.pack(seq)
        return head + channel.send_key.encrypt(bytes(4) + head, plaintext,
                                               channel.binding + head)

    def open(self, peer: str, payload: bytes) -> bytes:
        """The plaintext of ``peer``'s next payload.

        Raises:
            IntegrityError: altered, replayed, reordered or from another channel.
        """
        channel = self._channel(peer)
        if len(payload) < _SEQ.size + _TAG:
            raise IntegrityError(f"payload from {peer!r}: {len(payload)} bytes is too short")
        head = payload[:_SEQ.size]
        (seq,) = _SEQ.unpack(head)
        if seq != channel.received:
            raise IntegrityError(f"payload from {peer!r} has sequence number {seq}, expected "
                                 f"{channel.received} (replayed or reordered; refused)")
        try:
            plain = channel.recv_key.decrypt(bytes(4) + head, payload[_SEQ.size:],
                                             channel.binding + head)
        except InvalidTag:
            raise IntegrityError(f"payload from {peer!r} failed authentication (tampered or "
                                 "not from this channel); refused") from None
        channel.received += 1
        return plain


_SECRET = b"enclavekit/peer/v1/secret/"


def _secret_key(secret: bytes, context: bytes, enclave_public: bytes,
                sender_public: bytes) -> AESGCM:
    info = _SECRET + struct.pack(">I", len(context)) + context + enclave_public + sender_public
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret))


def wrap_secret(context: bytes, enclave_public: bytes, secret: bytes) -> tuple[bytes, bytes]:
    """A data owner's side: ``secret`` wrapped to the enclave whose hello carried
    ``enclave_public`` (check the hello's quote first). Returns (sender public key, blob)."""
    mine = ec.generate_private_key(ec.SECP256R1())
    public = mine.public_key().public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
    shared = mine.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), enclave_public))
    nonce = bytes(12)  # one key per wrap (a fresh sender key each time)
    return public, _secret_key(shared, context, enclave_public, public).encrypt(nonce, secret,
                                                                                 None)


def unwrap_secret(peers: Peers, sender_public: bytes, blob: bytes) -> bytes:
    """The enclave's side of :func:`wrap_secret`.

    Raises:
        IntegrityError: not wrapped to this enclave's hello key, or altered.
    """
    try:
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
        shared = peers._key.exchange(ec.ECDH(), sender)
        return _secret_key(shared, peers.context, peers.public, sender_public).decrypt(
            bytes(12), blob, None)
    except (InvalidTag, ValueError):
        raise IntegrityError("the wrapped secret is not for this enclave's key or was "
                             "altered; refused") from None

"""Sealing: data encrypted under this enclave's EGETKEY SEAL key, in the Intel SDK layout.

A blob is ``sgx_sealed_data_t`` (sgx-spec §4.6.1)::

    0    KEYREQUEST (512)      the request that derives the key, in clear
    512  plain_text_offset u32 = length of the ciphertext, 12 reserved
    528  payload_size u32      = ciphertext + additional MAC text, 12 reserved
    544  AES-GCM tag (16)
    560  ciphertext ‖ additional MAC text (clear, authenticated)

AES-128-GCM with a 12-byte zero IV under a key derived with a fresh random 32-byte KEYID
per blob (so no key is ever used twice, SE-4). The additional MAC text starts with a
96-byte *descriptor* of the sealer (``EKSEALD1``, MRENCLAVE, MRSIGNER, ISVPRODID, DEBUG and
a platform tag), followed by the caller's ``aad``. The descriptor is plaintext but
MAC-covered; it is read only to say *which rule* refused a blob whose MAC fails. The
platform tag is AES-CMAC under a SEAL key of fixed KEYID, ISVSVN 0 and CPUSVN 0 with
MRSIGNER policy: equal tags mean the same platform *for the same signer, product and
DEBUG bit*, which are compared first. It is a pseudonymous platform identifier, linkable
only between blobs of one signer.

Unseal derives the key with the stored KEYREQUEST, so EGETKEY's own rules decide: a
newer ISVSVN/CPUSVN unseals older blobs, never the reverse (``InvalidISVSVN`` /
``InvalidCPUSVN``); everything else is a :class:`~enclavekit.errors.SealRuleError`
naming its rule. Each enclave instance remembers the keys EGETKEY gave it for up to 64
KEYREQUESTs it sealed or unsealed with (the oldest dropped first; never a refusal), so
unsealing a blob again costs no device round trip; another instance starts empty.
"""

from __future__ import annotations

import enum
import hashlib
import io
import os
import struct
import threading
from typing import TYPE_CHECKING, NamedTuple

from ..errors import InvalidCPUSVN, InvalidISVSVN, SealRuleError, SGXError, SGXFault
from ..sgx.consts import AttributeFlags, KeyName
from ..vm.protocol import EGetKeyRequest, Msg
from ..wire import encode_value
from . import api

if TYPE_CHECKING:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DESCRIPTOR_SIZE", "HEADER_SIZE", "SEAL_ATTRIBUTEMASK", "SEAL_MISCMASK",
           "SealPolicy", "Unsealed", "seal", "unseal"]

HEADER_SIZE = 560
DESCRIPTOR_SIZE = 96
SEAL_ATTRIBUTEMASK = 0xFF0000000000000B
"""TSEAL_DEFAULT_FLAGSMASK: INIT, DEBUG, the reserved high byte and bit 3 bound."""
SEAL_MISCMASK = 0xF0000000
_MAGIC = b"EKSEALD1"
_DESC = struct.Struct("<8s32s32sHH16s4x")
_LENGTHS = struct.Struct("<I12xI12x16s")
_KEYREQUEST = struct.Struct("<HHH2x16sQQ32sIH434x")
_TAG_KEYID = hashlib.sha256(b"enclavekit seal platform tag v1").digest()
_DEBUG = 1
_MAX = 0xFFFFFFFF
_IV = bytes(12)
_ZERO12 = bytes(12)
_ZERO434 = bytes(434)
_ALWAYS = int(AttributeFlags.INIT | AttributeFlags.DEBUG)


class SealPolicy(enum.IntEnum):
    """Which identity a seal key binds (KEYPOLICY): this exact build, or its signer."""

    MRENCLAVE = 0x01
    """Only the same build (MRENCLAVE) unseals."""
    MRSIGNER = 0x02
    """Any enclave of the same signer and ISVPRODID, at the same or a newer ISVSVN."""


class Unsealed(NamedTuple):
    """What :func:`unseal` returns: the plaintext and the caller's additional MAC text."""

    data: bytes
    aad: bytes


_KEY_CACHE_SIZE = 64


class _Crypto(NamedTuple):
    AESGCM: type[AESGCM]
    Cipher: type[Cipher[modes.GCM]]
    AES128: type[algorithms.AES128]
    GCM: type[modes.GCM]
    InvalidTag: type[InvalidTag]


_crypto_names: _Crypto | None = None


def _crypto() -> _Crypto:
    """pyca's AES-GCM classes, imported on first use (not at enclave start-up)."""
    global _crypto_names
    if _crypto_names is None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        _crypto_names = _Crypto(AESGCM, Cipher, algorithms.AES128, modes.GCM, InvalidTag)
    return _crypto_names


class _Context:
    """What sealing needs of one enclave instance, computed once per trusted-API channel.

    ``descriptor`` and ``tag`` are fixed for the instance; ``keys`` caches EGETKEY answers by
    the 512-byte KEYREQUEST (bounded, oldest out first). A cached key is one EGETKEY gave
    this same instance for that same request, so it answers nothing EGETKEY would refuse;
    a refusal is never cached.
    """

    def __init__(self, chan: api._Channel) -> None:
        from cryptography.hazmat.primitives import cmac
        from cryptography.hazmat.primitives.ciphers import algorithms

        self.chan = chan
        self.keys: dict[bytes, bytes] = {}
        self.lock = threading.Lock()
        # EGETKEY's payload is the encoding of a 512-byte field: a fixed prefix, then the bytes
        blank = bytes(512)
        payload = encode_value(EGetKeyRequest(blank), EGetKeyRequest)
        assert payload.endswith(blank)
        self.payload_prefix = payload[:-512]
        me = api.identity()
        cpusvn = api._own_cpusvn()
        # a seal KEYREQUEST is a per-policy head, the KEYID at bytes 40-71, a fixed tail
        self.heads = {int(p): _keyrequest(p, bytes(32), me.isvsvn, cpusvn)[:40]
                      for p in SealPolicy}
        self.tail = _keyrequest(SealPolicy.MRSIGNER, bytes(32), 0, bytes(16))[72:]
        mac = cmac.CMAC(algorithms.AES128(
            self.derive(_keyrequest(SealPolicy.MRSIGNER, _TAG_KEYID, 0, bytes(16)))))
        mac.update(b"enclavekit platform tag")
        self.tag = mac.finalize()
        self.descriptor = _DESC.pack(_MAGIC, me.mrenclave, me.mrsigner, me.isvprodid,
                                     _DEBUG if me.debug else 0, self.tag)

    def derive(self, keyrequest: bytes) -> bytes:
        """EGETKEY for ``keyrequest`` from the device (no cache)."""
        return self.chan.call(Msg.EGETKEY, self.payload_prefix + keyrequest)

    def remember(self, keyrequest: bytes, key: bytes) -> None:
        """Cache the key EGETKEY gave for ``keyrequest`` (the oldest goes when full)."""
        with self.lock:
            if len(self.keys) >= _KEY_CACHE_SIZE:
                del self.keys[next(iter(self.keys))]
            self.keys[keyrequest] = key


_context: _Context | None = None


def _ctx() -> _Context:
    """This enclave instance's sealing context (rebuilt when the channel changes)."""
    global _context
    chan = api._chan()
    ctx = _context
    if ctx is None or ctx.chan is not chan:
        ctx = _context = _Context(chan)
    return ctx


def _keyrequest(policy: int, keyid: bytes, isvsvn: int, cpusvn: bytes) -> bytes:
    """The 512-byte KEYREQUEST (sgx-spec §4.3) for a SEAL key with the SDK's masks."""
    return _KEYREQUEST.pack(KeyName.SEAL, policy, isvsvn, cpusvn, SEAL_ATTRIBUTEMASK, 0, keyid,
                            SEAL_MISCMASK, 0)


def _platform_tag() -> bytes:
    """This platform's tag for this signer, product and DEBUG bit (once per instance)."""
    return _ctx().tag


def seal(data: bytes, policy: SealPolicy | int = SealPolicy.MRSIGNER, aad: bytes = b"") -> bytes:
    """Seal ``data`` to this enclave (``policy``), authenticating ``aad`` in clear with it.

    Raises:
        SealRuleError: ``policy`` is neither MRENCLAVE nor MRSIGNER, or the sizes do not
            fit the u32 length fields.
    """
    if policy not in (SealPolicy.MRENCLAVE, SealPolicy.MRSIGNER):
        raise SealRuleError("format", f"policy {policy!r} is not MRENCLAVE (1) or MRSIGNER (2)")
    ctx = _ctx()
    text = ctx.descriptor + bytes(aad) if aad else ctx.descriptor
    n = len(data)
    end = HEADER_SIZE + n
    if n + len(text) > _MAX:
        raise SealRuleError("format", f"{n + len(text)} bytes of payload do not fit the "
                            f"u32 payload_size (at most {_MAX})")
    request = ctx.heads[policy] + os.urandom(32) + ctx.tail
    key = ctx.derive(request)
    # one allocation: the blob is built inside a BytesIO's own buffer, and getvalue() then
    # returns that buffer without a copy
    out = io.BytesIO()
    out.seek(end + len(text) - 1)
    out.write(b"\0")
    with out.getbuffer() as view:
        # AES-GCM writes ciphertext ‖ tag; the tag moves to its header field and the
        # additional MAC text (at least the 96-byte descriptor) takes its place
        _crypto().AESGCM(key).encrypt_into(_IV, data, text, view[HEADER_SIZE:end + 16])
        view[:512] = request
        _LENGTHS.pack_into(view, 512, n, n + len(text), bytes(view[end:end + 16]))
        view[end:] = text
    ctx.remember(request, key)
    return out.getvalue()


def _format(detail: str) -> SealRuleError:
    return SealRuleError("format", detail + ": the blob is corrupt or was modified")


def unseal(blob: bytes | bytearray | memoryview) -> Unsealed:
    """The data and ``aad`` of a blob this enclave may unseal.

    Raises:
        SealRuleError: a length or field does not parse (``format``, checked before any
            allocation), or the MAC does not verify; ``rule`` says why: another build
            (``mrenclave``), signer (``mrsigner``), product (``isvprodid``), a DEBUG /
            production mismatch (``debug``), another platform (``platform``) or a
            modified blob (``modified``).
        InvalidISVSVN: sealed by a newer ISVSVN than this enclave's.
        InvalidCPUSVN: sealed under a newer CPUSVN than this platform's.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise _format(f"expected bytes, found {type(blob).__name__}")
    view = memoryview(blob).cast("B")
    size = len(view)
    if size < HEADER_SIZE + DESCRIPTOR_SIZE:
        raise _format(f"{size} bytes, shorter than the {HEADER_SIZE}-byte header and the "
                      f"{DESCRIPTOR_SIZE}-byte descriptor")
    header = bytes(view[:HEADER_SIZE])
    if header[516:528] != _ZERO12 or header[532:544] != _ZERO12:
        raise _format("a reserved header field (bytes 516-527 or 532-543) is not zero")
    n, payload, tag = _LENGTHS.unpack_from(header, 512)
    if payload != size - HEADER_SIZE:
        raise _format(f"payload_size says {payload} bytes, the blob has {size - HEADER_SIZE} "
                      "after the header")
    if n > payload - DESCRIPTOR_SIZE:
        raise _format(f"plain_text_offset {n} leaves {payload - n} bytes of additional MAC "
                      f"text, fewer than the {DESCRIPTOR_SIZE}-byte descriptor")
    request = header[:512]
    text = bytes(view[HEADER_SIZE + n:])
    ctx = _ctx()
    key = ctx.keys.get(request)  # a cached request passed these checks before
    if key is None:
        _check_request(request)
        try:
            key = ctx.derive(request)
        except (InvalidISVSVN, InvalidCPUSVN) as exc:
            rule = _identity_rule(text, int.from_bytes(request[2:4], "little"))
            raise (rule or _svn_error(exc, request)) from None
        except (SGXError, SGXFault) as exc:
            raise SealRuleError("modified", f"EGETKEY refused the blob's KEYREQUEST ({exc}): "
                                "the blob was modified") from None
        ctx.remember(request, key)
    crypto = _crypto()
    dec = crypto.Cipher(crypto.AES128(key), crypto.GCM(_IV, tag)).decryptor()
    dec.authenticate_additional_data(text)
    data = dec.update(view[HEADER_SIZE:HEADER_SIZE + n])
    try:
        dec.finalize()
    except crypto.InvalidTag:
        del data
        raise _mac_failure(text, int.from_bytes(request[2:4], "little")) from None
    return Unsealed(data, text[DESCRIPTOR_SIZE:])


def _check_request(request: bytes) -> None:
    """The stored KEYREQUEST must be one that :func:`seal` makes (else: modified)."""
    keyname, keypolicy, _, _, mask, _, _, _, configsvn = _KEYREQUEST.unpack(request)
    problems = []
    if keyname != KeyName.SEAL:
        problems.append(f"KEYNAME {keyname}, expected {int(KeyName.SEAL)} SEAL")
    if keypolicy not in (SealPolicy.MRENCLAVE, SealPolicy.MRSIGNER):
        problems.append(f"KEYPOLICY {keypolicy:#x}, expected MRENCLAVE or MRSIGNER")
    if mask & _ALWAYS != _ALWAYS:
        problems.append("ATTRIBUTEMASK does not bind INIT and DEBUG")
    if request[6:8] != b"\0\0" or request[78:] != _ZERO434 or configsvn:
        problems.append("a reserved field or CONFIGSVN is not zero")
    if problems:
        raise SealRuleError("modified", "the blob's KEYREQUEST is not a seal request ("
                            + "; ".join(problems) + "): the blob was modified")


def _svn_error(exc: SGXError, request: bytes) -> SGXError:
    me = api.identity()
    if isinstance(exc, InvalidISVSVN):
        sealed = int.from_bytes(request[4:6], "little")
        return InvalidISVSVN("unseal", f"sealed by ISVSVN {sealed}, this enclave is ISVSVN "
                             f"{me.isvsvn}: only the same or a newer version can unseal")
    return InvalidCPUSVN("unseal", f"sealed under CPUSVN {request[8:24].hex()}, newer than this "
                         f"platform's {api._own_cpusvn().hex()}: only the same or a newer "
                         "CPU security version can unseal")


def _short(value: bytes) -> str:
    return value.hex()[:16] + "…"


def _identity_rule(text: bytes, policy: int) -> SealRuleError | None:
    """The identity rule the descriptor says refused the blob, if any."""
    magic, mrenclave, mrsigner, isvprodid, flags, _ = _DESC.unpack(text[:DESCRIPTOR_SIZE])
    if magic != _MAGIC:
        return SealRuleError("modified", "the MAC does not verify and the sealer descriptor is "
                             "unreadable: the blob was modified")
    me = api.identity()
    if policy & SealPolicy.MRENCLAVE and mrenclave != me.mrenclave:
        return SealRuleError("mrenclave", f"sealed by MRENCLAVE {_short(mrenclave)}, this "
                             f"enclave is {_short(me.mrenclave)}: MRENCLAVE-sealed data unseals "
                             "only in the same build")
    if policy & SealPolicy.MRSIGNER and mrsigner != me.mrsigner:
        return SealRuleError("mrsigner", f"sealed by MRSIGNER {_short(mrsigner)}, this enclave's "
                             f"is {_short(me.mrsigner)}: MRSIGNER-sealed data unseals only "
                             "under the same signer")
    if isvprodid != me.isvprodid:
        return SealRuleError("isvprodid", f"sealed by ISVPRODID {isvprodid}, this enclave is "
                             f"ISVPRODID {me.isvprodid}: only the same product unseals")
    if bool(flags & _DEBUG) != me.debug:
        return SealRuleError("debug", "sealed by a {} enclave, this one is {}: DEBUG is always "
                             "bound, so DEBUG and production builds never share seal keys"
                             .format(*(("DEBUG", "production") if flags & _DEBUG
                                       else ("production", "a DEBUG build"))))
    return None


def _mac_failure(text: bytes, policy: int) -> SealRuleError:
    rule = _identity_rule(text, policy)
    if rule is not None:
        return rule
    if text[8 + 32 + 32 + 4:DESCRIPTOR_SIZE - 4] != _platform_tag():
        return SealRuleError("platform", "the MAC does not verify and the blob names another "
                             "platform: it was sealed on another platform, or the blob was "
                             "modified")
    return SealRuleError("modified", "the MAC does not verify though the blob names this "
                         "enclave and platform: the blob was modified")

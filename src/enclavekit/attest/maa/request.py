"""The body of ``POST /attest/SgxEnclave`` and ``/attest/OpenEnclave``, checked field by field.

Accepted as the clients send it (maa-skr.md §1.2, §0 rows 9–10): evidence and data in base64
of either alphabet, padded or not; ``nonce`` a string or a number; ``dataType`` ``Binary`` or
``JSON`` (any case); ``initTimeData`` without ``data`` (Microsoft's client sends that for
``inittime_json``) treated as absent. Everything else — unknown fields, wrong JSON types, JSON
data that is not a UTF-8 JSON object — is an :class:`AttestationRequestError`.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from ..._codec import strict_json
from ...dcap.quote import OE_REPORT_HEADER_SIZE
from ...errors import AttestationRequestError
from .claims import HeldData
from .jws import b64decode_any

__all__ = ["MAX_NONCE", "AttestRequest", "parse_attest_request"]

MAX_NONCE = 1024
"""Longest ``nonce`` echoed into a token (characters)."""
_MAX_POLICY = 64 * 1024
_COMMON = ("runtimeData", "initTimeData", "draftPolicyForAttestation", "nonce")
_EVIDENCE = {"SgxEnclave": "quote", "OpenEnclave": "report"}
_DATA_FIELDS = ("data", "dataType")


@dataclass(frozen=True)
class AttestRequest:
    """A checked attestation request."""

    quote: bytes
    """The SGX quote (an OE report's 16-byte header removed)."""
    runtime: HeldData | None = None
    inittime: HeldData | None = None
    draft_policy: str | None = None
    nonce: str | None = None


def _held(value: Any, name: str) -> HeldData | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AttestationRequestError(f"{name} must be an object {{data, dataType}}")
    if unknown := sorted(set(value) - set(_DATA_FIELDS)):
        raise AttestationRequestError(f"{name} has unknown field(s) {', '.join(unknown)}")
    data_type = value.get("dataType", "Binary")
    if not isinstance(data_type, str) or data_type.lower() not in ("binary", "json"):
        raise AttestationRequestError(f"{name}.dataType must be Binary or JSON")
    if value.get("data") is None:
        return None
    raw = b64decode_any(value["data"], f"{name}.data")
    if data_type.lower() == "binary":
        return HeldData(raw, False)
    try:
        parsed = strict_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AttestationRequestError(f"{name}.data is declared JSON but is not UTF-8 JSON "
                                      f"({exc})") from None
    if not isinstance(parsed, dict):
        raise AttestationRequestError(f"{name}.data is declared JSON but is not a JSON object")
    return HeldData(raw, True, parsed)


def _nonce(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise AttestationRequestError("nonce must be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise AttestationRequestError("nonce must be a finite number")
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_NONCE:
        raise AttestationRequestError(f"nonce longer than {MAX_NONCE} characters")
    return text


def _unwrap_oe(report: bytes) -> bytes:
    if len(report) <= OE_REPORT_HEADER_SIZE:
        raise AttestationRequestError("report is shorter than an Open Enclave report header")
    version, report_type, size = struct.unpack_from("<IIQ", report)
    if version != 1 or report_type != 2:
        raise AttestationRequestError(f"report is not an Open Enclave remote SGX report "
                                      f"(header version {version}, type {report_type}; "
                                      "expected 1, 2)")
    if size != len(report) - OE_REPORT_HEADER_SIZE:
        raise AttestationRequestError(f"Open Enclave report header says {size} bytes of quote, "
                                      f"found {len(report) - OE_REPORT_HEADER_SIZE}")
    return report[OE_REPORT_HEADER_SIZE:]


def parse_attest_request(attestation_type: str, body: Any) -> AttestRequest:
    """Check the JSON body of an attestation request of ``attestation_type``.

    Raises:
        AttestationRequestError: what is wrong, naming the field.
    """
    if not isinstance(body, dict):
        raise AttestationRequestError("request body must be a JSON object")
    evidence = _EVIDENCE[attestation_type]
    if unknown := sorted(set(body) - {evidence, *_COMMON}):
        raise AttestationRequestError(f"unknown field(s) {', '.join(unknown)} (an "
                                      f"{attestation_type} request takes {evidence}, "
                                      f"{', '.join(_COMMON)})")
    if body.get(evidence) is None:
        raise AttestationRequestError(f"missing {evidence}")
    raw = b64decode_any(body[evidence], evidence)
    quote = _unwrap_oe(raw) if attestation_type == "OpenEnclave" else raw
    draft = body.get("draftPolicyForAttestation")
    if draft is not None and not isinstance(draft, str):
        raise AttestationRequestError("draftPolicyForAttestation must be a string of policy text")
    if draft is not None and len(draft) > _MAX_POLICY:
        raise AttestationRequestError(f"draftPolicyForAttestation longer than {_MAX_POLICY}")
    return AttestRequest(quote, _held(body.get("runtimeData"), "runtimeData"),
                         _held(body.get("initTimeData"), "initTimeData"), draft or None,
                         _nonce(body.get("nonce")))

"""Signed TCB info (v1–v3) and QE identity (v2) JSON, parsed from the exact signed bytes.

Intel signs the exact text of the ``tcbInfo`` / ``enclaveIdentity`` object (sgx-spec.md §6.7), so
each parsed object keeps ``raw``, the bytes the signature covers, and every value the verifier
uses is read from those same bytes (QV-10). Parsing is strict in the way the Open Enclave
negative vectors demand: duplicate keys, missing properties, wrong JSON types, floats, signs,
oversized integers, string escapes, malformed dates and out-of-range SVNs are all refused with
a :class:`CollateralFormatError`.

Level selection follows Intel's QVL, which orders the two kinds of levels differently (QV-5):

* :meth:`TcbInfo.match`: QVL keeps TCB info levels in a ``std::set<TcbLevel,
  std::greater<TcbLevel>>`` (``TcbInfo::getTcbLevels``), ordered by ``TcbLevel::operator>``:
  the 16 component SVNs compared lexicographically, then PCESVN; it walks that order and takes
  the first level whose every component and PCESVN the PCK reaches. The signed order does not
  matter, and for levels that are not comparable component by component that can pick another
  level than the first reached in the signed list (dcap-qvl sorts the same way).
* :meth:`QeIdentity.match`: QVL keeps QE identity levels in a ``std::vector`` in the signed
  order (``EnclaveIdentityV2::getTcbStatus``) and takes the first whose ISVSVN ≤ the QE's.

:func:`converge_qe_status` merges the QE's TCB status (§6.8 D.11).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from .._codec import JSONError, reject_duplicate_keys
from ..errors import CollateralFormatError

__all__ = [
    "QE_STATUSES", "TCB_STATUSES", "QeIdentity", "QeTcbLevel", "TcbInfo", "TcbLevel",
    "converge_qe_status", "split_signed_body",
]

TCB_STATUSES = (
    "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
    "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked",
)
"""Platform TCB statuses a TCB info level may state (QVL's valid set)."""
QE_STATUSES = TCB_STATUSES
"""Statuses a QE identity level may state (Intel uses UpToDate, OutOfDate, Revoked)."""

_MAX_INT = 2**63 - 1
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_WS = " \t\r\n"
T = TypeVar("T")
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


# --- strict JSON -----------------------------------------------------------------------------


def _fail(where: str, what: str) -> CollateralFormatError:
    return CollateralFormatError(f"{where}: {what}")


def _parse_int(text: str) -> int:
    if text.startswith("-"):
        raise CollateralFormatError(f"negative integer {text} where only unsigned ones belong")
    value = int(text)
    if value > _MAX_INT:
        raise CollateralFormatError(f"integer {text[:24]} overflows 64 bits")
    return value


def _parse_float(text: str) -> float:
    raise CollateralFormatError(f"number {text} is not an integer")


def _parse_constant(text: str) -> Any:
    raise CollateralFormatError(f"{text} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=reject_duplicate_keys, parse_int=_parse_int,
                            parse_float=_parse_float, parse_constant=_parse_constant)


def _raw_decode(text: str, pos: int, where: str) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _fail(where, f"not JSON ({exc.msg} at {exc.pos})") from exc
    except RecursionError as exc:
        raise _fail(where, "JSON nested too deeply") from exc
    except JSONError as exc:  # a duplicate key (QV-10)
        raise _fail(where, str(exc)) from exc


def _loads(text: str, where: str) -> Any:
    value, end = _raw_decode(text, 0, where)
    if text[end:].strip(_WS):
        raise _fail(where, "trailing text after the JSON value")
    return value


def _decode(data: bytes | str, where: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(where, "not UTF-8 text") from exc


def split_signed_body(body: bytes | str, key: str) -> tuple[bytes, bytes]:
    """Split a PCS response ``{"<key>": {...}, "signature": "<hex>"}`` into (raw object, sig).

    The raw object is the exact byte span of the value of ``key`` in ``body``; the signature is
    the 64 raw bytes r ‖ s.

    Raises:
        CollateralFormatError: not that shape, duplicate or extra keys, bad signature hex.
    """
    where = f"{key} body"
    text = _decode(body, where)
    spans: dict[str, tuple[int, int, Any]] = {}
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "{":
        raise _fail(where, "not a JSON object")
    pos = _skip(text, pos + 1)
    while True:
        if pos < len(text) and text[pos] == "}" and not spans:
            pos += 1
            break
        if pos >= len(text) or text[pos] != '"':
            raise _fail(where, f"expected a key at offset {pos}")
        try:
            name, pos = _scanstring(text, pos + 1)
        except json.JSONDecodeError as exc:
            raise _fail(where, f"bad key ({exc.msg})") from exc
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] != ":":
            raise _fail(where, f"expected ':' at offset {pos}")
        pos = _skip(text, pos + 1)
        value, end = _raw_decode(text, pos, where)
        if name in spans:
            raise _fail(where, f"duplicate key {name!r}")
        spans[name] = (pos, end, value)
        pos = _skip(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "}":
            pos += 1
            break
        raise _fail(where, f"expected ',' or '}}' at offset {pos}")
    if text[pos:].strip(_WS):
        raise _fail(where, "trailing text after the JSON object")
    if set(spans) != {key, "signature"}:
        raise _fail(where, f"keys must be {key!r} and 'signature', found {sorted(spans)}")
    start, end, _ = spans[key]
    signature = spans["signature"][2]
    if not isinstance(signature, str):
        raise _fail(where, "signature must be a hex string")
    return text[start:end].encode("utf-8"), _hex(signature, 64, f"{where}: signature")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _hex(value: Any, size: int, where: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise CollateralFormatError(f"{where} must be {2 * size} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise CollateralFormatError(f"{where} is not hex") from exc


def _get(obj: dict[str, Any], key: str, kind: type[T], where: str) -> T:
    if key not in obj:
        raise _fail(where, f"missing property {key!r}")
    value = obj[key]
    # bool is an int subclass in Python; JSON true/false is never a valid number here
    if type(value) is not kind:
        raise _fail(where, f"{key!r} must be a JSON {_KIND[kind]}, found {type(value).__name__}")
    return value


_V2_KEYS = tuple(f"sgxtcbcomp{i:02d}svn" for i in range(1, 17))
_KIND: dict[type, str] = {int: "integer", str: "string", list: "array", dict: "object"}


def _uint(obj: dict[str, Any], key: str, limit: int, where: str) -> int:
    value = _get(obj, key, int, where)
    if value > limit:
        raise _fail(where, f"{key!r} = {value} exceeds {limit}")
    return value


def _date(obj: dict[str, Any], key: str, where: str) -> datetime:
    text = _get(obj, key, str, where)
    if not _DATE.fullmatch(text):
        raise _fail(where, f"{key!r} = {text!r} is not YYYY-MM-DDThh:mm:ssZ")
    try:
        parsed = datetime.fromisoformat(text[:-1])
    except ValueError as exc:
        raise _fail(where, f"{key!r} = {text!r} is not a valid date") from exc
    return parsed.replace(tzinfo=UTC)


def _fixed_hex(obj: dict[str, Any], key: str, size: int, where: str) -> bytes:
    return _hex(_get(obj, key, str, where), size, f"{where}: {key!r}")


def _advisories(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    if "advisoryIDs" not in obj:
        return ()
    ids = _get(obj, "advisoryIDs", list, where)
    if not all(isinstance(i, str) for i in ids):
        raise _fail(where, "advisoryIDs must be strings")
    return tuple(ids)


def _status(obj: dict[str, Any], key: str, allowed: Sequence[str], where: str) -> str:
    status = _get(obj, key, str, where)
    if status not in allowed:
        raise _fail(where, f"unknown {key} {status!r}")
    return status


def _signed_object(raw: bytes, signature: bytes, where: str) -> dict[str, Any]:
    if len(signature) != 64:
        raise _fail(where, f"signature must be 64 bytes (r || s), found {len(signature)}")
    text = _decode(raw, where)
    if "\\" in text:
        raise _fail(where, "string escapes are not allowed in signed collateral")
    obj = _loads(text, where)
    if not isinstance(obj, dict):
        raise _fail(where, "not a JSON object")
    return obj


def _window(obj: dict[str, Any], where: str) -> tuple[datetime, datetime]:
    issue = _date(obj, "issueDate", where)
    nxt = _date(obj, "nextUpdate", where)
    if nxt <= issue:
        raise _fail(where, "nextUpdate is not after issueDate")
    return issue, nxt


# --- TCB info --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TcbLevel:
    """One TCB level: 16 SGX component SVNs + PCESVN → status (+ date, advisories)."""

    components: tuple[int, ...]
    pcesvn: int
    status: str
    tcb_date: datetime | None = None
    advisory_ids: tuple[str, ...] = ()


def _level(obj: Any, version: int, index: int) -> TcbLevel:
    where = f"tcbInfo.tcbLevels[{index}]"
    if not isinstance(obj, dict):
        raise _fail(where, "must be an object")
    tcb = _get(obj, "tcb", dict, where)
    twhere = where + ".tcb"
    if version < 3:
        values = [tcb.get(k) for k in _V2_KEYS]
        if not all(type(v) is int and v <= 255 for v in values):  # slow path names the fault
            values = [_uint(tcb, k, 255, twhere) for k in _V2_KEYS]
    else:
        items = _get(tcb, "sgxtcbcomponents", list, twhere)
        if len(items) != 16:
            raise _fail(twhere, f"sgxtcbcomponents has {len(items)} entries, not 16")
        values = [c.get("svn") if type(c) is dict else None for c in items]
        if not all(type(v) is int and v <= 255 for v in values):
            values = [_uint(_obj(c, f"{twhere}.sgxtcbcomponents[{i}]"), "svn", 255,
                            f"{twhere}.sgxtcbcomponents[{i}]") for i, c in enumerate(items)]
    comps = cast(tuple[int, ...], tuple(values))  # all ints: checked above
    pcesvn = _uint(tcb, "pcesvn", 0xFFFF, twhere)
    if version == 1:
        return TcbLevel(comps, pcesvn, _status(obj, "status", TCB_STATUSES, where))
    return TcbLevel(comps, pcesvn, _status(obj, "tcbStatus", TCB_STATUSES, where),
                    _date(obj, "tcbDate", where), _advisories(obj, where))


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object")
    return value


@dataclass(frozen=True)
class TcbInfo:
    """Signed TCB info for one FMSPC; ``raw`` is exactly what ``signature`` covers."""

    raw: bytes
    signature: bytes
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes | None
    tcb_type: int
    tcb_evaluation_data_number: int | None
    levels: tuple[TcbLevel, ...]

    @classmethod
    def parse(cls, raw: bytes | str, signature: bytes) -> TcbInfo:
        """Parse the exact signed ``tcbInfo`` text and its 64-byte signature.

        Raises:
            CollateralFormatError: see the module docstring.
        """
        where = "tcbInfo"
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        obj = _signed_object(data, signature, where)
        version = _get(obj, "version", int, where)
        if version not in (1, 2, 3):
            raise _fail(where, f"version {version} is not supported (1, 2, 3)")
        tee = _get(obj, "id", str, where) if version == 3 else "SGX"
        if tee not in ("SGX", "TDX"):
            raise _fail(where, f"id {tee!r} is neither SGX nor TDX")
        issue, nxt = _window(obj, where)
        fmspc = _fixed_hex(obj, "fmspc", 6, where)
        pce_id = _fixed_hex(obj, "pceId", 2, where) if version == 3 or "pceId" in obj else None
        tcb_type = 0
        number: int | None = None
        if version >= 2:
            tcb_type = _get(obj, "tcbType", int, where)
            if tcb_type != 0:
                raise _fail(where, f"tcbType {tcb_type} is not supported (0)")
            number = _get(obj, "tcbEvaluationDataNumber", int, where)
        items = _get(obj, "tcbLevels", list, where)
        if not items:
            raise _fail(where, "tcbLevels is empty")
        levels = tuple(_level(item, version, i) for i, item in enumerate(items))
        if len({(lv.components, lv.pcesvn) for lv in levels}) != len(levels) and tee == "SGX":
            raise _fail(where, "two tcbLevels have the same TCB")
        return cls(raw=data, signature=bytes(signature), id=tee, version=version,
                   issue_date=issue, next_update=nxt, fmspc=fmspc, pce_id=pce_id,
                   tcb_type=tcb_type, tcb_evaluation_data_number=number, levels=levels)

    @classmethod
    def from_json(cls, body: bytes | str) -> TcbInfo:
        """Parse a PCS response body ``{"tcbInfo": {...}, "signature": "..."}``."""
        return cls.parse(*split_signed_body(body, "tcbInfo"))

    def to_json(self) -> bytes:
        """The PCS response body, with the signed object byte-identical."""
        return b'{"tcbInfo":' + self.raw + b',"signature":"' + self.signature.hex().encode() + b'"}'

    @functools.cached_property
    def _descending(self) -> tuple[TcbLevel, ...]:
        return tuple(sorted(self.levels, key=lambda lv: (lv.components, lv.pcesvn), reverse=True))

    def match(self, components: Sequence[int], pcesvn: int) -> TcbLevel | None:
        """The TCB level of a platform whose PCK certifies ``components`` and ``pcesvn``.

        Levels are taken in QVL's order, not the signed order: descending by the component
        SVNs compared lexicographically, then PCESVN (QVL's ``std::set`` with
        ``TcbLevel::operator>``); the first one that every component and the PCESVN reach is
        selected. None: the TCB is not supported.
        """
        if len(components) != 16:
            raise ValueError(f"expected 16 component SVNs, got {len(components)}")
        for level in self._descending:
            if pcesvn >= level.pcesvn and all(
                mine >= theirs for mine, theirs in zip(components, level.components, strict=True)
            ):
                return level
        return None


# --- QE identity -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QeTcbLevel:
    """One QE identity level: QE ISVSVN → status."""

    isvsvn: int
    status: str
    tcb_date: datetime
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class QeIdentity:
    """Signed enclave identity of the quoting enclave (``raw`` is what ``signature`` covers)."""

    raw: bytes
    signature: bytes
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[QeTcbLevel, ...]

    @classmethod
    def parse(cls, raw: bytes | str, signature: bytes) -> QeIdentity:
        """Parse the exact signed ``enclaveIdentity`` text and its 64-byte signature.

        Raises:
            CollateralFormatError: see the module docstring.
        """
        where = "enclaveIdentity"
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        obj = _signed_object(data, signature, where)
        version = _get(obj, "version", int, where)
        if version != 2:
            raise _fail(where, f"version {version} is not supported (2)")
        ident = _get(obj, "id", str, where)
        if ident not in ("QE", "QVE", "TD_QE"):
            raise _fail(where, f"id {ident!r} is not QE, QVE or TD_QE")
        issue, nxt = _window(obj, where)
        items = _get(obj, "tcbLevels", list, where)
        if not items:
            raise _fail(where, "tcbLevels is empty")
        levels = []
        for i, item in enumerate(items):
            lw = f"{where}.tcbLevels[{i}]"
            level = _obj(item, lw)
            levels.append(QeTcbLevel(
                isvsvn=_uint(_get(level, "tcb", dict, lw), "isvsvn", 0xFFFF, lw + ".tcb"),
                status=_status(level, "tcbStatus", QE_STATUSES, lw),
                tcb_date=_date(level, "tcbDate", lw), advisory_ids=_advisories(level, lw)))
        if len({lv.isvsvn for lv in levels}) != len(levels):
            raise _fail(where, "two tcbLevels have the same isvsvn")
        return cls(
            raw=data, signature=bytes(signature), id=ident, version=version, issue_date=issue,
            next_update=nxt,
            tcb_evaluation_data_number=_get(obj, "tcbEvaluationDataNumber", int, where),
            miscselect=_fixed_hex(obj, "miscselect", 4, where),
            miscselect_mask=_fixed_hex(obj, "miscselectMask", 4, where),
            attributes=_fixed_hex(obj, "attributes", 16, where),
            attributes_mask=_fixed_hex(obj, "attributesMask", 16, where),
            mrsigner=_fixed_hex(obj, "mrsigner", 32, where),
            isvprodid=_uint(obj, "isvprodid", 0xFFFF, where),
            levels=tuple(levels))

    @classmethod
    def from_json(cls, body: bytes | str) -> QeIdentity:
        """Parse a PCS response body ``{"enclaveIdentity": {...}, "signature": "..."}``."""
        return cls.parse(*split_signed_body(body, "enclaveIdentity"))

    def to_json(self) -> bytes:
        """The PCS response body, with the signed object byte-identical."""
        return (b'{"enclaveIdentity":' + self.raw + b',"signature":"'
                + self.signature.hex().encode() + b'"}')

    def match(self, isvsvn: int) -> QeTcbLevel | None:
        """The level of a QE with ``isvsvn``: the first level, in the signed order, whose ISVSVN
        is ≤ it (QVL's ``EnclaveIdentityV2::getTcbStatus``); None if below all (QVL: Revoked)."""
        for level in self.levels:
            if level.isvsvn <= isvsvn:
                return level
        return None


def converge_qe_status(platform: str, qe: str) -> str:
    """QVL's convergeTcbStatusWithQeTcbStatus: the platform status after the QE's (§6.8 D.11)."""
    if qe == "Revoked":
        return "Revoked"
    if qe == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform



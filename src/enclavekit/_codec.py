"""Strict decoding shared by every service and parser: base64url, and JSON without duplicates.

Every JSON document that crosses a trust boundary (request bodies, token headers and payloads,
release policies, the key store, collateral) goes through :func:`strict_json` (or, for parsers
with their own number rules, :func:`reject_duplicate_keys`), which refuses duplicate object keys
(TS-7 / QV-10: two parsers reading the same bytes differently), ``NaN``/``Infinity`` and nesting
deeper than :data:`MAX_DEPTH` and numbers longer than :data:`MAX_DIGITS` characters.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "JSONError", "b64url", "b64url_decode",
           "reject_duplicate_keys", "strict_json"]

MAX_DEPTH = 32
"""Deepest nesting of arrays/objects accepted in any JSON document."""

MAX_DIGITS = 40
"""Longest number accepted (characters: sign, digits, point, exponent); 2^128 has 39 digits."""

_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
_B64ANY = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


class JSONError(ValueError):
    """Bytes that are not strict JSON (callers turn this into their own typed error)."""


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An ``object_pairs_hook`` that refuses an object naming one key twice (JSONError)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise JSONError(f"{name} is not JSON")


def _number(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        if len(text) > MAX_DIGITS:
            raise JSONError(f"a number of {len(text)} characters (at most {MAX_DIGITS})")
        return kind(text)
    return parse


_INT, _FLOAT = _number(int), _number(float)


def _depth(value: Any, level: int = 0) -> None:
    if level > MAX_DEPTH:
        raise JSONError(f"nested too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, level + 1)


def strict_json(data: bytes | str) -> Any:
    """Parse JSON, refusing duplicate keys, non-finite or overlong numbers and deep nesting.

    Raises:
        JSONError: the text is not strict JSON (the message says why).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, object_pairs_hook=reject_duplicate_keys,
                           parse_constant=_no_constant, parse_int=_INT, parse_float=_FLOAT)
    except JSONError:
        raise
    except RecursionError:
        raise JSONError(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise JSONError(f"not JSON: {type(exc).__name__}") from exc
    _depth(value)
    return value


def b64url(data: bytes) -> str:
    """Unpadded base64url (what Key Vault emits)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object, *, lenient: bool = False) -> bytes:
    """Decode base64url, padded or not; with ``lenient`` also the standard alphabet.

    Raises:
        ValueError: not a string, or not base64 of that alphabet.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a base64url string, found {type(text).__name__}")
    if not (_B64ANY if lenient else _B64URL).match(text):
        raise ValueError("not base64url")
    body = text.rstrip("=").replace("+", "-").replace("/", "_")
    if len(body) % 4 == 1:
        raise ValueError("not base64url (bad length)")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc

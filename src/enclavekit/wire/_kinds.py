"""msgpack kinds: what a value's first byte says it is (msgpack spec, "Formats" table).

The decoders look at a value's first byte before they decode anything, so that a value of
the wrong kind, an extension type or the reserved byte 0xC1 is refused by name and a
declared length can be checked before the body is read.
"""

from __future__ import annotations

__all__ = ["ARRAY", "BIN", "BOOL", "EXT", "EXT_TYPE_AT", "FLOAT", "INT", "KIND", "KIND_NAME",
           "LEN_FMT", "MAP", "NIL", "RESERVED", "STR"]

NIL, BOOL, INT, FLOAT, STR, BIN, ARRAY, MAP, EXT, RESERVED = range(10)

KIND_NAME = ("None", "bool", "int", "float", "str", "bytes", "list", "dict", "ext", "0xC1")
"""The Python name of each kind, for messages."""


def _kind_table() -> tuple[int, ...]:
    kinds = [RESERVED] * 256
    for b in range(256):
        if b <= 0x7F or b >= 0xE0 or 0xCC <= b <= 0xD3:
            kinds[b] = INT
        elif b <= 0x8F or b in (0xDE, 0xDF):
            kinds[b] = MAP
        elif b <= 0x9F or b in (0xDC, 0xDD):
            kinds[b] = ARRAY
        elif b <= 0xBF or 0xD9 <= b <= 0xDB:
            kinds[b] = STR
        elif b == 0xC0:
            kinds[b] = NIL
        elif b in (0xC2, 0xC3):
            kinds[b] = BOOL
        elif 0xC4 <= b <= 0xC6:
            kinds[b] = BIN
        elif 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8:
            kinds[b] = EXT
        elif b in (0xCA, 0xCB):
            kinds[b] = FLOAT
    return tuple(kinds)


KIND = _kind_table()
"""First byte -> kind."""
LEN_FMT = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}
"""Length field of str8/16/32 and bin8/16/32: first byte -> struct format."""
EXT_TYPE_AT = {0xD4: 1, 0xD5: 1, 0xD6: 1, 0xD7: 1, 0xD8: 1, 0xC7: 2, 0xC8: 3, 0xC9: 5}
"""Extension formats: first byte -> offset of the type code."""

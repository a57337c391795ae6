"""The BYTES framing of the Open Inference Protocol's raw contents, shared by server and clients.

Each element is its length as a 4-byte little-endian unsigned integer, then its bytes. Errors
are ValueErrors with a message a person can act on; each side wraps them in its own error type.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["join_elements", "split_elements"]

_LEN = struct.Struct("<I")


def join_elements(items: Iterable[bytes]) -> bytes:
    """Frame BYTES elements: each one prefixed by its 4-byte little-endian length."""
    parts: list[bytes] = []
    for data in items:
        parts.append(_LEN.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def split_elements(raw: bytes, count: int) -> list[bytes]:
    """The `count` framed elements of `raw`; ValueError when the framing or count is wrong."""
    items: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise ValueError(f"truncated BYTES length prefix at byte {offset}")
        (size,) = _LEN.unpack_from(raw, offset)
        offset += 4
        if offset + size > end:
            raise ValueError(
                f"BYTES element {len(items)} declares {size} bytes but only {end - offset} remain"
            )
        items.append(raw[offset : offset + size])
        offset += size
    if len(items) != count:
        raise ValueError(f"shape needs {count} BYTES elements, got {len(items)}")
    return items

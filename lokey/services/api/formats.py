"""The nine data formats of ``/api/v1/data`` (spec/service-api.md §1.2).

Each value is the **big-endian** unsigned integer of its bytes; the signed formats are its
two's complement. Values are decoded from the queue's byte stream, so they span item
boundaries, and a request for ``limit`` values always needs exactly ``limit * width`` bytes.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

__all__ = ["DataFormat", "decode"]


class DataFormat(enum.StrEnum):
    """The request's ``format``; :attr:`width` is the reference's ``bytes_per_value``."""

    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    BINARY = "binary"

    @property
    def width(self) -> int:
        return struct.calcsize(">" + _CODES[self])


# struct codes, read with ">" = big-endian standard sizes (spec §1.2); the signed codes read two's
# complement. struct rather than numpy: the API process does not load numpy for this.
_CODES: Final[dict[DataFormat, str]] = {
    DataFormat.INT8: "b",
    DataFormat.INT16: "h",
    DataFormat.INT32: "i",
    DataFormat.INT64: "q",
    DataFormat.UINT8: "B",
    DataFormat.UINT16: "H",
    DataFormat.UINT32: "I",
    DataFormat.UINT64: "Q",
    DataFormat.BINARY: "B",
}


def decode(fmt: DataFormat, data: bytes) -> list[int]:
    """``data`` as a list of Python ints in ``fmt``; ``len(data)`` must be a multiple of the
    width (the caller asks the store for exactly ``limit * width`` bytes)."""
    code = _CODES[fmt]
    width = struct.calcsize(">" + code)
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes is not a whole number of {fmt} values")
    return list(struct.unpack(f">{len(data) // width}{code}", data))

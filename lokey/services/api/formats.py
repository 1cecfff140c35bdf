"""The nine data formats of ``/api/v1/data`` (spec/service-api.md §1.2).

Each value is the **big-endian** unsigned integer of its bytes; the signed formats are its
two's complement. Values are decoded from the queue's byte stream, so they span item
boundaries, and a request for ``limit`` values always needs exactly ``limit * width`` bytes.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import numpy as np

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
        return _DTYPES[self].itemsize if self is not DataFormat.BINARY else 1


# ">" = big-endian (spec §1.2); numpy reads two's complement for the signed kinds.
_DTYPES: Final[dict[DataFormat, np.dtype[Any]]] = {
    DataFormat.INT8: np.dtype(">i1"),
    DataFormat.INT16: np.dtype(">i2"),
    DataFormat.INT32: np.dtype(">i4"),
    DataFormat.INT64: np.dtype(">i8"),
    DataFormat.UINT8: np.dtype(">u1"),
    DataFormat.UINT16: np.dtype(">u2"),
    DataFormat.UINT32: np.dtype(">u4"),
    DataFormat.UINT64: np.dtype(">u8"),
    DataFormat.BINARY: np.dtype(">u1"),
}


def decode(fmt: DataFormat, data: bytes) -> list[int]:
    """``data`` as a list of Python ints in ``fmt``; ``len(data)`` must be a multiple of the
    width (the caller asks the store for exactly ``limit * width`` bytes)."""
    dtype = _DTYPES[fmt]
    if len(data) % dtype.itemsize:
        raise ValueError(f"{len(data)} bytes is not a whole number of {fmt} values")
    values: list[int] = np.frombuffer(data, dtype=dtype).tolist()
    return values

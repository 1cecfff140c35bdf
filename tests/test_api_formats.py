"""The nine data formats (spec/service-api.md §1.2): big-endian, two's complement, exact widths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lokey.services.api.formats import DataFormat, decode

WIDTHS = {
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "binary": 1,
}


def test_the_nine_formats_have_the_reference_bytes_per_value() -> None:
    assert {fmt.value: fmt.width for fmt in DataFormat} == WIDTHS


@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [
        # boundaries of every width, big-endian, two's complement for the signed kinds
        ("uint8", bytes([0x00, 0x7F, 0x80, 0xFF]), [0, 127, 128, 255]),
        ("int8", bytes([0x00, 0x7F, 0x80, 0xFF]), [0, 127, -128, -1]),
        ("uint16", bytes.fromhex("0001 7fff 8000 ffff"), [1, 32767, 32768, 65535]),
        ("int16", bytes.fromhex("0001 7fff 8000 ffff"), [1, 32767, -32768, -1]),
        ("uint32", bytes.fromhex("00000001 80000000 ffffffff"), [1, 2**31, 2**32 - 1]),
        ("int32", bytes.fromhex("00000001 80000000 ffffffff"), [1, -(2**31), -1]),
        (
            "uint64",
            bytes.fromhex("0000000000000001 8000000000000000 ffffffffffffffff"),
            [1, 2**63, 2**64 - 1],
        ),
        (
            "int64",
            bytes.fromhex("0000000000000001 8000000000000000 ffffffffffffffff"),
            [1, -(2**63), -1],
        ),
        ("binary", bytes([1, 2, 255]), [1, 2, 255]),
    ],
)
def test_values_are_big_endian_and_signed_formats_are_twos_complement(
    fmt: str, data: bytes, expected: list[int]
) -> None:
    assert decode(DataFormat(fmt), data) == expected


def test_a_64_bit_value_is_exact_beyond_two_to_the_53() -> None:
    value = 2**64 - 3  # not representable as a float
    assert decode(DataFormat.UINT64, value.to_bytes(8, "big")) == [value]


@given(st.sampled_from(list(DataFormat)), st.binary(max_size=256))
def test_decoding_equals_int_from_bytes_per_value(fmt: DataFormat, raw: bytes) -> None:
    width = fmt.width
    data = raw[: len(raw) - len(raw) % width]
    signed = fmt.value.startswith("int")
    expected = [
        int.from_bytes(data[i : i + width], "big", signed=signed)
        for i in range(0, len(data), width)
    ]
    assert decode(fmt, data) == expected


def test_a_partial_value_is_refused_rather_than_silently_dropped() -> None:
    with pytest.raises(ValueError, match="whole number"):
        decode(DataFormat.UINT32, b"\x00\x01\x02")

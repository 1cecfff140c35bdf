"""The ATECC CRC-16 (spec §2.3), kept separate from the driver's copy on purpose.

Polynomial 0x8005, initial value 0, no final XOR, input bits taken LSB first, register not
reflected on output (refin=true, refout=false: a non-standard combination). Equivalent to
CRC-16/UMTS over bit-reversed input bytes, which is what the table below computes, one byte per
lookup, so the emulator's hot path (a 35-byte Random response) costs a few microseconds.
Pinned to ``vectors/crc16.json``.
"""

from __future__ import annotations

__all__ = ["crc16", "crc16_bitwise", "crc16_wire"]

_POLY = 0x8005  # spec §2.3; Microchip cryptoauthlib atCRC()


def crc16_bitwise(data: bytes) -> int:
    """The algorithm exactly as the datasheet describes it, bit by bit (the reference for tests)."""
    crc = 0
    for byte in data:
        for bit in range(8):
            data_bit = (byte >> bit) & 1
            crc_bit = crc >> 15
            crc = (crc << 1) & 0xFFFF
            if data_bit != crc_bit:
                crc ^= _POLY
    return crc


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    reverse = tuple(int(f"{b:08b}"[::-1], 2) for b in range(256))
    table = []
    for index in range(256):
        crc = index << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _POLY) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return reverse, tuple(table)


_REVERSE, _TABLE = _build_tables()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16 of ``data`` as a register value (transmitted low byte first)."""
    crc = 0
    table = _TABLE
    reverse = _REVERSE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ reverse[byte]]
    return crc


def crc16_wire(data: bytes | bytearray | memoryview) -> bytes:
    """The two CRC bytes as they appear on the bus (low byte first)."""
    crc = crc16(data)
    return bytes((crc & 0xFF, crc >> 8))

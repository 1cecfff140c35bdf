"""The ATECC CRC-16 (spec/atecc608a.md §2.3), the driver's own copy.

Polynomial 0x8005, initial value 0, no final XOR, input bits LSB first, result not reflected,
sent low byte first. Kept apart from ``sim.atecc608a.crc`` on purpose (a CRC bug shared by
driver and emulator would pass every test); both are pinned to ``vectors/crc16.json``.
"""

from __future__ import annotations

__all__ = ["crc16", "crc16_bytes"]

_POLY = 0x8005


def _byte_update_table() -> tuple[int, ...]:
    """For each value v of (register high byte XOR data byte, bits mirrored), the register
    contribution of shifting eight bits through the datasheet's bit loop."""
    table = []
    for value in range(256):
        register = value << 8
        for _ in range(8):
            register = (register << 1) ^ (_POLY if register & 0x8000 else 0)
        table.append(register & 0xFFFF)
    return tuple(table)


_TABLE = _byte_update_table()
# Data bits enter LSB first while the register shifts MSB first: mirror each data byte.
_MIRROR = tuple(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC register value over ``data``."""
    register = 0
    for byte in data:
        register = ((register << 8) & 0xFFFF) ^ _TABLE[(register >> 8) ^ _MIRROR[byte]]
    return register


def crc16_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """The two CRC bytes as sent on the wire, low byte first."""
    register = crc16(data)
    return bytes((register & 0xFF, register >> 8))

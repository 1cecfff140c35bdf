"""Pure framing of ATECC608A command and response groups (spec/atecc608a.md §2, §3).

No I/O: bytes in, bytes or typed errors out. The transport sends what :func:`command_group`
builds and hands what it reads to :func:`response_payload`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType

from lokey.errors import (
    ChipCrcError,
    CommunicationError,
    DeviceStatusError,
    EccFaultError,
    ExecutionError,
    HealthTestError,
    LostCommandError,
    ParseError,
    SelfTestError,
    WatchdogError,
)
from lokey.hardware.crc import crc16, crc16_bytes

__all__ = [
    "MAX_GROUP",
    "STATUS_GROUP_LENGTH",
    "Opcode",
    "Status",
    "WordAddress",
    "command_group",
    "raise_for_status",
    "response_payload",
]

STATUS_GROUP_LENGTH = 4  # §2.2: count, status, CRC (2)
MAX_GROUP = 155  # §1.6: the largest group the chip accepts
_OVERHEAD = 3  # count byte + 2 CRC bytes


class WordAddress(IntEnum):
    """First byte of every write to the chip (§1.2)."""

    RESET = 0x00
    SLEEP = 0x01
    IDLE = 0x02
    COMMAND = 0x03


class Opcode(IntEnum):
    """The opcodes the driver sends (§4)."""

    READ = 0x02
    WRITE = 0x12
    NONCE = 0x16
    LOCK = 0x17
    RANDOM = 0x1B
    UPDATE_EXTRA = 0x20
    COUNTER = 0x24
    INFO = 0x30
    GENKEY = 0x40
    SIGN = 0x41
    ECDH = 0x43
    VERIFY = 0x45
    SHA = 0x47
    SELF_TEST = 0x77


class Status(IntEnum):
    """Status bytes of 4-byte groups (§3)."""

    SUCCESS = 0x00
    MISCOMPARE = 0x01
    PARSE_ERROR = 0x03
    ECC_FAULT = 0x05
    SELFTEST_ERROR = 0x07
    HEALTH_TEST_ERROR = 0x08
    EXECUTION_ERROR = 0x0F
    AFTER_WAKE = 0x11
    WATCHDOG_ABOUT_TO_EXPIRE = 0xEE
    COMM_ERROR = 0xFF


_ERRORS: Mapping[int, tuple[type[DeviceStatusError], str]] = MappingProxyType(
    {
        Status.PARSE_ERROR: (ParseError, "parse error: illegal opcode, length or parameter"),
        Status.ECC_FAULT: (EccFaultError, "ECC fault"),
        Status.SELFTEST_ERROR: (SelfTestError, "self-test failure state"),
        Status.HEALTH_TEST_ERROR: (HealthTestError, "RNG health test failed"),
        Status.EXECUTION_ERROR: (ExecutionError, "execution error (lock state or permissions)"),
        Status.AFTER_WAKE: (LostCommandError, "wake status instead of a result: command lost"),
        Status.WATCHDOG_ABOUT_TO_EXPIRE: (WatchdogError, "watchdog about to expire"),
        Status.COMM_ERROR: (ChipCrcError, "the chip received a damaged command (CRC/count)"),
    }
)


def command_group(opcode: int, param1: int = 0, param2: int = 0, data: bytes = b"") -> bytes:
    """``count, opcode, param1, param2 (LE), data, CRC (LE)`` (§2.1), without word address."""
    if not 0 <= opcode <= 0xFF or not 0 <= param1 <= 0xFF:
        raise ValueError(f"opcode and param1 are bytes, got 0x{opcode:X} / 0x{param1:X}")
    if not 0 <= param2 <= 0xFFFF:
        raise ValueError(f"param2 is 16 bits, got 0x{param2:X}")
    count = 7 + len(data)
    if count > MAX_GROUP:
        raise ValueError(f"a command group holds at most {MAX_GROUP} bytes, this one {count}")
    body = bytes((count, opcode, param1, param2 & 0xFF, param2 >> 8)) + data
    return body + crc16_bytes(body)


def response_payload(raw: bytes, payload_length: int, *, command: str = "command") -> bytes:
    """Check a response group read from the chip and return its payload.

    ``raw`` may be longer than the group (fixed-length reads see 0xFF past the end, §1.5).
    A 4-byte group where a longer one was due carries a status: it becomes the typed error of
    :func:`raise_for_status`. A group whose count is neither, or whose CRC does not match,
    raises :class:`CommunicationError` (never treat those bytes as data).
    """
    if payload_length < 1:  # a caller's mistake, not the chip's: every group carries a byte
        raise ValueError(f"payload_length must be at least 1, got {payload_length}")
    if not raw:
        raise CommunicationError(f"{command}: empty response")
    count = raw[0]
    expected = payload_length + _OVERHEAD
    if count not in (STATUS_GROUP_LENGTH, expected) or count > len(raw):
        raise CommunicationError(
            f"{command}: response count 0x{count:02X}, expected 0x{expected:02X} "
            f"or a 4-byte status group ({len(raw)} bytes read)"
        )
    group = raw[:count]
    if crc16(group[:-2]) != group[-2] | group[-1] << 8:
        raise CommunicationError(f"{command}: response CRC mismatch")
    payload = group[1:-2]
    if count == STATUS_GROUP_LENGTH and expected != STATUS_GROUP_LENGTH:
        raise_for_status(payload[0], command=command)
        raise CommunicationError(f"{command}: status 0x{payload[0]:02X} where data was due")
    return payload


def raise_for_status(status: int, *, command: str = "command") -> None:
    """Raise the typed error of an error status byte; return for any other byte."""
    known = _ERRORS.get(status)
    if known is not None:
        error, meaning = known
        raise error(status, f"{command}: status 0x{status:02X}, {meaning}")

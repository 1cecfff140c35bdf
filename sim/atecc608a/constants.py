"""Protocol constants of the ATECC608A, each named after its source in ``spec/atecc608a.md``.

The emulator keeps its own copy of these (``sim`` never imports ``lokey``), so a wrong constant
shared by driver and emulator cannot hide; both are pinned to ``vectors/``.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "COUNTER_MAX",
    "DATA_SLOT_SIZES",
    "DEFAULT_I2C_ADDRESS",
    "FACTORY_CONFIG",
    "MAX_COUNT",
    "MIN_COUNT",
    "OTP_SIZE",
    "REVISIONS",
    "SELFTEST_ALL",
    "TEST_PATTERN",
    "Opcode",
    "Status",
    "WordAddress",
]

DEFAULT_I2C_ADDRESS = 0x60  # §1.1: config byte 16 = 0xC0, 7-bit address = byte16 >> 1


class WordAddress(IntEnum):
    """First byte of every host write (§1.2)."""

    RESET = 0x00
    SLEEP = 0x01
    IDLE = 0x02
    COMMAND = 0x03


class Status(IntEnum):
    """Status byte of a 4-byte status group (§3)."""

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


class Opcode(IntEnum):
    """Command opcodes of the ATECC608A (§4)."""

    READ = 0x02
    MAC = 0x08
    WRITE = 0x12
    GENDIG = 0x15
    NONCE = 0x16
    LOCK = 0x17
    RANDOM = 0x1B
    DERIVE_KEY = 0x1C
    UPDATE_EXTRA = 0x20
    COUNTER = 0x24
    CHECK_MAC = 0x28
    INFO = 0x30
    GENKEY = 0x40
    SIGN = 0x41
    ECDH = 0x43
    VERIFY = 0x45
    PRIV_WRITE = 0x46
    SHA = 0x47
    AES = 0x51
    KDF = 0x56
    SELF_TEST = 0x77
    SECURE_BOOT = 0x80


# §1.6: an input group holds 4..155 bytes including count and CRC.
MIN_COUNT = 4
MAX_COUNT = 155

# §7.1: OTP 64 bytes; data slots 0-7 hold 36 bytes, slot 8 416, slots 9-15 72.
OTP_SIZE = 64
DATA_SLOT_SIZES: tuple[int, ...] = (36,) * 8 + (416,) + (72,) * 7

# §8: counters count 0..2,097,151.
COUNTER_MAX = 2_097_151

# §10.2 (cryptoauthlib SELFTEST_MODE_*): RNG 0x01, ECDSA 0x02, ECDH 0x08, AES 0x10, SHA 0x20;
# "all" is 0x3B. The spec's table prints ECDSA as 0x04, which contradicts its own 0x3B; the
# cryptoauthlib value 0x02 is the one consistent with 0x3B.
SELFTEST_ALL = 0x3B

# §5: Random output while the config zone is unlocked: FF FF 00 00 repeated eight times.
TEST_PATTERN = bytes.fromhex("ffff0000") * 8

# §6: Info(revision) payloads; config bytes 4-7 carry the same value.
REVISIONS: dict[str, bytes] = {
    "608A": bytes.fromhex("00006002"),
    "608B": bytes.fromhex("00006003"),
}

# §12: factory-fresh configuration image (a real ATECC608B-SSHDA with bytes 85 and 87 restored).
# Tests compare this against vectors/atecc_config_factory.json.
FACTORY_CONFIG = bytes.fromhex(
    "012325a50000600347caaf9bee614d00"
    "c0000000832087208f20c48f8f8f8f8f"
    "9f8faf8f000000000000000000000000"
    "0000af8fffffffff00000000ffffffff"
    "00000000000000000000000000000000"
    "0000000000005555ffff000000000000"
    "3300330033001c001c001c001c001c00"
    "3c003c003c003c003c003c003c001c00"
)

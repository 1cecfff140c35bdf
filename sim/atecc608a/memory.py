"""The chip's EEPROM: config zone, OTP zone and data slots, with the lock bytes' meaning.

Plain data with no timing and no bus; the command handlers enforce access rules on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.atecc608a.constants import COUNTER_MAX, DATA_SLOT_SIZES, OTP_SIZE

__all__ = ["Memory", "decode_counter", "encode_counter"]

# §7.4 / §11: byte offsets in the config zone.
I2C_ADDRESS_BYTE = 16
CHIP_MODE_BYTE = 19
SLOT_CONFIG_OFFSET = 20
COUNTER_OFFSETS = (52, 60)
USER_EXTRA_BYTE = 84
USER_EXTRA_ADD_BYTE = 85
LOCK_VALUE_BYTE = 86
LOCK_CONFIG_BYTE = 87
SLOT_LOCKED_OFFSET = 88
CHIP_OPTIONS_OFFSET = 90
KEY_CONFIG_OFFSET = 96
UNLOCKED = 0x55  # §7.4: LockValue / LockConfig of an unlocked zone; 0x00 when locked

# §11 KeyConfig: b0 Private, b4:2 KeyType (4 = P-256).
KEYCONFIG_PRIVATE = 0x0001
KEYCONFIG_KEYTYPE_SHIFT = 2
KEYTYPE_P256 = 4
# A private key sits in its slot the way PrivWrite's 36-byte value lays it out (§4): four zero
# pad bytes, then the 32-byte big-endian scalar. The slot's remaining bytes are left alone.
PRIVATE_KEY_PAD = 4
PRIVATE_KEY_SIZE = 32


def decode_counter(field_bytes: bytes) -> int:
    """Decode a Counter[i] config field (§8); a non-canonical encoding decodes as 0 (decision 28).

    Lokey's template writes eight 0x00 bytes, which no value encodes; it reads as 0.
    """
    raw = bytes(field_bytes)
    base = int.from_bytes(raw[4:6], "big") * 32  # bin_a = value div 32
    for value in range(base, min(base + 32, COUNTER_MAX + 1)):
        if encode_counter(value) == raw:
            return value
    return 0


def encode_counter(value: int) -> bytes:
    """The 8-byte config encoding of an initial counter value (cryptoauthlib, §8)."""
    if not 0 <= value <= COUNTER_MAX:
        raise ValueError(f"counter value must be 0..{COUNTER_MAX}, got {value}")
    lin_a = 0xFFFF >> (value % 32)
    lin_b = 0xFFFF if value < 16 else 0xFFFF >> ((value - 16) % 32)
    bin_a = value // 32
    bin_b = 0 if value < 16 else (value - 16) // 32
    return b"".join(x.to_bytes(2, "big") for x in (lin_a, lin_b, bin_a, bin_b))


_SLOT_STARTS = tuple(sum(DATA_SLOT_SIZES[:i]) for i in range(len(DATA_SLOT_SIZES)))


@dataclass
class Memory:
    """EEPROM contents: survives sleep, watchdog and power cycles."""

    config: bytearray
    otp: bytearray = field(default_factory=lambda: bytearray(OTP_SIZE))
    data: bytearray = field(default_factory=lambda: bytearray(sum(DATA_SLOT_SIZES)))
    counters: list[int] = field(default_factory=lambda: [0, 0])

    def __post_init__(self) -> None:
        if self.config_locked:
            self.load_counters_from_config()  # an image that arrives locked has live counters

    # --- lock bytes (§7.4) -------------------------------------------------------------------
    @property
    def config_locked(self) -> bool:
        # cryptoauthlib's reading: locked <=> not 0x55 (other values are not "unlocked" either)
        return self.config[LOCK_CONFIG_BYTE] != UNLOCKED

    @property
    def data_locked(self) -> bool:
        return self.config[LOCK_VALUE_BYTE] != UNLOCKED

    def slot_locked(self, slot: int) -> bool:
        mask = int.from_bytes(self.config[SLOT_LOCKED_OFFSET : SLOT_LOCKED_OFFSET + 2], "little")
        return not (mask >> slot) & 1

    def lock_slot(self, slot: int) -> None:
        mask = int.from_bytes(self.config[SLOT_LOCKED_OFFSET : SLOT_LOCKED_OFFSET + 2], "little")
        mask &= ~(1 << slot)
        self.config[SLOT_LOCKED_OFFSET : SLOT_LOCKED_OFFSET + 2] = mask.to_bytes(2, "little")

    # --- per-slot configuration (§11) ---------------------------------------------------------
    def slot_config(self, slot: int) -> int:
        offset = SLOT_CONFIG_OFFSET + 2 * slot
        return int.from_bytes(self.config[offset : offset + 2], "little")

    def key_config(self, slot: int) -> int:
        offset = KEY_CONFIG_OFFSET + 2 * slot
        return int.from_bytes(self.config[offset : offset + 2], "little")

    def holds_p256_private_key(self, slot: int) -> bool:
        """KeyConfig says: a P-256 private key (Private = 1, KeyType = 4; decision 30)."""
        key_config = self.key_config(slot)
        key_type = (key_config >> KEYCONFIG_KEYTYPE_SHIFT) & 0x07
        return bool(key_config & KEYCONFIG_PRIVATE) and key_type == KEYTYPE_P256

    def private_scalar(self, slot: int) -> int:
        """The 32-byte scalar stored in a slot (after the pad), whether or not it is valid."""
        start = _SLOT_STARTS[slot] + PRIVATE_KEY_PAD
        return int.from_bytes(self.data[start : start + PRIVATE_KEY_SIZE], "big")

    def store_private_scalar(self, slot: int, scalar: int) -> None:
        start = _SLOT_STARTS[slot]
        value = bytes(PRIVATE_KEY_PAD) + scalar.to_bytes(PRIVATE_KEY_SIZE, "big")
        self.data[start : start + len(value)] = value

    @property
    def chip_mode(self) -> int:
        return self.config[CHIP_MODE_BYTE]

    @property
    def chip_options(self) -> int:
        return int.from_bytes(self.config[CHIP_OPTIONS_OFFSET : CHIP_OPTIONS_OFFSET + 2], "little")

    def configured_address(self) -> int:
        """The 7-bit address the config asks for (§1.1), as applied at the next sleep."""
        if self.chip_mode & 0x01 and self.config[USER_EXTRA_ADD_BYTE]:
            return self.config[USER_EXTRA_ADD_BYTE] >> 1
        return self.config[I2C_ADDRESS_BYTE] >> 1

    # --- data zone ------------------------------------------------------------------------------
    @staticmethod
    def slot_span(slot: int) -> tuple[int, int]:
        """(start, size) of a data slot within the data zone."""
        return _SLOT_STARTS[slot], DATA_SLOT_SIZES[slot]

    def load_counters_from_config(self) -> None:
        """Counters start from the values encoded in the config zone (done at config lock)."""
        self.counters = [
            decode_counter(bytes(self.config[offset : offset + 8])) for offset in COUNTER_OFFSETS
        ]

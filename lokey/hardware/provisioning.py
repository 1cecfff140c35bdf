"""Provisioning without foot-guns: plan the config writes, show them, and only then lock.

The template is RNG-oriented and follows the datasheet's config layout (spec/atecc608a.md §11):
it is the configuration Microchip ships (§12), which already makes Random work once the config
zone is locked, so on a factory-fresh chip the plan writes nothing and only locks. If anyone
changed bytes 16-127, the plan restores them first. It is NOT the Go reference's template,
which is misaligned against the layout and marks every slot locked (§13).

Locking is irreversible, so :func:`provision` verifies the config read back from the chip
against the plan and locks with the summary CRC (mode 0x00): if anything differs, the chip
itself refuses to lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from lokey.errors import ProvisioningError
from lokey.hardware.commands import Atecc608aDriver, config_summary

__all__ = ["RNG_TEMPLATE", "ConfigWrite", "ProvisionPlan", "plan", "provision"]

CONFIG_SIZE = 128
_WORD = 4
_FIRST_WRITABLE_WORD = 4  # §7.3: bytes 0-15 (serial, revision, I2C enable) are never writable
_LOCK_WORD = 0x15  # §7.3: bytes 84-87 change only through UpdateExtra and Lock
_UNLOCKED = 0x55

# Bytes 16-127 by field (§11); offsets 84-87 are placeholders the plan never writes.
_FIELDS: tuple[tuple[int, str, bytes, str], ...] = (
    (16, "I2C_Address", b"\xc0", "7-bit address 0x60, the default every driver expects"),
    (17, "reserved", b"\x00", ""),
    (18, "CountMatch", b"\x00", "disabled: no key is tied to a counter"),
    (19, "ChipMode", b"\x00", "address from byte 16, 1.3 s watchdog, clock divider M0"),
    (
        20,
        "SlotConfig[0..15]",
        bytes.fromhex("832087208f20c48f8f8f8f8f9f8faf8f0000000000000000000000000000af8f"),
        "Microchip's factory values: key slots stay usable later",
    ),
    (52, "Counter[0]", bytes.fromhex("ffffffff00000000"), "encoded value 0 (§8)"),
    (60, "Counter[1]", bytes.fromhex("ffffffff00000000"), "encoded value 0 (§8)"),
    (68, "UseLock", b"\x00", "disabled"),
    (69, "VolatileKeyPermission", b"\x00", "disabled"),
    (70, "SecureBoot", b"\x00\x00", "disabled"),
    (72, "KdfIvLoc", b"\x00", ""),
    (73, "KdfIvStr", b"\x00\x00", ""),
    (75, "reserved", bytes(9), ""),
    (84, "UserExtra..LockConfig", bytes(4), "not written: UpdateExtra and Lock own them"),
    (88, "SlotLocked", b"\xff\xff", "no slot locked"),
    (90, "ChipOptions", b"\x00\x00", "factory default"),
    (92, "X509format", bytes(4), "unused"),
    (
        96,
        "KeyConfig[0..15]",
        bytes.fromhex("3300330033001c001c001c001c001c003c003c003c003c003c003c003c001c00"),
        "Microchip's factory values",
    ),
)


def _template() -> bytes:
    image = bytearray(CONFIG_SIZE)
    end = 16
    for offset, _, value, _ in _FIELDS:
        if offset != end:
            raise AssertionError(f"template fields leave a gap at byte {end}")
        image[offset : offset + len(value)] = value
        end = offset + len(value)
    if end != CONFIG_SIZE:
        raise AssertionError("template fields do not reach byte 127")
    return bytes(image)


RNG_TEMPLATE = _template()
"""128 bytes; only 16-83 and 88-127 are used (bytes 0-15 and 84-87 come from the chip)."""


@dataclass(frozen=True)
class ConfigWrite:
    word: int
    current: bytes
    new: bytes

    @property
    def offset(self) -> int:
        return self.word * _WORD


@dataclass(frozen=True)
class ProvisionPlan:
    """What provisioning will do to one chip: the writes, the image after them, its summary."""

    current: bytes
    expected: bytes
    writes: tuple[ConfigWrite, ...]
    summary_crc: int
    already_locked: bool


def plan(current: bytes, template: bytes = RNG_TEMPLATE) -> ProvisionPlan:
    """Compare a chip's 128 config bytes with ``template``; pure, writes nothing."""
    if len(current) != CONFIG_SIZE or len(template) != CONFIG_SIZE:
        raise ValueError(f"config images are {CONFIG_SIZE} bytes")
    expected = bytearray(current)
    writes = []
    for word in range(_FIRST_WRITABLE_WORD, CONFIG_SIZE // _WORD):
        if word == _LOCK_WORD:
            continue
        span = slice(word * _WORD, (word + 1) * _WORD)
        if current[span] != template[span]:
            writes.append(ConfigWrite(word, bytes(current[span]), bytes(template[span])))
            expected[span] = template[span]
    return ProvisionPlan(
        current=bytes(current),
        expected=bytes(expected),
        writes=tuple(writes),
        summary_crc=config_summary(bytes(expected)),
        already_locked=current[87] != _UNLOCKED,
    )


def field_of(offset: int) -> str:
    """The §11 field a config byte belongs to (for showing a plan to a person)."""
    for start, name, value, _ in _FIELDS:
        if start <= offset < start + len(value):
            return name
    return "serial/revision" if offset < 16 else "?"


def provision(
    driver: Atecc608aDriver,
    approved: ProvisionPlan | None = None,
    *,
    template: bytes = RNG_TEMPLATE,
) -> ProvisionPlan:
    """Write the plan, verify the read-back image, lock the config zone with its CRC.

    ``approved`` is the plan a person was shown: provisioning refuses if the chip's config no
    longer matches what that plan was computed from, so what gets locked is what was approved.
    Without it, the plan is computed from ``template`` here. Raises
    :class:`ProvisioningError` (nothing locked) when the zone is already locked, the config
    changed since the approval, or the read-back differs from the plan. Device errors
    propagate as they are.
    """
    with driver.session():
        current = driver.read_config()
        if approved is not None and current != approved.current:
            raise ProvisioningError(
                "the chip's config changed since the plan was shown; nothing written or locked"
            )
        the_plan = approved if approved is not None else plan(current, template)
        if the_plan.already_locked:
            raise ProvisioningError("the config zone is already locked: nothing to provision")
        for write in the_plan.writes:
            driver.write_config_word(write.word, write.new)
        after = driver.read_config()
        if after != the_plan.expected:
            differing = [i for i in range(CONFIG_SIZE) if after[i] != the_plan.expected[i]]
            raise ProvisioningError(
                f"config read back differs from the plan at bytes {differing[:8]}; not locked"
            )
        driver.lock_config(the_plan.summary_crc)
        if not driver.lock_state().config_locked:
            raise ProvisioningError("Lock reported success but the config zone reads unlocked")
    return the_plan

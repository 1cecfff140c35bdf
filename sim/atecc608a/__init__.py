"""A byte-accurate emulator of the Microchip ATECC608A on the virtual I2C bus.

>>> from sim.atecc608a import ATECC608A
>>> chip = ATECC608A()            # factory-fresh, unlocked, wall clock, typical timing
>>> bus.attach(0x60, chip)        # doctest: +SKIP

Follows ``spec/atecc608a.md``; ``chip.control`` is the typed test surface.

Keys and ECC (§10.3; rules in :mod:`sim.atecc608a.engine`). The factory image (§12) that every
``lock=`` preset (and ``sim://atecc608a?lock=…``) starts from makes slots 0, 1 and 2 P-256
private-key slots (KeyConfig 0x0033); their data is all zeros, so none holds a key until GenKey
(mode 0x04) creates one:

* slot 0, SlotConfig 0x2083: external and internal Sign, GenKey; no ECDH;
* slot 1, SlotConfig 0x2087: Sign, GenKey and ECDH (secret in clear, or to TempKey / slot 2);
* slot 2, SlotConfig 0x208F: Sign, GenKey and ECDH; legacy mode 0x00 writes the secret to slot 3.

By lock state: ``unlocked``: every GenKey/Sign/Verify/ECDH answers 0x0F. ``config-locked``:
GenKey creates and reads keys in slots 0-2 and Verify works; Sign and ECDH answer 0x0F until
the data zone is locked. ``locked``: all of the above. Private keys are stored as PrivWrite lays
them out (four zero bytes, then the 32-byte scalar) and are never readable over the bus;
``chip.control.public_key(slot)`` / ``has_private_key(slot)`` inspect them, and
``configure_private_key_slot`` / ``set_private_key`` provision other slots and known keys.
"""

from sim.atecc608a.chip import ATECC608A, ChipSettings, Power, group
from sim.atecc608a.constants import FACTORY_CONFIG, TEST_PATTERN, Opcode, Status, WordAddress
from sim.atecc608a.control import ChipControl, ChipState, CommandRecord, FaultHandle, LockState
from sim.atecc608a.crc import crc16, crc16_wire
from sim.atecc608a.faults import (
    BrownOut,
    ChipFault,
    CorruptResponseCrc,
    ExtraBusy,
    ForcedStatus,
    LostCommand,
    RngHealthFailure,
    SelfTestFailure,
    StuckOutput,
    WakeIgnored,
    WrongCount,
)
from sim.atecc608a.timing import TimingModel

__all__ = [
    "ATECC608A",
    "FACTORY_CONFIG",
    "TEST_PATTERN",
    "BrownOut",
    "ChipControl",
    "ChipFault",
    "ChipSettings",
    "ChipState",
    "CommandRecord",
    "CorruptResponseCrc",
    "ExtraBusy",
    "FaultHandle",
    "ForcedStatus",
    "LockState",
    "LostCommand",
    "Opcode",
    "Power",
    "RngHealthFailure",
    "SelfTestFailure",
    "Status",
    "StuckOutput",
    "TimingModel",
    "WakeIgnored",
    "WordAddress",
    "WrongCount",
    "crc16",
    "crc16_wire",
    "group",
]

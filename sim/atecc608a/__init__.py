"""A byte-accurate emulator of the Microchip ATECC608A on the virtual I2C bus.

>>> from sim.atecc608a import ATECC608A
>>> chip = ATECC608A()            # factory-fresh, unlocked, wall clock, typical timing
>>> bus.attach(0x60, chip)        # doctest: +SKIP

Follows ``spec/atecc608a.md``; ``chip.control`` is the typed test surface.
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

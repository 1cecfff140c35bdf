"""Helpers for the driver tests: the real emulator on a traced virtual bus, and the vectors.

The driver (``lokey.hardware``) never imports ``sim``; these tests wire the two together the way
``lokey.backends`` will: a :class:`~sim.clock.VirtualClock` shared by the bus, the chip and the
transport, so every delay the driver waits is free and every watchdog is deterministic.
Known answers are loaded from ``../shared/vectors/`` and never retyped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lokey.hardware.commands import Atecc608aDriver
from lokey.hardware.transport import DEFAULT_TIMING, Transport, TransportTiming
from sim.atecc608a import ATECC608A, TimingModel
from sim.clock import VirtualClock
from sim.i2c_bus import TraceRecord, VirtualI2CBus

__all__ = [
    "ADDRESS",
    "VECTORS",
    "DriverRig",
    "factory",
    "make_driver_rig",
    "packets",
    "vector_bytes",
]

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
ADDRESS = 0x60  # spec §1.1


@functools.cache
def _load(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


def packets() -> Any:
    """``vectors/atecc_packets.json``."""
    return _load("atecc_packets")


def factory() -> Any:
    """``vectors/atecc_config_factory.json``."""
    return _load("atecc_config_factory")


def crc_cases() -> Any:
    """The ``cases`` of ``vectors/crc16.json``."""
    return _load("crc16")["cases"]


def vector_bytes(section: str, name: str, key: str = "packet_hex") -> bytes:
    """``key`` of the entry called ``name`` (or the only one starting with it) in ``section``."""
    entries = packets()[section]
    found = [e for e in entries if e["name"] == name] or [
        e for e in entries if e["name"].startswith(name)
    ]
    if len(found) != 1:
        raise KeyError(f"{len(found)} entries in {section} match {name!r}")
    return bytes.fromhex(found[0][key])


def chip_timing(name: str, *, watchdog_s: float | None = None) -> TimingModel:
    """An emulator timing model, optionally with another watchdog (0.7 s = datasheet minimum)."""
    model = TimingModel.named(name)
    return model if watchdog_s is None else dataclasses.replace(model, watchdog_s=watchdog_s)


@dataclass
class DriverRig:
    """Clock, traced bus, emulated chip at 0x60, and the driver under test on top."""

    clock: VirtualClock
    bus: VirtualI2CBus
    chip: ATECC608A
    transport: Transport
    driver: Atecc608aDriver

    def records(self) -> list[TraceRecord]:
        return self.bus.trace.records()

    def chip_records(self) -> list[TraceRecord]:
        """Messages addressed to the chip (not the wake pulses to 0x00)."""
        return [r for r in self.records() if r.address == ADDRESS]

    def chip_writes(self, since: int = 0) -> list[bytes]:
        """Acknowledged writes to the chip, in order."""
        return [
            r.data
            for r in self.records()[since:]
            if r.address == ADDRESS and r.direction == "w" and r.outcome == "ack"
        ]

    def command_writes(self, since: int = 0) -> list[bytes]:
        """Acknowledged command writes (word address 0x03), without the word address."""
        return [w[1:] for w in self.chip_writes(since) if w[:1] == b"\x03"]

    def statuses(self) -> list[int | None]:
        """Status byte of every command the chip parsed (None for data responses)."""
        return [record.status for record in self.chip.control.commands()]

    def opcodes(self) -> list[int | None]:
        return [record.opcode for record in self.chip.control.commands()]


def make_driver_rig(
    timing: str | TimingModel = "instant",
    *,
    transport_timing: TransportTiming = DEFAULT_TIMING,
    check_wake: bool = True,
    nack_errno: int | None = None,
    **chip_options: Any,
) -> DriverRig:
    """A fresh emulated chip (factory image, unlocked unless told) and a driver talking to it."""
    clock = VirtualClock()
    bus = (
        VirtualI2CBus(clock) if nack_errno is None else VirtualI2CBus(clock, nack_errno=nack_errno)
    )
    chip = ATECC608A(clock=clock, timing=timing, **chip_options)
    bus.attach(ADDRESS, chip)
    transport = Transport(bus, clock, timing=transport_timing, check_wake=check_wake)
    return DriverRig(clock, bus, chip, transport, Atecc608aDriver(transport))

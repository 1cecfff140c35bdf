"""The ``emulator`` fixture's value: an emulated chip on its virtual bus, with their test surfaces.

``lokey.backends.OpenedBus`` types the chip loosely (lokey must not depend on sim's types); a
suite that injects faults wants the real types, so :meth:`Emulator.of` narrows them once::

    def test_a_stuck_rng_is_refused(emulator: Emulator) -> None:
        emulator.control.inject(StuckOutput())            # sim.atecc608a.faults
        emulator.bus_faults.inject(Nack(0x60, Schedule.first(2)))  # sim.i2c_bus.faults
        host = emulator.host()
        ...
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.buses import ATECC_ADDRESS, OpenedBus
from conformance.protocol import Host
from lokey.clock import Clock
from sim.atecc608a import ATECC608A, ChipControl
from sim.i2c_bus import BusFaults, Trace, VirtualI2CBus

__all__ = ["Emulator"]


@dataclass(frozen=True)
class Emulator:
    """One emulated ATECC608A on a virtual I2C bus, as ``--bus sim://...`` opened it."""

    opened: OpenedBus  # the bus to talk through (the spy, when the URL began with spy+)
    chip: ATECC608A
    virtual_bus: VirtualI2CBus

    @classmethod
    def of(cls, opened: OpenedBus) -> Emulator | None:
        """The emulator behind ``opened``; None on real hardware."""
        chip, bus = opened.emulator, opened.inner_bus
        if not isinstance(chip, ATECC608A) or not isinstance(bus, VirtualI2CBus):
            return None
        return cls(opened, chip, bus)

    @property
    def clock(self) -> Clock:
        """The clock chip and bus run on (virtual unless the URL says ``clock=wall``)."""
        return self.opened.clock

    @property
    def control(self) -> ChipControl:
        """The chip's test surface: faults, power cycle, lock presets, state, command log."""
        return self.chip.control

    @property
    def bus_faults(self) -> BusFaults:
        """Faults on the wires: NACKs, bit flips, a stuck or held-low bus, latency."""
        return self.virtual_bus.faults

    @property
    def trace(self) -> Trace:
        """Every message the bus carried."""
        return self.virtual_bus.trace

    def host(self, address: int = ATECC_ADDRESS) -> Host:
        """A conformance host on this bus (not yet woken)."""
        return Host(self.opened.bus, self.clock, address)

"""What a device on the virtual bus must implement.

The bus speaks to targets in I2C terms only: a write message, a read message, the STOP that ends a
transfer, and the wake pulse (SDA held low by a write to address 0x00). A target answers with an
ACK or a NACK and with bytes; it never raises for bus-level conditions, just as a chip cannot raise
on a wire. Faults that live on the wires (bit flips, a stuck bus, NACK storms) belong to the bus,
not to targets.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["I2CTarget"]


@runtime_checkable
class I2CTarget(Protocol):
    """A device attached to :class:`sim.i2c_bus.VirtualI2CBus`."""

    def bus_address(self, attached_at: int) -> int:
        """The 7-bit address the device answers at now.

        Plain devices return ``attached_at``; a device whose address is configurable (the
        ATECC608A's I2C_Address byte, applied at sleep) may move.
        """
        ...

    def i2c_write(self, data: bytes) -> bool:
        """A write message addressed to this device; ``False`` means the address was NACKed."""
        ...

    def i2c_read(self, length: int) -> bytes | None:
        """A read message of ``length`` bytes; ``None`` means the address was NACKed.

        Otherwise exactly ``length`` bytes are returned (a device that has nothing more to say
        returns 0xFF, the idle level of SDA).
        """
        ...

    def i2c_stop(self) -> None:
        """The STOP condition ending a transfer in which this device was addressed."""
        ...

    def wake_pulse(self) -> None:
        """SDA was held low long enough to wake a sleeping device (a write to address 0x00)."""
        ...

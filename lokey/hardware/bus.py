"""The bus the driver talks to: exactly the subset of smbus2 it uses.

``smbus2.SMBus`` and ``sim.i2c_bus.VirtualI2CBus`` both satisfy it, so the driver is byte for
byte the same on a Raspberry Pi and on the emulator.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from smbus2 import i2c_msg

__all__ = ["Bus"]


@runtime_checkable
class Bus(Protocol):
    """One ``i2c_rdwr`` call is one START ... STOP transfer; reads are filled in place."""

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None: ...

    def close(self) -> None: ...

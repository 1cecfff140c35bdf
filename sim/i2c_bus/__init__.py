"""The virtual I2C bus: an smbus2-compatible adapter, fault injection on the wires, and a trace.

Devices (the ATECC608A emulator, or small test doubles) implement :class:`I2CTarget` and are
attached by address; drivers talk to :class:`VirtualI2CBus` exactly as to ``smbus2.SMBus``.
"""

from sim.i2c_bus.bus import (
    I2C_M_RD,
    I2C_RDWR_IOCTL_MAX_MSGS,
    I2C_RDWR_MAX_MSG_LEN,
    WAKE_ADDRESS,
    VirtualI2CBus,
)
from sim.i2c_bus.faults import (
    BitFlip,
    BusFaults,
    CorruptByte,
    Fault,
    FaultHandle,
    Latency,
    Nack,
    ReadFault,
    Schedule,
    SdaLow,
    StuckBus,
    TruncatedRead,
)
from sim.i2c_bus.target import I2CTarget
from sim.i2c_bus.trace import DEFAULT_TRACE_CAPACITY, Trace, TraceRecord

__all__ = [
    "DEFAULT_TRACE_CAPACITY",
    "I2C_M_RD",
    "I2C_RDWR_IOCTL_MAX_MSGS",
    "I2C_RDWR_MAX_MSG_LEN",
    "WAKE_ADDRESS",
    "BitFlip",
    "BusFaults",
    "CorruptByte",
    "Fault",
    "FaultHandle",
    "I2CTarget",
    "Latency",
    "Nack",
    "ReadFault",
    "Schedule",
    "SdaLow",
    "StuckBus",
    "Trace",
    "TraceRecord",
    "TruncatedRead",
    "VirtualI2CBus",
]

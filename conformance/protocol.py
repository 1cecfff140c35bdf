"""Just enough host-side protocol to check a chip: wake, send a group, poll for the answer.

Deliberately independent of ``lokey.hardware`` (a conformance suite that used the driver under
test would share its bugs) and of the emulator's internals (it must run on silicon).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from smbus2 import i2c_msg

from conformance.buses import ATECC_ADDRESS, Bus
from sim.clock import Clock

__all__ = ["NACK_ERRNOS", "Host", "crc16", "expect_nack", "packet", "vectors"]

# spec §15: what user space sees for an address NACK, by adapter (EREMOTEIO on the Pi)
NACK_ERRNOS = frozenset({errno.EREMOTEIO, errno.ENXIO, errno.EIO, errno.ETIMEDOUT})

# spec §1.3: tWHI, the host's guaranteed-safe wait after the wake pulse
WAKE_DELAY_S = 0.0015
# spec §1.9: cryptoauthlib polls every 2 ms; §4: the slowest command we send (Lock) needs 35 ms
POLL_INTERVAL_S = 0.0005
POLL_LIMIT_S = 0.260  # above SelfTest's 250 ms M0 maximum


def crc16(data: bytes) -> int:
    """ATECC CRC-16 (spec §2.3), bit by bit as the datasheet states it."""
    crc = 0
    for byte in data:
        for bit in range(8):
            feedback = ((byte >> bit) & 1) ^ (crc >> 15)
            crc = (crc << 1) & 0xFFFF
            if feedback:
                crc ^= 0x8005
    return crc


def packet(opcode: int, param1: int = 0, param2: int = 0, data: bytes = b"") -> bytes:
    """A command group (spec §2.1): count, opcode, param1, param2 LE, data, CRC LE."""
    body = bytes((7 + len(data), opcode, param1, param2 & 0xFF, param2 >> 8)) + data
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def group_is_valid(group: bytes) -> bool:
    """Count in range and CRC matching over the bytes the count covers."""
    if len(group) < 4 or not 4 <= group[0] <= len(group):
        return False
    count = group[0]
    return crc16(group[: count - 2]) == group[count - 2] | group[count - 1] << 8


def expect_nack(transfer: Callable[[], object]) -> OSError:
    """Run a bus transfer that must be NACKed; return the error it raised."""
    try:
        transfer()
    except OSError as error:
        if error.errno not in NACK_ERRNOS:
            raise AssertionError(f"expected a NACK errno, got {error!r}") from error
        return error
    raise AssertionError("the transfer was acknowledged; expected a NACK")


VECTORS_ENV = "LOKEY_VECTORS_DIR"


def vectors_dir() -> Path:
    """``$LOKEY_VECTORS_DIR``, else ``../shared/vectors/`` beside the repository root."""
    configured = os.environ.get(VECTORS_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "vectors"


@cache
def vectors(name: str) -> Any:
    """A known-answer file from :func:`vectors_dir`, or a clear error saying where to point."""
    path = vectors_dir() / name
    try:
        text = path.read_text()
    except OSError as error:
        raise FileNotFoundError(
            f"conformance vectors: cannot read {path} ({error.strerror}); set {VECTORS_ENV} to "
            "the directory holding the known-answer files (the project's shared/vectors, e.g. "
            "copied to the Pi next to the checkout)"
        ) from None
    return json.loads(text)


class Host:
    """Drives one chip over a bus: the conformance suites' only way to reach it."""

    def __init__(self, bus: Bus, clock: Clock, address: int = ATECC_ADDRESS) -> None:
        self.bus = bus
        self.clock = clock
        self.address = address

    def wake(self) -> bytes:
        """Wake pulse (address 0x00, never acknowledged), wait tWHI, read the wake group."""
        with contextlib.suppress(OSError):  # spec §1.3: nobody acknowledges address 0
            self.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
        self.clock.sleep(WAKE_DELAY_S)
        return self.read(4)

    def write(self, data: bytes) -> None:
        self.bus.i2c_rdwr(i2c_msg.write(self.address, data))

    def read(self, length: int) -> bytes:
        msg = i2c_msg.read(self.address, length)
        self.bus.i2c_rdwr(msg)
        return bytes(msg)

    def poll_read(self, length: int) -> bytes:
        """Read once the chip stops NACKing (busy), within the slowest command's maximum."""
        waited = 0.0
        while True:
            try:
                return self.read(length)
            except OSError:
                if waited >= POLL_LIMIT_S:
                    raise
            self.clock.sleep(POLL_INTERVAL_S)
            waited += POLL_INTERVAL_S

    def send(self, group: bytes, response_length: int) -> bytes:
        """Send a command group (word address 0x03) and poll for ``response_length`` bytes."""
        self.write(b"\x03" + group)
        return self.poll_read(response_length)

    def idle(self) -> None:
        self.write(b"\x02")

    def sleep(self) -> None:
        self.write(b"\x01")

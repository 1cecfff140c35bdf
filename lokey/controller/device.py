"""Opening and initialising the real chip for the controller: the factory recovery calls.

Recovery is "close, reopen, re-initialise" (service-api.md §2.1). :func:`atecc_factory` builds
that step from a bus opener: each call opens the bus, puts a fresh transport and driver on it,
and initialises the chip the way the reference did at start-up, minus its defects (Info with
the revision checked, the lock state read with Read, not SHA: atecc608a.md §17), closing
everything again if initialisation fails. The result is a :class:`ChipDevice`: the driver plus
what initialisation read, so ``/info`` needs no bus traffic.

The opener decides what "reopen" means. On a Pi it opens ``/dev/i2c-N`` again (a fresh file
descriptor); on the emulator the chip and the bus must outlive the reopen (faults injected into
them are the point), so the opener hands out a :class:`BorrowedBus` over the one virtual bus.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from smbus2 import i2c_msg

from lokey.clock import Clock
from lokey.hardware.bus import Bus
from lokey.hardware.commands import Atecc608aDriver, LockState
from lokey.hardware.transport import DEFAULT_TIMING, Transport, TransportTiming

__all__ = ["DEFAULT_ADDRESS", "BorrowedBus", "ChipDevice", "ChipInfo", "atecc_factory"]

log = logging.getLogger("lokey.controller")

DEFAULT_ADDRESS = 0x60  # atecc608a.md §1.1


class BorrowedBus:
    """A handle on a bus owned elsewhere: closing the handle leaves the bus open.

    After ``close()`` the handle refuses transfers with ``EBADF``, as a closed i2c-dev file
    descriptor does, so a driver that was closed cannot reach the chip through it by mistake.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._closed = threading.Event()

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        if self._closed.is_set():
            raise OSError(errno.EBADF, "bus handle is closed")
        self._bus.i2c_rdwr(*i2c_msgs)

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


@dataclass(frozen=True)
class ChipInfo:
    """What initialisation read from the chip (no random bytes)."""

    revision: bytes
    serial_number: bytes
    lock: LockState


class ChipDevice:
    """An initialised chip: Random through the driver, close, and the identity read at open."""

    def __init__(self, driver: Atecc608aDriver, info: ChipInfo) -> None:
        self.driver = driver
        self.info = info

    def random(self) -> bytes:
        return self.driver.random()

    def close(self) -> None:
        self.driver.close()

    def __repr__(self) -> str:
        return f"ChipDevice(revision={self.info.revision.hex()}, lock={self.info.lock})"


def atecc_factory(
    open_bus: Callable[[], Bus],
    clock: Clock,
    *,
    address: int = DEFAULT_ADDRESS,
    timing: TransportTiming = DEFAULT_TIMING,
) -> Callable[[], ChipDevice]:
    """A device factory for :class:`~lokey.controller.machine.Controller`.

    Each call: ``open_bus()``, a transport and driver on ``clock``, then Info (revision checked
    by the driver), the serial number and the lock state. An unlocked config zone is logged
    but not refused: Random then returns the test pattern, which the TRNG source rejects and
    counts, so ``/info`` shows why no sample is ever served.
    """

    def factory() -> ChipDevice:
        bus = open_bus()
        try:
            driver = Atecc608aDriver(Transport(bus, clock, address=address, timing=timing))
        except BaseException:
            bus.close()
            raise
        try:
            info = ChipInfo(driver.revision(), driver.serial_number(), driver.lock_state())
        except BaseException:
            driver.close()
            raise
        if not info.lock.config_locked:
            log.warning(
                "the chip's config zone is unlocked: Random returns the test pattern "
                "FF FF 00 00 (atecc608a.md §5) and no sample will be served"
            )
        return ChipDevice(driver, info)

    return factory

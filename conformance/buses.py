"""Open the bus a conformance run targets: `lokey.backends.open_bus` with the suite's defaults.

The URL grammar is lokey's (``sim://atecc608a[?options]``, ``/dev/i2c-N``, ``i2c://<path>``,
``spy+…``); the one thing the suite adds is that an emulator runs on a virtual clock unless the
URL says ``clock=wall``, so waits cost no real time and a run is reproducible. Hardware always
runs on the wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from smbus2 import i2c_msg

from lokey.backends import OpenedBus
from lokey.backends import open_bus as _open_bus
from lokey.clock import Clock

__all__ = ["ATECC_ADDRESS", "SUITE_DEFAULTS", "Bus", "OpenedBus", "open_bus"]

ATECC_ADDRESS: Final = 0x60  # spec §1.1
#: ``sim://`` options the suite applies when the URL does not set them.
SUITE_DEFAULTS: Final[Mapping[str, str]] = {"clock": "virtual"}


class Bus(Protocol):
    """The smbus2 subset the suites use (their own copy: the suites never import the driver)."""

    def i2c_rdwr(self, *msgs: i2c_msg) -> None: ...

    def close(self) -> None: ...


def open_bus(url: str, *, clock: Clock | None = None) -> OpenedBus:
    """Open ``url`` for a conformance run; a URL we cannot use raises ValueError saying why."""
    return _open_bus(url, clock=clock, defaults=SUITE_DEFAULTS)

"""Open the bus a conformance run targets, from a URL.

``sim://atecc608a[?timing=typical|maximum|instant&seed=N&lock=unlocked|config-locked|locked&
revision=608A|608B]`` builds a virtual bus with an emulated chip at 0x60 on a virtual clock;
``/dev/i2c-N`` or ``i2c:///dev/i2c-N`` opens real hardware through smbus2 with the wall clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from smbus2 import SMBus, i2c_msg

from sim.atecc608a import ATECC608A
from sim.clock import Clock, VirtualClock, WallClock
from sim.i2c_bus import VirtualI2CBus

__all__ = ["Bus", "OpenedBus", "open_bus"]

ATECC_ADDRESS = 0x60  # spec §1.1
_DEVICE = re.compile(r"^/dev/i2c-(\d+)$")
_SIM_OPTIONS = frozenset({"timing", "seed", "lock", "revision"})


class Bus(Protocol):
    """The smbus2 subset the suites use."""

    def i2c_rdwr(self, *msgs: i2c_msg) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class OpenedBus:
    bus: Bus
    clock: Clock
    url: str
    emulated: bool


def open_bus(url: str) -> OpenedBus:
    """Build the bus a URL names; a URL we cannot use raises ValueError saying why."""
    parts = urlsplit(url)
    if parts.scheme == "sim":
        if parts.netloc != "atecc608a" or parts.path not in ("", "/"):
            raise ValueError(f"unknown emulated device in {url!r}; use sim://atecc608a")
        options = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
        unknown = set(options) - _SIM_OPTIONS
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}; "
                f"known: {', '.join(sorted(_SIM_OPTIONS))}"
            )
        seed = options.get("seed")
        if seed is not None and not re.fullmatch(r"-?\d+", seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        clock = VirtualClock()
        chip = ATECC608A(
            clock=clock,
            timing=options.get("timing", "typical"),
            seed=int(seed) if seed is not None else None,
            lock=options.get("lock", "unlocked"),
            revision=options.get("revision"),
        )
        bus = VirtualI2CBus(clock)
        bus.attach(ATECC_ADDRESS, chip)
        return OpenedBus(bus=bus, clock=clock, url=url, emulated=True)
    path = parts.path if parts.scheme == "i2c" else url
    match = _DEVICE.match(path)
    if match is None or parts.scheme not in ("", "i2c"):
        raise ValueError(
            f"cannot open bus {url!r}: use sim://atecc608a, /dev/i2c-N or i2c:///dev/i2c-N"
        )
    return OpenedBus(bus=SMBus(int(match.group(1))), clock=WallClock(), url=url, emulated=False)

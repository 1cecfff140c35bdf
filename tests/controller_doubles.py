"""A scripted stand-in for the ATECC608A driver, and helpers that drive a controller in time.

:class:`Bench` plays the physical chip and its bus: its ``mode`` says what every Random does
(good data, or one of the failures the controller must catch), ``open_fails`` makes the
factory fail, and both persist across close/reopen exactly as a broken chip would. Every raw
sample the bench hands out is recorded with whether it was good, so a test can check that each
served sample is SHA-256 of a good raw sample and that none was served twice.

Good samples are 32 distinct bytes (``random.sample`` of 0..255, seeded): never rejected by the
sample checks, and no run of three equal bytes even across sample boundaries, so the
SP 800-90B RCT (cut-off 4 at H = 8) cannot fire on them; the APT would need one value in 14 of
16 consecutive samples (probability about 1e-12). Health failures happen only when asked for.
"""

from __future__ import annotations

import enum
import hashlib
import math
import random

from lokey.controller import TEST_PATTERN, Controller, DeviceState
from lokey.errors import BusError, CommunicationError, ExecutionError, NoDeviceError
from sim.clock import VirtualClock

__all__ = ["BAD_MODES", "Bench", "FakeDevice", "Mode", "run_for", "run_until"]


class Mode(enum.StrEnum):
    """What the bench's Random returns."""

    GOOD = "good"
    ERROR = "error"  # a status error from the chip (0x0F)
    BUS = "bus"  # the bus fails (an OSError turned BusError by the transport)
    COMM = "comm"  # a damaged response (bad CRC), detected by the driver
    PATTERN = "pattern"  # the unlocked-chip test pattern
    STUCK = "stuck"  # all bytes equal
    MOSTLY_FF = "mostly_ff"  # 30 of 32 bytes 0xFF
    HEALTH = "health"  # passes the sample checks, but fails the RCT at once


BAD_MODES = tuple(m for m in Mode if m is not Mode.GOOD)


class FakeDevice:
    """One opened device; Random goes to its bench, and use after close is a test failure."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.closed = False
        self.calls = 0

    def random(self) -> bytes:
        assert not self.closed, "the controller used a device it had closed"
        self.calls += 1
        return self.bench.produce()

    def close(self) -> None:
        self.closed = True


class Bench:
    """The chip behind the factory: mode, open failures, and a record of everything produced."""

    def __init__(self, seed: int = 0) -> None:
        self.mode = Mode.GOOD
        self.open_fails = False
        self._rng = random.Random(seed)
        self.devices: list[FakeDevice] = []
        self.opens = 0  # factory calls, failed ones included
        self.good: set[bytes] = set()  # every good raw sample produced
        self.bad: set[bytes] = set()  # every bad raw sample produced (returned, not raised)
        self._last = -1

    def factory(self) -> FakeDevice:
        self.opens += 1
        if self.open_fails:
            raise NoDeviceError("nothing acknowledged address 0x60")
        device = FakeDevice(self)
        self.devices.append(device)
        return device

    @property
    def open_devices(self) -> list[FakeDevice]:
        return [d for d in self.devices if not d.closed]

    def good_sample(self) -> bytes:
        while True:
            raw = bytes(self._rng.sample(range(256), 32))
            if raw[0] != self._last:  # no run of two across the boundary either
                self._last = raw[-1]
                return raw

    def produce(self) -> bytes:
        mode = self.mode
        if mode is Mode.GOOD:
            raw = self.good_sample()
            self.good.add(raw)
            return raw
        if mode is Mode.ERROR:
            raise ExecutionError(0x0F, "Random: status 0x0F, execution error")
        if mode is Mode.BUS:
            raise BusError("i2c transfer failed: Input/output error (EIO)", errno=5)
        if mode is Mode.COMM:
            raise CommunicationError("Random: response CRC mismatch")
        if mode is Mode.PATTERN:
            raw = TEST_PATTERN
        elif mode is Mode.STUCK:
            raw = bytes([0x5A]) * 32
        elif mode is Mode.MOSTLY_FF:
            raw = b"\xff" * 30 + b"\x12\x34"
        else:  # HEALTH: four equal bytes, then distinct ones: the RCT fires on the fourth
            raw = b"\x07" * 4 + bytes(range(100, 128))
        self.bad.add(raw)
        self._last = -1
        return raw

    def conditioned_good(self) -> set[bytes]:
        return {hashlib.sha256(raw).digest() for raw in self.good}


# --- driving a controller on a virtual clock ----------------------------------------------------


def run_for(controller: Controller, clock: VirtualClock, seconds: float) -> None:
    """Let ``seconds`` pass, stepping whenever work is due (as the runner would)."""
    end = clock.monotonic() + seconds
    while True:
        delay = controller.step()
        now = clock.monotonic()
        if now + delay > end:
            clock.advance(max(0.0, end - now))
            controller.step()
            return
        clock.advance(delay)


def run_until(
    controller: Controller, clock: VirtualClock, target: DeviceState, limit_s: float = 1000.0
) -> float:
    """Step through due work until the controller enters ``target``; return the entry time.

    One step may pass through several states (FAILED -> RECOVERING -> FAILED when a reopen
    fails at once), so this watches the transition log, not the current state.
    """
    end = clock.monotonic() + limit_s
    seen = controller.transitions.total
    while True:
        delay = controller.step()
        new = controller.transitions.total - seen
        entered = [t for t in controller.transitions.history[-new:] if new and t.target is target]
        if entered:
            return entered[0].at
        assert not math.isinf(delay), f"stuck in {controller.state} waiting for {target}"
        assert clock.monotonic() + delay <= end, f"no {target} within {limit_s} s"
        clock.advance(delay)

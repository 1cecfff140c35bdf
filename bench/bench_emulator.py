"""Random round trips through the virtual bus: the emulator's speed, against the bus's own ceiling.

One round trip is what a driver does per sample: the Random command write (one ``i2c_rdwr``) and
the 35-byte response read (another), with fresh ``smbus2.i2c_msg`` objects, on a VirtualClock
with typical timing, the chip config-locked and seeded. The ceiling is the same loop against a
trivial target that does no work at all, measured in the same run: the ratio says how much of
the bus's capacity the emulator leaves. Target (issue 2): at least 20,000 round trips per second
on one core, so full-stack tests stay fast.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from smbus2 import i2c_msg

from bench._report import Direction, Figure, Target, all_met
from sim.atecc608a import ATECC608A, LockState, TimingModel
from sim.clock import VirtualClock
from sim.i2c_bus import VirtualI2CBus

NAME = "bench_emulator"
TARGET_PER_S = 20_000
ADDRESS = 0x60
RANDOM = bytes.fromhex("03071b00000024cd")  # spec §2.5
RESPONSE_LENGTH = 35
BUSY_S = TimingModel.typical().busy_s(0x1B)
REWAKE_EVERY = 500  # idle + wake well inside the 1.3 s watchdog (500 x 2 ms = 1 s)


class _NullTarget:
    """Acknowledges everything and returns fixed bytes: the bus alone, no chip logic."""

    _reply = bytes((RESPONSE_LENGTH,)) + bytes(RESPONSE_LENGTH - 1)

    def bus_address(self, attached_at: int) -> int:
        return attached_at

    def i2c_write(self, data: bytes) -> bool:
        return True

    def i2c_read(self, length: int) -> bytes | None:
        return self._reply[:length]

    def i2c_stop(self) -> None:
        pass

    def wake_pulse(self) -> None:
        pass


@dataclass(frozen=True)
class Result:
    round_trips: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.round_trips / self.seconds


def _wake(bus: VirtualI2CBus, clock: VirtualClock) -> None:
    with contextlib.suppress(OSError):  # the wake pulse is never acknowledged
        bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
    clock.advance(0.0015)
    bus.i2c_rdwr(i2c_msg.read(ADDRESS, 4))


def run_round_trips(bus: VirtualI2CBus, clock: VirtualClock, count: int) -> Result:
    _wake(bus, clock)
    start = time.perf_counter()
    for done in range(1, count + 1):
        bus.i2c_rdwr(i2c_msg.write(ADDRESS, RANDOM))
        clock.advance(BUSY_S)
        reply = i2c_msg.read(ADDRESS, RESPONSE_LENGTH)
        bus.i2c_rdwr(reply)
        if done % REWAKE_EVERY == 0:
            bus.i2c_rdwr(i2c_msg.write(ADDRESS, [0x02]))  # idle
            _wake(bus, clock)
    seconds = time.perf_counter() - start
    last = bytes(reply)
    if last[0] != RESPONSE_LENGTH:
        raise RuntimeError(f"the chip answered {last[:4].hex()} instead of a Random group")
    return Result(count, seconds)


def emulator_bus() -> tuple[VirtualI2CBus, VirtualClock]:
    clock = VirtualClock()
    chip = ATECC608A(clock=clock, seed=2026, lock=LockState.CONFIG_LOCKED)
    bus = VirtualI2CBus(clock)
    bus.attach(ADDRESS, chip)
    return bus, clock


def null_bus() -> tuple[VirtualI2CBus, VirtualClock]:
    clock = VirtualClock()
    bus = VirtualI2CBus(clock)
    bus.attach(ADDRESS, _NullTarget())
    return bus, clock


def best_of(
    factory: Callable[[], tuple[VirtualI2CBus, VirtualClock]], count: int, repeats: int
) -> Result:
    results = []
    for _ in range(repeats):
        bus, clock = factory()
        results.append(run_round_trips(bus, clock, count))
    return max(results, key=lambda r: r.per_second)


def measure(count: int = 20_000, repeats: int = 3) -> list[Figure]:
    emulator = best_of(emulator_bus, count, repeats)
    ceiling = best_of(null_bus, count, repeats)
    print("emulator: Random round trips (write + 35-byte read) on a VirtualClock, one core")
    print(f"  emulator          {emulator.per_second:>10,.0f} round trips/s")
    print(f"  bus ceiling       {ceiling.per_second:>10,.0f} round trips/s (trivial target)")
    print(f"  ratio to ceiling  {emulator.per_second / ceiling.per_second:>10.2f}")
    ok = emulator.per_second >= TARGET_PER_S
    verdict = "meets" if ok else "MISSES"
    print(
        f"  ratio to target   {emulator.per_second / TARGET_PER_S:>10.2f} "
        f"({verdict} the {TARGET_PER_S:,}/s target)"
    )
    return [
        Figure(
            NAME,
            "Random round trips",
            emulator.per_second,
            "round trips/s",
            limit=ceiling.per_second,
            limit_what="bus with a trivial target",
            target=Target(TARGET_PER_S, Direction.AT_LEAST),
        )
    ]


def main(count: int = 20_000, repeats: int = 3) -> bool:
    return all_met(measure(count, repeats))


def run(quick: bool = False) -> list[Figure]:
    return measure(count=5_000, repeats=1) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

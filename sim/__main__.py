"""``python -m sim``: a guided tour of the emulated chip on the virtual I2C bus.

Wakes the chip, sends Info and Random by hand, shows the unlocked chip's test pattern and then
real random bytes once the config zone is locked, and prints the bus trace as a table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from smbus2 import i2c_msg

from sim.atecc608a.chip import ATECC608A
from sim.atecc608a.control import LockState
from sim.atecc608a.timing import TimingModel
from sim.clock import VirtualClock
from sim.i2c_bus import VirtualI2CBus

ADDRESS = 0x60
INFO_REVISION = bytes.fromhex("030730000000035d")  # spec §2.5
RANDOM = bytes.fromhex("03071b00000024cd")


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


def _exchange(bus: VirtualI2CBus, clock: VirtualClock, command: bytes, length: int) -> bytes:
    bus.i2c_rdwr(i2c_msg.write(ADDRESS, command))
    while True:  # poll: the chip NACKs while it executes (spec §1.4)
        clock.sleep(0.0005)
        reply = i2c_msg.read(ADDRESS, length)
        try:
            bus.i2c_rdwr(reply)
        except OSError:
            continue
        return bytes(reply)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--timing", default="typical", choices=["typical", "maximum", "instant"])
    parser.add_argument("--seed", type=int, default=None, help="reproducible RNG output")
    parser.add_argument("--trace", metavar="FILE", help="also write the bus trace as JSON lines")
    args = parser.parse_args(argv)

    clock = VirtualClock()
    chip = ATECC608A(clock=clock, timing=TimingModel.named(args.timing), seed=args.seed)
    bus = VirtualI2CBus(clock)
    bus.attach(ADDRESS, chip)
    print(f"LoKey emulator: {chip!r} at 0x{ADDRESS:02X} on a virtual I2C bus\n")

    try:
        bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
    except OSError as error:
        print(f"wake pulse to 0x00      -> not acknowledged ({error.strerror}), as on a Pi")
    clock.sleep(0.0015)
    wake = i2c_msg.read(ADDRESS, 4)
    bus.i2c_rdwr(wake)
    print(f"wake group              <- {_hex(bytes(wake))}")

    info = _exchange(bus, clock, INFO_REVISION, 7)
    print(f"Info(revision)          <- {_hex(info)}")
    unlocked = _exchange(bus, clock, RANDOM, 35)
    print(f"Random (config unlocked)<- {_hex(unlocked)}")
    print("                           the datasheet's test pattern: never use it as entropy")

    chip.control.set_lock_state(LockState.CONFIG_LOCKED)
    print("\ncontrol surface: lock preset 'config-locked' (no bus traffic)")
    locked = _exchange(bus, clock, RANDOM, 35)
    print(f"Random (config locked)  <- {_hex(locked[:1])} | {_hex(locked[1:33])} | ")
    print(f"                           {_hex(locked[33:])} (count | 32 random bytes | CRC)")
    bus.i2c_rdwr(i2c_msg.write(ADDRESS, [0x02]))  # idle: stop the watchdog (spec §1.7)

    print(f"\nbus trace ({len(bus.trace.records())} messages, virtual time):")
    print(f"{'t (ms)':>8}  {'xfer':>4}  {'addr':>4}  dir  {'outcome':<8}  bytes")
    for record in bus.trace.records():
        shown = _hex(record.data) if len(record.data) <= 12 else _hex(record.data[:12]) + " …"
        print(
            f"{record.time * 1000:8.3f}  {record.transfer:4d}  0x{record.address:02X}  "
            f"{record.direction:>3}  {record.outcome:<8}  {shown}"
        )
    if args.trace:
        bus.trace.write_jsonl(args.trace)
        print(f"\ntrace written to {args.trace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bus-level fault injection: what each fault does on the wire and exactly when it fires."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from sim.clock import VirtualClock
from sim.i2c_bus import (
    BitFlip,
    CorruptByte,
    Fault,
    Latency,
    Nack,
    Schedule,
    SdaLow,
    StuckBus,
    TruncatedRead,
    VirtualI2CBus,
)


class Stream:
    """A device whose reads continue one byte sequence (i, i+1, …), so a read shows exactly how
    far the device's pointer moved; it logs writes, reads, STOPs and wake pulses."""

    def __init__(self) -> None:
        self.pointer = 0
        self.events: list[tuple[str, object]] = []

    def bus_address(self, attached_at: int) -> int:
        return attached_at

    def i2c_write(self, data: bytes) -> bool:
        self.events.append(("write", data))
        return True

    def i2c_read(self, length: int) -> bytes | None:
        self.events.append(("read", length))
        out = bytes((self.pointer + i) & 0xFF for i in range(length))
        self.pointer += length
        return out

    def i2c_stop(self) -> None:
        self.events.append(("stop", None))

    def wake_pulse(self) -> None:
        self.events.append(("wake", None))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def wired(*addresses: int) -> tuple[VirtualI2CBus, VirtualClock, dict[int, Stream]]:
    clock = VirtualClock()
    bus = VirtualI2CBus(clock)
    devices = {address: Stream() for address in addresses or (0x60,)}
    for address, dev in devices.items():
        bus.attach(address, dev)
    return bus, clock, devices


def read(bus: VirtualI2CBus, address: int, length: int) -> bytes:
    msg = i2c_msg.read(address, length)
    bus.i2c_rdwr(msg)
    return ctypes.string_at(msg.buf, msg.len)


def write_ok(bus: VirtualI2CBus, address: int, data: bytes = b"\x00") -> bool:
    """One write transfer; True if acknowledged."""
    try:
        bus.i2c_rdwr(i2c_msg.write(address, data))
    except OSError as exc:
        if exc.errno != bus.nack_errno:
            raise
        return False
    return True


def bits_differing(a: bytes, b: bytes) -> int:
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))


# -- Schedule and parameter validation ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"next_n": 1, "every_nth": 2}, {"next_n": 1, "probability": 0.5}],
)
def test_schedule_needs_exactly_one_trigger(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(ValueError, match="exactly one of next_n, every_nth, probability"):
        Schedule(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"next_n": 0}, "next_n"),
        ({"next_n": -3}, "next_n"),
        ({"next_n": 1.5}, "next_n"),
        ({"every_nth": 0}, "every_nth"),
        ({"probability": 1.5}, "probability"),
        ({"probability": -0.1}, "probability"),
        ({"probability": math.nan}, "probability"),
        ({"probability": 0.5, "seed": "x"}, "seed"),
    ],
)
def test_schedule_rejects_bad_values_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_schedule_shorthands_build_the_same_schedules() -> None:
    assert Schedule.first(3) == Schedule(next_n=3)
    assert Schedule.every(4) == Schedule(every_nth=4)
    assert Schedule.chance(0.25, seed=9) == Schedule(probability=0.25, seed=9)


ONCE = Schedule(next_n=1)


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (lambda: Nack(0x00, ONCE), "address"),
        (lambda: Nack(0x80, ONCE), "address"),
        (lambda: Nack(0x60, "once"), "schedule"),  # type: ignore[arg-type]
        (lambda: BitFlip(0x60, ONCE, bits=0), "bits"),
        (lambda: BitFlip(0x60, ONCE, seed=1.5), "seed"),  # type: ignore[arg-type]
        (lambda: CorruptByte(0x60, ONCE, value=256), "value"),
        (lambda: CorruptByte(0x60, ONCE, value=-1), "value"),
        (lambda: TruncatedRead(0x60, ONCE, after=-1), "after"),
        (lambda: StuckBus(address=0x80), "address"),
        (lambda: SdaLow(errno=errno.ENOENT), "errno"),
        (lambda: Latency(-0.001), "seconds"),
        (lambda: Latency(math.inf), "seconds"),
        (lambda: Latency(0.001, address=-1), "address"),
    ],
)
def test_fault_rejects_bad_parameters_naming_them(build: object, parameter: str) -> None:
    with pytest.raises(ValueError, match=parameter):
        build()  # type: ignore[operator]


def test_faults_are_frozen_values() -> None:
    fault = Nack(0x60, ONCE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fault.address = 0x61  # type: ignore[misc]
    assert fault == Nack(0x60, Schedule(next_n=1))


def test_each_fault_kind_has_its_own_stable_name() -> None:
    names: dict[type[Fault], str] = {
        Nack: "nack",
        BitFlip: "bit_flip",
        CorruptByte: "corrupt_byte",
        TruncatedRead: "truncated_read",
        StuckBus: "stuck_bus",
        SdaLow: "sda_low",
        Latency: "latency",
    }
    assert {kind: kind.name for kind in names} == names


def test_inject_refuses_things_that_are_not_faults() -> None:
    bus, _, _ = wired()
    with pytest.raises(TypeError):
        bus.faults.inject("nack")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.faults.inject(Fault())


# -- Nack and the schedules ---------------------------------------------------------------------


def test_nack_with_next_n_fails_exactly_the_next_n_messages_without_reaching_the_target() -> None:
    bus, _, devs = wired()
    handle = bus.faults.inject(Nack(0x60, Schedule(next_n=3)))
    outcomes = [write_ok(bus, 0x60, bytes([i])) for i in range(6)]
    assert outcomes == [False, False, False, True, True, True]
    assert [data for kind, data in devs[0x60].events if kind == "write"] == [
        b"\x03",
        b"\x04",
        b"\x05",
    ]
    assert handle.fired == 3


def test_fault_nacked_message_does_not_count_as_addressing_the_target() -> None:
    bus, _, devs = wired()
    bus.faults.inject(Nack(0x60, ONCE))
    assert not write_ok(bus, 0x60)
    assert devs[0x60].events == []


def test_nack_with_every_nth_fails_exactly_those_positions() -> None:
    bus, _, _ = wired()
    handle = bus.faults.inject(Nack(0x60, Schedule(every_nth=3)))
    failed = [n for n in range(1, 11) if not write_ok(bus, 0x60)]
    assert failed == [3, 6, 9]
    assert handle.fired == 3


def test_nack_counts_each_message_of_a_transfer_and_aborts_it() -> None:
    bus, _, devs = wired()
    bus.faults.inject(Nack(0x60, Schedule(every_nth=2)))
    with pytest.raises(OSError, match="0x60") as info:
        bus.i2c_rdwr(i2c_msg.write(0x60, [1]), i2c_msg.read(0x60, 2), i2c_msg.write(0x60, [2]))
    assert info.value.errno == errno.EREMOTEIO
    assert devs[0x60].kinds() == ["write", "stop"]


def test_nack_for_one_address_leaves_others_alone_and_does_not_count_them() -> None:
    bus, _, _ = wired(0x60, 0x61)
    handle = bus.faults.inject(Nack(0x60, Schedule(every_nth=2)))
    assert write_ok(bus, 0x61)
    assert write_ok(bus, 0x61)
    assert write_ok(bus, 0x60)
    assert write_ok(bus, 0x61)
    assert not write_ok(bus, 0x60)
    assert handle.fired == 1


def test_nack_for_any_address_does_not_spend_its_schedule_on_wake_pulses() -> None:
    bus, _, devs = wired()
    handle = bus.faults.inject(Nack(None, ONCE))
    with pytest.raises(OSError, match="wake pulse"):
        bus.i2c_rdwr(i2c_msg.write(0x00, [0]))
    assert devs[0x60].kinds() == ["wake"]
    assert handle.fired == 0
    assert not write_ok(bus, 0x60)
    assert handle.fired == 1


def _firing_pattern(seed: int, probability: float = 0.3, n: int = 200) -> list[bool]:
    bus, _, _ = wired()
    bus.faults.inject(Nack(0x60, Schedule(probability=probability, seed=seed)))
    return [not write_ok(bus, 0x60) for _ in range(n)]


def test_probability_schedule_replays_exactly_with_the_same_seed() -> None:
    assert _firing_pattern(seed=1234) == _firing_pattern(seed=1234)


def test_probability_schedule_differs_with_another_seed() -> None:
    assert _firing_pattern(seed=1234) != _firing_pattern(seed=4321)


def test_probability_schedule_fires_at_roughly_the_requested_rate() -> None:
    rate = sum(_firing_pattern(seed=7, probability=0.3, n=2000)) / 2000
    assert 0.25 < rate < 0.35


@pytest.mark.parametrize(("probability", "expected"), [(0.0, False), (1.0, True)])
def test_probability_zero_never_fires_and_one_always_fires(
    probability: float, expected: bool
) -> None:
    assert set(_firing_pattern(seed=5, probability=probability, n=50)) == {expected}


def test_nack_fault_is_traced_with_its_name() -> None:
    bus, _, _ = wired()
    bus.faults.inject(Nack(0x60, ONCE))
    write_ok(bus, 0x60, b"\x03\x07")
    (record,) = bus.trace.records()
    assert (record.outcome, record.faults, record.data) == ("nack", ("nack",), b"\x03\x07")


# -- read corruption ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_bit_flip_flips_exactly_that_many_bits_and_the_pointer_moves_on(bits: int) -> None:
    bus, _, devs = wired()
    handle = bus.faults.inject(BitFlip(0x60, ONCE, bits=bits, seed=3))
    corrupted = read(bus, 0x60, 35)
    clean = bytes(range(35))
    assert bits_differing(corrupted, clean) == bits
    assert read(bus, 0x60, 4) == bytes(range(35, 39))
    assert devs[0x60].pointer == 39
    assert handle.fired == 1


def test_bit_flip_of_more_bits_than_the_read_has_flips_them_all() -> None:
    bus, _, _ = wired()
    bus.faults.inject(BitFlip(0x60, ONCE, bits=100))
    assert read(bus, 0x60, 2) == bytes([0x00 ^ 0xFF, 0x01 ^ 0xFF])


def test_bit_flip_positions_replay_with_the_same_seed() -> None:
    def corrupted(seed: int) -> list[bytes]:
        bus, _, _ = wired()
        bus.faults.inject(BitFlip(0x60, Schedule(every_nth=1), bits=2, seed=seed))
        return [read(bus, 0x60, 8) for _ in range(10)]

    assert corrupted(11) == corrupted(11)
    assert corrupted(11) != corrupted(12)


def test_read_faults_count_only_reads_not_writes() -> None:
    bus, _, _ = wired()
    handle = bus.faults.inject(BitFlip(0x60, Schedule(every_nth=2)))
    assert write_ok(bus, 0x60)
    assert read(bus, 0x60, 4) == bytes(range(4))
    assert write_ok(bus, 0x60)
    assert read(bus, 0x60, 4) != bytes(range(4, 8))
    assert handle.fired == 1


def test_corrupt_byte_with_a_value_replaces_exactly_one_byte_with_it() -> None:
    bus, _, _ = wired()
    bus.faults.inject(CorruptByte(0x60, ONCE, value=0xEE, seed=1))
    data = read(bus, 0x60, 16)
    clean = bytes(range(16))
    diffs = [i for i in range(16) if data[i] != clean[i]]
    assert len(diffs) == 1
    assert data[diffs[0]] == 0xEE


@given(seed=st.integers(min_value=0, max_value=2**32), length=st.integers(1, 40))
def test_corrupt_byte_without_a_value_always_changes_exactly_one_byte(
    seed: int, length: int
) -> None:
    bus, _, _ = wired()
    bus.faults.inject(CorruptByte(0x60, ONCE, seed=seed))
    data = read(bus, 0x60, length)
    assert sum(a != b for a, b in zip(data, range(length), strict=True)) == 1


def test_truncated_read_keeps_the_first_bytes_and_fills_the_rest_with_ff() -> None:
    bus, _, devs = wired()
    handle = bus.faults.inject(TruncatedRead(0x60, ONCE, after=4))
    assert read(bus, 0x60, 10) == bytes([0, 1, 2, 3]) + b"\xff" * 6
    assert devs[0x60].pointer == 10
    assert read(bus, 0x60, 2) == bytes([10, 11])
    assert handle.fired == 1


def test_truncated_read_after_zero_loses_the_whole_read() -> None:
    bus, _, _ = wired()
    bus.faults.inject(TruncatedRead(0x60, ONCE, after=0))
    assert read(bus, 0x60, 4) == b"\xff" * 4


def test_truncated_read_ignores_reads_too_short_to_truncate() -> None:
    bus, _, _ = wired()
    handle = bus.faults.inject(TruncatedRead(0x60, ONCE, after=4))
    assert read(bus, 0x60, 4) == bytes(range(4))
    assert handle.fired == 0
    assert read(bus, 0x60, 5) == bytes(range(4, 8)) + b"\xff"
    assert handle.fired == 1


def test_read_fault_trace_shows_what_the_host_received() -> None:
    bus, _, _ = wired()
    bus.faults.inject(TruncatedRead(0x60, ONCE, after=1))
    got = read(bus, 0x60, 3)
    (record,) = bus.trace.records()
    assert record.data == got == b"\x00\xff\xff"
    assert record.faults == ("truncated_read",)


# -- whole-bus faults ---------------------------------------------------------------------------


def test_stuck_bus_acknowledges_everything_swallows_writes_and_reads_ff() -> None:
    bus, _, devs = wired()
    handle = bus.faults.inject(StuckBus())
    assert write_ok(bus, 0x60, b"\x03\x07")
    assert write_ok(bus, 0x42)
    assert read(bus, 0x60, 35) == b"\xff" * 35
    assert read(bus, 0x42, 1) == b"\xff"
    assert devs[0x60].events == []
    assert handle.fired == 4


def test_stuck_bus_swallows_wake_pulses_without_error() -> None:
    bus, _, devs = wired()
    bus.faults.inject(StuckBus())
    bus.i2c_rdwr(i2c_msg.write(0x00, [0]))
    assert devs[0x60].events == []


def test_stuck_bus_for_one_address_leaves_the_others_working() -> None:
    bus, _, devs = wired(0x60, 0x61)
    bus.faults.inject(StuckBus(address=0x60))
    assert read(bus, 0x60, 2) == b"\xff\xff"
    assert read(bus, 0x61, 2) == b"\x00\x01"
    assert devs[0x60].events == []
    with pytest.raises(OSError, match="wake pulse"):
        bus.i2c_rdwr(i2c_msg.write(0x00, [0]))
    assert devs[0x60].kinds() == ["wake"]


def test_stuck_bus_hides_reads_from_read_faults_and_nack_faults() -> None:
    bus, _, _ = wired()
    nack = bus.faults.inject(Nack(0x60, ONCE))
    flip = bus.faults.inject(BitFlip(0x60, ONCE))
    bus.faults.inject(StuckBus())
    assert read(bus, 0x60, 3) == b"\xff\xff\xff"
    assert (nack.fired, flip.fired) == (0, 0)
    (record,) = bus.trace.records()
    assert (record.outcome, record.faults) == ("ack", ("stuck_bus",))


@pytest.mark.parametrize("code", [errno.EIO, errno.ETIMEDOUT, errno.EAGAIN])
def test_sda_low_fails_every_transfer_before_anything_reaches_a_target(code: int) -> None:
    bus, _, devs = wired()
    handle = bus.faults.inject(SdaLow(errno=code))
    for msgs in ([i2c_msg.write(0x60, [3])], [i2c_msg.read(0x60, 4)], [i2c_msg.write(0, [0])]):
        with pytest.raises(OSError, match="0x") as info:
            bus.i2c_rdwr(*msgs)
        assert info.value.errno == code
    assert devs[0x60].events == []
    assert handle.fired == 3
    outcomes = {(r.outcome, r.faults) for r in bus.trace.records()}
    assert outcomes == {(f"error:{errno.errorcode[code]}", ("sda_low",))}


def test_sda_low_defaults_to_eio() -> None:
    assert SdaLow().errno == errno.EIO


def test_latency_advances_the_bus_clock_before_each_matching_message() -> None:
    bus, clock, _ = wired(0x60, 0x61)
    # Binary fractions keep the virtual time sums exact.
    handle = bus.faults.inject(Latency(0.25, address=0x60))
    bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.read(0x60, 1), i2c_msg.write(0x61, [0]))
    assert clock.monotonic() == 0.5
    assert handle.fired == 2
    times = [(r.address, r.time, r.faults) for r in bus.trace.records()]
    assert times == [
        (0x60, 0.25, ("latency",)),
        (0x60, 0.5, ("latency",)),
        (0x61, 0.5, ()),
    ]


# -- control surface ----------------------------------------------------------------------------


def test_removed_fault_stops_firing_and_cannot_be_removed_twice() -> None:
    bus, _, _ = wired()
    handle = bus.faults.inject(Nack(0x60, Schedule(every_nth=1)))
    assert not write_ok(bus, 0x60)
    bus.faults.remove(handle)
    assert not handle.installed
    assert bus.faults.active == ()
    assert write_ok(bus, 0x60)
    assert handle.fired == 1
    with pytest.raises(ValueError, match="not installed"):
        bus.faults.remove(handle)


def test_clear_removes_every_fault() -> None:
    bus, _, _ = wired()
    handles = [bus.faults.inject(StuckBus()), bus.faults.inject(SdaLow())]
    bus.faults.clear()
    assert bus.faults.active == ()
    assert not any(h.installed for h in handles)
    assert read(bus, 0x60, 2) == b"\x00\x01"


def test_active_lists_installed_faults_in_installation_order() -> None:
    bus, _, _ = wired()
    faults: tuple[Fault, ...] = (Nack(0x60, ONCE), Latency(0.001), StuckBus(0x61))
    handles = [bus.faults.inject(f) for f in faults]
    assert bus.faults.active == faults
    bus.faults.remove(handles[1])
    assert bus.faults.active == (faults[0], faults[2])


def test_the_same_fault_installed_twice_keeps_separate_counts() -> None:
    bus, _, _ = wired()
    fault = Nack(0x60, Schedule(next_n=1))
    first = bus.faults.inject(fault)
    second = bus.faults.inject(fault)
    assert not write_ok(bus, 0x60)
    assert write_ok(bus, 0x60)
    assert (first.fired, second.fired) == (1, 1)


def test_same_faults_and_seeds_replay_the_same_trace() -> None:
    def run() -> list[tuple[object, ...]]:
        bus, _, _ = wired()
        bus.faults.inject(Nack(0x60, Schedule(probability=0.2, seed=1)))
        bus.faults.inject(BitFlip(0x60, Schedule(probability=0.3, seed=2), bits=2, seed=3))
        bus.faults.inject(CorruptByte(0x60, Schedule(every_nth=4), seed=4))
        for _ in range(100):
            with contextlib.suppress(OSError):
                bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.read(0x60, 8))
        return [(r.data, r.outcome, r.faults) for r in bus.trace.records()]

    first = run()
    assert first == run()
    assert any(faults for _, _, faults in first)

"""The controller end to end: the real driver on the emulated ATECC608A, under every fault.

The rig is the production wiring: :func:`lokey.controller.atecc_factory` opens a
:class:`~lokey.controller.BorrowedBus` over one ``VirtualI2CBus`` with the chip attached at 0x60
(config zone locked, typical timing), and everything shares one ``VirtualClock``, so a
recovery, its 30 s cooldown or a 5 min open breaker cost microseconds. The chip and the bus
outlive every reopen, as on real hardware, so injected faults persist until the test clears
them.

For every chip fault (spec/atecc608a.md §14) and every bus fault the emulator can inject: no bad
sample is ever returned, the controller lands in the state the design says (FAILED at the first
failure, below the breaker threshold), keeps failing while the fault lasts (its failed recovery
attempts open the breaker, which then admits one trial per open period), and is HEALTHY again
once the fault is cleared (a latched RNG health failure also needs the power cycle that silicon
needs). Samples are compared with the chip's scripted output, so "never a bad sample" means
exactly what the chip produced, and only when it was healthy; a noise source that cycles or
replays is caught by the repeat check, so no sample is ever served twice.
"""

from __future__ import annotations

import errno
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lokey.controller import (
    DEFAULT_BREAKER_OPEN_S,
    BorrowedBus,
    BreakerState,
    ChipDevice,
    Controller,
    ControllerConfig,
    ControllerRunner,
    DeviceState,
    DeviceUnavailableError,
    RejectReason,
    atecc_factory,
    classify,
)
from sim.atecc608a import (
    ATECC608A,
    BrownOut,
    CorruptResponseCrc,
    ExtraBusy,
    ForcedStatus,
    LostCommand,
    Opcode,
    RngHealthFailure,
    SelfTestFailure,
    StuckOutput,
    WakeIgnored,
    WrongCount,
)
from sim.clock import VirtualClock
from sim.i2c_bus import (
    BitFlip,
    CorruptByte,
    Latency,
    Nack,
    Schedule,
    SdaLow,
    StuckBus,
    TruncatedRead,
    VirtualI2CBus,
)
from tests.controller_doubles import run_for, run_until

S = DeviceState
ADDRESS = 0x60  # spec §1.1


@dataclass
class Rig:
    clock: VirtualClock
    bus: VirtualI2CBus
    chip: ATECC608A
    controller: Controller
    scripted: int = 0

    def script(self, count: int) -> list[bytes]:
        """Queue ``count`` distinct known Random outputs (the chip serves them in order)."""
        start = self.scripted
        blocks = [hashlib.sha256(b"block %d" % n).digest() for n in range(start, start + count)]
        self.scripted += count
        self.chip.control.script_random(*blocks)
        return blocks


def make_rig(
    config: ControllerConfig | None = None, *, lock: str = "config-locked", seed: int = 1
) -> Rig:
    clock = VirtualClock()
    bus = VirtualI2CBus(clock, trace=False)
    chip = ATECC608A(clock=clock, lock=lock, seed=seed)
    bus.attach(ADDRESS, chip)
    factory = atecc_factory(lambda: BorrowedBus(bus), clock)
    # Conditioning off here: the served bytes are then the chip's own, checkable one by one.
    controller = Controller(factory, clock, config or ControllerConfig(conditioning=False))
    return Rig(clock, bus, chip, controller)


def healthy_rig(config: ControllerConfig | None = None) -> Rig:
    rig = make_rig(config)
    run_until(rig.controller, rig.clock, S.HEALTHY)
    return rig


def assert_serves_exactly_the_chips_output(rig: Rig, count: int = 5) -> None:
    """The next samples are the chip's Random output, in order.

    The first one served was read (and held back, behind the checks) before the script.
    """
    blocks = rig.script(count)
    served = rig.controller.generate(count)
    assert all(s.source == "trng" for s in served)
    assert [s.data for s in served[1:]] == blocks[: count - 1]
    assert classify(served[0].data) is None


def test_end_to_end_start_up_and_service() -> None:
    rig = make_rig()
    assert rig.controller.state is S.UNKNOWN
    run_until(rig.controller, rig.clock, S.HEALTHY)
    device = rig.controller.device
    assert isinstance(device, ChipDevice)
    assert device.info.lock.config_locked
    assert device.info.revision[2] == 0x60  # §6: the 608 family
    assert len(device.info.serial_number) == 9
    samples = rig.controller.generate(100)
    assert len({s.data for s in samples}) == 100
    assert all(classify(s.data) is None for s in samples)


def test_served_samples_are_exactly_what_the_chip_produced() -> None:
    rig = healthy_rig()
    assert_serves_exactly_the_chips_output(rig, count=20)


def test_sha256_conditioning_by_default() -> None:
    rig = healthy_rig(ControllerConfig())
    rig.controller.generate(1)
    blocks = rig.script(3)
    served = [s.data for s in rig.controller.generate(3)]
    assert served[1:] == [hashlib.sha256(b).digest() for b in blocks[:2]]


def test_an_unlocked_chip_never_yields_a_sample() -> None:
    rig = make_rig(lock="unlocked")
    run_for(rig.controller, rig.clock, 600.0)
    status = rig.controller.status()
    # the initial attempt and four recovery attempts fail (breaker open after 1.5 s), then
    # one half-open trial at 301.5 s fails too; the next is due at 601.5 s
    assert status.state is S.CIRCUIT_OPEN
    assert (status.breaker.opened, status.breaker.trials) == (2, 1)
    assert status.served == 0
    assert status.source.rejected[RejectReason.TEST_PATTERN] == 6
    assert status.last_error is not None
    assert "test_pattern" in status.last_error
    with pytest.raises(DeviceUnavailableError):
        rig.controller.generate()
    rig.chip.control.set_lock_state("config-locked")  # provisioned meanwhile
    run_until(rig.controller, rig.clock, S.HEALTHY, limit_s=200.0)
    assert_serves_exactly_the_chips_output(rig)


# --- faults ---------------------------------------------------------------------------------------


def clear_all(rig: Rig) -> None:
    rig.chip.control.clear_faults()
    rig.bus.faults.clear()


@dataclass(frozen=True)
class Case:
    """One fault: how to inject it and how it goes away (by default: cleared)."""

    name: str
    inject: Callable[[Rig], object]
    clear: Callable[[Rig], None] = clear_all


def clear_and_power_cycle(rig: Rig) -> None:
    """A latched RNG health failure (0x08) clears only with power (§5, cryptoauthlib #285)."""
    clear_all(rig)
    rig.chip.control.power_cycle()


def chip(fault: object) -> Callable[[Rig], object]:
    return lambda rig: rig.chip.control.inject(fault)  # type: ignore[arg-type]


def wire(fault: object) -> Callable[[Rig], object]:
    return lambda rig: rig.bus.faults.inject(fault)  # type: ignore[arg-type]


EVERY = Schedule.every(1)
RANDOM = Opcode.RANDOM
CHIP_FAULTS = [
    *(
        Case(
            f"forced_status_0x{status:02X}",
            chip(ForcedStatus(count=None, opcode=RANDOM, status=status)),
        )
        for status in (0x03, 0x05, 0x07, 0x08, 0x0F, 0xEE, 0xFF)
    ),
    Case("corrupt_response_crc", chip(CorruptResponseCrc(count=None))),
    Case("wrong_count", chip(WrongCount(count=None))),
    Case("stuck_output_ff", chip(StuckOutput(block=b"\xff"))),
    Case("stuck_output_00", chip(StuckOutput(block=b"\x00"))),
    Case("stuck_output_block", chip(StuckOutput(block=hashlib.sha256(b"stuck").digest()))),
    Case("stuck_output_short_block", chip(StuckOutput(block=b"\x12\x34\x56"))),
    Case("rng_health_failure", chip(RngHealthFailure()), clear_and_power_cycle),
    Case("self_test_failure", chip(SelfTestFailure(tests=0x01, persistent=True))),
    Case("brown_out", chip(BrownOut(count=None))),
    Case("lost_command", chip(LostCommand(count=None))),
    Case("extra_busy", chip(ExtraBusy(count=None, seconds=5.0))),
    Case("wake_ignored", chip(WakeIgnored(count=None))),
]
BUS_FAULTS = [
    Case("nack", wire(Nack(ADDRESS, EVERY))),
    Case("bit_flip", wire(BitFlip(ADDRESS, EVERY))),
    Case("corrupt_byte", wire(CorruptByte(ADDRESS, EVERY))),
    Case("truncated_read", wire(TruncatedRead(ADDRESS, EVERY, after=3))),
    Case("stuck_bus", wire(StuckBus())),
    Case("sda_low", wire(SdaLow(errno.EIO))),
    Case("latency", wire(Latency(seconds=2.0))),  # longer than the 1.3 s watchdog per message
]


@pytest.mark.parametrize("case", CHIP_FAULTS + BUS_FAULTS, ids=lambda case: case.name)
def test_a_lasting_fault_fails_the_device_and_recovery_follows_the_clearing(case: Case) -> None:
    rig = healthy_rig()
    controller = rig.controller
    assert_serves_exactly_the_chips_output(rig)
    served = controller.status().served
    case.inject(rig)
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate(5)
    assert info.value.state == "failed"  # one failure: below the breaker threshold
    # While the fault lasts every recovery attempt fails on the device, and the breaker counts
    # it: the 4th failed attempt is the 5th consecutive device failure. (A slow bus makes each
    # attempt take minutes of virtual time.)
    run_until(controller, rig.clock, S.CIRCUIT_OPEN, limit_s=3600.0)
    status = controller.status()
    assert status.attempt == 4
    assert (status.breaker.consecutive_failures, status.breaker.opened) == (5, 1)
    # Then one trial per open period, each failing and re-opening: a virtual hour of it.
    run_for(controller, rig.clock, 3600.0)
    status = controller.status()
    assert status.state is S.CIRCUIT_OPEN
    assert status.breaker.state is BreakerState.OPEN
    assert status.breaker.trials >= 6  # each trial's own attempt may take minutes
    assert status.breaker.opened == status.breaker.trials + 1
    assert status.attempt == 4 + status.breaker.trials
    assert status.exhausted
    with pytest.raises(DeviceUnavailableError):
        controller.generate()
    assert controller.status().served == served  # nothing served during the fault
    case.clear(rig)
    run_until(controller, rig.clock, S.HEALTHY, limit_s=DEFAULT_BREAKER_OPEN_S + 600.0)
    assert controller.status().breaker.state is BreakerState.CLOSED
    assert_serves_exactly_the_chips_output(rig)


def test_a_latched_health_failure_needs_the_power_cycle() -> None:
    rig = healthy_rig()
    rig.chip.control.inject(RngHealthFailure())
    with pytest.raises(DeviceUnavailableError) as info:
        rig.controller.generate()
    assert info.value.reason is not None
    assert "HealthTestError" in info.value.reason
    clear_all(rig)  # the fault is spent; the chip's latch is not
    run_for(rig.controller, rig.clock, 200.0)
    assert rig.controller.state is S.CIRCUIT_OPEN  # the attempts kept failing: breaker open
    rig.chip.control.power_cycle()
    run_until(rig.controller, rig.clock, S.HEALTHY, limit_s=DEFAULT_BREAKER_OPEN_S + 120.0)
    assert_serves_exactly_the_chips_output(rig)


def test_a_transient_self_test_failure_clears_at_the_next_wake() -> None:
    """§10.2: the wake after sleep re-runs the failed tests; closing the driver sleeps the chip."""
    rig = healthy_rig()
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    with pytest.raises(DeviceUnavailableError):
        rig.controller.generate()
    run_until(rig.controller, rig.clock, S.HEALTHY, limit_s=60.0)
    assert rig.controller.status().attempts_total == 1
    assert_serves_exactly_the_chips_output(rig)


TRANSIENT = [
    Case("nack_once", wire(Nack(ADDRESS, Schedule.first(1)))),
    Case("bit_flip_once", wire(BitFlip(ADDRESS, Schedule.first(1)))),
    Case("corrupt_byte_once", wire(CorruptByte(ADDRESS, Schedule.first(1)))),
    Case("truncated_read_once", wire(TruncatedRead(ADDRESS, Schedule.first(1), after=3))),
    Case("latency_1ms", wire(Latency(seconds=0.001))),
    Case("comm_error_once", chip(ForcedStatus(count=1, status=0xFF))),
    Case("watchdog_once", chip(ForcedStatus(count=1, status=0xEE))),
    Case("corrupt_crc_once", chip(CorruptResponseCrc(count=1))),
    Case("extra_busy_10ms", chip(ExtraBusy(count=1, seconds=0.01))),
    Case("wake_ignored_once", chip(WakeIgnored(count=1))),
    Case("brown_out_once", chip(BrownOut(count=1))),
    Case("lost_command_once", chip(LostCommand(count=1))),
]


@pytest.mark.parametrize("case", TRANSIENT, ids=lambda case: case.name)
def test_a_passing_fault_never_yields_a_bad_sample(case: Case) -> None:
    """Faults the driver may absorb (retry, re-read, re-wake): served samples are still exactly
    the chip's; if the driver gave up, the controller recovers without any clearing."""
    rig = healthy_rig()
    rig.controller.generate(1)
    blocks = rig.script(8)
    case.inject(rig)
    served: list[bytes] = []
    for _ in range(8):  # reads every scripted block (a recovery's start-up test would, too)
        try:
            served += [s.data for s in rig.controller.generate(1)]
        except DeviceUnavailableError:
            run_until(rig.controller, rig.clock, S.HEALTHY, limit_s=60.0)
            break
    # served[0] was held back before the script. The rest are scripted blocks in order; one
    # may be missing where a response was lost and the driver ran Random again, none is
    # altered, repeated or reordered.
    remaining = iter(blocks)
    assert all(block in remaining for block in served[1:])
    if rig.controller.status().attempts_total == 0:
        assert len(served) >= len(blocks) - 1  # absorbed by the driver: at most one lost
    else:
        assert rig.controller.status().attempts_total == 1  # one recovery, no clearing needed
    if case.name == "latency_1ms":
        rig.bus.faults.clear()
    assert_serves_exactly_the_chips_output(rig)


# --- repeats: cycles and replays ------------------------------------------------------------------


def drain_until_healthy(rig: Rig, limit_s: float) -> None:
    run_until(rig.controller, rig.clock, S.HEALTHY, limit_s=limit_s)


@pytest.mark.parametrize("period", [2, 8])
def test_a_noise_source_stuck_in_a_cycle_is_caught_at_its_first_repeat(period: int) -> None:
    """The reviewer's repro: a chip cycling through ``period`` blocks. The last-sample check
    let every block through, again and again; the history catches the first repeat."""
    rig = healthy_rig()
    controller = rig.controller
    served = [s.data for s in controller.generate(1)]
    cycle = rig.script(period)
    rig.chip.control.script_random(*(cycle * 2))  # the chip goes round three times in all
    refused: DeviceUnavailableError | None = None
    for _ in range(3 * period + 2):
        try:
            served += [s.data for s in controller.generate(1)]
        except DeviceUnavailableError as exc:
            refused = exc
            break
    assert refused is not None, "the cycle was served round and round"
    assert refused.reason is not None
    assert "repeated" in refused.reason
    # Released: the sample held before the script, then the cycle's blocks but its last, which
    # was held back when the first block came round again, and dropped.
    assert served[2:] == cycle[: period - 1]
    assert controller.status().source.rejected[RejectReason.REPEATED] == 1
    # Recovery reads the rest of the cycle: every block a repeat, every attempt failing (and
    # opening the breaker on the way for the longer cycle), until the chip's own output returns.
    drain_until_healthy(rig, limit_s=(2 * period) * DEFAULT_BREAKER_OPEN_S)
    assert controller.status().source.rejected[RejectReason.REPEATED] == 2 * period
    served += [s.data for s in controller.generate(100)]
    assert len(set(served)) == len(served), "a sample was served twice"
    assert cycle[-1] not in served


def test_a_stream_replayed_after_a_reopen_is_never_served_again() -> None:
    """detach() used to forget the last sample: a chip replaying its output after a re-open
    was served again. The history outlives the device."""
    rig = healthy_rig()
    controller = rig.controller
    served = [s.data for s in controller.generate(1)]
    stream = rig.script(6)
    served += [s.data for s in controller.generate(6)]  # stream[0..4] served, stream[5] held
    assert served[2:] == stream[:5]
    rig.chip.control.inject(ForcedStatus(count=1, opcode=RANDOM, status=0x0F))
    with pytest.raises(DeviceUnavailableError):
        controller.generate()  # stream[5], held back, is dropped with the failure
    rig.chip.control.script_random(*stream)  # after the re-open, the chip replays the stream
    drain_until_healthy(rig, limit_s=4 * DEFAULT_BREAKER_OPEN_S)
    status = controller.status()
    assert status.source.rejected[RejectReason.REPEATED] == 6  # one failed attempt per block
    # four failed attempts (the 4th opened the breaker), two failed trials, the third passed
    assert (status.breaker.opened, status.breaker.trials) == (3, 3)
    served += [s.data for s in controller.generate(100)]
    assert len(set(served)) == len(served), "a sample was served twice"
    assert stream[5] not in served
    assert_serves_exactly_the_chips_output(rig)


# --- breaker and runner ---------------------------------------------------------------------------


PERMANENT = [
    # the reviewer's repro: Random (0x1B) always answers 0x0F; the open still works
    Case("random_forced_status", chip(ForcedStatus(count=None, opcode=RANDOM))),
    Case("dead_chip", wire(Nack(ADDRESS, EVERY))),  # nothing answers: the open fails
]


@pytest.mark.parametrize("case", PERMANENT, ids=lambda case: case.name)
def test_a_permanent_fault_opens_the_breaker_and_runs_one_trial_per_open_period(
    case: Case,
) -> None:
    rig = healthy_rig()
    controller = rig.controller
    case.inject(rig)
    with pytest.raises(DeviceUnavailableError):
        controller.generate()
    assert controller.state is S.FAILED
    assert controller.breaker.consecutive_failures == 1
    # recovery attempts 1..4 fail on the device: the 5th consecutive failure opens the breaker
    t_open = run_until(controller, rig.clock, S.CIRCUIT_OPEN, limit_s=60.0)
    status = controller.status()
    assert status.breaker.state is BreakerState.OPEN
    assert (status.breaker.consecutive_failures, status.breaker.opened) == (5, 1)
    assert (status.attempt, status.attempts_total) == (4, 4)
    assert sum(1 for t in controller.transitions.history if t.target is S.FAILED) == 4
    # the whole open period in CIRCUIT_OPEN: no attempt, no trial, no bus traffic
    transitions = controller.transitions.total
    rig.clock.advance(t_open + DEFAULT_BREAKER_OPEN_S - 0.001 - rig.clock.monotonic())
    assert controller.step() == pytest.approx(0.001)
    assert controller.status().state is S.CIRCUIT_OPEN
    assert controller.transitions.total == transitions
    assert controller.status().attempts_total == 4
    # exactly one trial at the end of it; it fails within its step and re-opens the breaker
    t_trial = run_until(controller, rig.clock, S.RECOVERING, limit_s=1.0)
    assert t_trial == pytest.approx(t_open + DEFAULT_BREAKER_OPEN_S)
    t_reopen = controller.transitions.history[-1].at
    status = controller.status()
    assert status.state is S.CIRCUIT_OPEN
    assert (status.breaker.trials, status.breaker.opened, status.attempts_total) == (1, 2, 5)
    assert status.breaker.retry_after_s == pytest.approx(DEFAULT_BREAKER_OPEN_S)
    assert controller.transitions.counts[S.CIRCUIT_OPEN, S.RECOVERING] == 1
    # the fault clears: the next trial (one open period later) brings the device back
    clear_all(rig)
    t_next = run_until(controller, rig.clock, S.RECOVERING, limit_s=DEFAULT_BREAKER_OPEN_S + 1)
    assert t_next == pytest.approx(t_reopen + DEFAULT_BREAKER_OPEN_S)
    run_until(controller, rig.clock, S.HEALTHY, limit_s=60.0)
    status = controller.status()
    assert status.breaker.state is BreakerState.CLOSED
    assert (status.breaker.consecutive_failures, status.breaker.trials) == (0, 2)
    assert (status.attempt, status.recoveries) == (0, 1)
    assert_serves_exactly_the_chips_output(rig)


def test_the_breaker_opens_on_a_chip_that_fails_whenever_used() -> None:
    rig = healthy_rig()
    controller = rig.controller
    for n in range(1, 6):
        rig.chip.control.inject(ForcedStatus(count=1, opcode=RANDOM, status=0x0F))
        with pytest.raises(DeviceUnavailableError):
            controller.generate()
        if n < 5:
            assert controller.state is S.FAILED
            run_until(controller, rig.clock, S.HEALTHY)
    assert controller.state is S.CIRCUIT_OPEN
    opens = controller.status().breaker.opened
    run_until(controller, rig.clock, S.HEALTHY, limit_s=400.0)  # half-open trial passes
    status = controller.status()
    assert status.breaker.state is BreakerState.CLOSED
    assert status.breaker.opened == opens == 1
    assert_serves_exactly_the_chips_output(rig)


def test_the_runner_drives_recovery_in_the_background() -> None:
    rig = make_rig()
    runner = ControllerRunner(rig.controller, rig.clock)
    with runner:
        assert wait_for(lambda: rig.controller.state is S.HEALTHY)
        assert len(rig.controller.generate(10)) == 10
        rig.chip.control.inject(StuckOutput(block=b"\x00"))
        with pytest.raises(DeviceUnavailableError):
            rig.controller.generate(3)
        rig.chip.control.clear_faults()
        assert wait_for(lambda: rig.controller.state is S.HEALTHY)
        assert rig.controller.status().recoveries == 1
    assert not runner.running
    rig.controller.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll (in real time) for a condition that the runner's thread brings about."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True

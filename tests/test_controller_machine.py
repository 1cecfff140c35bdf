"""Device state machine: lifecycle, back-off, validation, breaker, fallback (service-api.md §2.1).

The device is the scripted double of ``tests/controller_doubles.py``; time is a VirtualClock
that moves only when a test moves it. ``tests/test_controller_emulator.py`` repeats the
important paths with the real driver on the emulator.
"""

from __future__ import annotations

import logging
import math

import pytest

from lokey.controller import (
    ALLOWED_TRANSITIONS,
    DEFAULT_COOLDOWN_S,
    DEFAULT_INITIAL_BACKOFF_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_VALIDATION_SAMPLES,
    BreakerState,
    Controller,
    ControllerConfig,
    DeviceState,
    DeviceUnavailableError,
    RejectReason,
    Sample,
)
from lokey.errors import LokeyError
from sim.clock import VirtualClock
from tests.controller_doubles import BAD_MODES, Bench, Mode, run_for, run_until

S = DeviceState
STARTUP_RANDOMS = 32  # health-tests.md §1.5: 1,024 bytes
VALIDATION_READS = 3 + 1  # three validation samples, and the one held back behind them


def make(config: ControllerConfig | None = None) -> tuple[Controller, Bench, VirtualClock]:
    bench = Bench()
    clock = VirtualClock()
    return Controller(bench.factory, clock, config), bench, clock


def path(controller: Controller) -> list[tuple[DeviceState, DeviceState]]:
    return [(t.source, t.target) for t in controller.transitions.history]


def healthy() -> tuple[Controller, Bench, VirtualClock]:
    controller, bench, clock = make()
    run_until(controller, clock, S.HEALTHY)
    return controller, bench, clock


def fail_once(controller: Controller, bench: Bench) -> None:
    bench.mode = Mode.ERROR
    with pytest.raises(DeviceUnavailableError):
        controller.generate()
    bench.mode = Mode.GOOD


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_are_the_reference_constants() -> None:
    config = ControllerConfig()
    assert DEFAULT_MAX_ATTEMPTS == config.max_attempts == 10
    assert DEFAULT_INITIAL_BACKOFF_S == config.initial_backoff_s == 0.1
    assert DEFAULT_VALIDATION_SAMPLES == config.validation_samples == 3
    assert DEFAULT_COOLDOWN_S == config.cooldown_s == 30.0
    assert (config.breaker_threshold, config.breaker_open_s) == (5, 300.0)
    assert config.conditioning
    assert not config.fallback
    # §2.1: 100 ms ... 51.2 s, 102.3 s of back-off in total over the ten attempts
    delays = [config.backoff_s(n) for n in range(1, 11)]
    assert delays[0] == 0.1
    assert delays[-1] == pytest.approx(51.2)
    assert sum(delays) == pytest.approx(102.3)
    assert config.backoff_s(11) == config.backoff_s(500) == config.max_backoff_s
    assert config.check_interval_s == 10.0  # "default 3 checks 10 s apart"
    assert ControllerConfig(cooldown_s=1.5).check_interval_s == 1.0  # at least 1 s
    assert ControllerConfig(validation_samples=7).validation_count == 3  # capped at 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"validation_samples": 0},
        {"breaker_threshold": 0},
        {"history": 0},
        {"initial_backoff_s": 0.0},
        {"breaker_open_s": -1.0},
        {"cooldown_s": -1.0},
        {"cooldown_s": math.inf},
        {"max_attempts": True},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ControllerConfig(**kwargs)  # type: ignore[arg-type]


# --- start-up -----------------------------------------------------------------------------------


def test_start_up_validates_without_cooldown_then_serves() -> None:
    controller, bench, clock = make()
    assert controller.state is S.UNKNOWN
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate()
    assert info.value.state == "unknown"
    assert controller.step() == pytest.approx(0.010)  # start-up + sample 1, then a 10 ms gap
    assert controller.status().state is S.VALIDATING
    clock.advance(0.010)
    assert controller.step() == pytest.approx(0.020)
    clock.advance(0.020)
    assert controller.step() == math.inf
    assert controller.status().state is S.HEALTHY
    assert path(controller) == [(S.UNKNOWN, S.VALIDATING), (S.VALIDATING, S.HEALTHY)]
    assert bench.devices[0].calls == STARTUP_RANDOMS + VALIDATION_READS
    samples = controller.generate(5)
    assert [s.source for s in samples] == ["trng"] * 5
    assert all(len(s.data) == 32 and not s.fallback for s in samples)
    assert {s.data for s in samples} <= bench.conditioned_good()
    assert controller.status().served == 5


def test_an_initial_open_failure_goes_to_failed_and_recovers() -> None:
    controller, bench, clock = make()
    bench.open_fails = True
    controller.step()
    assert controller.state is S.FAILED
    status = controller.status()
    assert status.attempt == 0
    assert status.retry_after_s == pytest.approx(0.1)
    assert status.last_error is not None
    assert "NoDeviceError" in status.last_error
    bench.open_fails = False
    run_until(controller, clock, S.HEALTHY)
    assert path(controller) == [
        (S.UNKNOWN, S.FAILED),
        (S.FAILED, S.RECOVERING),
        (S.RECOVERING, S.VALIDATING),
        (S.VALIDATING, S.HEALTHY),
    ]
    assert clock.monotonic() >= 0.1 + DEFAULT_COOLDOWN_S  # a recovery: with the cooldown


@pytest.mark.parametrize("count", [0, 101, -1, True, 1.0, "3"])
def test_count_is_validated_with_the_reference_message(count: object) -> None:
    controller, _, _ = healthy()
    with pytest.raises(ValueError, match=r"^Invalid count parameter \(1-100\)$"):
        controller.generate(count)  # type: ignore[arg-type]


def test_count_bounds_are_inclusive() -> None:
    controller, _, _ = healthy()
    assert len(controller.generate(1)) == 1
    assert len(controller.generate(100)) == 100


# --- failure and recovery -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", BAD_MODES)
def test_every_kind_of_bad_sample_fails_the_device_and_is_never_served(mode: Mode) -> None:
    controller, bench, clock = healthy()
    bench.mode = mode
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate(3)
    assert info.value.state == "failed"
    assert info.value.retry_after_s == pytest.approx(0.1)
    assert info.value.reason is not None
    assert controller.state is S.FAILED
    assert not bench.open_devices  # closed at once
    # while the fault lasts, recovery keeps failing in validation, and those device failures
    # count: the 4th failed attempt (after 0.1 + 0.2 + 0.4 + 0.8 s) is the 5th in a row
    run_for(controller, clock, 5.0)
    status = controller.status()
    assert status.state is S.CIRCUIT_OPEN
    assert status.attempt == 4
    assert (status.breaker.consecutive_failures, status.breaker.opened) == (5, 1)
    bench.mode = Mode.GOOD
    run_until(controller, clock, S.HEALTHY, limit_s=400.0)  # the half-open trial passes
    assert {s.data for s in controller.generate(10)} <= bench.conditioned_good()
    assert controller.status().recoveries == 1


def test_rejections_are_counted_by_reason() -> None:
    controller, bench, clock = healthy()
    for mode in (Mode.PATTERN, Mode.STUCK, Mode.MOSTLY_FF, Mode.COMM):
        bench.mode = mode
        with pytest.raises(DeviceUnavailableError):
            controller.generate()
        bench.mode = Mode.GOOD
        run_until(controller, clock, S.HEALTHY)
    rejected = controller.status().source.rejected
    assert rejected[RejectReason.TEST_PATTERN] == 1
    assert rejected[RejectReason.ALL_EQUAL] == 1
    assert rejected[RejectReason.MOSTLY_FF] == 1
    assert rejected[RejectReason.COMMUNICATION] == 1


def test_recovery_validates_and_cools_down_before_serving() -> None:
    controller, bench, clock = healthy()
    fail_once(controller, bench)
    t_fail = clock.monotonic()
    run_until(controller, clock, S.VALIDATING)
    assert clock.monotonic() == pytest.approx(t_fail + 0.1)  # the first back-off
    device = bench.open_devices[0]
    t_open = clock.monotonic()
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate()
    assert info.value.state == "validating"
    t_healthy = run_until(controller, clock, S.HEALTHY)
    # start-up (32) + 3 validation samples (+ 1 held back) + 3 cooldown checks 10 s apart
    assert device.calls == STARTUP_RANDOMS + VALIDATION_READS + 3
    assert t_healthy - t_open == pytest.approx(0.030 + 30.0)
    assert path(controller)[-4:] == [
        (S.HEALTHY, S.FAILED),
        (S.FAILED, S.RECOVERING),
        (S.RECOVERING, S.VALIDATING),
        (S.VALIDATING, S.HEALTHY),
    ]


def test_a_failed_cooldown_check_fails_the_attempt() -> None:
    controller, bench, clock = healthy()
    fail_once(controller, bench)
    run_until(controller, clock, S.VALIDATING)
    run_for(controller, clock, 15.0)  # the first cooldown check passed
    assert controller.state is S.VALIDATING
    bench.mode = Mode.STUCK
    t_failed = run_until(controller, clock, S.FAILED, limit_s=10.0)
    assert controller.status().state is S.FAILED
    assert t_failed == pytest.approx(controller.transitions.history[-2].at + 0.030 + 20.0)
    assert controller.status().attempt == 1
    assert controller.status().retry_after_s == pytest.approx(0.2, abs=0.01)  # doubled


def test_backoff_doubles_for_ten_attempts_then_stays_at_the_maximum(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ladder on its own: a breaker threshold out of reach keeps the breaker out of it
    (with the default threshold the breaker opens after the 4th failed attempt, see below)."""
    controller, bench, clock = make(ControllerConfig(breaker_threshold=100))
    run_until(controller, clock, S.HEALTHY)
    bench.open_fails = True
    fail_once(controller, bench)
    t_fail = controller.transitions.history[-1].at
    starts: list[float] = []
    with caplog.at_level(logging.WARNING, logger="lokey.controller"):
        for _ in range(13):
            starts.append(run_until(controller, clock, S.RECOVERING, limit_s=100.0))
            assert controller.state is S.FAILED  # the reopen failed within the same step
    for index, at in enumerate(starts):
        if index:
            t_fail = starts[index - 1]
        expected = min(0.1 * 2**index, 51.2)
        assert at - t_fail == pytest.approx(expected), f"attempt {index + 1}"
    status = controller.status()
    assert status.state is S.FAILED
    assert status.exhausted
    assert status.attempt == 13
    assert status.attempts_total == 13
    exhausted = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(exhausted) == 1
    assert "recovery failed 10 times" in exhausted[0].getMessage()
    assert status.breaker.consecutive_failures == 14  # counted all along, below 100
    bench.open_fails = False
    run_until(controller, clock, S.HEALTHY, limit_s=200.0)  # still trying, and it works
    assert controller.status().attempt == 0


def test_a_dead_chip_opens_the_breaker_and_then_one_trial_per_open_period() -> None:
    """Recovery failures are device failures: the reference's dead chip never opened it."""
    controller, bench, clock = healthy()
    bench.open_fails = True
    fail_once(controller, bench)  # 1st consecutive device failure
    t_fail = controller.transitions.history[-1].at
    t_open = run_until(controller, clock, S.CIRCUIT_OPEN, limit_s=10.0)
    assert t_open == pytest.approx(t_fail + 0.1 + 0.2 + 0.4 + 0.8)  # attempts 1..4 failed
    assert path(controller)[-9:] == [
        (S.HEALTHY, S.FAILED),
        *[(S.FAILED, S.RECOVERING), (S.RECOVERING, S.FAILED)] * 3,
        (S.FAILED, S.RECOVERING),
        (S.RECOVERING, S.CIRCUIT_OPEN),
    ]
    status = controller.status()
    assert (status.attempt, status.attempts_total) == (4, 4)
    assert status.breaker.state is BreakerState.OPEN
    assert status.breaker.consecutive_failures == 5
    assert status.retry_after_s == pytest.approx(300.0)
    last_error = status.last_error
    assert last_error is not None
    assert "NoDeviceError" in last_error
    opens = bench.opens
    run_for(controller, clock, 299.9)  # nothing happens while open
    assert controller.state is S.CIRCUIT_OPEN
    assert bench.opens == opens
    for n in range(1, 4):  # each trial fails in its own step and re-opens for 300 s
        t_trial = run_until(controller, clock, S.RECOVERING, limit_s=301.0)
        assert t_trial == pytest.approx(t_open + 300.0 * n)
        assert controller.state is S.CIRCUIT_OPEN
        assert bench.opens == opens + n
        status = controller.status()
        assert (status.attempt, status.breaker.opened, status.breaker.trials) == (4 + n, 1 + n, n)
        assert status.retry_after_s == pytest.approx(300.0)
    bench.open_fails = False
    run_until(controller, clock, S.HEALTHY, limit_s=400.0)
    status = controller.status()
    assert status.breaker.state is BreakerState.CLOSED
    assert (status.breaker.consecutive_failures, status.attempt, status.recoveries) == (0, 0, 1)
    assert len(controller.generate(3)) == 3


def test_a_chip_dead_from_the_start_opens_the_breaker_too() -> None:
    controller, bench, clock = make()
    bench.open_fails = True
    run_until(controller, clock, S.CIRCUIT_OPEN, limit_s=10.0)
    assert path(controller) == [
        (S.UNKNOWN, S.FAILED),  # the initial open is an attempt under the breaker too
        *[(S.FAILED, S.RECOVERING), (S.RECOVERING, S.FAILED)] * 3,
        (S.FAILED, S.RECOVERING),
        (S.RECOVERING, S.CIRCUIT_OPEN),
    ]
    assert controller.breaker.consecutive_failures == 5


def test_with_threshold_one_a_failed_initial_open_opens_the_breaker() -> None:
    controller, bench, clock = make(ControllerConfig(breaker_threshold=1, breaker_open_s=10.0))
    bench.open_fails = True
    controller.step()
    assert path(controller) == [(S.UNKNOWN, S.CIRCUIT_OPEN)]
    assert (S.UNKNOWN, S.CIRCUIT_OPEN) in ALLOWED_TRANSITIONS
    assert controller.status().retry_after_s == pytest.approx(10.0)
    bench.open_fails = False
    run_until(controller, clock, S.HEALTHY, limit_s=60.0)
    assert controller.breaker.state is BreakerState.CLOSED


def test_a_successful_recovery_does_not_reset_the_count() -> None:
    """Only a served sample (or a passed trial) says the chip works: validation passing is no
    verdict, so failed attempts and failed requests add up across recoveries."""
    controller, bench, clock = healthy()
    bench.mode = Mode.STUCK
    fail_once(controller, bench)  # fail_once heals the bench again: keep it stuck
    bench.mode = Mode.STUCK
    for _ in range(3):
        run_until(controller, clock, S.RECOVERING)
    assert controller.state is S.FAILED
    assert controller.breaker.consecutive_failures == 4
    bench.mode = Mode.GOOD
    run_until(controller, clock, S.HEALTHY)
    assert controller.breaker.consecutive_failures == 4
    fail_once(controller, bench)
    assert controller.status().state is S.CIRCUIT_OPEN


class MissingBusError(OSError):
    """An error that is not a :class:`~lokey.errors.DeviceError` (a missing bus, a bug)."""


def test_errors_that_are_not_device_errors_never_feed_the_breaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bench = Bench()
    clock = VirtualClock()
    broken = True

    def factory() -> object:
        if broken:
            raise MissingBusError(2, "No such file or directory", "/dev/i2c-1")
        return bench.factory()

    controller = Controller(factory, clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="lokey.controller"):
        run_for(controller, clock, 300.0)
    status = controller.status()
    assert status.state is S.FAILED  # the ladder alone: exhausted, on at the maximum back-off
    assert status.exhausted
    assert status.breaker.state is BreakerState.CLOSED
    assert status.breaker.consecutive_failures == 0
    assert status.last_error is not None
    assert "not counted by the breaker" in controller.transitions.history[-1].reason
    broken = False
    run_until(controller, clock, S.HEALTHY, limit_s=200.0)


def test_a_trial_that_fails_without_a_device_error_gives_no_verdict() -> None:
    """The trial slot is released, the breaker stays half-open and the next trial follows the
    back-off; nothing is counted."""
    bench = Bench()
    clock = VirtualClock()
    missing = False

    def factory() -> object:
        if missing:
            raise MissingBusError(2, "No such file or directory", "/dev/i2c-1")
        return bench.factory()

    config = ControllerConfig(breaker_threshold=1, breaker_open_s=10.0)
    controller = Controller(factory, clock, config)  # type: ignore[arg-type]
    run_until(controller, clock, S.HEALTHY)
    fail_once(controller, bench)
    assert controller.state is S.CIRCUIT_OPEN
    missing = True
    t_trial = run_until(controller, clock, S.RECOVERING, limit_s=11.0)
    assert controller.state is S.CIRCUIT_OPEN  # back, within the same step
    breaker = controller.breaker.snapshot()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.trial_in_flight
    assert (breaker.consecutive_failures, breaker.opened, breaker.trials) == (1, 1, 1)
    assert controller.status().retry_after_s == pytest.approx(config.backoff_s(2))
    assert "no verdict" in controller.transitions.history[-1].reason
    missing = False
    t_next = run_until(controller, clock, S.RECOVERING, limit_s=1.0)
    assert t_next == pytest.approx(t_trial + config.backoff_s(2))
    run_until(controller, clock, S.HEALTHY)
    breaker = controller.breaker.snapshot()
    assert breaker.state is BreakerState.CLOSED
    assert (breaker.consecutive_failures, breaker.opened, breaker.trials) == (0, 1, 2)


def test_a_health_test_failure_restarts_the_start_up_test_on_recovery() -> None:
    controller, bench, clock = healthy()
    bench.mode = Mode.HEALTH
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate()
    assert info.value.reason is not None
    assert "SourceHealthError" in info.value.reason
    bench.mode = Mode.GOOD
    run_until(controller, clock, S.HEALTHY)
    health = controller.status().source.health
    assert health.failures == 1
    assert health.restarts == 1
    assert bench.devices[-1].calls == STARTUP_RANDOMS + VALIDATION_READS + 3


def test_an_unexpected_error_in_the_factory_is_an_attempt_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bench = Bench()
    clock = VirtualClock()
    calls = 0

    def factory() -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise FileNotFoundError(2, "No such file or directory", "/dev/i2c-1")
        return bench.factory()

    controller = Controller(factory, clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="lokey.controller"):
        controller.step()  # never raises
    assert controller.state is S.FAILED
    assert any(r.exc_info for r in caplog.records)  # a bug-shaped error keeps its traceback
    run_until(controller, clock, S.HEALTHY)


# --- circuit breaker ----------------------------------------------------------------------------


def test_breaker_opens_after_five_consecutive_failures_across_recoveries() -> None:
    """A device that validates but fails when used: the reference never reached its threshold."""
    controller, bench, clock = healthy()
    for n in range(1, 5):
        fail_once(controller, bench)
        assert controller.state is S.FAILED
        assert controller.breaker.consecutive_failures == n
        run_until(controller, clock, S.HEALTHY)
    fail_once(controller, bench)
    t_open = controller.transitions.history[-1].at
    assert controller.state is S.CIRCUIT_OPEN
    assert controller.breaker.state is BreakerState.OPEN
    assert not bench.open_devices
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate()
    assert info.value.state == "circuit_open"
    assert info.value.retry_after_s == pytest.approx(300.0)
    opens = bench.opens
    run_for(controller, clock, 299.9)  # nothing happens while open
    assert controller.state is S.CIRCUIT_OPEN
    assert bench.opens == opens
    t_trial = run_until(controller, clock, S.RECOVERING, limit_s=1.0)
    assert t_trial == t_open + 300.0  # exactly when the breaker turns half-open
    assert controller.breaker.snapshot().state is BreakerState.HALF_OPEN
    run_until(controller, clock, S.HEALTHY)
    assert controller.breaker.snapshot().state is BreakerState.CLOSED
    assert controller.breaker.consecutive_failures == 0
    assert path(controller)[-3:] == [
        (S.CIRCUIT_OPEN, S.RECOVERING),
        (S.RECOVERING, S.VALIDATING),
        (S.VALIDATING, S.HEALTHY),
    ]


def test_a_served_sample_resets_the_consecutive_count() -> None:
    controller, bench, clock = healthy()
    for _ in range(4):
        fail_once(controller, bench)
        run_until(controller, clock, S.HEALTHY)
    controller.generate()
    assert controller.breaker.consecutive_failures == 0
    for _ in range(4):
        fail_once(controller, bench)
        run_until(controller, clock, S.HEALTHY)
    assert controller.state is S.HEALTHY


@pytest.mark.parametrize("where", ["open", "validation"])
def test_a_failed_trial_reopens_the_breaker_with_a_fresh_timer(where: str) -> None:
    controller, bench, clock = make(ControllerConfig(breaker_threshold=1))
    run_until(controller, clock, S.HEALTHY)
    fail_once(controller, bench)
    assert controller.state is S.CIRCUIT_OPEN
    if where == "open":
        bench.open_fails = True
    else:
        bench.mode = Mode.PATTERN
    run_until(controller, clock, S.RECOVERING, limit_s=301.0)
    assert controller.state is S.CIRCUIT_OPEN  # the trial failed within the same step
    assert controller.breaker.state is BreakerState.OPEN
    t_reopen = controller.transitions.history[-1].at
    assert controller.status().retry_after_s == pytest.approx(300.0)
    bench.open_fails = False
    bench.mode = Mode.GOOD
    run_until(controller, clock, S.RECOVERING, limit_s=301.0)
    assert clock.monotonic() == pytest.approx(t_reopen + 300.0)
    run_until(controller, clock, S.HEALTHY)
    assert controller.breaker.snapshot().opened == 2


# --- fallback -----------------------------------------------------------------------------------


def test_fallback_is_off_by_default() -> None:
    controller, _, _ = make()
    assert not controller.config.fallback
    with pytest.raises(DeviceUnavailableError):
        controller.generate()


def test_fallback_serves_labelled_os_csprng_output(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []

    def urandom(n: int) -> bytes:
        drawn.append(n)
        return bytes([len(drawn)]) * n

    monkeypatch.setattr("lokey.controller.machine.os.urandom", urandom)
    controller, bench, clock = make(ControllerConfig(fallback=True))
    samples = controller.generate(3)  # UNKNOWN: nothing from the chip yet
    assert [s.source for s in samples] == ["fallback"] * 3
    assert all(s.fallback for s in samples)
    assert [s.data for s in samples] == [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32]
    assert drawn == [32, 32, 32]
    run_until(controller, clock, S.HEALTHY)
    assert all(not s.fallback for s in controller.generate(2))
    bench.mode = Mode.STUCK  # a failure mid-request: the whole answer is fallback
    assert [s.source for s in controller.generate(4)] == ["fallback"] * 4
    assert controller.state is S.FAILED
    assert controller.status().fallback_served == 7


def test_a_sample_never_shows_its_bytes_in_repr() -> None:
    sample = Sample(b"\xab" * 32, "trng")
    assert "ab" not in repr(sample).lower().replace("sample", "")
    assert repr(sample) == "Sample(source='trng')"


# --- transitions, logging, lifecycle ------------------------------------------------------------


def test_transitions_are_logged_counted_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    controller, bench, clock = make(ControllerConfig(history=3))
    with caplog.at_level(logging.DEBUG, logger="lokey.controller"):
        run_until(controller, clock, S.HEALTHY)
        served = controller.generate(20)
        fail_once(controller, bench)
        run_until(controller, clock, S.HEALTHY)
    log = controller.transitions
    assert log.total == 6
    assert len(log.history) == 3
    assert log.counts[S.VALIDATING, S.HEALTHY] == 2
    assert log.counts[S.HEALTHY, S.FAILED] == 1
    assert all(pair in ALLOWED_TRANSITIONS for pair in log.counts)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("->" in m for m in messages) == 6
    text = "\n".join(messages).lower()
    for sample in served:
        assert sample.data.hex() not in text
    for raw in bench.good:
        assert raw.hex() not in text


def test_close_releases_the_device_and_stops() -> None:
    controller, bench, _ = healthy()
    with controller:
        pass
    assert controller.closed
    assert not bench.open_devices
    assert controller.step() == math.inf
    with pytest.raises(DeviceUnavailableError) as info:
        controller.generate()
    assert info.value.state == "closed"


def test_unavailable_is_not_a_device_error() -> None:
    """Refusing a request says nothing new about the chip: it must not feed any breaker."""
    from lokey.errors import DeviceError

    assert issubclass(DeviceUnavailableError, LokeyError)
    assert not issubclass(DeviceUnavailableError, DeviceError)


def test_status_reports_the_snapshot() -> None:
    controller, _, _ = healthy()
    controller.generate(2)
    status = controller.status()
    assert status.state is S.HEALTHY
    assert status.retry_after_s == 0.0
    assert status.breaker.state is BreakerState.CLOSED
    assert status.source.released == 3 + 2  # validation samples are released, then dropped
    assert status.served == 2
    assert status.transitions[S.UNKNOWN, S.VALIDATING] == 1
    # §2.1 numbering for gauges: Unknown 0, Healthy 1, Failed 2, Recovering 3
    codes = [S.UNKNOWN.code, S.HEALTHY.code, S.FAILED.code, S.RECOVERING.code]
    assert codes == [0, 1, 2, 3]

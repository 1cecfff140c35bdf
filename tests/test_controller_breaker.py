"""Circuit breaker: closed / open / half-open semantics (service-api.md §2.1, defect 9).

Unit tests pin each rule; a hypothesis state machine drives successes, device failures, other
errors and time against a small model and checks the invariants after every step.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lokey.controller import (
    DEFAULT_BREAKER_OPEN_S,
    DEFAULT_BREAKER_THRESHOLD,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    Permit,
)
from lokey.errors import DeviceError, ExecutionError
from sim.clock import VirtualClock


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.failure(breaker.acquire())


def test_defaults_are_the_reference_constants() -> None:
    assert DEFAULT_BREAKER_THRESHOLD == 5  # §2.1 "threshold 5"
    assert DEFAULT_BREAKER_OPEN_S == 300.0  # §6.2 CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES 5
    breaker = CircuitBreaker(VirtualClock())
    assert (breaker.threshold, breaker.open_for_s) == (5, 300.0)


def test_opens_exactly_at_the_threshold() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock)
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 4
    fail(breaker)
    assert breaker.snapshot().state is BreakerState.OPEN
    assert breaker.retry_after_s == 300.0
    assert breaker.open_until == 300.0


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(VirtualClock())
    fail(breaker, 4)
    breaker.success(breaker.acquire())
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 4


def test_open_refuses_until_expiry_then_admits_one_trial() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock, threshold=1, open_for_s=10.0)
    fail(breaker)
    clock.advance(9.999)
    assert breaker.try_acquire() is None
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.retry_after_s == pytest.approx(0.001)
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    trial = breaker.try_acquire()
    assert trial is not None
    assert trial.trial
    assert breaker.try_acquire() is None  # exactly one trial at a time
    assert breaker.snapshot().rejected == 3


def test_trial_success_closes_and_resets() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock, threshold=2, open_for_s=10.0)
    fail(breaker, 2)
    clock.advance(10.0)
    breaker.success(breaker.acquire())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # a fresh count: one failure is not two


def test_trial_failure_reopens_with_a_fresh_timer() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock, threshold=1, open_for_s=10.0)
    fail(breaker)
    clock.advance(25.0)  # long past expiry
    trial = breaker.acquire()
    clock.advance(3.0)  # the trial took a while
    breaker.failure(trial)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s == 10.0
    assert breaker.open_until == 38.0
    assert breaker.snapshot().opened == 2


def test_the_trial_is_judged_by_its_own_outcome() -> None:
    """The reference judged it by a stale LastError: a success after a failure re-opened."""
    clock = VirtualClock()
    breaker = CircuitBreaker(clock, threshold=1, open_for_s=1.0)
    fail(breaker)
    clock.advance(1.0)
    breaker.success(breaker.acquire())
    assert breaker.state is BreakerState.CLOSED


def test_stale_outcomes_are_ignored() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock, threshold=1, open_for_s=1.0)
    slow = breaker.acquire()  # admitted while closed, finishes after the breaker opened
    fail(breaker)
    breaker.success(slow)
    assert breaker.state is BreakerState.OPEN
    clock.advance(1.0)
    trial = breaker.acquire()
    breaker.failure(slow)  # a late failure from the closed epoch must not re-open the trial
    assert breaker.snapshot().trial_in_flight
    breaker.release(trial)
    second = breaker.acquire()
    breaker.success(trial)  # a released trial has no say any more
    assert breaker.snapshot().state is BreakerState.HALF_OPEN
    breaker.success(second)
    assert breaker.snapshot().state is BreakerState.CLOSED


def test_guard_counts_device_errors_only() -> None:
    breaker = CircuitBreaker(VirtualClock(), threshold=2)
    for _ in range(3):
        with pytest.raises(KeyError), breaker.guard():
            raise KeyError("a bug, not the chip")
    assert breaker.consecutive_failures == 0
    with pytest.raises(ExecutionError), breaker.guard():
        raise ExecutionError(0x0F, "status 0x0F")
    assert breaker.consecutive_failures == 1
    with breaker.guard() as permit:
        assert isinstance(permit, Permit)
    assert breaker.consecutive_failures == 0


def test_guard_releases_a_half_open_trial_on_a_non_device_error() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker(clock, threshold=1, open_for_s=1.0)
    fail(breaker)
    clock.advance(1.0)
    with pytest.raises(ValueError, match="bad argument"), breaker.guard():
        raise ValueError("bad argument")
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.snapshot().trial_in_flight
    with pytest.raises(DeviceError), breaker.guard():
        raise DeviceError("chip gone")
    assert breaker.snapshot().state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError), breaker.guard():
        pytest.fail("an open breaker must not run the block")


@pytest.mark.parametrize(
    ("threshold", "open_for_s"),
    [(0, 1.0), (-1, 1.0), (True, 1.0), (1, 0.0), (1, -5.0), (1, float("inf")), (1, float("nan"))],
)
def test_rejects_bad_settings(threshold: int, open_for_s: float) -> None:
    with pytest.raises(ValueError, match=r"threshold|open_for_s"):
        CircuitBreaker(VirtualClock(), threshold, open_for_s)


# --- the rule-based state machine ----------------------------------------------------------------


class BreakerMachine(RuleBasedStateMachine):
    """A model: consecutive failures, when the breaker turns half-open, and which admissions
    are still current (the model's own epoch moves whenever the breaker opens or closes)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.threshold = 3
        self.open_for = 10.0
        self.breaker = CircuitBreaker(self.clock, self.threshold, self.open_for)
        self.failures = 0
        self.open_until: float | None = None
        self.epoch = 0
        self.in_flight: list[tuple[Permit, int]] = []  # closed-state calls not yet finished

    def expected_state(self) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        if self.clock.monotonic() < self.open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def opened(self) -> None:
        self.open_until = self.clock.monotonic() + self.open_for
        self.epoch += 1

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 4.0, 9.999, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def start_call(self) -> None:
        """Admission outside half-open: closed admits, open refuses."""
        expected = self.expected_state()
        if expected is BreakerState.HALF_OPEN:
            return  # the trial rule covers half-open
        permit = self.breaker.try_acquire()
        if expected is BreakerState.CLOSED:
            assert permit is not None
            assert not permit.trial
            self.in_flight.append((permit, self.epoch))
        else:
            assert permit is None, "admitted a call while open before expiry"

    @precondition(lambda self: self.in_flight)
    @rule(success=st.booleans())
    def finish_call(self, success: bool) -> None:
        permit, epoch = self.in_flight.pop(0)
        current = epoch == self.epoch  # else the breaker opened or closed since: stale
        if success:
            self.breaker.success(permit)
            if current:
                self.failures = 0
        else:
            self.breaker.failure(permit)
            if current:
                self.failures += 1
                if self.failures == self.threshold:
                    self.opened()

    @rule(outcome=st.sampled_from(["success", "device_error", "other_error"]))
    def trial(self, outcome: str) -> None:
        """A call through the guard; in half-open it is the single trial."""
        expected = self.expected_state()
        if expected is not BreakerState.HALF_OPEN:
            return
        with contextlib.suppress(ExecutionError, RuntimeError), self.breaker.guard() as permit:
            assert permit.trial
            assert self.breaker.try_acquire() is None, "admitted a second half-open trial"
            if outcome == "device_error":
                raise ExecutionError(0x0F, "trial failed")
            if outcome == "other_error":
                raise RuntimeError("not the device")
        if outcome == "success":
            self.open_until = None
            self.failures = 0
            self.epoch += 1
        elif outcome == "device_error":
            self.failures += 1
            self.opened()  # re-opened with a fresh timer

    @invariant()
    def state_matches_the_model(self) -> None:
        snap = self.breaker.snapshot()
        assert snap.state is self.expected_state()
        assert snap.consecutive_failures == self.failures
        assert not snap.trial_in_flight
        if self.open_until is None:
            assert snap.retry_after_s == 0.0
            assert self.failures < self.threshold
        else:
            assert snap.retry_after_s == max(0.0, self.open_until - self.clock.monotonic())


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)

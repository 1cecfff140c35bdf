"""A hypothesis state machine over device faults, requests and time (service-api.md §2.1).

Rules inject faults into the scripted device (every kind of bad sample, a failing open),
advance the virtual clock, step the controller and ask for samples. After every rule the
machine reads the new transitions and checks them against the diagram and a small model:

* every transition is in ALLOWED_TRANSITIONS, and they chain (each starts where the last ended);
* recovery attempts never start before their back-off (100 ms doubling, capped after the last
  attempt), the attempt count (half-open trials included) matches the model, and the
  controller never gives up (never exits);
* the breaker counts every device failure, of a request while HEALTHY and of a recovery
  attempt (open, re-initialisation, validation) alike; it opens exactly on the threshold-th
  consecutive one, whichever state it happens in, refuses everything while open, runs one
  trial when half-open, and a trial failure re-opens it with a fresh timer; a successful
  recovery does not reset the count (only a served sample or a passed trial does); HEALTHY
  and FAILED always mean a closed breaker;
* a device is open exactly while VALIDATING or HEALTHY;
* every served sample is SHA-256 of a good raw sample, never of a rejected one, never twice.

Three configurations: the reference defaults; a fast one (threshold 2, short cooldown and open
period, 3 attempts) so that the breaker and exhaustion paths are reached often; and threshold 1
without cooldown, so that half-open trials (and their failures) are frequent.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lokey.controller import (
    ALLOWED_TRANSITIONS,
    BreakerState,
    Controller,
    ControllerConfig,
    DeviceState,
    DeviceUnavailableError,
    Sample,
    Transition,
)
from sim.clock import VirtualClock
from tests.controller_doubles import BAD_MODES, Bench, Mode

S = DeviceState
EPS = 1e-9


class ControllerMachine(RuleBasedStateMachine):
    CONFIG: ClassVar[ControllerConfig] = ControllerConfig()

    def __init__(self) -> None:
        super().__init__()
        self.config = self.CONFIG
        self.clock = VirtualClock()
        self.bench = Bench(seed=7)
        self.controller = Controller(self.bench.factory, self.clock, self.config)
        self.seen = 0  # transitions already checked
        self.last: Transition | None = None
        self.attempt = 0  # model: recovery attempts in this failure episode
        self.consecutive = 0  # model: the breaker's consecutive device failures
        self.in_trial = False
        self.validating_since = 0.0
        self.validation_is_recovery = False
        self.served: set[bytes] = set()

    # --- rules ----------------------------------------------------------------------------------
    @rule(mode=st.sampled_from(BAD_MODES))
    def break_device(self, mode: Mode) -> None:
        self.bench.mode = mode

    @rule()
    def heal_device(self) -> None:
        self.bench.mode = Mode.GOOD

    @rule(fails=st.booleans())
    def set_open_fails(self, fails: bool) -> None:
        self.bench.open_fails = fails

    @rule(seconds=st.sampled_from([0.01, 0.02, 0.1, 0.5, 1.0, 3.0, 10.0, 30.0, 51.2, 120.0, 300.0]))
    def advance_and_step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.controller.step()
        self.check_transitions()

    @rule()
    def step(self) -> None:
        self.controller.step()
        self.check_transitions()

    @rule()
    def run_to_next_due(self) -> None:
        """What the runner does: wait exactly until the next work is due, then step."""
        delay = self.controller.step()
        self.check_transitions()
        if delay != float("inf"):
            self.clock.advance(delay)
            self.controller.step()
            self.check_transitions()

    @rule(stop_at=st.sampled_from([S.HEALTHY, S.CIRCUIT_OPEN, S.FAILED]))
    def settle(self, stop_at: DeviceState) -> None:
        """Run to each next due time until ``stop_at`` (at most 30 times: FAILED may last)."""
        for _ in range(30):
            if self.controller.state is stop_at:
                return
            self.run_to_next_due()

    @rule(mode=st.sampled_from(BAD_MODES), count=st.integers(1, 3))
    def flap(self, mode: Mode, count: int) -> None:
        """A device that validates but fails when used: the case the breaker exists for."""
        good = self.bench.mode
        self.bench.mode = mode
        self.generate(count)
        self.bench.mode = good

    @rule(count=st.integers(1, 5))
    def generate(self, count: int) -> None:
        before = self.controller.state
        calls = sum(d.calls for d in self.bench.devices)
        refused: DeviceUnavailableError | None = None
        samples: list[Sample] = []
        try:
            samples = self.controller.generate(count)
        except DeviceUnavailableError as exc:
            refused = exc
        if refused is None:
            assert before is S.HEALTHY
            assert self.bench.mode is Mode.GOOD
            assert len(samples) == count
            good = self.bench.conditioned_good()
            for sample in samples:
                assert sample.source == "trng"
                assert sample.data in good, "served something that was not a good sample"
                assert sample.data not in self.served, "served a sample twice"
                self.served.add(sample.data)
            self.consecutive = 0
        elif before is S.HEALTHY:
            assert self.bench.mode is not Mode.GOOD, "a good device failed a request"
            self.consecutive += 1
            expected = S.CIRCUIT_OPEN if self.consecutive == self.threshold else S.FAILED
            assert self.controller.state is expected
            assert refused.state == expected.value
        else:
            assert refused.state == before.value
            assert sum(d.calls for d in self.bench.devices) == calls, "touched the chip"
        self.check_transitions()

    @property
    def threshold(self) -> int:
        return self.config.breaker_threshold

    # --- the transition checks ------------------------------------------------------------------
    def check_transitions(self) -> None:
        log = self.controller.transitions
        new = log.total - self.seen
        assert new <= len(log.history), "history too small for this test"
        for t in log.history[len(log.history) - new :] if new else ():
            self.check(t)
            self.last = t
        self.seen = log.total

    def check(self, t: Transition) -> None:
        pair = (t.source, t.target)
        assert pair in ALLOWED_TRANSITIONS, f"illegal transition {pair}"
        event(f"{type(self).__name__}: {t.source.value} -> {t.target.value}")
        previous = self.last
        if previous is None:
            assert t.source is S.UNKNOWN
        else:
            assert t.source is previous.target, "transitions do not chain"
            assert t.at >= previous.at
        since = previous.at if previous is not None else 0.0
        if pair == (S.FAILED, S.RECOVERING):
            due = since + self.config.backoff_s(self.attempt + 1)
            assert t.at >= due - EPS, f"attempt {self.attempt + 1} started early"
            self.attempt += 1
        elif pair == (S.CIRCUIT_OPEN, S.RECOVERING):
            assert t.at >= since + self.config.breaker_open_s - EPS, "trial before expiry"
            self.attempt += 1  # a trial is a recovery attempt of the episode
            self.in_trial = True
        elif t.source is not S.HEALTHY and t.target in (S.FAILED, S.CIRCUIT_OPEN):
            # A recovery attempt failed; every bench failure is a device error: it counts.
            self.consecutive += 1
            opened = self.in_trial or self.consecutive == self.threshold
            expected = S.CIRCUIT_OPEN if opened else S.FAILED
            assert t.target is expected, f"attempt failure {self.consecutive}: {t.target}"
            self.in_trial = False
            if t.target is S.CIRCUIT_OPEN:
                open_until = self.controller.breaker.open_until
                assert open_until == pytest.approx(t.at + self.config.breaker_open_s)
        elif t.target is S.VALIDATING:
            self.validating_since = t.at
            self.validation_is_recovery = t.source is S.RECOVERING
        elif t.target is S.HEALTHY:
            minimum = 0.0
            if self.validation_is_recovery:
                minimum = self.config.cooldown_s
            assert t.at - self.validating_since >= minimum - EPS, "cooldown cut short"
            self.attempt = 0
            if self.in_trial:
                self.consecutive = 0
                self.in_trial = False
        elif pair == (S.HEALTHY, S.CIRCUIT_OPEN):
            open_until = self.controller.breaker.open_until
            assert open_until == pytest.approx(t.at + self.config.breaker_open_s)

    # --- invariants -----------------------------------------------------------------------------
    @invariant()
    def breaker_agrees_with_the_state(self) -> None:
        state = self.controller.state
        breaker = self.controller.breaker.snapshot()
        assert breaker.consecutive_failures == self.consecutive
        if state in (S.UNKNOWN, S.HEALTHY, S.FAILED):
            assert breaker.state is BreakerState.CLOSED
            assert self.consecutive < self.threshold
        elif state is S.CIRCUIT_OPEN:
            assert breaker.state is not BreakerState.CLOSED
            assert not breaker.trial_in_flight
        else:  # RECOVERING / VALIDATING: closed, or half-open with the controller's trial
            assert breaker.trial_in_flight == self.in_trial
            assert (breaker.state is BreakerState.CLOSED) == (not self.in_trial)

    @invariant()
    def a_device_is_open_exactly_while_validating_or_healthy(self) -> None:
        open_devices = self.bench.open_devices
        assert len(open_devices) <= 1
        assert bool(open_devices) == (self.controller.state in (S.VALIDATING, S.HEALTHY))

    @invariant()
    def schedule_matches_the_model(self) -> None:
        status = self.controller.status()
        assert status.attempt == self.attempt
        assert status.exhausted == (self.attempt >= self.config.max_attempts)
        now = self.clock.monotonic()
        if status.state is S.FAILED:
            due = status.since + self.config.backoff_s(self.attempt + 1)
            assert now + status.retry_after_s == pytest.approx(max(due, now))
        elif status.state is S.CIRCUIT_OPEN:
            due = status.since + self.config.breaker_open_s
            assert now + status.retry_after_s == pytest.approx(max(due, now))
        elif status.state is S.HEALTHY:
            assert status.retry_after_s == 0.0

    @invariant()
    def nothing_rejected_was_ever_served(self) -> None:
        bad = {hashlib.sha256(raw).digest() for raw in self.bench.bad}
        assert not (self.served & bad)


class FastControllerMachine(ControllerMachine):
    CONFIG = ControllerConfig(
        max_attempts=3, cooldown_s=2.0, breaker_threshold=2, breaker_open_s=20.0
    )


class TripwireControllerMachine(ControllerMachine):
    """Threshold 1: every failure while HEALTHY opens the breaker, so trials happen often."""

    CONFIG = ControllerConfig(
        max_attempts=2, cooldown_s=0.0, breaker_threshold=1, breaker_open_s=5.0
    )


TestControllerDefaults = ControllerMachine.TestCase
TestControllerDefaults.settings = settings(max_examples=60, stateful_step_count=80, deadline=None)
TestControllerFast = FastControllerMachine.TestCase
TestControllerFast.settings = settings(max_examples=80, stateful_step_count=80, deadline=None)
TestControllerTripwire = TripwireControllerMachine.TestCase
TestControllerTripwire.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)

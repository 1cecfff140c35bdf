"""The device state machine: lifecycle, recovery with back-off, validation, circuit breaker.

service-api.md §2.1 gives the reference's states and constants; LoKey keeps the constants as
defaults and fixes the defects listed there. The diagram implemented here (trigger in brackets)::

    UNKNOWN      -> VALIDATING    [factory opened and initialised the device]
    UNKNOWN      -> FAILED        [open or initialisation failed]
    UNKNOWN      -> CIRCUIT_OPEN  [... on the device, and the breaker threshold is 1]
    VALIDATING   -> HEALTHY       [start-up test, validation samples (and cooldown) passed]
    VALIDATING   -> FAILED        [a validation sample failed or was rejected]
    VALIDATING   -> CIRCUIT_OPEN  [... as the 5th consecutive device failure, or in the trial]
    HEALTHY      -> FAILED        [device failure, fewer than 5 consecutive]
    HEALTHY      -> CIRCUIT_OPEN  [5th consecutive device failure: the breaker opens]
    FAILED       -> RECOVERING    [back-off elapsed: 0.1 s doubling, 51.2 s from attempt 10 on]
    RECOVERING   -> VALIDATING    [closed, reopened and re-initialised]
    RECOVERING   -> FAILED        [reopening failed]
    RECOVERING   -> CIRCUIT_OPEN  [... as the 5th consecutive device failure, or in the trial]
    CIRCUIT_OPEN -> RECOVERING    [5 min passed: the breaker is half-open, the trial starts]

:data:`ALLOWED_TRANSITIONS` is the authoritative list; the tests assert that every recorded
transition is in it.

* UNKNOWN: nothing opened yet. The first :meth:`Controller.step` opens and initialises the
  device through the factory: success → VALIDATING, failure → FAILED (CIRCUIT_OPEN if that
  one device failure already reaches the breaker threshold, i.e. a threshold of 1).
* VALIDATING: the SP 800-90B start-up test (32 samples, discarded), then
  ``min(validation_samples, 3)`` checked, health-tested samples 10 and 20 ms apart (not served);
  after a recovery also the cooldown: re-validated every ``max(cooldown/3, 1 s)`` until
  ``cooldown_s`` has passed (default three checks 10 s apart). Success → HEALTHY; any failure
  → FAILED, or CIRCUIT_OPEN when the breaker opens (see "Breaker and back-off" below).
  The very first validation after start has no cooldown: nothing has failed yet.
* HEALTHY: ``generate`` serves samples. A device failure counts toward the breaker; the
  ``breaker_threshold``-th consecutive one (no successful sample in between, across
  recoveries) → CIRCUIT_OPEN, any other → FAILED.
* FAILED: the device is closed; after the back-off (100 ms, doubling per failed attempt, at
  most 51.2 s after the 10th) → RECOVERING. After the last of ``max_attempts`` attempts go on
  at the maximum back-off (or at the breaker's pace, below): the process never exits.
* RECOVERING: close, reopen and re-initialise through the factory: success → VALIDATING,
  failure → FAILED (next back-off), or CIRCUIT_OPEN when the breaker opens.
* CIRCUIT_OPEN: the device is closed and ``generate`` refused for ``breaker_open_s``; then the
  breaker is half-open and the controller itself runs the single trial: a full recovery
  attempt (RECOVERING → VALIDATING with cooldown). The trial is judged by its own outcome: a
  validated device closes the breaker (→ HEALTHY), a device failure re-opens it with a fresh
  timer (→ CIRCUIT_OPEN).

Breaker and back-off. Every recovery attempt (the initial open included) runs under a breaker
permit, and the breaker counts what design.md says it counts: device errors
(:class:`~lokey.errors.DeviceError`: bus, chip status, CRC, rejected samples, health tests),
whether a served request or a recovery attempt's open, re-initialisation or validation raised
them. A successful recovery attempt is no verdict: it does not reset the count (only a served
sample or a successful half-open trial does), so a chip that validates but fails when used
opens the breaker too. In the reference every failure started a recovery that reset the count,
so its threshold was unreachable; counting served requests only would leave it unreachable for a
chip that stays dead, which is never HEALTHY again to fail a request. After a failed attempt
the controller follows the breaker:
open → CIRCUIT_OPEN (next attempt: the half-open trial, when the open period is over), closed
→ FAILED (next attempt after the back-off). So the two schedules take turns rather than
compete: the back-off ladder (0.1 s, 0.2 s, ... doubling) paces the failures below the
threshold, the open period paces everything after it. With the defaults a dead chip fails
once while HEALTHY and four recovery attempts (0.1 + 0.2 + 0.4 + 0.8 s of back-off), the breaker
opens, and from then on one trial runs every 5 min until one passes. The ladder runs to its
51.2 s maximum only for failures the breaker does not count (an error that is not a device
error, e.g. a missing ``/dev/i2c-N``: a bug or the environment, logged with its traceback) or
when ``breaker_threshold`` exceeds ``max_attempts``. ``attempt`` counts every recovery attempt
of the episode, trials included, and is reset by a return to HEALTHY; ``exhausted`` (and the
one error log) means ``max_attempts`` attempts have failed, which is where the reference exited.
A trial that fails with an error that is not a device error gives no verdict either: the
breaker stays half-open and the controller, back in CIRCUIT_OPEN, runs the next trial after the
ladder's back-off.

Everything runs on the injected clock, in :meth:`Controller.step` (due work only) and
:meth:`Controller.generate`; one lock serialises both, so bus I/O is never concurrent. There
are no threads here: :class:`lokey.controller.runner.ControllerRunner` calls ``step``.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from lokey.clock import Clock
from lokey.controller.breaker import (
    DEFAULT_BREAKER_OPEN_S,
    DEFAULT_BREAKER_THRESHOLD,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from lokey.controller.errors import DeviceUnavailableError
from lokey.controller.source import SAMPLE_BYTES, Device, SourceSnapshot, TrngSource
from lokey.errors import DeviceError
from lokey.quality.health import HealthTracker

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_INITIAL_BACKOFF_S",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_VALIDATION_SAMPLES",
    "MAX_COUNT",
    "MAX_VALIDATION_SAMPLES",
    "Controller",
    "ControllerConfig",
    "ControllerStatus",
    "DeviceFactory",
    "DeviceState",
    "Sample",
    "Transition",
    "TransitionLog",
]

log = logging.getLogger("lokey.controller")

# service-api.md §2.1 (reference constants, LoKey's defaults)
DEFAULT_MAX_ATTEMPTS = 10  # recovery attempts before the reference exited; LoKey goes on
DEFAULT_INITIAL_BACKOFF_S = 0.1  # first back-off; doubles after each failed attempt
BACKOFF_FACTOR = 2
DEFAULT_VALIDATION_SAMPLES = 3  # §6.2 CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS
MAX_VALIDATION_SAMPLES = 3  # §6.2: "effectively capped at 3"
VALIDATION_GAP_S = 0.010  # §2.1: gaps of 10 / 20 / 40 ms between validation samples
DEFAULT_COOLDOWN_S = 30.0  # §6.2 CONTROLLER_RECOVERY_COOLDOWN_SECONDS
COOLDOWN_CHECKS = 3  # §2.1: re-validate every cooldown/3 ...
MIN_CHECK_INTERVAL_S = 1.0  # ... but at least 1 s apart
MAX_COUNT = 100  # §2: /generate?count= valid 1..100
COUNT_ERROR = "Invalid count parameter (1-100)"  # §2: the 400 body's exact wording
DEFAULT_HISTORY = 256  # transitions kept in memory (all are counted)


class DeviceState(enum.StrEnum):
    """The device's state; ``code`` extends the reference's numbering (§2.1) for gauges."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    FAILED = "failed"
    RECOVERING = "recovering"
    VALIDATING = "validating"
    CIRCUIT_OPEN = "circuit_open"

    @property
    def code(self) -> int:
        """Unknown 0, Healthy 1, Failed 2, Recovering 3 as in the reference; then 4, 5."""
        return list(DeviceState).index(self)


_S = DeviceState
ALLOWED_TRANSITIONS: frozenset[tuple[DeviceState, DeviceState]] = frozenset(
    {
        (_S.UNKNOWN, _S.VALIDATING),  # opened and initialised
        (_S.UNKNOWN, _S.FAILED),  # open or initialisation failed
        (_S.UNKNOWN, _S.CIRCUIT_OPEN),  # ... on the device, reaching a breaker threshold of 1
        (_S.VALIDATING, _S.HEALTHY),  # start-up test, validation samples (and cooldown) passed
        (_S.VALIDATING, _S.FAILED),  # a validation sample failed
        (_S.VALIDATING, _S.CIRCUIT_OPEN),  # ... reaching the threshold, or in the trial
        (_S.HEALTHY, _S.FAILED),  # device failure below the breaker threshold
        (_S.HEALTHY, _S.CIRCUIT_OPEN),  # device failure reaching the threshold
        (_S.FAILED, _S.RECOVERING),  # back-off elapsed
        (_S.RECOVERING, _S.VALIDATING),  # closed, reopened, re-initialised
        (_S.RECOVERING, _S.FAILED),  # reopening failed
        (_S.RECOVERING, _S.CIRCUIT_OPEN),  # ... reaching the threshold, or in the trial
        (_S.CIRCUIT_OPEN, _S.RECOVERING),  # open period over: the half-open trial starts
    }
)
del _S

_LEVELS = {
    DeviceState.HEALTHY: logging.INFO,
    DeviceState.FAILED: logging.WARNING,
    DeviceState.CIRCUIT_OPEN: logging.WARNING,
}

DeviceFactory = Callable[[], Device]
"""Opens and initialises a fresh device (wake, Info, lock check), raising DeviceError."""


@dataclass(frozen=True)
class Sample:
    """One 32-byte sample and where it came from.

    ``source`` is ``"fallback"`` for OS-CSPRNG output, so nobody can mistake it for TRNG output.
    The bytes are left out of ``repr`` so that logging a sample never logs random data.
    """

    data: bytes = field(repr=False)
    source: Literal["trng", "fallback"]

    @property
    def fallback(self) -> bool:
        return self.source == "fallback"


@dataclass(frozen=True)
class Transition:
    """One state change: when (injected clock), from, to, and why (never sample bytes)."""

    at: float
    source: DeviceState
    target: DeviceState
    reason: str


class TransitionLog:
    """The newest ``capacity`` transitions, and a count of every (from, to) pair ever taken."""

    def __init__(self, capacity: int = DEFAULT_HISTORY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._history: deque[Transition] = deque(maxlen=capacity)
        self._counts: Counter[tuple[DeviceState, DeviceState]] = Counter()

    def record(self, transition: Transition) -> None:
        self._history.append(transition)
        self._counts[transition.source, transition.target] += 1

    @property
    def history(self) -> tuple[Transition, ...]:
        return tuple(self._history)

    @property
    def counts(self) -> Mapping[tuple[DeviceState, DeviceState], int]:
        return MappingProxyType(dict(self._counts))

    @property
    def total(self) -> int:
        return sum(self._counts.values())


@dataclass(frozen=True)
class ControllerConfig:
    """Recovery and breaker settings; every default is the reference's (service-api.md §2.1).

    ``conditioning``: SHA-256 each released sample (the reference design's promise).
    ``fallback``: serve labelled OS-CSPRNG samples when TRNG samples cannot be produced; off by
    default, because a client asking for TRNG output should get an error, not a substitute.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_backoff_s: float = DEFAULT_INITIAL_BACKOFF_S
    validation_samples: int = DEFAULT_VALIDATION_SAMPLES
    cooldown_s: float = DEFAULT_COOLDOWN_S
    breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD
    breaker_open_s: float = DEFAULT_BREAKER_OPEN_S
    conditioning: bool = True
    fallback: bool = False
    history: int = DEFAULT_HISTORY

    def __post_init__(self) -> None:
        for name in ("max_attempts", "validation_samples", "breaker_threshold", "history"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("initial_backoff_s", "breaker_open_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not math.isfinite(self.cooldown_s) or self.cooldown_s < 0:
            raise ValueError(f"cooldown_s must be a finite number >= 0, got {self.cooldown_s!r}")

    @property
    def max_backoff_s(self) -> float:
        """The back-off before attempt ``max_attempts`` and every later one (51.2 s)."""
        return self.backoff_s(self.max_attempts)

    def backoff_s(self, attempt: int) -> float:
        """The wait before recovery attempt ``attempt`` (1-based): 0.1, 0.2, ... 51.2 s."""
        exponent = min(attempt, self.max_attempts) - 1
        return self.initial_backoff_s * float(BACKOFF_FACTOR**exponent)

    @property
    def validation_count(self) -> int:
        """min(validation_samples, 3): the reference's min(attempts, 3)."""
        return min(self.validation_samples, MAX_VALIDATION_SAMPLES)

    @property
    def check_interval_s(self) -> float:
        """Cooldown re-validation interval: cooldown/3, but at least 1 s."""
        return max(self.cooldown_s / COOLDOWN_CHECKS, MIN_CHECK_INTERVAL_S)


@dataclass(frozen=True)
class ControllerStatus:
    """A consistent snapshot for ``/info``, ``/health`` and metrics (no sample bytes)."""

    state: DeviceState
    since: float  # clock time of the last transition
    retry_after_s: float  # 0 when HEALTHY; else until the next work that can change the state
    attempt: int  # recovery attempts in the current failure episode (half-open trials too)
    max_attempts: int
    exhausted: bool  # max_attempts failed; attempts go on (maximum back-off or breaker trials)
    last_error: str | None
    served: int  # TRNG samples handed out by generate
    fallback_served: int
    device_failures: int  # failures of served requests (the breaker counts recovery's too)
    attempts_total: int  # recovery attempts ever started, half-open trials included
    recoveries: int  # returns to HEALTHY after a failure
    transitions: Mapping[tuple[DeviceState, DeviceState], int]
    breaker: BreakerSnapshot
    source: SourceSnapshot


def _describe(exc: BaseException) -> str:
    """Type and message of an error; LoKey's errors never put sample bytes in messages."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Controller:
    """Owns the device: opens it through ``factory``, serves samples, recovers from failures.

    ``factory`` opens and initialises a fresh device and returns it (raising on failure); a
    recovery is "close, call the factory again, validate". Drive the controller by calling
    :meth:`step` (it does whatever is due on ``clock`` and returns the seconds until more is
    due) and serve requests with :meth:`generate`. Both are safe to call from different
    threads: one lock serialises them, and with them every bus transfer.
    """

    def __init__(
        self,
        factory: DeviceFactory,
        clock: Clock,
        config: ControllerConfig | None = None,
        *,
        tracker: HealthTracker | None = None,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._config = config = config if config is not None else ControllerConfig()
        self._breaker = CircuitBreaker(clock, config.breaker_threshold, config.breaker_open_s)
        self._source = TrngSource(tracker=tracker, conditioning=config.conditioning)
        self._log = TransitionLog(config.history)
        self._lock = threading.RLock()
        self._device: Device | None = None
        self._closed = False
        self._state = DeviceState.UNKNOWN
        self._since = clock.monotonic()
        self._due = self._since  # when step() has work next; inf: nothing scheduled
        self._attempt = 0
        # The breaker's admission of the recovery attempt in progress (the half-open trial's
        # permit during a trial); None while HEALTHY, FAILED or CIRCUIT_OPEN.
        self._permit: Permit | None = None
        self._validated = 0  # validation samples passed in the current validation
        self._recovery = False  # the current validation follows a failure: cooldown applies
        self._cooldown_until: float | None = None
        self._last_error: str | None = None
        self._served = 0
        self._fallback_served = 0
        self._device_failures = 0
        self._attempts_total = 0
        self._recoveries = 0

    # --- read-only views ------------------------------------------------------------------------
    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def config(self) -> ControllerConfig:
        return self._config

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def source(self) -> TrngSource:
        return self._source

    @property
    def transitions(self) -> TransitionLog:
        return self._log

    @property
    def lock(self) -> threading.RLock:
        """The lock that serialises bus I/O; hold it to use the device alongside (e.g. /info)."""
        return self._lock

    @property
    def device(self) -> Device | None:
        """The open device, if any (read revision / serial under :attr:`lock`)."""
        return self._device

    def status(self) -> ControllerStatus:
        with self._lock:
            now = self._clock.monotonic()
            return ControllerStatus(
                state=self._state,
                since=self._since,
                retry_after_s=self._retry_after(now),
                attempt=self._attempt,
                max_attempts=self._config.max_attempts,
                exhausted=self._attempt >= self._config.max_attempts,
                last_error=self._last_error,
                served=self._served,
                fallback_served=self._fallback_served,
                device_failures=self._device_failures,
                attempts_total=self._attempts_total,
                recoveries=self._recoveries,
                transitions=self._log.counts,
                breaker=self._breaker.snapshot(),
                source=self._source.snapshot(),
            )

    def _retry_after(self, now: float) -> float:
        """Seconds until a request may succeed: 0 when HEALTHY, else until the next scheduled
        work that can change the state (during a cooldown: until the cooldown ends)."""
        if self._state is DeviceState.HEALTHY:
            return 0.0
        if self._state is DeviceState.VALIDATING and self._cooldown_until is not None:
            return max(0.0, self._cooldown_until - now)
        return max(0.0, self._due - now)

    # --- requests -------------------------------------------------------------------------------
    def generate(self, count: int = 1) -> list[Sample]:
        """``count`` samples (1..100), all TRNG or, with fallback enabled, all fallback.

        Raises ``ValueError("Invalid count parameter (1-100)")`` for a bad count and
        :class:`~lokey.controller.errors.DeviceUnavailableError` (state, retry-after hint, last
        failure) when TRNG samples cannot be produced and fallback is off. A failure in the
        middle of a request fails the whole request: samples already read are dropped, never
        returned (and never returned later either).
        """
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ValueError(COUNT_ERROR)
        with self._lock:
            if self._state is DeviceState.HEALTHY and not self._closed:
                try:
                    return self._generate_trng(count)
                except DeviceError as exc:
                    if not self._config.fallback:
                        raise self._unavailable() from exc
            elif not self._config.fallback:
                raise self._unavailable()
            self._fallback_served += count
            log.debug("serving %d fallback sample(s) in state %s", count, self._state.value)
            return [Sample(os.urandom(SAMPLE_BYTES), "fallback") for _ in range(count)]

    def _generate_trng(self, count: int) -> list[Sample]:
        samples: list[Sample] = []
        for _ in range(count):
            try:  # HEALTHY implies a closed breaker, so the guard always admits
                with self._breaker.guard():
                    samples.append(Sample(self._source.sample(), "trng"))
            except DeviceError as exc:
                self._device_failed(exc)
                raise
        self._served += count
        return samples

    def _unavailable(self) -> DeviceUnavailableError:
        now = self._clock.monotonic()
        state = "closed" if self._closed else self._state.value
        return DeviceUnavailableError(state, self._retry_after(now), self._last_error)

    # --- scheduled work -------------------------------------------------------------------------
    def step(self) -> float:
        """Do every piece of work that is due now; return the seconds until the next is due.

        Returns ``math.inf`` when nothing is scheduled (HEALTHY, or closed). Never raises for
        device trouble: failures become transitions. (KeyboardInterrupt and the like pass
        through; the state stays where it was and the next step resumes.)
        """
        with self._lock:
            while not self._closed:
                now = self._clock.monotonic()
                if self._due > now:
                    return self._due - now
                self._work(now)
            return math.inf

    def _work(self, now: float) -> None:
        state = self._state
        if state is DeviceState.UNKNOWN:
            self._permit = self._breaker.try_acquire()  # closed: a start-up attempt counts too
            self._open("initial open")
        elif state is DeviceState.FAILED:
            self._permit = self._breaker.try_acquire()  # FAILED implies a closed breaker
            budget = self._next_attempt()
            self._transition(DeviceState.RECOVERING, f"back-off elapsed; attempt {budget}")
        elif state is DeviceState.RECOVERING:
            self._open("reopened and re-initialised")
        elif state is DeviceState.VALIDATING:
            self._validate()
        elif state is DeviceState.CIRCUIT_OPEN:
            permit = self._breaker.try_acquire()
            if permit is None:  # a trial is out elsewhere (not the controller's): look later
                self._due = now + MIN_CHECK_INTERVAL_S
                return
            self._permit = permit
            budget = self._next_attempt()
            self._transition(
                DeviceState.RECOVERING, f"breaker half-open: trial recovery; attempt {budget}"
            )
        else:  # HEALTHY: nothing is ever scheduled (its due time is inf); keep it that way
            self._due = math.inf

    def _next_attempt(self) -> str:
        self._attempt += 1
        self._attempts_total += 1
        return f"{self._attempt}/{self._config.max_attempts}"

    def _open(self, reason: str) -> None:
        """UNKNOWN/RECOVERING: close whatever is open, open a fresh device, start validating."""
        self._drop_device()
        try:
            device = self._factory()
        except Exception as exc:
            self._attempt_failed(exc, "open/initialisation failed")
            return
        self._device = device
        self._source.attach(device)
        self._validated = 0
        self._recovery = self._state is not DeviceState.UNKNOWN
        self._cooldown_until = None
        self._transition(DeviceState.VALIDATING, reason)

    def _validate(self) -> None:
        """One validation sample (the first also runs the start-up test); schedule the next."""
        try:
            self._source.sample()  # checked and health-tested, then discarded: never served
        except Exception as exc:
            self._attempt_failed(exc, "validation failed")
            return
        now = self._clock.monotonic()
        config = self._config
        if self._validated < config.validation_count:
            self._validated += 1
            if self._validated < config.validation_count:
                self._due = now + VALIDATION_GAP_S * BACKOFF_FACTOR ** (self._validated - 1)
                return
            if self._recovery and config.cooldown_s > 0:
                self._cooldown_until = now + config.cooldown_s
                self._due = min(now + config.check_interval_s, self._cooldown_until)
                return
        elif self._cooldown_until is not None and now < self._cooldown_until:
            self._due = min(now + config.check_interval_s, self._cooldown_until)
            return
        self._healthy()

    def _healthy(self) -> None:
        checks = f"{self._config.validation_count} validation sample(s)"
        if self._cooldown_until is not None:
            checks += f" and a {self._config.cooldown_s:g} s cooldown"
        permit, self._permit = self._permit, None
        if permit is not None and permit.trial:
            self._breaker.success(permit)
            reason = f"half-open trial passed {checks}; breaker closed"
        else:
            if permit is not None:  # no verdict: only a served sample resets the count
                self._breaker.release(permit)
            reason = f"start-up test and {checks} passed"
        if self._recovery:
            self._recoveries += 1
        self._attempt = 0
        self._cooldown_until = None
        self._due = math.inf
        self._transition(DeviceState.HEALTHY, reason)

    def _attempt_failed(self, exc: Exception, what: str) -> None:
        """An open or validation failed (initial, recovery attempt, or the breaker's trial).

        A device error is the breaker's failure (it may open the breaker, or re-open it after
        a trial); any other error releases the permit without a verdict. Then the controller
        follows the breaker: open → CIRCUIT_OPEN until the trial is due; half-open (a trial
        without a verdict) → CIRCUIT_OPEN until the next back-off; closed → FAILED.
        """
        self._note_error(exc)
        self._drop_device()
        now = self._clock.monotonic()
        self._cooldown_until = None
        permit, self._permit = self._permit, None
        counted = isinstance(exc, DeviceError)
        if permit is not None:
            if counted:
                self._breaker.failure(permit)
            else:
                self._breaker.release(permit)
        trial = permit is not None and permit.trial
        breaker = self._breaker.snapshot()
        config = self._config
        failure = f"{what} ({_describe(exc)})"
        if breaker.state is BreakerState.OPEN:
            self._due = self._reopen_time()
            if trial:
                reason = f"half-open trial: {failure}; breaker re-opened for"
            else:
                reason = f"{failure}; {breaker.consecutive_failures} consecutive device failures:"
                reason += " breaker open for"
            self._transition(DeviceState.CIRCUIT_OPEN, f"{reason} {breaker.open_for_s:g} s")
        else:
            delay = config.backoff_s(self._attempt + 1)
            self._due = now + delay
            if breaker.state is BreakerState.HALF_OPEN:  # the trial ended without a verdict
                self._transition(
                    DeviceState.CIRCUIT_OPEN,
                    f"half-open trial: {failure}, not a device error: no verdict; "
                    f"next trial in {delay:g} s",
                )
            else:
                count = (
                    f"{breaker.consecutive_failures}/{breaker.threshold} consecutive"
                    if counted
                    else "not a device error, not counted by the breaker"
                )
                self._transition(
                    DeviceState.FAILED, f"{failure} ({count}); next attempt in {delay:g} s"
                )
        if self._attempt == config.max_attempts:
            pace = (
                f"every {config.max_backoff_s:g} s"
                if self._state is DeviceState.FAILED
                else f"with one half-open trial per {breaker.open_for_s:g} s open period"
            )
            log.error(
                "recovery failed %d times; the device stays unavailable and recovery continues %s",
                self._attempt,
                pace,
            )

    def _device_failed(self, exc: DeviceError) -> None:
        """HEALTHY: a served call failed (the breaker has already counted it)."""
        self._note_error(exc)
        self._device_failures += 1
        self._drop_device()
        now = self._clock.monotonic()
        breaker = self._breaker.snapshot()
        if breaker.state is BreakerState.OPEN:
            self._due = self._reopen_time()
            self._transition(
                DeviceState.CIRCUIT_OPEN,
                f"{_describe(exc)}; {breaker.consecutive_failures} consecutive failures: "
                f"breaker open for {breaker.open_for_s:g} s",
            )
        else:
            delay = self._config.backoff_s(1)
            self._due = now + delay
            self._transition(
                DeviceState.FAILED,
                f"{_describe(exc)} ({breaker.consecutive_failures}/{breaker.threshold} "
                f"consecutive); recovery in {delay:g} s",
            )

    def _reopen_time(self) -> float:
        """When the just-opened breaker turns half-open: the trial's due time, exactly."""
        until = self._breaker.open_until
        assert until is not None, "called right after the breaker opened"
        return until

    def _note_error(self, exc: Exception) -> None:
        self._last_error = _describe(exc)
        if not isinstance(exc, DeviceError):  # a bug, not the chip: keep the traceback
            log.error("unexpected error in state %s", self._state.value, exc_info=exc)

    def _transition(self, target: DeviceState, reason: str) -> None:
        source = self._state
        if (source, target) not in ALLOWED_TRANSITIONS:  # a bug in this module, never data
            raise AssertionError(f"illegal transition {source.value} -> {target.value}")
        now = self._clock.monotonic()
        self._state = target
        self._since = now
        self._log.record(Transition(now, source, target, reason))
        level = _LEVELS.get(target, logging.INFO)
        log.log(level, "device %s -> %s: %s", source.value, target.value, reason)

    def _drop_device(self) -> None:
        device, self._device = self._device, None
        self._source.detach()
        if device is not None:
            try:
                device.close()
            except Exception as exc:  # closing a broken device may fail; it is gone either way
                log.debug("closing the device failed: %s", _describe(exc))

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the device and stop: ``step`` does nothing, ``generate`` refuses (or falls back).

        The breaker permit of an attempt in progress (a half-open trial's included) is
        released without a verdict.
        """
        with self._lock:
            self._closed = True
            permit, self._permit = self._permit, None
            if permit is not None:
                self._breaker.release(permit)
            self._drop_device()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Controller(state={self._state.value}, breaker={self._breaker.state.value})"

"""A circuit breaker with correct closed / open / half-open semantics, on an injected clock.

service-api.md §2.1: threshold 5 consecutive failures, open for
``CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES`` (5 min), then half-open where one trial decides.
The Go reference judged its trial by a ``LastError`` that success never cleared, so any trial
after any earlier failure re-opened the circuit; here a trial is judged by its own outcome only.

Every call is admitted by a :class:`Permit` and reports back through it. The permit remembers
the breaker's epoch (which changes whenever the breaker opens or closes), so an outcome that
arrives after the breaker changed state is ignored: a slow call admitted while closed cannot
close a breaker that opened meanwhile, and only the holder of the half-open trial permit can
close it again or re-open it.

The state is evaluated lazily from the clock (no timers, no threads): ``open`` becomes
``half_open`` when ``open_for_s`` has passed since it opened. A small lock makes one breaker
safe to share between a request thread and a worker.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lokey.clock import Clock
from lokey.controller.errors import CircuitOpenError
from lokey.errors import DeviceError

__all__ = [
    "DEFAULT_BREAKER_OPEN_S",
    "DEFAULT_BREAKER_THRESHOLD",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
]

DEFAULT_BREAKER_THRESHOLD = 5  # service-api.md §2.1: consecutive failures that open the circuit
DEFAULT_BREAKER_OPEN_S = 5 * 60.0  # §2.1 / §6.2: CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES = 5


class BreakerState(enum.StrEnum):
    """service-api.md §2.1: Closed(0) / Open(1) / HalfOpen(2)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, eq=False)
class Permit:
    """Admission of one call; hand it back to exactly one of success / failure / release.

    Compared by identity: the breaker recognises its trial permit as that very object.
    """

    trial: bool  # True: the single half-open trial, whose outcome closes or re-opens
    epoch: int  # the breaker's epoch at admission; outcomes from an older epoch are ignored


@dataclass(frozen=True)
class BreakerSnapshot:
    """What a status page shows: state, counters and the time until a trial is admitted."""

    state: BreakerState
    consecutive_failures: int
    threshold: int
    open_for_s: float
    retry_after_s: float
    trial_in_flight: bool
    opened: int  # times the breaker opened (from closed, or re-opened by a failed trial)
    rejected: int  # calls refused while open or while the trial was taken
    trials: int  # half-open trials admitted


class CircuitBreaker:
    """Counts consecutive device failures; opens at ``threshold``; one trial after ``open_for_s``.

    Closed: every call is admitted; a success resets the count, a failure adds one and the
    ``threshold``-th consecutive failure opens the breaker. Open: nothing is admitted until
    ``open_for_s`` has passed. Half-open: exactly one call (the trial) is admitted at a time;
    its success closes the breaker with the count reset, its failure re-opens it with a fresh
    timer, and releasing it without a verdict (the call failed for a reason that says nothing
    about the device) frees the trial slot for the next caller.
    """

    def __init__(
        self,
        clock: Clock,
        threshold: int = DEFAULT_BREAKER_THRESHOLD,
        open_for_s: float = DEFAULT_BREAKER_OPEN_S,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"threshold must be a positive int, got {threshold!r}")
        finite = isinstance(open_for_s, int | float) and math.isfinite(open_for_s)
        if not finite or open_for_s <= 0:
            raise ValueError(f"open_for_s must be a finite number > 0, got {open_for_s!r}")
        self._clock = clock
        self._threshold = threshold
        self._open_for_s = float(open_for_s)
        self._lock = threading.Lock()
        self._epoch = 0
        self._failures = 0
        self._open_until: float | None = None  # None: closed; else when it turns half-open
        self._trial: Permit | None = None
        self._opened = 0
        self._rejected = 0
        self._trials = 0

    @property
    def threshold(self) -> int:
        return self._threshold

    @property
    def open_for_s(self) -> float:
        return self._open_for_s

    def _state(self, now: float) -> BreakerState:
        if self._open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self._open_until else BreakerState.HALF_OPEN

    def _retry_after(self, now: float) -> float:
        return 0.0 if self._open_until is None else max(0.0, self._open_until - now)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state(self._clock.monotonic())

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    @property
    def open_until(self) -> float | None:
        """Clock time at which the open breaker turns half-open (None while closed).

        A scheduler that wakes exactly then finds the breaker half-open: the state is decided
        by comparing the clock with this very number.
        """
        with self._lock:
            return self._open_until

    @property
    def retry_after_s(self) -> float:
        """Seconds until a trial can be admitted (0 when closed or half-open)."""
        with self._lock:
            return self._retry_after(self._clock.monotonic())

    def try_acquire(self) -> Permit | None:
        """Admit one call, or return None (and count a rejection) if the breaker refuses."""
        with self._lock:
            state = self._state(self._clock.monotonic())
            if state is BreakerState.CLOSED:
                return Permit(trial=False, epoch=self._epoch)
            if state is BreakerState.HALF_OPEN and self._trial is None:
                self._trial = Permit(trial=True, epoch=self._epoch)
                self._trials += 1
                return self._trial
            self._rejected += 1
            return None

    def acquire(self) -> Permit:
        """Like :meth:`try_acquire`, but a refusal raises :class:`CircuitOpenError`."""
        permit = self.try_acquire()
        if permit is None:
            raise CircuitOpenError(self.retry_after_s)
        return permit

    def success(self, permit: Permit) -> None:
        """The admitted call succeeded: reset the count; a trial closes the breaker."""
        with self._lock:
            if permit.epoch != self._epoch:
                return  # the breaker changed state since this call was admitted
            if permit.trial:
                if permit is self._trial:
                    self._trial = None
                    self._open_until = None
                    self._failures = 0
                    self._epoch += 1
            else:  # same epoch: still closed since admission
                self._failures = 0

    def failure(self, permit: Permit) -> None:
        """The admitted call failed on the device: count it; a trial re-opens the breaker."""
        with self._lock:
            if permit.epoch != self._epoch:
                return
            now = self._clock.monotonic()
            if permit.trial:
                if permit is self._trial:
                    self._trial = None
                    self._failures += 1
                    self._open(now)
            else:  # same epoch: still closed since admission
                self._failures += 1
                if self._failures >= self._threshold:
                    self._open(now)

    def release(self, permit: Permit) -> None:
        """The admitted call ended without a verdict on the device: free the trial slot."""
        with self._lock:
            if permit.trial and permit is self._trial:
                self._trial = None

    def _open(self, now: float) -> None:
        self._open_until = now + self._open_for_s
        self._opened += 1
        self._epoch += 1

    @contextmanager
    def guard(self) -> Iterator[Permit]:
        """Run one call under the breaker.

        Raises :class:`CircuitOpenError` if refused. A :class:`~lokey.errors.DeviceError`
        escaping the block counts as a failure; any other exception (a bug, a cancelled
        request, a bad argument) says nothing about the device and only releases the permit;
        a clean exit counts as a success.
        """
        permit = self.acquire()
        try:
            yield permit
        except DeviceError:
            self.failure(permit)
            raise
        except BaseException:
            self.release(permit)
            raise
        self.success(permit)

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            now = self._clock.monotonic()
            return BreakerSnapshot(
                state=self._state(now),
                consecutive_failures=self._failures,
                threshold=self._threshold,
                open_for_s=self._open_for_s,
                retry_after_s=self._retry_after(now),
                trial_in_flight=self._trial is not None,
                opened=self._opened,
                rejected=self._rejected,
                trials=self._trials,
            )

    def __repr__(self) -> str:
        snap = self.snapshot()
        return (
            f"CircuitBreaker(state={snap.state.value}, failures={snap.consecutive_failures}/"
            f"{snap.threshold}, open_for_s={snap.open_for_s})"
        )

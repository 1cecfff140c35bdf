"""The TRNG source: one ATECC608A Random per sample, checked, health-tested and conditioned.

service-api.md §2 ("LoKey does instead"): every Random response is checked (count and CRC by
the driver; here: not the unlocked-chip pattern ``FF FF 00 00`` x 8, not all-equal, not over
90 % 0xFF) and passes the SP 800-90B health tests before it is released; a rejected sample is
never returned. The reference documentation promises SHA-256 conditioning that its code never
did; LoKey conditions each released sample with SHA-256 by default (configurable off).

LoKey adds one check of its own: a sample equal to any of the last 4,096 raw samples is
rejected (a stuck noise source repeats its block, or cycles through a few; a replayed stream
repeats old ones), and every sample is held back until the next one has passed, so not even the
first copy of a block stuck on itself is released. The memory of past samples is bounded
(truncated digests, never the bytes) and outlives a re-open of the device.

The source is pure apart from the device call: no clock, no threads, no logging of sample
bytes. Counters say how many samples were read, released, discarded and rejected (by reason).
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from lokey.controller.errors import RejectReason, SampleRejectedError, SourceHealthError
from lokey.errors import CommunicationError
from lokey.hardware.commands import TEST_PATTERN  # atecc608a.md §5: the unlocked chip's output
from lokey.quality.health import HealthSnapshot, HealthState, HealthTracker

__all__ = [
    "DEFAULT_REPEAT_HISTORY",
    "MOSTLY_FF_LIMIT",
    "REPEAT_DIGEST_BYTES",
    "SAMPLE_BYTES",
    "TEST_PATTERN",
    "Device",
    "RandomDevice",
    "RepeatHistory",
    "SourceSnapshot",
    "TrngSource",
    "classify",
    "condition",
]

SAMPLE_BYTES = 32  # atecc608a.md §5: Random always returns 32 bytes (the reference kept 31)
# service-api.md §2: a sample with more than 90 % 0xFF bytes is rejected (29 of 32 bytes or more).
MOSTLY_FF_LIMIT = 0.9
# The repeat check remembers this many raw samples (128 KiB of TRNG output, about four minutes
# of continuous service at the chip's ~18 samples/s) as digests of this many bytes: under
# 1 MiB of memory in all (about 0.75 MiB measured: bytes objects, the set's table and the
# deque), whatever the uptime.
DEFAULT_REPEAT_HISTORY = 4096
REPEAT_DIGEST_BYTES = 16  # 128 bits: a fresh sample falsely matches one of 4,096 with p = 2^-116
# The digest is domain-separated, so that it is never a prefix of the SHA-256-conditioned output
# that was served: the history must not keep a copy of anything a client received.
_REPEAT_DOMAIN = b"lokey.controller.source repeat check\x00"


@runtime_checkable
class RandomDevice(Protocol):
    """The one call the source needs: a fresh 32-byte Random (raises a DeviceError)."""

    def random(self) -> bytes: ...


@runtime_checkable
class Device(RandomDevice, Protocol):
    """What the controller owns: a Random source it can close (the driver satisfies this)."""

    def close(self) -> None: ...


def classify(raw: bytes) -> RejectReason | None:
    """Why ``raw`` must not be used as a Random sample, or None if it may be health-tested.

    The test pattern is checked first: it is neither all-equal nor mostly 0xFF, which is how
    the reference came to serve it as random data (atecc608a.md §17, defect 4).
    """
    if len(raw) != SAMPLE_BYTES:
        return RejectReason.LENGTH
    if raw == TEST_PATTERN:
        return RejectReason.TEST_PATTERN
    if raw.count(raw[0]) == len(raw):
        return RejectReason.ALL_EQUAL
    if raw.count(0xFF) > MOSTLY_FF_LIMIT * len(raw):
        return RejectReason.MOSTLY_FF
    return None


def condition(raw: bytes) -> bytes:
    """SHA-256 of one raw sample: the conditioning the reference design describes."""
    return hashlib.sha256(raw).digest()


class RepeatHistory:
    """The digests of the last ``capacity`` raw samples, for an O(1) "seen recently?" check.

    A deque keeps the order (oldest evicted first) and a set answers membership; both hold the
    same ``capacity`` 16-byte digests at most, so memory is bounded however long the source
    runs. A digest is a truncated, domain-separated SHA-256 of the raw sample: the history
    never holds sample bytes, nor anything that was served.
    """

    def __init__(self, capacity: int = DEFAULT_REPEAT_HISTORY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"repeat history must be a positive int, got {capacity!r}")
        self._capacity = capacity
        self._order: deque[bytes] = deque()
        self._members: set[bytes] = set()

    @staticmethod
    def digest(raw: bytes) -> bytes:
        return hashlib.sha256(_REPEAT_DOMAIN + raw).digest()[:REPEAT_DIGEST_BYTES]

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, raw: object) -> bool:
        return isinstance(raw, bytes) and self.digest(raw) in self._members

    def add(self, raw: bytes) -> bool:
        """Remember ``raw``; False (and nothing changes) if it is already remembered."""
        digest = self.digest(raw)
        if digest in self._members:
            return False
        if len(self._order) == self._capacity:
            self._members.discard(self._order.popleft())
        self._order.append(digest)
        self._members.add(digest)
        return True


@dataclass(frozen=True)
class SourceSnapshot:
    """Counters of a :class:`TrngSource` (no sample bytes)."""

    conditioning: bool
    read: int  # Random commands issued (failed ones included)
    released: int
    discarded: int  # passed the checks but never released: start-up, held back at a failure
    rejected: Mapping[RejectReason, int]
    health_failures: int
    health: HealthSnapshot

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class TrngSource:
    """Random samples from a device, released only after the checks and the health tests.

    ``sample()`` first runs the SP 800-90B start-up test if it has not passed (1,024 bytes =
    32 Random samples with the default tracker, all discarded, health-tests.md §1.5), then
    returns the next sample that passes every check, SHA-256-conditioned unless
    ``conditioning`` is False. Failures raise device errors and release nothing:
    :class:`~lokey.controller.errors.SampleRejectedError` for a refused response (counted by
    reason), :class:`~lokey.controller.errors.SourceHealthError` when a health test fails,
    and whatever the device raised otherwise.

    Each sample is also compared with the last ``repeat_history`` samples (4,096 by default;
    the continuous test of FIPS 140-2 §4.9.2, widened from one sample to many; a healthy
    repeat has probability about 2^-244) and held back until its successor has passed every
    check: a noise source that sticks on some 32-byte block produces that block over and over,
    and only the second copy shows it, so the first copy must not have been released yet. A
    source stuck in a cycle of n blocks, or replaying an earlier stream, is caught at the first
    block it repeats, and the sample held back then is dropped: no block is ever released twice
    (the first copies of a cycle's blocks may each be released once). Every sample that passes
    the pattern checks is remembered, start-up and validation samples included. The history
    belongs to the source, not to a device: :meth:`detach` and :meth:`attach` keep it, so a
    chip that replays its output after a re-open is caught too. The cost is one sample of
    latency at start-up, none afterwards; memory is bounded (see :class:`RepeatHistory`).

    After a health-test failure the tracker stays FAILED (every further ``sample()`` raises
    without touching the device) until :meth:`attach` gives the source a fresh device, which
    re-runs the start-up test: at H = 8 the RCT fires on healthy data about once per 16 MiB, so
    a failure must lead to a re-test, not to a dead source.
    """

    def __init__(
        self,
        device: RandomDevice | None = None,
        *,
        tracker: HealthTracker | None = None,
        conditioning: bool = True,
        repeat_history: int = DEFAULT_REPEAT_HISTORY,
    ) -> None:
        self._device = device
        self._tracker = tracker if tracker is not None else HealthTracker()
        self._conditioning = conditioning
        self._history = RepeatHistory(repeat_history)  # recent raw samples; survives re-opens
        self._held: bytes | None = None  # checked and tested, released once its successor is
        self._read = 0
        self._released = 0
        self._discarded = 0
        self._health_failures = 0
        self._rejected: Counter[RejectReason] = Counter()

    @property
    def conditioning(self) -> bool:
        return self._conditioning

    @property
    def tracker(self) -> HealthTracker:
        return self._tracker

    @property
    def history(self) -> RepeatHistory:
        """The digests of the recent raw samples that the repeat check compares with."""
        return self._history

    @property
    def started(self) -> bool:
        """True once the start-up test passed on the current device (samples flow)."""
        return self._tracker.usable

    def attach(self, device: RandomDevice) -> None:
        """Use ``device`` from now on and re-run the start-up test on it.

        Health-test state describes one device's noise; a new or re-opened device starts over.
        """
        self.detach()
        self._device = device
        if self._tracker.state is not HealthState.INIT:
            self._tracker.restart()

    def detach(self) -> None:
        """Forget the device (it was closed) and the sample held back from it.

        The repeat history stays: a re-opened device that replays its earlier output is a
        repeat like any other.
        """
        self._device = None
        self._drop_held()

    def start_up(self) -> None:
        """Read (and discard) samples until the start-up test has passed."""
        while not self._tracker.usable:
            self._take()

    def sample(self) -> bytes:
        """One released sample: checked, health-tested, conditioned as configured."""
        self.start_up()
        while True:
            raw = self._take()
            if raw is None:
                continue
            held, self._held = self._held, raw
            if held is not None:
                self._released += 1
                return condition(held) if self._conditioning else held

    def _take(self) -> bytes | None:
        """Read one sample and test it; the raw bytes if usable, None if a start-up sample.

        Any failure also drops the held-back sample: it is the last one before the failure.
        """
        try:
            return self._check(self._read_device())
        except BaseException:
            self._drop_held()
            raise

    def _read_device(self) -> bytes:
        tracker = self._tracker
        if tracker.state is HealthState.FAILED:
            raise SourceHealthError(f"health tests failed earlier: {tracker.reason}")
        device = self._device
        if device is None:
            raise RuntimeError("TrngSource has no device attached")
        self._read += 1
        try:
            return bytes(device.random())
        except CommunicationError:
            self._rejected[RejectReason.COMMUNICATION] += 1
            raise

    def _check(self, raw: bytes) -> bytes | None:
        reason = classify(raw)
        if reason is None and not self._history.add(raw):
            reason = RejectReason.REPEATED
        if reason is not None:
            self._rejected[reason] += 1
            raise SampleRejectedError(reason)
        tracker = self._tracker
        usable = tracker.feed(raw)
        failure = tracker.failure  # set exactly when this sample put the tracker into FAILED
        if failure is not None:
            self._health_failures += 1
            raise SourceHealthError(failure.reason)
        if usable == len(raw):
            return raw
        self._discarded += 1  # a start-up sample (or one that straddled the start-up's end)
        return None

    def _drop_held(self) -> None:
        if self._held is not None:
            self._held = None
            self._discarded += 1

    def snapshot(self) -> SourceSnapshot:
        return SourceSnapshot(
            conditioning=self._conditioning,
            read=self._read,
            released=self._released,
            discarded=self._discarded,
            rejected=MappingProxyType({reason: self._rejected[reason] for reason in RejectReason}),
            health_failures=self._health_failures,
            health=self._tracker.snapshot(),
        )

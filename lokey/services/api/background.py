"""The API's background work: TRNG and Fortuna polling, Fortuna and VirtIO seeding (spec §1.9).

Each job is a **step** (one poll or one seeding round) that returns how long to wait before the
next one; :func:`run_loop` repeats a step forever on the event loop. Tests call the steps
directly, with a virtual clock for the breakers, and never sleep.

* **TRNG poll** (every ``TRNG_POLL_INTERVAL_MS``): ``LOKEY_TRNG_POLL_SAMPLES`` samples from the
  controller; the batch goes through :class:`TrngQuality` (legacy metrics and the SP 800-90B
  start-up, RCT and APT) before it is stored. A batch in which a test signals is not stored
  and is counted; the tracker then restarts (a fresh start-up test over the next 1,024 bytes).
* **Fortuna poll** (every ``FORTUNA_POLL_INTERVAL_MS``): one 256-byte item (the reference's),
  or, while the queue holds fewer than ``LOKEY_FORTUNA_LOW_WATER_BYTES``, a **top-up**: 1 MiB
  (one Fortuna request, rekeyed after it) stored as 16 items of 64 KiB, repeated without delay
  until the queue is above the mark. A consuming request that leaves the queue low wakes the
  poller at once. A full queue is not polled: replacing Fortuna output with Fortuna output
  gains nothing.
* **Fortuna seeding** (every ``FORTUNA_SEED_INTERVAL_SECONDS``): fresh samples straight from the
  controller (never from a queue, so no client ever sees them), each through the seed gate
  (spec/fortuna.md §7). The first round sends at least two samples (64 bytes: Fortuna's direct
  start-up reseed, design.md) and is retried every second until it succeeds; later rounds
  send ``FORTUNA_SEED_SAMPLES``.
* **VirtIO seeding**: every ``VIRTIO_POLL_INTERVAL_MS`` the ring's level is read; below half
  full, or when ``seed_interval_seconds`` has passed, up to ``LOKEY_VIRTIO_SEED_BYTES`` are
  **consumed** from the queue(s) of the current ``seeding_source`` and sent. The source and
  interval are read from :class:`Runtime` on every round, so ``PUT /api/v1/config/virtio``
  takes effect at once.

Seeding has one circuit breaker per target (5 consecutive failures, open 5 min, one half-open
trial; lokey.controller.breaker). A peer answering 503 is *not ready*: its Retry-After is
honoured and no failure is counted. Every HTTP call has a timeout (:mod:`.peers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import anyio.to_thread

from lokey.clock import Clock
from lokey.controller.breaker import BreakerSnapshot, BreakerState, CircuitBreaker
from lokey.errors import LokeyError, SeedQualityError
from lokey.fortuna import check_seed
from lokey.quality.health import HealthSnapshot, HealthState, HealthTracker
from lokey.quality.legacy import LegacyMetrics, LegacySnapshot
from lokey.services.api.peers import SAMPLE_BYTES, PeerError, Peers, PeerUnavailableError
from lokey.services.settings import SeedingSource
from lokey.store import QueueStore

__all__ = [
    "FORTUNA_ITEM_BYTES",
    "TOPUP_ITEM_BYTES",
    "TOPUP_REQUEST_BYTES",
    "Background",
    "Runtime",
    "TrngQuality",
    "run_loop",
]

log = logging.getLogger("lokey.services.api")

FORTUNA_ITEM_BYTES: Final = 256  # spec §1.9: the reference's GET /generate?size=256 per poll
TOPUP_REQUEST_BYTES: Final = 1 << 20  # one Fortuna request at most (fortuna.md §2: 2^20 bytes)
TOPUP_ITEM_BYTES: Final = 64 << 10
FIRST_SEED_RETRY_S: Final = 1.0
NOT_SEEDED: Final = "Generator not seeded"  # the Fortuna service's 503 (spec §3, LoKey)
MIN_FIRST_SEED_SAMPLES: Final = 2  # design.md "Fortuna start-up": >= 64 bytes, a direct reseed
FAILURE_LOG_EVERY: Final = 100  # a persistent failure is logged on its 1st, 101st, ... time


@dataclass
class Runtime:
    """Configuration changeable at run time (persisted by the app, read on every round)."""

    consume: bool
    virtio_source: SeedingSource
    virtio_interval_s: int


class TrngQuality:
    """The quality gate over every polled TRNG byte: legacy metrics and SP 800-90B tests.

    Thread-safe (the app reads snapshots while a poll feeds a batch in a worker thread).
    """

    def __init__(self, apt_window: int) -> None:
        self._lock = threading.Lock()
        self._legacy = LegacyMetrics(apt_window)
        self._tracker = HealthTracker()
        self.batches_rejected = 0
        self.last_failure: str | None = None

    def admit(self, samples: list[bytes]) -> list[bytes]:
        """The samples of this batch that may be stored: none if a health test signalled,
        else the whole samples past the tracker's start-up."""
        data = b"".join(samples)
        with self._lock:
            self._legacy.feed(data)
            usable = self._tracker.feed(data)
            if self._tracker.state is HealthState.FAILED:
                self.batches_rejected += 1
                self.last_failure = self._tracker.reason
                self._tracker.restart()
                return []
        first_usable = len(data) - usable
        return samples[math.ceil(first_usable / SAMPLE_BYTES) :]

    def legacy(self) -> LegacySnapshot:
        with self._lock:
            return self._legacy.snapshot()

    def health(self) -> HealthSnapshot:
        with self._lock:
            return self._tracker.snapshot()


@dataclass(frozen=True)
class PollSettings:
    """What the background jobs need from ApiSettings (plain values: the core takes no
    settings object)."""

    trng_interval_s: float
    trng_samples: int
    fortuna_interval_s: float
    fortuna_low_water: int
    fortuna_seed_interval_s: float
    fortuna_seed_samples: int
    virtio_poll_s: float
    virtio_seed_bytes: int
    virtio_trng_reserve: int


class Background:
    """The four jobs' steps, their breakers and counters."""

    def __init__(
        self,
        *,
        store: QueueStore,
        peers: Peers,
        clock: Clock,
        runtime: Runtime,
        quality: TrngQuality,
        config: PollSettings,
    ) -> None:
        self.store = store
        self.peers = peers
        self.clock = clock
        self.runtime = runtime
        self.quality = quality
        self.config = config
        self.fortuna_breaker = CircuitBreaker(clock)
        self.virtio_breaker = CircuitBreaker(clock)
        self.counters: Counter[str] = Counter()
        self.fortuna_seeded = False
        self.last_fortuna_seed: float | None = None  # clock time of the last accepted round
        self.fortuna_status: str | None = None  # Fortuna's answer to the last round
        self.fortuna_wake = asyncio.Event()
        self.fortuna_seed_wake = asyncio.Event()
        self._first_seed_attempts = 0
        self.virtio_wake = asyncio.Event()
        self._next_virtio_round = clock.monotonic() + runtime.virtio_interval_s
        self._next_fortuna_poll = clock.monotonic()
        self._failures: Counter[str] = Counter()

    # -- helpers ---------------------------------------------------------------------------------

    def _failed(self, job: str, error: Exception) -> None:
        self.counters[f"{job}_failed"] += 1
        self._failures[job] += 1
        if self._failures[job] % FAILURE_LOG_EVERY == 1:
            log.warning("%s failed (%d in a row): %s", job, self._failures[job], error)

    def _succeeded(self, job: str) -> None:
        if self._failures[job]:
            log.info("%s works again after %d failures", job, self._failures[job])
        self._failures[job] = 0
        self.counters[f"{job}_ok"] += 1

    # -- TRNG ------------------------------------------------------------------------------------

    async def poll_trng(self) -> float:
        """One controller poll; the seconds until the next."""
        try:
            samples = await self.peers.samples(self.config.trng_samples)
        except PeerUnavailableError as exc:
            self.counters["trng_poll_unavailable"] += 1
            return max(self.config.trng_interval_s, exc.retry_after_s)
        except PeerError as exc:
            self._failed("trng_poll", exc)
            return self.config.trng_interval_s
        good = await anyio.to_thread.run_sync(self.quality.admit, samples)
        if len(good) < len(samples):
            self.counters["trng_samples_discarded"] += len(samples) - len(good)
        await anyio.to_thread.run_sync(lambda: self.store.push("trng", good, polls=1))
        self._succeeded("trng_poll")
        return self.config.trng_interval_s

    # -- Fortuna ---------------------------------------------------------------------------------

    async def poll_fortuna(self) -> float:
        """A top-up while the queue is low (0: continue at once), else the regular poll when
        it is due; the seconds until the next step. Woken early by a request, it tops up but
        does not poll ahead of the interval."""
        stats = await anyio.to_thread.run_sync(self.store.stats, "fortuna")
        topup_items = TOPUP_REQUEST_BYTES // TOPUP_ITEM_BYTES
        low = stats.bytes < self.config.fortuna_low_water
        now = self.clock.monotonic()
        if low and stats.items + topup_items <= stats.capacity:
            size, piece = TOPUP_REQUEST_BYTES, TOPUP_ITEM_BYTES
        elif now < self._next_fortuna_poll:
            return self._next_fortuna_poll - now
        elif stats.items < stats.capacity:
            size, piece = FORTUNA_ITEM_BYTES, FORTUNA_ITEM_BYTES
            self._next_fortuna_poll = now + self.config.fortuna_interval_s
        else:
            return self.config.fortuna_interval_s
        try:
            data = await self.peers.fortuna_bytes(size)
        except PeerUnavailableError as exc:
            self.counters["fortuna_poll_unavailable"] += 1
            if NOT_SEEDED in str(exc):
                self.fortuna_lost_its_seed()
            return max(self.config.fortuna_interval_s, min(exc.retry_after_s, 1.0))
        except PeerError as exc:
            self._failed("fortuna_poll", exc)
            return self.config.fortuna_interval_s
        items = [data[i : i + piece] for i in range(0, len(data), piece)]
        await anyio.to_thread.run_sync(lambda: self.store.push("fortuna", items, polls=1))
        self._succeeded("fortuna_poll")
        if size == TOPUP_REQUEST_BYTES:
            self.counters["fortuna_topups"] += 1
            return 0.0
        return self.config.fortuna_interval_s

    async def seed_fortuna(self) -> float:
        """One seeding round; the seconds until the next.

        The samples are fetched and gated before the breaker is asked: a controller that
        cannot deliver says nothing about Fortuna, so only the ``POST /seed`` is judged.
        Until the first round succeeds, rounds repeat after 1, 2, 4 ... seconds (at most the
        interval) and do not feed the breaker: the peers may still be starting.
        """
        first = not self.fortuna_seeded
        interval = self.config.fortuna_seed_interval_s
        if first:
            retry = min(interval, FIRST_SEED_RETRY_S * 2.0**self._first_seed_attempts)
            self._first_seed_attempts += 1
        else:
            retry = interval
        if not first and self.fortuna_breaker.state is BreakerState.OPEN:
            self.counters["fortuna_seed_refused"] += 1
            return max(interval, self.fortuna_breaker.retry_after_s)
        seeds = await self._gated_samples(first, retry)
        if not isinstance(seeds, list):
            return seeds
        permit = None if first else self.fortuna_breaker.try_acquire()
        if not first and permit is None:
            self.counters["fortuna_seed_refused"] += 1
            return max(interval, self.fortuna_breaker.retry_after_s)
        try:
            answer = await self.peers.seed_fortuna(seeds)
        except PeerUnavailableError as exc:
            if permit is not None:
                self.fortuna_breaker.release(permit)
            self.counters["fortuna_seed_unavailable"] += 1
            return min(exc.retry_after_s, retry) if first else max(retry, exc.retry_after_s)
        except PeerError as exc:
            if permit is not None:
                self.fortuna_breaker.failure(permit)
            self._failed("fortuna_seed", exc)
            return retry
        except BaseException:  # a bug or cancellation: no verdict, but never a lost trial
            if permit is not None:
                self.fortuna_breaker.release(permit)
            raise
        if permit is not None:
            self.fortuna_breaker.success(permit)
        self.fortuna_seeded = True
        self._first_seed_attempts = 0
        self.last_fortuna_seed = self.clock.monotonic()
        status = answer.get("status")
        self.fortuna_status = status if isinstance(status, str) else None
        self.counters["fortuna_seed_samples"] += len(seeds)
        self._succeeded("fortuna_seed")
        return interval

    async def _gated_samples(self, first: bool, retry: float) -> list[bytes] | float:
        """Fresh controller samples that pass the seed gate, or the delay before a retry."""
        count = self.config.fortuna_seed_samples
        if first:
            count = max(MIN_FIRST_SEED_SAMPLES, count)
        try:
            samples = await self.peers.samples(count)
        except PeerUnavailableError as exc:
            self.counters["fortuna_seed_unavailable"] += 1
            return min(exc.retry_after_s, retry) if first else max(retry, exc.retry_after_s)
        except PeerError as exc:
            self._failed("fortuna_seed", exc)
            return retry
        seeds = [sample for sample in samples if _gate(sample)]
        self.counters["fortuna_seed_gated_out"] += len(samples) - len(seeds)
        if len(seeds) < (MIN_FIRST_SEED_SAMPLES if first else 1):
            self._failed("fortuna_seed", PeerError("controller", "too few samples passed the gate"))
            return retry
        return seeds

    def fortuna_lost_its_seed(self) -> None:
        """Fortuna answered "not seeded" (it restarted without a seed file): the next round
        is a first round again, at once. Only the change wakes the seeding job: while Fortuna
        stays unseeded every poll says so, and the first-round back-off must still hold."""
        if not self.fortuna_seeded:
            return
        log.warning("Fortuna is no longer seeded (restarted?): seeding it again now")
        self.fortuna_seeded = False
        self._first_seed_attempts = 0
        self.fortuna_seed_wake.set()

    # -- VirtIO ----------------------------------------------------------------------------------

    def virtio_interval_changed(self) -> None:
        """``PUT /api/v1/config/virtio`` changed the interval: it counts from now."""
        self._next_virtio_round = self.clock.monotonic() + self.runtime.virtio_interval_s
        self.virtio_wake.set()

    async def seed_virtio(self) -> float:
        """Check the ring; refill it when low or when the seeding interval has passed."""
        poll = self.config.virtio_poll_s
        if self.peers.virtio is None:
            return max(poll, 1.0)
        now = self.clock.monotonic()
        periodic = now >= self._next_virtio_round
        if periodic:
            self._next_virtio_round = now + self.runtime.virtio_interval_s
        permit = self.virtio_breaker.try_acquire()
        if permit is None:
            return max(poll, self.virtio_breaker.retry_after_s)
        verdict = False  # every path hands the permit back: a lost trial would wedge the breaker
        try:
            try:
                level = await self.peers.virtio_queue()
            except PeerUnavailableError as exc:
                self.counters["virtio_seed_unavailable"] += 1
                return max(poll, exc.retry_after_s)
            capacity, current = _ring_bytes(level)
            if not periodic and current * 2 >= capacity:
                return poll
            room = min(capacity - current, self.config.virtio_seed_bytes)
            data = await anyio.to_thread.run_sync(self._take_for_virtio, room)
            if not data:
                return poll
            try:
                await self.peers.seed_virtio(data)
            except PeerError:
                # consumed and lost, never reused; a 503 here counts too, or a peer that
                # refuses only POSTs would drain the queues without the breaker noticing
                self.counters["virtio_seed_lost_bytes"] += len(data)
                raise
            verdict = True
            self.virtio_breaker.success(permit)
        except PeerError as exc:
            verdict = True
            self.virtio_breaker.failure(permit)
            self._failed("virtio_seed", exc)
            return max(poll, 1.0)
        finally:
            if not verdict:
                self.virtio_breaker.release(permit)
        self.counters["virtio_seed_bytes"] += len(data)
        self._succeeded("virtio_seed")
        return poll

    def _take_for_virtio(self, amount: int) -> bytes:
        """Up to ``amount`` bytes **consumed** from the current source(s).

        API clients come first on the TRNG queue: VirtIO takes only what it holds beyond
        ``virtio_trng_reserve`` bytes (the chip makes ~600 B/s; a VM reading the pipe would
        otherwise empty the queue every poll). With ``both``, what the TRNG share cannot
        supply comes from Fortuna.
        """
        if amount <= 0:
            return b""
        source = self.runtime.virtio_source
        if source == "fortuna":
            return self.store.take("fortuna", amount, partial=True, account=False)
        share = amount if source == "trng" else max(1, amount // 2)
        surplus = self.store.stats("trng").bytes - self.config.virtio_trng_reserve
        first = b""
        if surplus > 0:
            first = self.store.take("trng", min(share, surplus), partial=True, account=False)
        if source == "trng" or len(first) == amount:
            return first
        rest = self.store.take("fortuna", amount - len(first), partial=True, account=False)
        return first + rest

    def breakers(self) -> dict[str, BreakerSnapshot]:
        return {
            "fortuna": self.fortuna_breaker.snapshot(),
            "virtio": self.virtio_breaker.snapshot(),
        }


def _gate(sample: bytes) -> bool:
    try:
        check_seed(sample)
    except SeedQualityError:
        return False
    return True


def _ring_bytes(level: dict[str, object]) -> tuple[int, int]:
    """(capacity, current) of VirtIO's ring in bytes, from ``GET /config/queue``."""
    capacity, current = level.get("capacity_bytes"), level.get("queue_bytes")
    if isinstance(capacity, int) and isinstance(current, int):
        return capacity, current
    size, items = level.get("queue_size"), level.get("queue_current")
    if isinstance(size, int) and isinstance(items, int):  # the reference's fields only
        return size * SAMPLE_BYTES, items * SAMPLE_BYTES
    raise PeerError("virtio", "GET /config/queue answered without the queue fields")


async def run_loop(
    name: str, step: Callable[[], Awaitable[float]], wake: asyncio.Event | None = None
) -> None:
    """Repeat ``step`` forever, waiting the delay it returns (or until ``wake`` is set).

    An unexpected exception is logged and the job goes on after a second: a background job
    never dies while the service runs.
    """
    known = unexpected = 0  # counted apart, so a store outage cannot hide a bug's traceback
    while True:
        try:
            delay = await step()
        except LokeyError as exc:  # e.g. the store failing: known, logged without a traceback
            known += 1
            if known % FAILURE_LOG_EVERY == 1:
                log.warning("%s failed (%d times so far): %s", name, known, exc)
            delay = 1.0
        except Exception:
            unexpected += 1
            if unexpected % FAILURE_LOG_EVERY == 1:
                log.exception("%s: unexpected error (%d so far)", name, unexpected)
            delay = 1.0
        if delay <= 0:
            await asyncio.sleep(0)
            continue
        if wake is None:
            await asyncio.sleep(delay)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        wake.clear()

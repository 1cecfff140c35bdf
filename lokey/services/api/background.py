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

**Several instances** (``CONTROLLER_ADDR`` / ``FORTUNA_ADDR`` lists, issue 11): every
controller has its own poll step (one loop each: TRNG throughput grows with the chips), its
own :class:`TrngQuality` and a poll breaker open only :data:`INSTANCE_BREAKER_OPEN_S`; every
Fortuna has its own seeding step and state, fed by fresh samples from the next controller
whose breaker is not open (never the same sample to two Fortunas); the one Fortuna poller takes
the instances in turn and skips one that is unseeded, failing or breaker-open. With a shared
store each step first checks its lease (:mod:`.leases`) and, not holding it, only waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import anyio.to_thread

from lokey.clock import Clock
from lokey.controller.breaker import BreakerSnapshot, BreakerState, CircuitBreaker, Permit
from lokey.errors import LokeyError, SeedQualityError
from lokey.fortuna import check_seed
from lokey.quality.health import HealthSnapshot, HealthState, HealthTracker
from lokey.quality.legacy import LegacyMetrics, LegacySnapshot
from lokey.services.api.leases import (
    FORTUNA_POLL,
    LeaseKeeper,
    fortuna_seed_lease,
    trng_poll_lease,
    virtio_seed_lease,
)
from lokey.services.api.peers import SAMPLE_BYTES, PeerError, Peers, PeerUnavailableError
from lokey.services.settings import SeedingSource
from lokey.store import QueueStats, QueueStore

__all__ = [
    "FORTUNA_ITEM_BYTES",
    "INSTANCE_BREAKER_OPEN_S",
    "TOPUP_ITEM_BYTES",
    "TOPUP_REQUEST_BYTES",
    "Background",
    "ControllerInstance",
    "FortunaInstance",
    "PollSettings",
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
#: A poller tells the other API instances that a Fortuna lost its seed at most this often.
UNSEEDED_HINT_EVERY_S: Final = 5.0
FAILURE_LOG_EVERY: Final = 100  # a persistent failure is logged on its 1st, 101st, ... time
#: How long a controller or Fortuna instance whose calls failed 5 times in a row is skipped
#: before one trial call: short, since the others carry on meanwhile and a rebooting Pi is
#: back within seconds (the seeding breakers keep the spec's 5 minutes, §1.9).
INSTANCE_BREAKER_OPEN_S: Final = 5.0


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

    def restart(self) -> None:
        """A fresh start-up test before the next stored byte (this process takes the source
        over from another API instance: what it fed here is stale)."""
        with self._lock:
            self._tracker.restart()

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
    apt_window: int = 512  # lokey.quality.legacy's default window


class ControllerInstance:
    """One controller (one chip, one Raspberry Pi): its own quality gate (SP 800-90B health
    tests are per noise source), its own poll breaker and counters."""

    def __init__(self, url: str, clock: Clock, apt_window: int) -> None:
        self.url = url
        self.quality = TrngQuality(apt_window)
        # short: a rebooting Pi is skipped for seconds, not the seeding breakers' 5 min
        self.breaker = CircuitBreaker(clock, open_for_s=INSTANCE_BREAKER_OPEN_S)
        self.counters: Counter[str] = Counter()
        self.last_ok: bool | None = None  # None: not asked yet

    @property
    def up(self) -> bool:
        """Its last poll worked and its breaker is not open."""
        return bool(self.last_ok) and self.breaker.state is not BreakerState.OPEN


class FortunaInstance:
    """One Fortuna service: its seeding state (seeded, first-round back-off, the 5-min
    seeding breaker), its poll breaker and when the poller may ask it again."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.url = url
        self.seed_breaker = CircuitBreaker(clock)
        self.poll_breaker = CircuitBreaker(clock, open_for_s=INSTANCE_BREAKER_OPEN_S)
        self.seeded = False
        self.last_seed: float | None = None  # clock time of the last accepted round
        self.status: str | None = None  # Fortuna's answer to the last round
        self.first_seed_attempts = 0
        self.seed_wake = asyncio.Event()
        self.poll_after = -math.inf  # not polled before this (a 503 or a failure)
        self.hint_after = -math.inf  # no "lost its seed" hint to other instances before this
        self.hint_seen: object = None  # the last such hint read from the shared store
        self.counters: Counter[str] = Counter()
        self.last_ok: bool | None = None

    @property
    def up(self) -> bool:
        return bool(self.last_ok) and self.poll_breaker.state is not BreakerState.OPEN

    def lost_its_seed(self) -> None:
        """Fortuna answered "not seeded" (it restarted without a seed file): the next round
        is a first round again, at once. Only the change wakes the seeding job: while Fortuna
        stays unseeded every poll says so, and the first-round back-off must still hold."""
        if not self.seeded:
            return
        log.warning("Fortuna %s is no longer seeded (restarted?): seeding it again now", self.url)
        self.seeded = False
        self.first_seed_attempts = 0
        self.seed_wake.set()


def unseeded_hint_key(url: str) -> str:
    """The shared-configuration key under which pollers say Fortuna ``url`` lost its seed."""
    return f"fortuna_unseeded {url}"


class Background:
    """The jobs' steps, their breakers and counters: one TRNG poll per controller instance,
    one Fortuna poll over every Fortuna instance, one seeding job per Fortuna instance, and
    VirtIO seeding. Each step runs only while ``leases`` holds its lease."""

    def __init__(
        self,
        *,
        store: QueueStore,
        peers: Peers,
        clock: Clock,
        runtime: Runtime,
        config: PollSettings,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self.store = store
        self.peers = peers
        self.clock = clock
        self.runtime = runtime
        self.config = config
        self.leases = leases
        self.controllers = [
            ControllerInstance(url, clock, config.apt_window) for url in peers.controllers
        ]
        self.fortunas = [FortunaInstance(url, clock) for url in peers.fortunas]
        self.virtio_breaker = CircuitBreaker(clock)
        self.counters: Counter[str] = Counter()
        self.fortuna_wake = asyncio.Event()
        self.virtio_wake = asyncio.Event()
        self._next_virtio_round = clock.monotonic() + runtime.virtio_interval_s
        self._next_fortuna_poll = clock.monotonic()
        self._failures: Counter[str] = Counter()
        self._held: set[str] = set()
        self._next_poll_fortuna = 0  # round-robin positions
        self._next_seed_controller = 0
        self._hints_read = False
        if leases is not None:
            for controller in self.controllers:
                leases.add(trng_poll_lease(controller.url))
            leases.add(FORTUNA_POLL)
            for fortuna in self.fortunas:
                leases.add(fortuna_seed_lease(fortuna.url))
            if peers.virtio is not None:  # an instance without VirtIO must not hold its lease
                leases.add(virtio_seed_lease(peers.virtio))

    # -- the first instance (the only one unless CONTROLLER_ADDR/FORTUNA_ADDR list several) ----

    @property
    def quality(self) -> TrngQuality:
        return self.controllers[0].quality

    @property
    def fortuna_breaker(self) -> CircuitBreaker:
        return self.fortunas[0].seed_breaker

    @property
    def fortuna_seeded(self) -> bool:
        return self.fortunas[0].seeded

    @property
    def last_fortuna_seed(self) -> float | None:
        return self.fortunas[0].last_seed

    @property
    def fortuna_status(self) -> str | None:
        return self.fortunas[0].status

    @property
    def fortuna_seed_wake(self) -> asyncio.Event:
        return self.fortunas[0].seed_wake

    def fortuna_lost_its_seed(self) -> None:
        self.fortunas[0].lost_its_seed()

    # -- helpers ---------------------------------------------------------------------------------

    def _failed(self, job: str, error: Exception, where: str = "") -> None:
        self.counters[f"{job}_failed"] += 1
        key = f"{job} {where}".strip()
        self._failures[key] += 1
        if self._failures[key] % FAILURE_LOG_EVERY == 1:
            log.warning("%s failed (%d in a row): %s", key, self._failures[key], error)

    def _succeeded(self, job: str, where: str = "") -> None:
        key = f"{job} {where}".strip()
        if self._failures[key]:
            log.info("%s works again after %d failures", key, self._failures[key])
        self._failures[key] = 0
        self.counters[f"{job}_ok"] += 1

    def _lease_wait(self, name: str, regained: Callable[[], None] | None = None) -> float | None:
        """None if this process holds the lease ``name`` (the step may run), else how long to
        wait before asking again. On taking the lease over, ``regained`` makes the job's
        in-memory state safe to continue from (another instance ran it meanwhile)."""
        if self.leases is None or not self.leases.shared:
            return None
        if not self.leases.held(name):
            self._held.discard(name)
            self.counters["lease_waits"] += 1
            return self.leases.renew_every_s
        if name not in self._held:
            self._held.add(name)
            if regained is not None:
                regained()
        return None

    # -- TRNG ------------------------------------------------------------------------------------

    async def poll_trng(self, index: int = 0) -> float:
        """One poll of controller ``index``; the seconds until its next. Its breaker open,
        the poll waits instead of calling (the other controllers' loops go on)."""
        controller = self.controllers[index]
        interval = self.config.trng_interval_s
        waiting = self._lease_wait(trng_poll_lease(controller.url), controller.quality.restart)
        if waiting is not None:
            return waiting
        permit = controller.breaker.try_acquire()
        if permit is None:
            controller.counters["breaker_refused"] += 1
            return max(interval, controller.breaker.retry_after_s)
        try:
            samples = await self.peers.samples(self.config.trng_samples, base=controller.url)
        except PeerUnavailableError as exc:
            controller.breaker.release(permit)
            controller.last_ok = False
            controller.counters["polls_unavailable"] += 1
            self.counters["trng_poll_unavailable"] += 1
            return max(interval, exc.retry_after_s)
        except PeerError as exc:
            controller.breaker.failure(permit)
            controller.last_ok = False
            controller.counters["polls_failed"] += 1
            self._failed("trng_poll", exc, controller.url)
            return interval
        except BaseException:  # a bug or cancellation: no verdict, but never a lost trial
            controller.breaker.release(permit)
            raise
        controller.breaker.success(permit)
        controller.last_ok = True
        good = await anyio.to_thread.run_sync(controller.quality.admit, samples)
        if len(good) < len(samples):
            discarded = len(samples) - len(good)
            self.counters["trng_samples_discarded"] += discarded
            controller.counters["samples_discarded"] += discarded
        await anyio.to_thread.run_sync(lambda: self.store.push("trng", good, polls=1))
        controller.counters["polls_ok"] += 1
        controller.counters["samples_stored"] += len(good)
        self._succeeded("trng_poll", controller.url)
        return interval

    # -- Fortuna ---------------------------------------------------------------------------------

    def _fortuna_to_poll(self) -> tuple[FortunaInstance, Permit] | None:
        """The next Fortuna instance (round-robin) that may be asked now, with its breaker's
        permit; None if every one is waiting (unseeded, failing, or its breaker open)."""
        now = self.clock.monotonic()
        count = len(self.fortunas)
        for offset in range(count):
            position = (self._next_poll_fortuna + offset) % count
            fortuna = self.fortunas[position]
            if now < fortuna.poll_after:
                continue
            permit = fortuna.poll_breaker.try_acquire()
            if permit is None:
                continue
            self._next_poll_fortuna = (position + 1) % count
            return fortuna, permit
        return None

    def _fortuna_wait(self) -> float:
        """Until the first Fortuna instance may be asked again (at least the poll interval:
        nothing is gained by waking earlier)."""
        now = self.clock.monotonic()
        waits = [
            max(fortuna.poll_after - now, fortuna.poll_breaker.retry_after_s)
            for fortuna in self.fortunas
        ]
        return max(self.config.fortuna_interval_s, min(waits))

    def _another_fortuna_ready(self, polled: FortunaInstance) -> bool:
        now = self.clock.monotonic()
        return any(
            fortuna is not polled
            and now >= fortuna.poll_after
            and fortuna.poll_breaker.state is not BreakerState.OPEN
            for fortuna in self.fortunas
        )

    def _fortuna_request(self, stats: QueueStats, now: float) -> int | float:
        """How many bytes to ask Fortuna for now (a top-up or a regular item), or a float:
        the seconds to wait first."""
        topup_items = TOPUP_REQUEST_BYTES // TOPUP_ITEM_BYTES
        low = stats.bytes < self.config.fortuna_low_water
        if low and stats.items + topup_items <= stats.capacity:
            return TOPUP_REQUEST_BYTES
        if now < self._next_fortuna_poll:
            return self._next_fortuna_poll - now
        if stats.items < stats.capacity:
            return FORTUNA_ITEM_BYTES
        return float(self.config.fortuna_interval_s)

    async def _tell_seeder(self, fortuna: FortunaInstance, now: float) -> None:
        """With a shared store the instance seeding ``fortuna`` may be another API process:
        a hint in the shared configuration (a fresh token under :func:`unseeded_hint_key`)
        reaches it at its next reload, so it seeds at once instead of at its next interval.
        At most one hint per Fortuna every UNSEEDED_HINT_EVERY_S."""
        if self.leases is None or not self.leases.shared or now < fortuna.hint_after:
            return
        if self.leases.held(fortuna_seed_lease(fortuna.url)):
            return  # this instance seeds it: lost_its_seed has already woken the seeding
        fortuna.hint_after = now + UNSEEDED_HINT_EVERY_S
        token = secrets.token_hex(4)
        fortuna.hint_seen = token  # should this instance take the seeding over, it is known
        hint = {unseeded_hint_key(fortuna.url): token}
        try:
            await anyio.to_thread.run_sync(self.store.update_config, hint)
        except LokeyError as exc:  # the seeder still reseeds at its next interval
            log.warning("could not pass on that Fortuna %s lost its seed: %s", fortuna.url, exc)

    def seeders_hints(self, saved: Mapping[str, object]) -> None:
        """Act on hints from other instances' pollers (:meth:`_tell_seeder`): a Fortuna this
        instance seeds, said to have lost its seed, is seeded again at once. A hint is acted
        on once; the hints found by the first reload are taken as known (a fresh instance
        seeds every Fortuna in its first round anyway)."""
        first, self._hints_read = not self._hints_read, True
        for fortuna in self.fortunas:
            token = saved.get(unseeded_hint_key(fortuna.url))
            if token is None or token == fortuna.hint_seen:
                continue
            fortuna.hint_seen = token
            seeds_it = self.leases is None or self.leases.held(fortuna_seed_lease(fortuna.url))
            if not first and seeds_it:
                fortuna.lost_its_seed()

    def _fortuna_poll_regained(self) -> None:
        self._next_fortuna_poll = self.clock.monotonic()

    async def poll_fortuna(self) -> float:
        """A top-up while the queue is low (0: continue at once), else the regular poll when
        it is due; the seconds until the next step. Woken early by a request, it tops up but
        does not poll ahead of the interval. The Fortuna instances take turns; one that is
        unseeded, failing or whose breaker is open is skipped."""
        waiting = self._lease_wait(FORTUNA_POLL, self._fortuna_poll_regained)
        if waiting is not None:
            return waiting
        stats = await anyio.to_thread.run_sync(self.store.stats, "fortuna")
        now = self.clock.monotonic()
        size = self._fortuna_request(stats, now)
        if isinstance(size, float):
            return size
        piece = TOPUP_ITEM_BYTES if size == TOPUP_REQUEST_BYTES else FORTUNA_ITEM_BYTES
        chosen = self._fortuna_to_poll()
        if chosen is None:
            self.counters["fortuna_poll_no_instance"] += 1
            return self._fortuna_wait()
        fortuna, permit = chosen
        if size == FORTUNA_ITEM_BYTES:
            self._next_fortuna_poll = now + self.config.fortuna_interval_s
        try:
            data = await self.peers.fortuna_bytes(size, base=fortuna.url)
        except PeerUnavailableError as exc:
            fortuna.poll_breaker.release(permit)
            fortuna.last_ok = False
            fortuna.counters["polls_unavailable"] += 1
            self.counters["fortuna_poll_unavailable"] += 1
            if NOT_SEEDED in str(exc):
                fortuna.lost_its_seed()
                await self._tell_seeder(fortuna, now)
            delay = max(self.config.fortuna_interval_s, min(exc.retry_after_s, 1.0))
            fortuna.poll_after = now + delay
            return 0.0 if self._another_fortuna_ready(fortuna) else delay
        except PeerError as exc:
            fortuna.poll_breaker.failure(permit)
            fortuna.last_ok = False
            fortuna.counters["polls_failed"] += 1
            self._failed("fortuna_poll", exc, fortuna.url)
            fortuna.poll_after = now + self.config.fortuna_interval_s
            if size == TOPUP_REQUEST_BYTES and self._another_fortuna_ready(fortuna):
                return 0.0
            return self.config.fortuna_interval_s
        except BaseException:
            fortuna.poll_breaker.release(permit)
            raise
        fortuna.poll_breaker.success(permit)
        fortuna.last_ok = True
        items = [data[i : i + piece] for i in range(0, len(data), piece)]
        await anyio.to_thread.run_sync(lambda: self.store.push("fortuna", items, polls=1))
        fortuna.counters["polls_ok"] += 1
        fortuna.counters["bytes_stored"] += len(data)
        self._succeeded("fortuna_poll", fortuna.url)
        if size == TOPUP_REQUEST_BYTES:
            self.counters["fortuna_topups"] += 1
            fortuna.counters["topups"] += 1
            return 0.0
        return self.config.fortuna_interval_s

    def _seed_regained(self, fortuna: FortunaInstance) -> Callable[[], None]:
        def regained() -> None:
            # another API instance seeded it meanwhile, or nobody did: a first round is
            # right either way (a seeded Fortuna simply takes it as a reseed)
            fortuna.seeded = False
            fortuna.first_seed_attempts = 0

        return regained

    async def seed_fortuna(self, index: int = 0) -> float:
        """One seeding round for Fortuna instance ``index``; the seconds until its next.

        The samples are fetched fresh for this round and this instance alone (from the next
        usable controller, round-robin), so no two Fortunas ever get the same seed material.
        They are fetched and gated before the breaker is asked: a controller that cannot
        deliver says nothing about Fortuna, so only the ``POST /seed`` is judged. Until the
        first round succeeds, rounds repeat after 1, 2, 4 ... seconds (at most the interval)
        and do not feed the breaker: the peers may still be starting.
        """
        fortuna = self.fortunas[index]
        waiting = self._lease_wait(fortuna_seed_lease(fortuna.url), self._seed_regained(fortuna))
        if waiting is not None:
            return waiting
        first = not fortuna.seeded
        interval = self.config.fortuna_seed_interval_s
        breaker = fortuna.seed_breaker
        if first:
            retry = min(interval, FIRST_SEED_RETRY_S * 2.0**fortuna.first_seed_attempts)
            fortuna.first_seed_attempts += 1
        else:
            retry = interval
        if not first and breaker.state is BreakerState.OPEN:
            self.counters["fortuna_seed_refused"] += 1
            fortuna.counters["seed_refused"] += 1
            return max(interval, breaker.retry_after_s)
        seeds = await self._gated_samples(first, retry, fortuna)
        if not isinstance(seeds, list):
            return seeds
        permit = None if first else breaker.try_acquire()
        if not first and permit is None:
            self.counters["fortuna_seed_refused"] += 1
            fortuna.counters["seed_refused"] += 1
            return max(interval, breaker.retry_after_s)
        try:
            answer = await self.peers.seed_fortuna(seeds, base=fortuna.url)
        except PeerUnavailableError as exc:
            if permit is not None:
                breaker.release(permit)
            self.counters["fortuna_seed_unavailable"] += 1
            fortuna.counters["seed_unavailable"] += 1
            return min(exc.retry_after_s, retry) if first else max(retry, exc.retry_after_s)
        except PeerError as exc:
            if permit is not None:
                breaker.failure(permit)
            fortuna.last_ok = False
            fortuna.counters["seed_failed"] += 1
            self._failed("fortuna_seed", exc, fortuna.url)
            return retry
        except BaseException:  # a bug or cancellation: no verdict, but never a lost trial
            if permit is not None:
                breaker.release(permit)
            raise
        if permit is not None:
            breaker.success(permit)
        self._seeded(fortuna, len(seeds), answer)
        return interval

    def _seeded(self, fortuna: FortunaInstance, samples: int, answer: dict[str, object]) -> None:
        fortuna.seeded = True
        fortuna.last_ok = True
        fortuna.first_seed_attempts = 0
        fortuna.last_seed = self.clock.monotonic()
        fortuna.poll_after = -math.inf  # seeded now: the poller may ask it again at once
        status = answer.get("status")
        fortuna.status = status if isinstance(status, str) else None
        self.counters["fortuna_seed_samples"] += samples
        fortuna.counters["seed_rounds_ok"] += 1
        fortuna.counters["seed_samples"] += samples
        self._succeeded("fortuna_seed", fortuna.url)

    def _seed_controllers(self) -> list[ControllerInstance]:
        """This round's controllers, each once, in round-robin order from the next one: those
        whose poll breaker is not open. The next round starts one further on (several
        Fortunas' rounds share the position, so each round takes its own list at once)."""
        count = len(self.controllers)
        start = self._next_seed_controller
        self._next_seed_controller = (start + 1) % count
        order = (self.controllers[(start + offset) % count] for offset in range(count))
        return [c for c in order if c.breaker.state is not BreakerState.OPEN]

    async def _gated_samples(
        self, first: bool, retry: float, fortuna: FortunaInstance
    ) -> list[bytes] | float:
        """Fresh controller samples that pass the seed gate, or the delay before a retry."""
        count = self.config.fortuna_seed_samples
        if first:
            count = max(MIN_FIRST_SEED_SAMPLES, count)
        # A controller that fails is followed by the next one in the same round: only the
        # instance polling a controller feeds its breaker, so on the others a dead controller
        # still looks usable and would otherwise cost every other round.
        samples: list[bytes] = []
        source: ControllerInstance | None = None
        candidates = self._seed_controllers()
        if not candidates:
            fortuna.counters["seed_failed"] += 1
            problem = PeerError("controller", "every controller instance's breaker is open")
            self._failed("fortuna_seed", problem, fortuna.url)
            return retry
        for controller in candidates:
            try:
                samples = await self.peers.samples(count, base=controller.url)
            except PeerUnavailableError as exc:
                self.counters["fortuna_seed_unavailable"] += 1
                fortuna.counters["seed_unavailable"] += 1
                return min(exc.retry_after_s, retry) if first else max(retry, exc.retry_after_s)
            except PeerError as exc:
                fortuna.counters["seed_failed"] += 1
                self._failed("fortuna_seed", exc, fortuna.url)
                continue
            source = controller
            break
        if source is None:
            return retry
        source.counters["seed_samples_fetched"] += len(samples)
        seeds = [sample for sample in samples if _gate(sample)]
        self.counters["fortuna_seed_gated_out"] += len(samples) - len(seeds)
        if len(seeds) < (MIN_FIRST_SEED_SAMPLES if first else 1):
            fortuna.counters["seed_failed"] += 1
            problem = PeerError("controller", "too few samples passed the gate")
            self._failed("fortuna_seed", problem, fortuna.url)
            return retry
        return seeds

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
        waiting = self._lease_wait(virtio_seed_lease(self.peers.virtio))
        if waiting is not None:
            return waiting
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
        """The seeding breakers (Fortuna's: the first instance's)."""
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

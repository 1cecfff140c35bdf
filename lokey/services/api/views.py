"""Status, health and Prometheus views of the API (spec/service-api.md §1.6-§1.8).

Pure functions from snapshots to JSON-ready dicts or metric families: the routes gather the
snapshots (store reads in a worker thread, VirtIO over HTTP with a timeout) and these shape
them, so the reference's field names and types live in one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lokey.controller.breaker import BreakerSnapshot
from lokey.quality.health import HealthSnapshot
from lokey.quality.legacy import LegacySnapshot
from lokey.store import SOURCES, DatabaseInfo, QueueStats, Usage

if TYPE_CHECKING:
    from lokey.services.api.background import ControllerInstance, FortunaInstance

__all__ = [
    "MEMORY_DATABASE",
    "InstanceScrape",
    "Scrape",
    "ScrapeCollector",
    "VirtioLevel",
    "breaker_view",
    "controller_instance_view",
    "database_view",
    "fortuna_instance_view",
    "health_tests_view",
    "human_size",
    "queue_view",
    "usage_view",
    "virtio_view",
]

MEMORY_DATABASE: Final[dict[str, int | str]] = {
    "size_bytes": 0,
    "size_human": "0 B (in-memory)",
    "path": "memory://channels",
}
_UNITS: Final = "KMGTPE"  # spec §1.6: 1024 steps, "%.1f %cB"


def human_size(size: int) -> str:
    """spec §1.6: ``"<n> B"`` below 1024, else ``"%.1f %cB"`` in 1024 steps (K, M, G, T, P, E)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    unit = -1
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {_UNITS[unit]}B"


def _percentage(current: int, capacity: int) -> float:
    return 100.0 * current / capacity if capacity else 0.0


def queue_view(stats: QueueStats) -> dict[str, int | float]:
    """The reference's eight fields (§1.6, LoKey's meanings) plus ``queue_bytes``."""
    return {
        "polling_count": stats.polling_count,
        "queue_current": stats.items,
        "queue_capacity": stats.capacity,
        "queue_percentage": _percentage(stats.items, stats.capacity),
        "queue_dropped": stats.dropped,
        "consumed_count": stats.consumed,
        "unconsumed_count": stats.items,
        "total_generated": stats.total_generated,
        "queue_bytes": stats.bytes,
    }


@dataclass(frozen=True)
class VirtioLevel:
    """VirtIO's ring as its ``GET /config/queue`` reports it (zeros when unreachable)."""

    reachable: bool = False
    queue_size: int = 0
    queue_current: int = 0
    queue_dropped: int = 0
    consumed_count: int = 0
    total_generated: int = 0

    @classmethod
    def from_answer(cls, body: Mapping[str, object]) -> VirtioLevel:
        def number(key: str) -> int:
            value = body.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(
            reachable=True,
            queue_size=number("queue_size"),
            queue_current=number("queue_current"),
            queue_dropped=number("queue_dropped"),
            consumed_count=number("consumed_count"),
            total_generated=number("total_generated"),
        )


def virtio_view(level: VirtioLevel) -> dict[str, int | float | bool]:
    """§1.6's ``virtio`` section: the queue fields minus ``polling_count``."""
    return {
        "queue_current": level.queue_current,
        "queue_capacity": level.queue_size,
        "queue_percentage": _percentage(level.queue_current, level.queue_size),
        "queue_dropped": level.queue_dropped,
        "consumed_count": level.consumed_count,
        "unconsumed_count": level.queue_current,
        "total_generated": level.total_generated,
        "reachable": level.reachable,
    }


def database_view(info: DatabaseInfo) -> dict[str, int | str]:
    if info.in_memory:
        return dict(MEMORY_DATABASE)
    return {
        "size_bytes": info.size_bytes,
        "size_human": human_size(info.size_bytes),
        "path": info.path,
    }


def health_tests_view(
    snapshot: HealthSnapshot, *, batches_rejected: int, last_failure: str | None
) -> dict[str, object]:
    """LoKey's addition to ``/status``: the SP 800-90B tests that gate the TRNG queue."""
    return {
        "state": snapshot.state.value,
        "min_entropy_per_byte": snapshot.h,
        "alpha": snapshot.alpha,
        "rct_cutoff": snapshot.rct_cutoff,
        "apt_cutoff": snapshot.apt_cutoff,
        "apt_window": snapshot.apt_window,
        "startup_samples": snapshot.startup_samples,
        "startup_passed": snapshot.startup_passed,
        "bytes_tested": snapshot.samples,
        "bytes_usable": snapshot.samples_usable,
        "bytes_discarded": snapshot.samples_discarded,
        "failures": snapshot.failures,
        "batches_rejected": batches_rejected,
        "last_failure": last_failure,
    }


def breaker_view(snapshot: BreakerSnapshot) -> dict[str, object]:
    return {
        "state": snapshot.state.value,
        "consecutive_failures": snapshot.consecutive_failures,
        "retry_after_s": round(snapshot.retry_after_s, 3),
        "opened": snapshot.opened,
    }


def controller_instance_view(controller: ControllerInstance) -> dict[str, object]:
    """One controller instance in ``/status``'s ``instances.controller``: its own health
    tests (one noise source each), legacy metrics, poll breaker and counters."""
    quality = controller.quality
    return {
        "up": controller.up,
        "health_tests": health_tests_view(
            quality.health(),
            batches_rejected=quality.batches_rejected,
            last_failure=quality.last_failure,
        ),
        "trng_quality": quality.legacy().to_dict(),
        "breaker": breaker_view(controller.breaker.snapshot()),
        "counters": dict(sorted(controller.counters.items())),
    }


def fortuna_instance_view(fortuna: FortunaInstance, now: float) -> dict[str, object]:
    """One Fortuna instance in ``/status``'s ``instances.fortuna``."""
    age = None if fortuna.last_seed is None else round(now - fortuna.last_seed, 3)
    return {
        "up": fortuna.up,
        "seeded": fortuna.seeded,
        "last_round_age_s": age,
        "last_status": fortuna.status,
        "breaker": breaker_view(fortuna.seed_breaker.snapshot()),
        "poll_breaker": breaker_view(fortuna.poll_breaker.snapshot()),
        "counters": dict(sorted(fortuna.counters.items())),
    }


def usage_view(usage: Usage) -> dict[str, object]:
    return {
        "bytes": usage.bytes,
        "requests": usage.requests,
        "recent_hours": [
            {
                "start": datetime.fromtimestamp(bucket.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "bytes": bucket.bytes,
                "requests": bucket.requests,
            }
            for bucket in usage.recent
        ],
    }


@dataclass(frozen=True)
class InstanceScrape:
    """One controller or Fortuna instance in ``/metrics`` (label ``instance``: its URL)."""

    peer: str
    url: str
    up: bool | None  # None: another API instance calls it (not shown)
    breakers: Mapping[str, BreakerSnapshot]
    counters: Counter[str]
    seeded: bool | None = None


@dataclass(frozen=True)
class Scrape:
    """Everything one ``/metrics`` answer shows, gathered before it is rendered."""

    queues: Mapping[str, QueueStats]
    virtio: VirtioLevel
    database_size: int
    legacy: LegacySnapshot
    health: HealthSnapshot
    batches_rejected: int
    requests: Counter[tuple[str, str, str]]
    bytes_served: Counter[str]
    background: Counter[str]
    breakers: Mapping[str, BreakerSnapshot]
    health_failures: int | None = None  # summed over the controllers; None: health.failures
    instances: Sequence[InstanceScrape] = ()
    leases: Mapping[str, bool] = field(default_factory=dict)


_BREAKER_CODES: Final = {"closed": 0, "open": 1, "half_open": 2}


class ScrapeCollector(Collector):
    """The sixteen reference gauges (§1.8, computed now, not at the last ``/status``) and
    LoKey's counters."""

    def __init__(self, scrape: Scrape) -> None:
        self._scrape = scrape

    def collect(self) -> Iterator[Metric]:
        s = self._scrape
        levels: dict[str, tuple[int, int, int]] = {
            name: (s.queues[name].items, s.queues[name].capacity, s.queues[name].consumed)
            for name in SOURCES
        }
        levels["virtio"] = (s.virtio.queue_current, s.virtio.queue_size, s.virtio.consumed_count)
        for name, (current, capacity, consumed) in levels.items():
            yield GaugeMetricFamily(f"{name}_queue_current", f"{name} items queued", current)
            yield GaugeMetricFamily(
                f"{name}_queue_capacity", f"{name} queue capacity in items", capacity
            )
            yield GaugeMetricFamily(
                f"{name}_queue_percentage",
                f"{name} queue fill in percent",
                _percentage(current, capacity),
            )
            yield GaugeMetricFamily(f"{name}_consumed", f"{name} items consumed", consumed)
            yield GaugeMetricFamily(f"{name}_unconsumed", f"{name} items not consumed", current)
        yield GaugeMetricFamily("database_size_bytes", "Store size in bytes", s.database_size)
        yield from self._lokey()

    def _lokey(self) -> Iterator[Metric]:
        s = self._scrape
        requests = CounterMetricFamily(
            "lokey_api_requests",
            "Data requests by source, format and outcome",
            labels=["source", "format", "outcome"],
        )
        for (source, fmt, outcome), n in sorted(s.requests.items()):
            requests.add_metric([source, fmt, outcome], n)
        yield requests
        served = CounterMetricFamily(
            "lokey_api_bytes_served", "Bytes handed to clients", labels=["source"]
        )
        for source in SOURCES:
            served.add_metric([source], s.bytes_served[source])
        yield served
        dropped = CounterMetricFamily(
            "lokey_api_queue_dropped", "Items dropped from a full queue", labels=["source"]
        )
        queue_bytes = GaugeMetricFamily(
            "lokey_api_queue_bytes", "Unconsumed bytes queued", labels=["source"]
        )
        for source in SOURCES:
            dropped.add_metric([source], s.queues[source].dropped)
            queue_bytes.add_metric([source], s.queues[source].bytes)
        yield dropped
        yield queue_bytes
        yield CounterMetricFamily(
            "lokey_api_health_test_failures",
            "SP 800-90B RCT/APT failures on polled TRNG bytes",
            value=s.health.failures if s.health_failures is None else s.health_failures,
        )
        yield CounterMetricFamily(
            "lokey_api_trng_batches_rejected",
            "TRNG batches not stored because a health test signalled",
            value=s.batches_rejected,
        )
        legacy = GaugeMetricFamily(
            "lokey_api_trng_monobit_ones_fraction",
            "Fraction of one bits in polled TRNG bytes",
            value=s.legacy.monobit.average,
        )
        yield legacy
        background = CounterMetricFamily(
            "lokey_api_background_events", "Polling and seeding outcomes", labels=["event"]
        )
        for event, n in sorted(s.background.items()):
            background.add_metric([event], n)
        yield background
        breakers = GaugeMetricFamily(
            "lokey_api_seeding_breaker_state",
            "Seeding circuit breaker: 0 closed, 1 open, 2 half-open",
            labels=["target"],
        )
        for target, snapshot in sorted(s.breakers.items()):
            breakers.add_metric([target], _BREAKER_CODES[snapshot.state.value])
        yield breakers
        yield from self._instances()
        held = GaugeMetricFamily(
            "lokey_api_lease_held",
            "1 while this API instance holds the job's lease (runs it), else 0",
            labels=["job"],
        )
        for job, holds in sorted(s.leases.items()):
            held.add_metric([job], 1 if holds else 0)
        yield held

    def _instances(self) -> Iterator[Metric]:
        s = self._scrape
        up = GaugeMetricFamily(
            "lokey_api_instance_up",
            "1 if the controller or Fortuna instance's last call worked and its breaker is "
            "not open",
            labels=["peer", "instance"],
        )
        breaker = GaugeMetricFamily(
            "lokey_api_instance_breaker_state",
            "Per-instance circuit breaker: 0 closed, 1 open, 2 half-open",
            labels=["peer", "instance", "breaker"],
        )
        seeded = GaugeMetricFamily(
            "lokey_api_fortuna_instance_seeded",
            "1 once this API instance has seeded the Fortuna instance",
            labels=["instance"],
        )
        stored = CounterMetricFamily(
            "lokey_api_trng_samples_stored",
            "TRNG samples stored in the queue, by controller instance",
            labels=["instance"],
        )
        events = CounterMetricFamily(
            "lokey_api_instance_events",
            "Polling and seeding outcomes by controller or Fortuna instance",
            labels=["peer", "instance", "event"],
        )
        for item in s.instances:
            if item.up is not None:
                up.add_metric([item.peer, item.url], 1 if item.up else 0)
            for name, snapshot in sorted(item.breakers.items()):
                code = _BREAKER_CODES[snapshot.state.value]
                breaker.add_metric([item.peer, item.url, name], code)
            if item.seeded is not None:
                seeded.add_metric([item.url], 1 if item.seeded else 0)
            if item.peer == "controller":
                stored.add_metric([item.url], item.counters["samples_stored"])
            for event, n in sorted(item.counters.items()):
                events.add_metric([item.peer, item.url, event], n)
        yield up
        yield breaker
        yield seeded
        yield stored
        yield events

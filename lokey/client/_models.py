"""What the API's answers hold, as frozen dataclasses (spec/service-api.md §1.3-§1.7).

Field names are the JSON keys, so the spec's tables describe them; keys a server adds beyond
these stay readable in :attr:`Status.raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

__all__ = [
    "FORMATS",
    "Database",
    "Format",
    "Health",
    "HealthTests",
    "LegacyApt",
    "Monobit",
    "QueueConfig",
    "QueueStats",
    "RepetitionCount",
    "SeedingSource",
    "Source",
    "Status",
    "TrngQuality",
    "VirtioConfig",
]

#: The integer formats of ``POST /api/v1/data`` (``binary`` is :meth:`Client.random_bytes`).
Format = Literal["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FORMATS: Final[tuple[Format, ...]] = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
)
#: The queues data is read from (``virtio`` is refused: VirtIO is a consumer, spec §1.2).
Source = Literal["trng", "fortuna"]
#: Where the API seeds the VirtIO ring from (spec §1.5).
SeedingSource = Literal["trng", "fortuna", "both"]


@dataclass(frozen=True)
class QueueStats:
    """One queue in ``/api/v1/status`` (spec §1.6); counts are in items, not bytes.

    ``polling_count`` is ``None`` for the VirtIO ring (which has none); ``queue_bytes`` (the
    unconsumed bytes, what a data request can take) is LoKey's addition, ``None`` for VirtIO.
    """

    queue_current: int
    queue_capacity: int
    queue_percentage: float
    queue_dropped: int
    consumed_count: int
    unconsumed_count: int
    total_generated: int
    polling_count: int | None = None
    queue_bytes: int | None = None


@dataclass(frozen=True)
class Database:
    """The store: ``size_human`` as ``"1.5 MB"``; in memory, ``path`` is ``memory://channels``."""

    size_bytes: int
    size_human: str
    path: str


@dataclass(frozen=True)
class Monobit:
    """Ones and zeros among the polled TRNG bits (health-tests.md §2.1)."""

    zeros: int
    ones: int
    total: int
    average: float


@dataclass(frozen=True)
class RepetitionCount:
    """The legacy repetition counter (health-tests.md §2.2)."""

    failures: int
    current_run: int
    last_value: int


@dataclass(frozen=True)
class LegacyApt:
    """The legacy sliding-window bias counter (health-tests.md §2.3)."""

    window_size: int
    cutoff: int
    bias_count: int
    samples_processed: int


@dataclass(frozen=True)
class TrngQuality:
    """``trng_quality`` in ``/api/v1/status``: the reference's three legacy metrics."""

    monobit: Monobit
    repetition_count: RepetitionCount
    apt: LegacyApt


@dataclass(frozen=True)
class HealthTests:
    """LoKey's SP 800-90B tests that gate the TRNG queue (``health_tests`` in the status)."""

    state: str
    min_entropy_per_byte: float
    alpha: float
    rct_cutoff: int
    apt_cutoff: int
    apt_window: int
    startup_samples: int
    startup_passed: int
    bytes_tested: int
    bytes_usable: int
    bytes_discarded: int
    failures: int
    batches_rejected: int
    last_failure: str | None


@dataclass(frozen=True)
class Status:
    """``GET /api/v1/status``. ``health_tests`` is ``None`` from a server that does not send
    it; ``raw`` is the whole answer, for keys not modelled here (``seeding``, ``usage``...)."""

    trng: QueueStats
    fortuna: QueueStats
    virtio: QueueStats
    database: Database
    trng_quality: TrngQuality
    health_tests: HealthTests | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Health:
    """``GET /api/v1/health``: ``details`` maps ``api``, ``controller``, ``fortuna``,
    ``virtio`` and ``database`` to whether each is healthy; any false makes it degraded."""

    status: Literal["ok", "degraded"]
    timestamp: datetime
    details: Mapping[str, bool]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class QueueConfig:
    """``/api/v1/config/queue``: capacities in items. ``virtio_forwarded`` (set only by
    :meth:`Client.set_queue_config`) says whether the VirtIO service took the new size."""

    trng_queue_size: int
    fortuna_queue_size: int
    virtio_queue_size: int
    virtio_forwarded: bool | None = None


@dataclass(frozen=True)
class VirtioConfig:
    """``/api/v1/config/virtio``: the seeding source, the ring size (items) and the seeding
    interval; ``virtio_forwarded`` as in :class:`QueueConfig`."""

    seeding_source: SeedingSource
    queue_size: int
    seed_interval_seconds: int | None = None
    virtio_forwarded: bool | None = None

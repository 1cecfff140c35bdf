"""The queue store's contract: sources, capacity limits, result records and argument checks.

Both implementations (:class:`~lokey.store.lmdb_store.LmdbStore`,
:class:`~lokey.store.memory.MemoryStore`) satisfy :class:`QueueStore` with identical semantics;
the byte-granular queue logic they share lives in :mod:`lokey.store.queue`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_CAPACITY",
    "MAX_CAPACITY",
    "MAX_LEASE_S",
    "MEMORY_PATH",
    "MIN_CAPACITY",
    "MIN_LEASE_S",
    "SOURCES",
    "DatabaseInfo",
    "ProcessLocalLeases",
    "QueueStats",
    "QueueStore",
    "Source",
    "Usage",
    "UsageBucket",
    "check_capacity",
    "check_items",
    "check_lease",
    "check_polls",
    "check_source",
    "check_take",
    "encode_config",
]

SOURCES: Final = ("trng", "fortuna")
Source = Literal["trng", "fortuna"]

# service-api.md §1.3: PUT /api/v1/config/queue accepts 10..1,000,000 items per queue.
MIN_CAPACITY: Final = 10
MAX_CAPACITY: Final = 1_000_000
# service-api.md §6.1: TRNG_QUEUE_SIZE and FORTUNA_QUEUE_SIZE default to 1,000,000.
DEFAULT_CAPACITY: Final = 1_000_000
# service-api.md §1.6: the reference's channel store reports this path, and so does ours.
MEMORY_PATH: Final = "memory://channels"


@dataclass(frozen=True)
class QueueStats:
    """One consistent view of a queue; the lifetime counters survive a restart (LMDB)."""

    capacity: int
    items: int
    bytes: int
    polling_count: int
    dropped: int
    dropped_bytes: int
    consumed: int
    consumed_bytes: int
    total_generated: int
    generated_bytes: int


@dataclass(frozen=True)
class UsageBucket:
    """One hour of accounted takes from one source; ``start`` is a multiple of 3600."""

    start: float
    bytes: int
    requests: int


@dataclass(frozen=True)
class Usage:
    """Lifetime accounted takes of one source and the most recent active hours, oldest first."""

    bytes: int
    requests: int
    recent: tuple[UsageBucket, ...]


@dataclass(frozen=True)
class DatabaseInfo:
    """Where the store lives and how much of it is in use (service-api.md §1.6 ``database``)."""

    path: str
    size_bytes: int
    in_memory: bool


@runtime_checkable
class QueueStore(Protocol):
    """The API's two queues; every method is thread-safe and blocks until it is done."""

    def push(self, source: Source, items: Sequence[bytes], *, polls: int = 0) -> int: ...

    def take(
        self,
        source: Source,
        n: int,
        *,
        skip: int = 0,
        consume: bool = True,
        partial: bool = False,
        account: bool = True,
    ) -> bytes: ...

    def resize(self, source: Source, capacity: int) -> int: ...

    def count_poll(self, source: Source) -> None: ...

    def stats(self, source: Source) -> QueueStats: ...

    def usage(self, source: Source) -> Usage: ...

    def config(self) -> dict[str, object]: ...

    def update_config(self, values: Mapping[str, object]) -> None: ...

    def database(self) -> DatabaseInfo: ...

    def healthy(self) -> bool: ...

    @property
    def shared(self) -> bool:
        """True if other processes may use the same queues at once (Redis): the API then
        takes a lease before it runs a poller or a seeding loop."""
        ...

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl_s`` seconds; True if
        ``holder`` holds it now. Among the processes sharing the store at most one holds a
        lease at a time; a store only one process uses grants every lease."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give up ``name`` if ``holder`` holds it (so another can take it at once)."""
        ...

    def close(self) -> None: ...


def check_source(source: object) -> Source:
    if source == "trng":
        return "trng"
    if source == "fortuna":
        return "fortuna"
    raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


def check_capacity(capacity: object, name: str = "capacity") -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"{name} must be an int, got {type(capacity).__name__}")
    if not MIN_CAPACITY <= capacity <= MAX_CAPACITY:
        raise ValueError(
            f"{name} must be between {MIN_CAPACITY} and {MAX_CAPACITY:,} items, got {capacity:,}"
        )
    return capacity


def check_take(n: object, skip: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip must be an int >= 0, got {skip!r}")


def check_polls(polls: object) -> int:
    if isinstance(polls, bool) or not isinstance(polls, int) or polls < 0:
        raise ValueError(f"polls must be an int >= 0, got {polls!r}")
    return polls


def check_items(items: Sequence[bytes]) -> list[bytes]:
    """The items as ``bytes``; all are checked before anything is stored."""
    if isinstance(items, (bytes, bytearray, memoryview, str)):
        # A bare byte string is a sequence of ints: almost certainly a missing [...].
        raise ValueError("items must be a sequence of byte strings, not one byte string")
    out = list(items)
    if set(map(type, out)) <= {bytes} and all(out):
        return out  # the usual call, checked without a Python statement per item
    for index, item in enumerate(out):
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise ValueError(f"item {index} must be bytes, got {type(item).__name__}")
        if not len(item):
            raise ValueError(f"item {index} is empty; every item needs at least one byte")
    return [bytes(item) for item in out]


def encode_config(values: Mapping[str, object]) -> dict[str, object]:
    """``values`` as a plain JSON-compatible dict (a deep copy), or ValueError."""
    if not isinstance(values, Mapping):
        raise ValueError(f"config values must be a mapping, got {type(values).__name__}")
    for key in values:
        if not isinstance(key, str):
            raise ValueError(f"config keys must be strings, got {key!r}")
    try:
        text = json.dumps(dict(values), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config values must be JSON-serialisable: {exc}") from exc
    decoded: dict[str, object] = json.loads(text)
    return decoded


# A lease shorter than this cannot be renewed in time over a network; longer is a typo.
MIN_LEASE_S: Final = 0.1
MAX_LEASE_S: Final = 3600.0
MAX_LEASE_NAME: Final = 200


class ProcessLocalLeases:
    """The lease methods of a store that one process owns (LMDB, memory): there is no one to
    share a job with, so every lease is granted; the arguments are still checked."""

    @property
    def shared(self) -> bool:
        return False

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        check_lease(name, holder, ttl_s)
        return True

    def release_lease(self, name: str, holder: str) -> None:
        check_lease(name, holder, MIN_LEASE_S)


def check_lease(name: object, holder: object, ttl_s: object) -> None:
    for what, value in (("lease name", name), ("lease holder", holder)):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_LEASE_NAME:
            raise ValueError(f"{what} must be a string of 1..{MAX_LEASE_NAME} characters")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise ValueError(f"ttl_s must be a number, got {ttl_s!r}")
    if not MIN_LEASE_S <= ttl_s <= MAX_LEASE_S:
        raise ValueError(
            f"ttl_s must be between {MIN_LEASE_S} and {MAX_LEASE_S:g} s, got {ttl_s!r}"
        )

"""The in-memory queue store (``DB_IMPLEMENTATION=channel``, service-api.md §5).

Same semantics as the LMDB store (the queue logic is shared, :mod:`lokey.store.queue`), kept in
process memory under one lock: nothing survives a restart. "No byte twice" holds because a take
removes its bytes under the lock before it returns them. A resize that drops many items does it
in chunks (:func:`lokey.store.queue.trim`), releasing the lock in between, as the LMDB store does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice, repeat, starmap
from operator import itemgetter

from lokey.errors import StoreClosedError, StoreError
from lokey.store import queue
from lokey.store.base import (
    DEFAULT_CAPACITY,
    MEMORY_PATH,
    SOURCES,
    DatabaseInfo,
    ProcessLocalLeases,
    QueueStats,
    Source,
    Usage,
    check_capacity,
    check_items,
    check_polls,
    check_source,
    check_take,
    encode_config,
)
from lokey.store.queue import Buffer, QueueMeta
from lokey.store.usage import UsageRecord
from lokey.store.writer import HEALTH_TIMEOUT

__all__ = ["MemoryStore"]


class _DictTable:
    """A queue as an OrderedDict: O(1) at both ends, unlike deleting a plain dict's front."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: OrderedDict[int, bytes] = OrderedDict()

    def values(self) -> Iterator[Buffer]:
        return iter(self._items.values())

    def entries(self, start: int = 0) -> Iterator[tuple[int, Buffer]]:
        return islice(self._items.items(), start, None)

    def append(self, first_id: int, values: Sequence[bytes]) -> None:
        self._items.update(zip(range(first_id, first_id + len(values)), values, strict=True))

    def replace(self, item_id: int, value: bytes) -> None:
        if item_id not in self._items:
            raise StoreError(f"the queue has no item {item_id} to rewrite")
        self._items[item_id] = value  # an existing key keeps its place

    def delete(self, item_ids: Iterable[int]) -> None:
        ids = list(item_ids)
        if not all(map(self._items.__contains__, ids)):  # checked first: all or nothing
            raise StoreError("the queue lacks an item it was asked to delete")
        for item_id in ids:
            del self._items[item_id]

    def delete_head(self, count: int) -> None:
        if count > len(self._items):
            raise StoreError(f"the queue holds {len(self._items)} items, not {count} to delete")
        deque(starmap(self._items.popitem, repeat((False,), count)), maxlen=0)

    def keep_tail(self, count: int, *, of: int) -> int:
        if len(self._items) != of or count > of:
            raise StoreError(
                f"the queue holds {len(self._items)} items, not {of}: its counters and its items"
                " disagree"
            )
        kept = list(islice(reversed(self._items.items()), count))
        kept.reverse()
        self._items = OrderedDict(kept)
        return sum(map(len, map(itemgetter(1), kept)))


class MemoryStore(ProcessLocalLeases):
    """Both queues in process memory; every method takes one lock."""

    def __init__(
        self,
        *,
        default_capacity: int = DEFAULT_CAPACITY,
        now: Callable[[], float] = time.time,
    ) -> None:
        capacity = check_capacity(default_capacity, "default_capacity")
        self._now = now
        self._lock = threading.Lock()
        self._closed = False
        self._meta = {source: QueueMeta(capacity) for source in SOURCES}
        self._tables = {source: _DictTable() for source in SOURCES}
        self._usage = {source: UsageRecord() for source in SOURCES}
        self._config: dict[str, object] = {}

    def push(self, source: Source, items: Sequence[bytes], *, polls: int = 0) -> int:
        src = check_source(source)
        data = check_items(items)
        count = check_polls(polls)
        with self._open():
            return queue.push(self._meta[src], self._tables[src], data, count)

    def take(
        self,
        source: Source,
        n: int,
        *,
        skip: int = 0,
        consume: bool = True,
        partial: bool = False,
        account: bool = True,
    ) -> bytes:
        src = check_source(source)
        check_take(n, skip)
        with self._open():
            now = self._now() if account else 0.0  # before the take: a failing clock costs nothing
            result = queue.take(
                src,
                self._meta[src],
                self._tables[src],
                n,
                skip=skip,
                consume=consume,
                partial=partial,
            )
            if account and result:
                self._usage[src] = self._usage[src].add(now, len(result))
            return result

    def resize(self, source: Source, capacity: int) -> int:
        src = check_source(source)
        size = check_capacity(capacity)
        meta, table = self._meta[src], self._tables[src]
        with self._open():
            dropped = queue.resize(meta, table, size)
            more = queue.over_capacity(meta)
        while more:  # a large drop in chunks, the lock released in between (queue.trim)
            with self._open():
                dropped += queue.trim(meta, table)
                more = queue.over_capacity(meta)
        return dropped

    def count_poll(self, source: Source) -> None:
        self.push(source, (), polls=1)

    def stats(self, source: Source) -> QueueStats:
        src = check_source(source)
        with self._open():
            return self._meta[src].stats()

    def usage(self, source: Source) -> Usage:
        src = check_source(source)
        with self._open():
            return self._usage[src].usage()

    def config(self) -> dict[str, object]:
        with self._open():
            return encode_config(self._config)  # a deep copy: callers cannot reach inside

    def update_config(self, values: Mapping[str, object]) -> None:
        encoded = encode_config(values)
        with self._open():
            self._config.update(encoded)

    def database(self) -> DatabaseInfo:
        with self._open():
            return DatabaseInfo(path=MEMORY_PATH, size_bytes=0, in_memory=True)

    def healthy(self) -> bool:
        """Open, and the lock free within HEALTH_TIMEOUT seconds: a probe never hangs."""
        if not self._lock.acquire(timeout=HEALTH_TIMEOUT):
            return False
        try:
            return not self._closed
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    @contextmanager
    def _open(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise StoreClosedError("the queue store is closed")
            yield

    def __repr__(self) -> str:
        return "MemoryStore()"

"""Bounded work in the shared queue logic (lokey.store.queue): how many items one call reads,
how many it drops, and what happens when the counters and the items disagree.

A counting table wraps the in-memory table and counts every item its iterators hand out, so
the bounds are checked on the logic both stores share, without timing anything. The Redis store
runs the same algorithms as Lua scripts (lokey.store.redis_scripts); its drop bounds are
checked at the end, through the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import StoreError
from lokey.store import queue
from lokey.store.memory import _DictTable
from lokey.store.queue import MIN_ROUND, Buffer, QueueMeta
from lokey.store.redis_store import RedisStore
from tests.redis_helpers import new_prefix, redis_url


class CountingTable:
    """A _DictTable that counts the items its iterators yield (values, entries) and drops."""

    def __init__(self) -> None:
        self.table = _DictTable()
        self.values_read = 0
        self.entries_read = 0
        self.head_deletes: list[int] = []
        self.tails_kept: list[int] = []

    def reset(self) -> None:
        self.values_read = self.entries_read = 0
        self.head_deletes = []
        self.tails_kept = []

    def values(self) -> Iterator[Buffer]:
        for value in self.table.values():
            self.values_read += 1
            yield value

    def entries(self, start: int = 0) -> Iterator[tuple[int, Buffer]]:
        for entry in self.table.entries(start):
            self.entries_read += 1
            yield entry

    def append(self, first_id: int, values: Sequence[bytes]) -> None:
        self.table.append(first_id, values)

    def replace(self, item_id: int, value: bytes) -> None:
        self.table.replace(item_id, value)

    def delete(self, item_ids: Iterable[int]) -> None:
        self.table.delete(item_ids)

    def delete_head(self, count: int) -> None:
        self.head_deletes.append(count)
        self.table.delete_head(count)

    def keep_tail(self, count: int, *, of: int) -> int:
        self.tails_kept.append(count)
        return self.table.keep_tail(count, of=of)


def filled(items: list[bytes], capacity: int = 1_000_000) -> tuple[QueueMeta, CountingTable]:
    meta, table = QueueMeta(capacity), CountingTable()
    queue.push(meta, table, items, 0)
    table.reset()
    return meta, table


def take(meta: QueueMeta, table: CountingTable, n: int, skip: int = 0, **kw: bool) -> bytes:
    options = {"consume": True, "partial": False, **kw}
    return queue.take("trng", meta, table, n, skip=skip, **options)


def items_holding(sizes: list[int], start: int, stop: int) -> int:
    """How many items hold bytes of Q[start:stop], given the items' unconsumed sizes."""
    count, position = 0, 0
    for size in sizes:
        if position < stop and position + size > start:
            count += 1
        position += size
    return count


# -- read-ahead of a head take -------------------------------------------------------------------


def test_a_tiny_head_item_does_not_make_a_take_read_the_queue() -> None:
    """The reviewer's case: after two skip takes the head item holds one byte; the next plain
    take used to estimate the items it needs from that byte and read ~n items."""
    meta, table = filled([bytes([i % 251]) * 256 for i in range(20_000)])
    take(meta, table, 1, skip=1)
    take(meta, table, 254, skip=1)
    table.reset()
    data = take(meta, table, 100_000)
    assert len(data) == 100_000
    needed = 1 + -(-(100_000 - 1) // 256)  # the one-byte head, then whole 256-byte items
    assert table.values_read <= 2 * needed + MIN_ROUND


def test_large_head_items_before_small_ones_are_not_over_read() -> None:
    """The queue's mean item size (from the counters) says 'tiny'; the head items are 64 KiB."""
    big = [bytes([i]) * 65_536 for i in range(40)]
    meta, table = filled(big + [b"s"] * 200_000)
    assert take(meta, table, 100_000) == b"".join(big)[:100_000]
    assert table.values_read <= 2 * 2 + MIN_ROUND


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 600) | st.integers(1, 4), min_size=1, max_size=400),
    head=st.integers(0, 599),
    fraction=st.floats(0.0, 1.0),
)
def test_a_head_take_reads_at_most_twice_what_it_needs_plus_a_round(
    sizes: list[int], head: int, fraction: float
) -> None:
    meta, table = filled([bytes([i % 256]) * size for i, size in enumerate(sizes)])
    head = min(head, sizes[0] - 1)
    if head:
        take(meta, table, head)  # leave a partly consumed head item
    table.reset()
    n = max(1, int(meta.bytes * fraction))
    rest = [sizes[0] - head, *sizes[1:]]
    take(meta, table, n, consume=False)
    assert table.values_read <= 2 * items_holding(rest, 0, n) + MIN_ROUND


# -- takes with a skip -------------------------------------------------------------------------


def test_a_skip_reads_entries_only_for_the_items_it_returns() -> None:
    """Skipped items are measured in bulk from values(); entries (ids, for the writes) are read
    only from the item holding the first byte on. The old loop read an entry per skipped item."""
    items = [i.to_bytes(4, "big") * 8 for i in range(50_000)]
    meta, table = filled(items)
    skip = 32 * 40_000 + 5
    data = take(meta, table, 800, skip=skip)
    assert data == b"".join(items)[skip : skip + 800]
    returned = items_holding([32] * 50_000, skip, skip + 800)
    assert table.entries_read <= 2 * returned + MIN_ROUND
    assert table.values_read <= 2 * 40_001 + MIN_ROUND  # the items skipped, measured once
    assert meta.bytes == 32 * 50_000 - 800


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300) | st.integers(1, 3), min_size=1, max_size=300),
    head=st.integers(0, 299),
    where=st.floats(0.0, 1.0),
    length=st.floats(0.0, 1.0),
)
def test_a_skip_take_reads_what_it_skips_and_needs(
    sizes: list[int], head: int, where: float, length: float
) -> None:
    meta, table = filled([bytes([i % 256]) * size for i, size in enumerate(sizes)])
    head = min(head, sizes[0] - 1)
    if head:
        take(meta, table, head)
    if meta.bytes < 2:
        return
    table.reset()
    skip = max(1, min(int(meta.bytes * where), meta.bytes - 1))
    n = max(1, int((meta.bytes - skip) * length))
    rest = [sizes[0] - head, *sizes[1:]]
    take(meta, table, n, skip=skip)
    returned = items_holding(rest, skip, skip + n)
    skipped = items_holding(rest, 0, skip + 1)  # up to and with the one holding Q[skip]
    assert table.entries_read <= 2 * returned + MIN_ROUND
    assert table.values_read <= 2 * skipped + MIN_ROUND


# -- counters that disagree with the items --------------------------------------------------------


def drifted() -> tuple[QueueMeta, CountingTable]:
    """Counters for ten 4-byte items over a table that lost its last two."""
    meta, table = filled([bytes([i]) * 4 for i in range(10)])
    table.table._items.popitem()
    table.table._items.popitem()
    return meta, table


@pytest.mark.parametrize("skip", [0, 1, 5, 31])
def test_missing_items_are_a_store_error_not_short_data(skip: int) -> None:
    meta, table = drifted()
    before = meta.encode()
    with pytest.raises(StoreError, match="disagree"):
        take(meta, table, 40 - skip, skip=skip)
    with pytest.raises(StoreError, match="disagree"):
        take(meta, table, 40 - skip, skip=skip, consume=False)
    assert meta.encode() == before
    assert len(table.table._items) == 8  # nothing was deleted


def test_dropping_missing_items_is_a_store_error() -> None:
    meta, table = drifted()
    before = meta.encode()
    with pytest.raises(StoreError, match="disagree"):
        queue.resize(meta, table, 0)  # drops all ten items: two are not there
    with pytest.raises(StoreError, match="disagree"):
        queue.push(meta, table, [b"x"] * 1_000_001, 0)  # drops the ten to make room
    assert meta.encode() == before  # the counters are untouched too
    with pytest.raises(StoreError, match="delete"):
        table.table.delete_head(9)
    with pytest.raises(StoreError, match="delete"):
        table.table.delete([7, 8])
    with pytest.raises(StoreError, match="rewrite"):
        table.table.replace(9, b"x")
    assert len(table.table._items) == 8  # a failed delete deletes nothing


# -- drops in bounded chunks --------------------------------------------------------------------


def test_trim_drops_at_most_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue, "DROP_CHUNK", 7)
    items = [bytes([i]) * 3 for i in range(40)]
    meta, table = filled(items, capacity=40)
    take(meta, table, 1)  # a partly consumed head: its dropped bytes are the unconsumed ones
    table.reset()
    assert queue.resize(meta, table, 10) == 7
    total = 7
    while queue.over_capacity(meta):
        total += queue.trim(meta, table)
    assert total == 30
    assert table.head_deletes == [7, 7, 7, 7, 2]
    assert (meta.items, meta.dropped, meta.dropped_bytes) == (10, 30, 30 * 3 - 1)
    assert table.tails_kept == []
    assert meta.capacity == 10
    assert queue.trim(meta, table) == 0


def test_dropping_most_of_a_queue_reads_only_what_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resize 1M -> 10, the reviewer's case, shrunk: the kept items are read, not the dropped."""
    monkeypatch.setattr(queue, "DROP_CHUNK", 50)
    items = [bytes([i % 256]) * (2 + i % 7) for i in range(5000)]
    meta, table = filled(items, capacity=5000)
    take(meta, table, 1)
    table.reset()
    assert queue.resize(meta, table, 30) == 4970  # 30 <= DROP_CHUNK stay: one call
    assert table.tails_kept == [30]
    assert table.head_deletes == []
    assert table.values_read == table.entries_read == 0
    assert list(table.table._items.values()) == items[-30:]
    assert meta.bytes == sum(map(len, items[-30:]))
    assert meta.dropped_bytes == sum(map(len, items[:-30])) - 1
    assert meta.total_generated == meta.items + meta.dropped + meta.consumed
    assert meta.generated_bytes == meta.bytes + meta.dropped_bytes + meta.consumed_bytes
    assert not queue.over_capacity(meta)


def test_a_push_onto_an_overfull_queue_drops_a_bounded_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resize interrupted half-way leaves the queue above capacity; pushes shrink it, each
    by at most its own items plus DROP_CHUNK, and never drop new items while old ones remain."""
    monkeypatch.setattr(queue, "DROP_CHUNK", 5)
    meta, table = filled([bytes([i]) for i in range(50)], capacity=50)
    meta.capacity = 10  # as queue.resize leaves it before its trims
    assert queue.push(meta, table, [b"n1", b"n2"], 0) == 7
    assert meta.items == 45
    assert list(table.table._items.values())[-2:] == [b"n1", b"n2"]
    dropped = 7
    while queue.over_capacity(meta):
        dropped += queue.push(meta, table, [], 1)
    assert dropped == 42
    assert list(table.table._items.values()) == [bytes([i]) for i in range(42, 50)] + [
        b"n1",
        b"n2",
    ]
    assert meta.total_generated == meta.items + meta.dropped + meta.consumed


def test_a_batch_larger_than_capacity_still_keeps_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue, "DROP_CHUNK", 5)
    meta, table = filled([b"old"] * 3, capacity=10)
    new = [bytes([i]) for i in range(30)]
    assert queue.push(meta, table, new, 0) == 23
    assert list(table.table._items.values()) == new[20:]


def test_a_push_onto_an_overfull_redis_queue_drops_a_bounded_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Redis push script's overflow rule is queue.push's: at most its own items plus
    DROP_CHUNK old ones per push, never a new item while an old one is left."""
    monkeypatch.setattr(queue, "DROP_CHUNK", 5)
    prefix = new_prefix()
    store = RedisStore(redis_url(), prefix=prefix, default_capacity=50)
    raw = redis.Redis.from_url(redis_url())
    try:
        store.push("trng", [bytes([i]) for i in range(50)])
        raw.hset("{" + prefix + "}:trng:meta", "capacity", 10)  # as a resize leaves it midway
        assert store.push("trng", [b"n1", b"n2"]) == 7
        assert store.stats("trng").items == 45
        dropped = 7
        while store.stats("trng").items > 10:
            dropped += store.push("trng", [], polls=1)
        assert dropped == 42
        queued = store.take("trng", 1 << 20, partial=True, consume=False, account=False)
        assert queued == bytes(range(42, 50)) + b"n1n2"
        stats = store.stats("trng")
        assert stats.total_generated == stats.items + stats.dropped + stats.consumed
        assert stats.dropped_bytes == 42
    finally:
        raw.close()
        store.close()

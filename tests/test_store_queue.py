"""The queue store's contract, pinned for both implementations (service-api.md §1.2, §1.6, §5).

Every test runs against the in-memory store, the LMDB store and the Redis store; a test that
reopens the store checks persistence on LMDB and Redis (the same key prefix) and plain
continuity on the memory store.
"""

from __future__ import annotations

import math
import os
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokey.errors import NotEnoughDataError, StoreClosedError, StoreError
from lokey.store import (
    DEFAULT_CAPACITY,
    MAX_CAPACITY,
    MIN_CAPACITY,
    SOURCES,
    DatabaseInfo,
    LmdbStore,
    MemoryStore,
    QueueStats,
    QueueStore,
    Source,
    UsageBucket,
    open_store,
    queue,
    resolve_db_path,
)
from lokey.store.redis_store import RedisStore
from tests.redis_helpers import new_prefix
from tests.store_helpers import (
    KINDS,
    LOCAL_KINDS,
    Kind,
    StoreFactory,
    join_threads,
    wait_until,
    writer_backlog,
)


@pytest.fixture(params=KINDS)
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    kind: Kind = request.param
    made = StoreFactory(kind, tmp_path)
    yield made
    made.close_all()


@pytest.fixture(params=LOCAL_KINDS)
def local_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """The stores whose callers wait in this process (a lock, a writer thread)."""
    kind: Kind = request.param
    made = StoreFactory(kind, tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def store(factory: StoreFactory) -> QueueStore:
    return factory.open(default_capacity=10)


def queued(store: QueueStore, source: Source = "trng") -> bytes:
    """Q, read without consuming or accounting anything."""
    return store.take(source, 1 << 40, partial=True, consume=False, account=False)


def counters(store: QueueStore, source: Source = "trng") -> tuple[int, ...]:
    s = store.stats(source)
    return (s.items, s.bytes, s.consumed, s.consumed_bytes, s.dropped, s.dropped_bytes)


# -- shapes and constants -----------------------------------------------------------------------


def test_constants_match_the_spec() -> None:
    assert SOURCES == ("trng", "fortuna")
    assert (MIN_CAPACITY, MAX_CAPACITY, DEFAULT_CAPACITY) == (10, 1_000_000, 1_000_000)


def test_fresh_store_is_empty(store: QueueStore) -> None:
    assert isinstance(store, QueueStore)
    for source in SOURCES:
        assert store.stats(source) == QueueStats(10, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        usage = store.usage(source)
        assert (usage.bytes, usage.requests, usage.recent) == (0, 0, ())
    assert store.config() == {}
    assert store.healthy()


def test_default_capacity_is_the_spec_default(factory: StoreFactory) -> None:
    if factory.kind == "memory":
        fresh: QueueStore = MemoryStore()
    elif factory.kind == "redis":
        fresh = RedisStore(factory.redis_url, prefix=new_prefix())
    else:
        fresh = LmdbStore(factory.path.with_name("default.db"), sync=False)
    try:
        assert fresh.stats("fortuna").capacity == 1_000_000
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("bad", "error"),
    [(9, ValueError), (1_000_001, ValueError), (True, TypeError), (10.0, TypeError)],
)
def test_default_capacity_is_validated(
    factory: StoreFactory, bad: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        factory.open(default_capacity=bad)  # type: ignore[arg-type]


# -- push and take: exact bytes, byte granularity ------------------------------------------------


def test_take_returns_the_oldest_bytes_across_items(store: QueueStore) -> None:
    assert store.push("trng", [b"abc", b"defg", b"hi"]) == 0
    assert store.take("trng", 2) == b"ab"
    assert store.take("trng", 3) == b"cde"
    assert store.take("trng", 4) == b"fghi"
    stats = store.stats("trng")
    assert (stats.items, stats.bytes) == (0, 0)
    assert (stats.consumed, stats.consumed_bytes) == (3, 9)
    assert (stats.total_generated, stats.generated_bytes) == (3, 9)


def test_a_partly_consumed_item_counts_as_one_and_keeps_its_rest(store: QueueStore) -> None:
    store.push("trng", [bytes(range(32)), bytes(range(32, 64))])
    assert store.take("trng", 5) == bytes(range(5))
    stats = store.stats("trng")
    assert (stats.items, stats.bytes, stats.consumed, stats.consumed_bytes) == (2, 59, 0, 5)
    assert queued(store) == bytes(range(5, 64))
    assert store.take("trng", 27) == bytes(range(5, 32))  # exactly the rest of the first item
    assert counters(store) == (1, 32, 1, 32, 0, 0)
    assert store.take("trng", 32) == bytes(range(32, 64))
    assert counters(store) == (0, 0, 2, 64, 0, 0)


def test_sources_are_independent(store: QueueStore) -> None:
    store.push("trng", [b"t" * 32])
    store.push("fortuna", [b"f" * 256])
    assert store.take("fortuna", 10) == b"f" * 10
    assert store.take("trng", 32) == b"t" * 32
    assert store.stats("fortuna").bytes == 246
    assert store.stats("trng").bytes == 0


def test_large_items_are_consumed_in_small_steps(store: QueueStore) -> None:
    item = os.urandom(64 * 1024)  # Fortuna items may be up to 64 KiB
    store.push("fortuna", [item, b"tail"])
    got = b"".join(store.take("fortuna", 1000) for _ in range(65))
    assert got == item[:65_000]
    assert store.take("fortuna", 540) == item[65_000:] + b"tail"
    assert store.stats("fortuna").consumed == 2


# -- skip ---------------------------------------------------------------------------------------


def test_skipped_bytes_are_neither_returned_nor_consumed(store: QueueStore) -> None:
    store.push("trng", [b"abcdef", b"ghij", b"klmnop"])
    assert store.take("trng", 3, skip=2) == b"cde"
    assert queued(store) == b"abfghijklmnop"
    # the prefix and suffix of the cut item stay one item
    assert counters(store) == (3, 13, 0, 3, 0, 0)
    assert store.take("trng", 2) == b"ab"
    assert store.take("trng", 1) == b"f"
    assert store.stats("trng").consumed == 1


def test_a_skip_spanning_items_removes_the_whole_ones(store: QueueStore) -> None:
    store.push("trng", [b"abcd", b"efgh", b"ijkl", b"mnop"])
    assert store.take("trng", 7, skip=3) == b"defghij"
    assert queued(store) == b"abckl" + b"mnop"
    assert counters(store) == (3, 9, 1, 7, 0, 0)  # "efgh" is gone; "abc" and "kl" remain
    assert store.take("trng", 5) == b"abckl"
    assert store.stats("trng").items == 1


def test_skip_at_an_item_boundary(store: QueueStore) -> None:
    store.push("trng", [b"abcd", b"efgh", b"ijkl"])
    assert store.take("trng", 4, skip=4) == b"efgh"
    assert queued(store) == b"abcdijkl"
    assert counters(store) == (2, 8, 1, 4, 0, 0)


def test_skip_after_a_partial_head(store: QueueStore) -> None:
    store.push("trng", [b"abcdef", b"ghij"])
    assert store.take("trng", 2) == b"ab"
    assert store.take("trng", 2, skip=1) == b"de"
    assert queued(store) == b"cfghij"
    assert store.take("trng", 6) == b"cfghij"
    assert counters(store) == (0, 0, 2, 10, 0, 0)


def test_peek_with_skip_returns_the_window_and_changes_nothing(store: QueueStore) -> None:
    store.push("trng", [b"abcd", b"efgh"])
    before = store.stats("trng")
    assert store.take("trng", 3, skip=3, consume=False) == b"def"
    assert store.take("trng", 3, skip=3, consume=False) == b"def"
    assert store.stats("trng") == before
    assert store.usage("trng").requests == 2


# -- not enough data, partial takes --------------------------------------------------------------


def test_not_enough_data_changes_nothing(store: QueueStore) -> None:
    store.push("trng", [b"abcd", b"efgh"])
    store.take("trng", 1)
    stats, usage = store.stats("trng"), store.usage("trng")
    with pytest.raises(NotEnoughDataError) as caught:
        store.take("trng", 6, skip=2)
    assert (caught.value.source, caught.value.requested, caught.value.available) == ("trng", 8, 7)
    assert "7" in str(caught.value)
    with pytest.raises(NotEnoughDataError):
        store.take("trng", 8, consume=False)
    assert store.stats("trng") == stats
    assert store.usage("trng") == usage
    assert queued(store) == b"bcdefgh"


def test_an_empty_queue_has_no_data(store: QueueStore) -> None:
    with pytest.raises(NotEnoughDataError) as caught:
        store.take("fortuna", 1)
    assert (caught.value.requested, caught.value.available) == (1, 0)


def test_partial_takes_what_is_there(store: QueueStore) -> None:
    store.push("trng", [b"abcd", b"efgh"])
    assert store.take("trng", 100, skip=2, partial=True) == b"cdefgh"
    assert queued(store) == b"ab"
    assert store.usage("trng").bytes == 6
    assert store.take("trng", 5, skip=2, partial=True) == b""
    assert store.take("trng", 5, skip=9, partial=True) == b""
    # an empty result changes nothing, not even usage
    assert store.usage("trng").requests == 1
    assert counters(store) == (1, 2, 1, 6, 0, 0)


# -- peeks and accounting ------------------------------------------------------------------------


def test_peek_returns_the_same_bytes_again(store: QueueStore) -> None:
    store.push("fortuna", [b"x" * 10, b"y" * 10])
    first = store.take("fortuna", 15, consume=False)
    assert store.take("fortuna", 15, consume=False) == first == b"x" * 10 + b"y" * 5
    assert counters(store, "fortuna") == (2, 20, 0, 0, 0, 0)
    assert store.take("fortuna", 15) == first


def test_usage_counts_accounted_takes_only(store: QueueStore) -> None:
    store.push("trng", [b"a" * 32] * 3)
    store.take("trng", 10)
    store.take("trng", 5, consume=False)
    store.take("trng", 7, account=False)
    store.take("trng", 3, consume=False, account=False)
    usage = store.usage("trng")
    assert (usage.bytes, usage.requests) == (15, 2)
    assert store.usage("fortuna").requests == 0


def test_usage_is_bucketed_by_hour(factory: StoreFactory) -> None:
    clock = factory.clock
    clock.now = 7200.0 * 1000 + 3599.5  # the last half second of an hour
    store = factory.open()
    store.push("trng", [b"z" * 100])
    store.take("trng", 1)
    clock.advance(1.0)
    store.take("trng", 2)
    store.take("trng", 3)
    assert store.usage("trng").recent == (
        UsageBucket(start=7_203_600.0 - 3600, bytes=1, requests=1),
        UsageBucket(start=7_203_600.0, bytes=5, requests=2),
    )


def test_usage_keeps_the_last_48_active_hours(factory: StoreFactory) -> None:
    clock = factory.clock
    store = factory.open()
    store.push("trng", [b"u" * 200])
    first_hour = math.floor(clock.now / 3600) * 3600
    for _ in range(50):
        store.take("trng", 2)
        clock.advance(3 * 3600)  # idle hours leave no bucket
    usage = store.usage("trng")
    assert (usage.bytes, usage.requests) == (100, 50)
    assert len(usage.recent) == 48
    assert [b.start for b in usage.recent] == [first_hour + 3 * 3600 * i for i in range(2, 50)]
    assert all(b.start % 3600 == 0 and (b.bytes, b.requests) == (2, 1) for b in usage.recent)


# -- capacity: drop-oldest and resize -----------------------------------------------------------


def test_push_drops_the_oldest_beyond_capacity(store: QueueStore) -> None:
    items = [bytes([i]) * (i + 1) for i in range(12)]
    assert store.push("trng", items[:10]) == 0
    store.take("trng", 1)  # item 0 fully consumed: it no longer counts
    store.take("trng", 1)  # item 1 half consumed
    assert store.push("trng", items[10:]) == 1
    stats = store.stats("trng")
    assert (stats.items, stats.dropped, stats.dropped_bytes) == (10, 1, 1)
    assert queued(store) == b"".join(items[2:])
    assert (stats.total_generated, stats.generated_bytes) == (12, sum(map(len, items)))


def test_a_batch_larger_than_capacity_keeps_the_newest(store: QueueStore) -> None:
    store.push("trng", [b"old"])
    items = [i.to_bytes(2, "big") for i in range(25)]
    assert store.push("trng", items) == 16
    assert queued(store) == b"".join(items[15:])
    stats = store.stats("trng")
    assert (stats.items, stats.dropped, stats.dropped_bytes) == (10, 16, 3 + 2 * 15)
    assert (stats.total_generated, stats.generated_bytes) == (26, 3 + 50)


def test_resize_trims_the_oldest_and_counts_them(factory: StoreFactory) -> None:
    store = factory.open(default_capacity=20)
    store.push("fortuna", [bytes([i]) * 4 for i in range(20)])
    store.take("fortuna", 2)
    assert store.resize("fortuna", 15) == 5
    stats = store.stats("fortuna")
    assert (stats.capacity, stats.items, stats.dropped, stats.dropped_bytes) == (15, 15, 5, 18)
    assert store.resize("fortuna", 1_000_000) == 0
    assert store.stats("trng").capacity == 20  # the other queue keeps its own
    store = factory.reopen(store, default_capacity=50)
    assert store.stats("fortuna").capacity == 1_000_000  # persisted, not the new default
    assert store.stats("trng").capacity == 20
    assert queued(store, "fortuna") == b"".join(bytes([i]) * 4 for i in range(5, 20))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (9, ValueError),
        (0, ValueError),
        (1_000_001, ValueError),
        (True, TypeError),
        (10.5, TypeError),
        ("10", TypeError),
    ],
)
def test_resize_validates(store: QueueStore, bad: object, error: type[Exception]) -> None:
    store.push("trng", [b"x"] * 10)
    with pytest.raises(error):
        store.resize("trng", bad)  # type: ignore[arg-type]
    assert store.stats("trng").capacity == 10
    assert store.stats("trng").items == 10


# -- polls ----------------------------------------------------------------------------------------


def test_polls_are_counted(store: QueueStore) -> None:
    store.push("trng", [b"a" * 32], polls=1)
    store.push("trng", [], polls=3)
    store.count_poll("trng")
    stats = store.stats("trng")
    assert (stats.polling_count, stats.total_generated) == (5, 1)
    assert store.stats("fortuna").polling_count == 0


# -- argument checks: ValueError and nothing changes -----------------------------------------------


@pytest.mark.parametrize(
    "items",
    [[b"ok", b""], [b"ok", "text"], [b"ok", 5], b"bare bytes", [b"ok", None]],
)
def test_push_rejects_bad_items_and_stores_none(store: QueueStore, items: object) -> None:
    with pytest.raises(ValueError, match=r"item|byte string"):
        store.push("trng", items)  # type: ignore[arg-type]
    assert store.stats("trng") == QueueStats(10, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_push_accepts_bytes_like_items(store: QueueStore) -> None:
    store.push("trng", [bytearray(b"ab"), memoryview(b"cd")])  # type: ignore[list-item]
    assert store.take("trng", 4) == b"abcd"


@pytest.mark.parametrize("polls", [-1, 1.0, True, "1"])
def test_push_rejects_bad_polls(store: QueueStore, polls: object) -> None:
    with pytest.raises(ValueError, match="polls"):
        store.push("trng", [b"x"], polls=polls)  # type: ignore[arg-type]
    assert store.stats("trng").total_generated == 0


@pytest.mark.parametrize(
    ("n", "skip"), [(0, 0), (-1, 0), (True, 0), (1.0, 0), ("1", 0), (1, -1), (1, 0.5), (1, False)]
)
def test_take_rejects_bad_sizes(store: QueueStore, n: object, skip: object) -> None:
    store.push("trng", [b"abc"])
    with pytest.raises(ValueError, match=r"n must|skip must"):
        store.take("trng", n, skip=skip)  # type: ignore[arg-type]
    assert counters(store) == (1, 3, 0, 0, 0, 0)


@pytest.mark.parametrize("source", ["virtio", "TRNG", "", None])
def test_unknown_sources_are_rejected(store: QueueStore, source: object) -> None:
    bad: Source = source  # type: ignore[assignment]
    with pytest.raises(ValueError, match="source"):
        store.push(bad, [b"x"])
    with pytest.raises(ValueError, match="source"):
        store.take(bad, 1)
    with pytest.raises(ValueError, match="source"):
        store.stats(bad)
    with pytest.raises(ValueError, match="source"):
        store.resize(bad, 10)


# -- config ---------------------------------------------------------------------------------------


def test_config_merges_and_persists(factory: StoreFactory) -> None:
    store = factory.open()
    store.update_config({"consume": True, "virtio": {"seeding_source": "trng", "queue_size": 15}})
    store.update_config({"consume": False, "seed_interval_seconds": 30})
    expected = {
        "consume": False,
        "virtio": {"seeding_source": "trng", "queue_size": 15},
        "seed_interval_seconds": 30,
    }
    assert store.config() == expected
    copy = store.config()
    copy["consume"] = True
    nested = copy["virtio"]
    assert isinstance(nested, dict)
    nested["queue_size"] = 0
    assert store.config() == expected  # callers get a copy
    store = factory.reopen(store)
    assert store.config() == expected


@pytest.mark.parametrize(
    "values", [{"a": 1, "bad": {1, 2}}, {"a": 1, "bad": float("nan")}, {1: "x"}, ["a"]]
)
def test_config_rejects_what_json_cannot_hold(store: QueueStore, values: object) -> None:
    store.update_config({"a": 0})
    with pytest.raises(ValueError, match="config"):
        store.update_config(values)  # type: ignore[arg-type]
    assert store.config() == {"a": 0}


# -- persistence ----------------------------------------------------------------------------------


def test_contents_and_counters_survive_a_reopen(factory: StoreFactory) -> None:
    store = factory.open(default_capacity=12)
    store.push("trng", [b"abcdef", b"ghijkl", b"mnopqr"], polls=2)
    store.take("trng", 4)
    store.take("trng", 2, skip=4)
    store.push("fortuna", [b"F" * 256] * 13)
    stats = {source: store.stats(source) for source in SOURCES}
    usage = {source: store.usage(source) for source in SOURCES}
    store = factory.reopen(store, default_capacity=99)
    assert {source: store.stats(source) for source in SOURCES} == stats
    assert {source: store.usage(source) for source in SOURCES} == usage
    assert queued(store) == b"efghklmnopqr"
    assert store.take("trng", 12) == b"efghklmnopqr"
    store.push("trng", [b"new"])
    assert store.take("trng", 3) == b"new"


# -- database info and health ---------------------------------------------------------------------


def test_database_info(factory: StoreFactory) -> None:
    store = factory.open()
    info = store.database()
    if factory.kind == "memory":
        assert info == DatabaseInfo(path="memory://channels", size_bytes=0, in_memory=True)
        return
    if factory.kind == "redis":  # the server's URL and the prefix; MEMORY USAGE of our keys
        assert info.path == f"{factory.redis_url} (prefix {factory.prefix})"
        assert not info.in_memory
        assert info.size_bytes > 0
        store.push("fortuna", [os.urandom(256) for _ in range(1000)])
        grown = store.database().size_bytes
        assert info.size_bytes + 1000 * 256 < grown < info.size_bytes + 4 * 1000 * 256
        return
    assert info.path == str(factory.path)
    assert not info.in_memory
    assert info.size_bytes > 0
    assert info.size_bytes % 4096 == 0
    store.push("fortuna", [os.urandom(256) for _ in range(1000)])
    grown = store.database().size_bytes
    assert grown > info.size_bytes + 1000 * 256
    assert grown < os.path.getsize(factory.path) + 4096  # pages in use, not the map size
    assert grown < 64 << 20


# -- leases ---------------------------------------------------------------------------------------


def test_two_openers_hold_a_lease_exclusively_only_where_the_store_is_shared(
    factory: StoreFactory,
) -> None:
    """Redis: two API instances on one prefix, one holder at a time. LMDB and memory are one
    process's own: every caller is granted every lease (there is nobody to share a job with)."""
    first = factory.open()
    second = factory.open() if factory.kind == "redis" else first
    assert first.shared is (factory.kind == "redis")
    assert first.lease("trng-poll http://pi-1:8081", "a", 5)
    assert second.lease("trng-poll http://pi-1:8081", "b", 5) is not first.shared
    first.release_lease("trng-poll http://pi-1:8081", "a")
    assert second.lease("trng-poll http://pi-1:8081", "b", 5)


@pytest.mark.parametrize(
    ("name", "holder", "ttl_s"),
    [("", "a", 5), ("x" * 201, "a", 5), ("job", "", 5), ("job", "a", 0.01), ("job", "a", True)],
)
def test_lease_arguments_are_checked_by_every_store(
    store: QueueStore, name: str, holder: str, ttl_s: float
) -> None:
    with pytest.raises(ValueError, match=r"lease|ttl_s"):
        store.lease(name, holder, ttl_s)


# -- close ----------------------------------------------------------------------------------------


def test_close_is_idempotent_and_final(store: QueueStore) -> None:
    store.push("trng", [b"abc"])
    store.close()
    store.close()
    assert not store.healthy()
    calls = [
        lambda: store.push("trng", [b"x"]),
        lambda: store.take("trng", 1),
        lambda: store.take("trng", 1, consume=False, account=False),
        lambda: store.resize("trng", 10),
        lambda: store.count_poll("trng"),
        lambda: store.stats("trng"),
        lambda: store.usage("trng"),
        store.config,
        lambda: store.update_config({"a": 1}),
        store.database,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()


class _CountingLock:
    """A lock that counts the threads blocked in acquire(): the memory store's waiting callers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = 0
        self._count = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._count:
            self.waiting += 1
        try:
            return self.lock.acquire(blocking, timeout)
        finally:
            with self._count:
                self.waiting -= 1

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_close_while_writes_are_waiting(
    local_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers blocked behind a slow write either complete or see StoreClosedError.

    The six waiting takes are in the LMDB writer's queue (or blocked on the memory store's lock)
    before close() is called, and close() is waiting too before the slow write ends. On LMDB
    everything submitted before close() completes, so all seven takes succeed. (Redis callers
    never wait behind one another in the process: the server runs each take's script on its
    own; tests/test_store_redis.py pins close() for Redis.)
    """
    factory = local_factory
    gate = threading.Event()
    entered = threading.Event()
    base = factory.clock.now

    def slow_now() -> float:  # runs inside the first (accounted) take, holding up the store
        entered.set()
        assert gate.wait(10)
        return base

    store = factory.open(now=slow_now)
    lock = _CountingLock()
    if factory.kind == "memory":
        monkeypatch.setattr(store, "_lock", lock)

    def waiting() -> int:
        return lock.waiting if factory.kind == "memory" else writer_backlog(store)

    store.push("trng", [bytes([i]) * 8 for i in range(50)])
    outcomes: list[object] = []
    outcomes_lock = threading.Lock()

    def taker(account: bool) -> None:
        try:
            result: object = store.take("trng", 8, account=account)
        except StoreClosedError as exc:
            result = exc
        with outcomes_lock:
            outcomes.append(result)

    first = threading.Thread(target=taker, args=(True,))
    first.start()
    assert entered.wait(10)
    waiters = [threading.Thread(target=taker, args=(False,)) for _ in range(6)]
    for thread in waiters:
        thread.start()
    wait_until(lambda: waiting() == 6)  # all six submitted before close()
    closer = threading.Thread(target=store.close)
    closer.start()
    wait_until(lambda: waiting() == 7)  # close() is waiting too (LMDB: its stop marker)
    gate.set()
    join_threads([first, *waiters, closer], timeout=10)
    assert len(outcomes) == 7
    served = [o for o in outcomes if isinstance(o, bytes)]
    assert len(set(served)) == len(served)  # each 8-byte item handed out once at most
    assert b"\x00" * 8 in served
    if factory.kind == "lmdb":
        assert sorted(served) == [bytes([i]) * 8 for i in range(7)]
    with pytest.raises(StoreClosedError):
        store.take("trng", 1)


@pytest.mark.parametrize("chunk", [7, 10_000])
def test_resize_drops_everything_beyond_capacity_in_chunks(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(queue, "DROP_CHUNK", chunk)
    store = factory.open(default_capacity=100)
    items = [bytes([i]) * 5 for i in range(100)]
    store.push("fortuna", items)
    store.take("fortuna", 2)
    assert store.resize("fortuna", 10) == 90
    stats = store.stats("fortuna")
    assert (stats.capacity, stats.items, stats.dropped, stats.dropped_bytes) == (10, 10, 90, 448)
    assert stats.total_generated == stats.items + stats.dropped + stats.consumed
    assert queued(store, "fortuna") == b"".join(items[90:])
    store = factory.reopen(store)
    assert store.stats("fortuna") == stats


# -- open_store and resolve_db_path ---------------------------------------------------------------


def test_open_store_channel_is_in_memory() -> None:
    store = open_store("channel", None, default_capacity=10)
    try:
        assert isinstance(store, MemoryStore)
        assert store.stats("trng").capacity == 10
    finally:
        store.close()


def test_open_store_lmdb_resolves_a_directory(tmp_path: Path) -> None:
    store = open_store("lmdb", tmp_path, sync=False, default_capacity=10)
    try:
        assert isinstance(store, LmdbStore)
        assert store.database().path == str(tmp_path / "database.db")
        assert stat.S_IMODE(os.stat(tmp_path / "database.db").st_mode) == 0o600
        assert (tmp_path / "database.db-lock").exists()
    finally:
        store.close()


def test_open_store_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="path"):
        open_store("lmdb", None)
    with pytest.raises(ValueError, match="kind"):
        open_store("bolt", tmp_path)  # type: ignore[arg-type]


def test_resolve_db_path_appends_database_db_to_a_directory(tmp_path: Path) -> None:
    assert resolve_db_path(tmp_path) == tmp_path / "database.db"
    assert resolve_db_path(tmp_path / "api.db") == tmp_path / "api.db"


def test_resolve_db_path_creates_parents_0750(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "a" / "b" / "api.db"
    assert resolve_db_path(target) == target
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750 & ~umask
    assert not target.exists()  # only the directories; LMDB creates the file


def test_resolve_db_path_names_a_path_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError, match=re.escape(str(blocker))):
        resolve_db_path(blocker / "sub" / "api.db")
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        resolve_db_path(fifo)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_resolve_db_path_names_an_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreError, match="not writable"):
            resolve_db_path(locked / "api.db")
        with pytest.raises(StoreError, match=re.escape(str(locked))):
            resolve_db_path(locked / "deeper" / "api.db")
    finally:
        locked.chmod(0o700)

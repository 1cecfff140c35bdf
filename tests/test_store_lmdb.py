"""LmdbStore specifics: file layout, the writer thread (group commit, child-transaction rollback,
the only thread that touches LMDB), map growth."""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import lmdb
import pytest

from lokey.errors import NotEnoughDataError, StoreError
from lokey.store import LmdbStore, lmdb_store, queue
from lokey.store.writer import Operation, Outcome
from tests.store_helpers import join_threads, run_threads, unique_items, wait_until, writer_backlog


def test_one_file_0600_with_its_lock_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "api.db"
    store = LmdbStore(path, sync=False)
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.db", "api.db-lock"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_path_lmdb_cannot_open_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=re.escape(str(tmp_path))):
        LmdbStore(tmp_path, sync=False)  # a directory, not a file
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(StoreError, match=r"garbage\.db"):
        LmdbStore(garbage, sync=False)


def test_an_unknown_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api.db"
    LmdbStore(path, sync=False).close()
    env = lmdb.open(str(path), subdir=False, max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"lokey-store-999", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreError, match="lokey-store-999"):
        LmdbStore(path, sync=False)


class _EnvSpy:
    """Wraps an LMDB environment and notes which threads use it."""

    def __init__(self, env: object) -> None:
        self.env = env
        self.threads: set[str] = set()

    def __getattr__(self, name: str) -> object:
        self.threads.add(threading.current_thread().name)
        return getattr(self.env, name)


def test_only_the_writer_thread_touches_lmdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=64 << 10)
    spy = _EnvSpy(store._env)
    monkeypatch.setattr(store, "_env", spy)
    items = unique_items(0, 2000, size=64)

    def worker(index: int) -> None:
        store.push("fortuna", items[index * 500 : (index + 1) * 500], polls=1)
        store.take("fortuna", 100)
        store.take("fortuna", 10, skip=5, consume=False)
        store.take("fortuna", 10, consume=False, account=False)
        with pytest.raises(NotEnoughDataError):
            store.take("trng", 1)
        store.resize("trng", 20)
        store.count_poll("trng")
        store.stats("fortuna")
        store.usage("fortuna")
        store.update_config({f"k{index}": index})
        store.config()
        store.database()
        assert store.healthy()
        assert store.map_size > 0

    run_threads([threading.Thread(target=worker, args=(i,)) for i in range(4)])
    assert store.map_size > 64 << 10  # grown meanwhile
    assert spy.threads == {f"lokey-store {store.path.name}"}
    store.close()


def test_reads_from_many_threads_while_operations_fail(tmp_path: Path) -> None:
    """Failing takes abort their child transactions while four threads keep reading.

    py-lmdb 3.0.0 stalls an abort while two or more other threads are in LMDB read calls
    (tests/test_store_pylmdb_abort.py): were reads served off the writer thread, the failing
    taker here would not get past its first abort until the readers stopped, and they stop only
    when it is done. Every read must also see exactly the unchanged queue, batched or not with
    the failures.
    """
    store = LmdbStore(tmp_path / "api.db", sync=False)
    items = unique_items(0, 100)
    store.push("trng", items)
    before = store.stats("trng")
    stop = threading.Event()
    reads = [0] * 4
    batches: list[int] = []
    execute = store._writer._execute

    def recording(batch: Sequence[Operation]) -> list[Outcome]:
        batches.append(len(batch))
        return execute(batch)

    store._writer._execute = recording

    def failing_taker() -> None:
        try:
            for _ in range(300):
                with pytest.raises(NotEnoughDataError):
                    store.take("trng", 1 << 20)
        finally:
            stop.set()

    wrong: list[int] = []

    def reader(index: int) -> None:
        checks: list[Callable[[], bool]] = [
            lambda: store.stats("trng") == before,
            lambda: store.take("trng", 64, consume=False, account=False) == b"".join(items)[:64],
            lambda: store.usage("trng").requests == 0,
            lambda: store.config() == {},
            lambda: store.database().size_bytes > 0,
        ]
        checks = checks[index:] + checks[:index]  # the readers start at different calls
        while not stop.is_set():
            for number, check in enumerate(checks):
                if not check():
                    wrong.append(number)
                reads[index] += 1

    threads = [threading.Thread(target=failing_taker, daemon=True)]
    threads += [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(4)]
    run_threads(threads, timeout=15)
    assert wrong == []
    assert min(reads) > 0
    assert max(batches) > 1  # failures and reads did share batches
    assert store.stats("trng") == before
    assert store.healthy()
    store.close()


def test_group_commit_shares_commits_between_takers(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=True)
    store.push("trng", unique_items(0, 4000))
    commits = store.commits
    takes_each, threads = 20, 8

    def taker() -> None:
        for _ in range(takes_each):
            store.take("trng", 32)

    run_threads([threading.Thread(target=taker) for _ in range(threads)])
    assert store.stats("trng").consumed == takes_each * threads
    assert store.commits - commits < takes_each * threads
    store.close()


def test_a_failing_operation_leaves_no_partial_writes(tmp_path: Path) -> None:
    """The take's removal happens before ``now()`` is read; the child transaction undoes it."""
    failures = iter([True, False])

    def now() -> float:
        if next(failures, False):
            raise RuntimeError("clock failed")
        return 1_700_000_000.0

    store = LmdbStore(tmp_path / "api.db", sync=False, now=now)
    store.push("trng", [b"abcdef", b"ghij"])
    before = store.stats("trng")
    with pytest.raises(RuntimeError, match="clock failed"):
        store.take("trng", 8)
    assert store.stats("trng") == before
    assert store.take("trng", 8) == b"abcdefgh"  # the writer carries on
    store.close()


def test_failures_in_a_batch_do_not_touch_the_others(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False)
    store.push("trng", unique_items(0, 64))
    results: list[object] = []
    lock = threading.Lock()

    def taker(n: int) -> None:
        try:
            got: object = store.take("trng", n)
        except NotEnoughDataError as exc:
            got = exc
        with lock:
            results.append(got)

    run_threads([threading.Thread(target=taker, args=(n,)) for n in [32, 10_000] * 8])
    served = [r for r in results if isinstance(r, bytes)]
    assert len(served) == 8
    assert len(set(served)) == 8
    assert store.stats("trng").consumed_bytes == 8 * 32
    store.close()


def test_the_map_grows_instead_of_filling(tmp_path: Path) -> None:
    path = tmp_path / "api.db"
    store = LmdbStore(path, sync=False, map_size=256 << 10)
    start = store.map_size
    items = unique_items(0, 16_384, size=256)  # 4 MiB
    for first in range(0, len(items), 2048):
        store.push("fortuna", items[first : first + 2048])
    assert store.stats("fortuna").items == len(items)
    assert store.map_size >= 4 << 20 > start
    assert store.take("fortuna", 512, skip=256 * 10_000) == b"".join(items[10_000:10_002])
    store.close()
    store = LmdbStore(path, sync=False, map_size=256 << 10)
    assert store.stats("fortuna").items == len(items) - 2
    assert store.take("fortuna", 256) == items[0]
    store.close()


def test_batches_rerun_after_growth_serve_each_byte_once(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=128 << 10)
    items = unique_items(0, 4096, size=64)
    store.push("trng", items[:256])
    served: list[bytes] = []
    lock = threading.Lock()
    done = threading.Event()

    def pusher() -> None:
        for first in range(256, len(items), 128):
            store.push("trng", items[first : first + 128])
        done.set()

    def taker() -> None:
        while True:
            try:
                chunk = store.take("trng", 100)
            except NotEnoughDataError:
                if done.is_set():
                    return
                continue
            with lock:
                served.append(chunk)

    run_threads(
        [threading.Thread(target=pusher), *(threading.Thread(target=taker) for _ in range(4))]
    )
    stream = b"".join(items)
    rest = store.take("trng", 1 << 30, partial=True)
    assert b"".join(sorted(served, key=stream.find)) + rest == stream
    store.close()


def test_a_full_map_at_the_limit_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lmdb_store, "MAX_MAP_SIZE", 512 << 10)
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=256 << 10)
    with pytest.raises(StoreError, match="full"):
        store.push("fortuna", unique_items(0, 4096, size=256))
    assert store.stats("fortuna").items == 0
    store.push("fortuna", [b"still works"])
    assert store.take("fortuna", 11) == b"still works"
    store.close()


def test_reads_run_while_the_map_grows(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=64 << 10)
    items = unique_items(0, 8192, size=128)
    done = threading.Event()
    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            for first in range(0, len(items), 256):
                store.push("fortuna", items[first : first + 256])
        finally:
            done.set()

    def reader() -> None:
        try:
            while not done.is_set():
                stats = store.stats("fortuna")
                head = store.take("fortuna", 128, partial=True, consume=False, account=False)
                assert head in (b"", items[0])
                assert stats.bytes == stats.items * 128
                store.database()
        except BaseException as exc:
            errors.append(exc)

    run_threads(
        [threading.Thread(target=pusher), *(threading.Thread(target=reader) for _ in range(3))]
    )
    assert errors == []
    assert store.stats("fortuna").items == len(items)
    assert store.map_size > 64 << 10
    store.close()


def test_close_while_reading_and_writing(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False)
    store.push("trng", unique_items(0, 2000))
    started = threading.Barrier(5)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        started.wait()
        outcome = "done"
        try:
            for _ in range(200):
                if index % 2:
                    store.take("trng", 32)
                else:
                    store.stats("trng")
        except StoreError as exc:  # StoreClosedError, once close() has run
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    store.close()
    join_threads(threads, timeout=10)
    assert set(outcomes) <= {"done", "StoreClosedError"}
    assert len(outcomes) == 4


# -- fsyncs, map growth, bounded drops, damaged files -------------------------------------------


def last_txnid(store: LmdbStore) -> int:
    return store._submit(lambda _: int(store._env.info()["last_txnid"]))


def test_reads_and_plain_peeks_commit_nothing(tmp_path: Path) -> None:
    """With sync=True a commit that writes costs an fsync; these write nothing at all."""
    store = LmdbStore(tmp_path / "api.db", sync=True)
    store.push("trng", unique_items(0, 100))
    store.take("trng", 40)
    commits, txnid = store.commits, last_txnid(store)
    for _ in range(3):
        store.take("trng", 64, consume=False, account=False)
        store.take("trng", 64, skip=100, consume=False, account=False)
        store.take("trng", 1 << 20, partial=True, consume=False, account=False)
        store.take("trng", 5, skip=1 << 20, partial=True)  # empty: nothing to account
        with pytest.raises(NotEnoughDataError):
            store.take("trng", 1 << 20)
        store.stats("trng")
        store.usage("trng")
        store.config()
        store.database()
        assert store.healthy()
        assert store.map_size > 0
    assert last_txnid(store) == txnid  # LMDB wrote no transaction: no page, no fsync
    assert store.commits == commits
    store.take("trng", 8, consume=False)  # an accounted peek records its usage
    assert (store.commits, last_txnid(store)) == (commits + 1, txnid + 1)
    store.close()


class _FailingResize:
    """An environment whose set_mapsize fails as LMDB's does when the new map cannot be made."""

    def __init__(self, env: object) -> None:
        self.env = env

    def set_mapsize(self, size: int) -> None:
        raise lmdb.Error("mdb_env_set_mapsize: Cannot allocate memory")

    def __getattr__(self, name: str) -> object:
        return getattr(self.env, name)


def test_a_failed_map_growth_breaks_the_store_with_store_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=64 << 10)
    store.push("trng", [b"small"])
    monkeypatch.setattr(store, "_env", _FailingResize(store._env))
    with pytest.raises(StoreError, match="unusable") as caught:
        store.push("fortuna", unique_items(0, 2048, size=256))  # 512 kB: the map must grow
    assert isinstance(caught.value.__cause__, lmdb.Error)
    assert not store.healthy()
    for call in (lambda: store.stats("trng"), lambda: store.take("trng", 1)):
        with pytest.raises(StoreError, match="unusable"):
            call()
    monkeypatch.undo()
    store.close()
    store = LmdbStore(tmp_path / "api.db", sync=False)  # reopening is the way back
    assert store.take("trng", 5) == b"small"
    assert store.stats("fortuna").items == 0
    store.close()


def test_a_map_too_small_for_the_layout_grows_at_open(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=8192)
    assert store.map_size > 8192
    store.push("trng", [b"abc"])
    assert store.take("trng", 3) == b"abc"
    store.close()


def test_at_the_map_limit_only_the_operation_that_does_not_fit_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lmdb_store, "MAX_MAP_SIZE", 512 << 10)
    gate = threading.Event()
    entered = threading.Event()

    def slow_now() -> float:  # the first accounted take holds the writer until the rest queue
        entered.set()
        assert gate.wait(10)
        return 1_700_000_000.0

    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=256 << 10, now=slow_now)
    store.push("trng", [b"abcdef"])
    outcomes: dict[str, object] = {}

    def call(name: str, operation: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                outcomes[name] = operation()
            except StoreError as exc:
                outcomes[name] = exc

        thread = threading.Thread(target=run, name=name)
        thread.start()
        return thread

    threads = [call("held", lambda: store.take("trng", 1))]
    assert entered.wait(10)
    big = unique_items(0, 4096, size=256)  # 1 MiB: cannot fit in 512 kB
    threads += [
        call("big1", lambda: store.push("fortuna", big)),
        call("small", lambda: store.push("fortuna", [b"fits"])),
        call("big2", lambda: store.push("fortuna", big)),
        call("take", lambda: store.take("trng", 2, account=False)),
    ]
    wait_until(lambda: writer_backlog(store) == 4)  # one batch after the held one
    gate.set()
    join_threads(threads, timeout=20)
    assert outcomes["held"] == b"a"
    assert outcomes["small"] == 0
    assert outcomes["take"] == b"bc"
    for name in ("big1", "big2"):
        assert isinstance(outcomes[name], StoreError)
        assert "full" in str(outcomes[name])
    assert outcomes["big1"] is not outcomes["big2"]
    assert store.stats("fortuna").items == 1
    assert store.take("fortuna", 4) == b"fits"
    store.close()


def test_usage_is_counted_once_when_a_take_is_rerun_after_growth(tmp_path: Path) -> None:
    """The take's operation hits MDB_MAP_FULL after it consumed (here: its clock raises it);
    the batch is aborted, the map grown and the take run again: consumed and accounted once."""
    calls = []

    def now() -> float:
        calls.append(1)
        if len(calls) == 1:
            raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL")
        return 1_700_000_000.0

    store = LmdbStore(tmp_path / "api.db", sync=False, now=now)
    store.push("trng", [b"abcdefgh"])
    size = store.map_size
    assert store.take("trng", 3) == b"abc"
    assert len(calls) == 2
    assert store.map_size == 2 * size
    usage, stats = store.usage("trng"), store.stats("trng")
    assert (usage.bytes, usage.requests) == (3, 1)
    assert (stats.consumed_bytes, stats.bytes) == (3, 5)
    assert store.take("trng", 5) == b"defgh"
    store.close()


def test_usage_matches_consumption_under_map_growth(tmp_path: Path) -> None:
    """The reviewer's growusage.py: takes and pushes racing while a tiny map keeps growing."""
    store = LmdbStore(tmp_path / "api.db", sync=False, map_size=64 << 10)
    done = threading.Event()
    items = unique_items(0, 6000, size=200)

    def pusher() -> None:
        for first in range(0, len(items), 100):
            store.push("fortuna", items[first : first + 100])
        done.set()

    taken = [0] * 4

    def taker(index: int) -> None:
        while True:
            try:
                store.take("fortuna", 300)
            except NotEnoughDataError:
                if done.is_set():
                    return
                continue
            taken[index] += 1

    run_threads(
        [
            threading.Thread(target=pusher),
            *(threading.Thread(target=taker, args=(i,)) for i in range(4)),
        ]
    )
    assert store.map_size > 64 << 10
    usage, stats = store.usage("fortuna"), store.stats("fortuna")
    assert usage.requests == sum(taken)
    assert usage.bytes == stats.consumed_bytes == 300 * sum(taken)
    store.close()


def test_a_large_resize_runs_in_chunks_each_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "DROP_CHUNK", 100)
    drops: list[int] = []
    drop_head = queue._drop_head

    def recording(meta: queue.QueueMeta, table: queue.Table, count: int) -> None:
        drops.append(count)
        drop_head(meta, table, count)

    monkeypatch.setattr(queue, "_drop_head", recording)
    store = LmdbStore(tmp_path / "api.db", sync=False)
    items = unique_items(0, 1050, size=16)
    store.push("fortuna", items)
    store.take("fortuna", 3)
    commits = store.commits
    assert store.resize("fortuna", 150) == 900
    assert drops == [100] * 9
    assert store.commits - commits == 9
    stats = store.stats("fortuna")
    assert (stats.capacity, stats.items, stats.dropped, stats.dropped_bytes) == (
        150,
        150,
        900,
        900 * 16 - 3,
    )
    assert store.resize("fortuna", 10) == 140  # at most DROP_CHUNK stay: one call
    assert drops == [100] * 9 + [140]
    assert store.commits - commits == 10
    stats = store.stats("fortuna")
    assert (stats.items, stats.bytes, stats.dropped, stats.dropped_bytes) == (
        10,
        160,
        1040,
        1040 * 16 - 3,
    )
    assert store.take("fortuna", 160) == b"".join(items[-10:])
    after = store.stats("fortuna")
    store.close()
    store = LmdbStore(tmp_path / "api.db", sync=False)
    assert store.stats("fortuna") == after
    store.close()


def test_emptying_a_large_queue_reads_only_what_stays(tmp_path: Path) -> None:
    """The reviewer's resize.py, shrunk: keeping ten items reads and rewrites those ten; the
    dropped items' pages are freed without being read."""
    store = LmdbStore(tmp_path / "api.db", sync=False)
    items = unique_items(0, 50_000, size=64)
    for first in range(0, len(items), 10_000):
        store.push("trng", items[first : first + 10_000])
    size = store.database().size_bytes
    commits = store.commits
    assert store.resize("trng", 10) == 49_990
    assert store.commits - commits == 1
    assert store.database().size_bytes < size // 20
    assert store.take("trng", 640) == b"".join(items[-10:])
    store.push("trng", [b"after"])
    assert store.take("trng", 5) == b"after"
    stats = store.stats("trng")
    assert stats.dropped_bytes == 49_990 * 64
    assert stats.generated_bytes == stats.bytes + stats.dropped_bytes + stats.consumed_bytes
    store.close()


def test_other_callers_run_between_the_chunks_of_a_resize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "DROP_CHUNK", 50)
    store = LmdbStore(tmp_path / "api.db", sync=False)
    store.push("fortuna", unique_items(0, 2000, size=16))
    seen: list[int] = []
    trim = queue.trim

    def trim_and_peek(meta: queue.QueueMeta, table: queue.Table) -> int:
        if len(seen) == 3:  # a caller submits while the resize is half-way
            thread = threading.Thread(target=lambda: seen.append(store.stats("fortuna").items))
            thread.start()
            wait_until(lambda: writer_backlog(store) == 1)
        seen.append(-1)
        return trim(meta, table)

    monkeypatch.setattr(queue, "trim", trim_and_peek)
    assert store.resize("fortuna", 100) == 1900  # in 38 calls of 50
    stats_seen = [items for items in seen if items >= 0]
    assert len(stats_seen) == 1
    assert 100 < stats_seen[0] < 2000  # it ran between two chunks, not after the resize
    store.close()


def test_a_damaged_queue_is_a_store_error_and_leaves_the_rest_working(tmp_path: Path) -> None:
    path = tmp_path / "api.db"
    store = LmdbStore(path, sync=False, default_capacity=100)
    store.push("trng", [bytes([i]) * 4 for i in range(10)])
    store.push("fortuna", [b"fine"])
    store.close()
    env = lmdb.open(str(path), subdir=False, max_dbs=8)
    with env.begin(write=True) as txn:  # lose the last two items behind the store's back
        db = env.open_db(b"queue.trng", txn=txn)
        for item_id in (8, 9):
            assert txn.delete(item_id.to_bytes(8, "big"), db=db)
    env.close()
    store = LmdbStore(path, sync=False, default_capacity=100)
    before = store.stats("trng")
    for call in (
        lambda: store.take("trng", 40),
        lambda: store.take("trng", 10, skip=30),
        lambda: store.take("trng", 39, skip=1, consume=False),
        lambda: store.push("trng", [b"new"] * 99),  # drops nine of the eight old items
    ):
        with pytest.raises(StoreError, match="disagree"):
            call()
    assert store.stats("trng") == before
    assert store.take("trng", 8) == b"\x00" * 4 + b"\x01" * 4
    assert store.take("fortuna", 4) == b"fine"
    store.close()

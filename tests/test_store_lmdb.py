"""LmdbStore specifics: file layout, the writer thread (group commit, child-transaction rollback,
the only thread that touches LMDB), map growth."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import lmdb
import pytest

from lokey.errors import NotEnoughDataError, StoreError
from lokey.store import LmdbStore, lmdb_store
from tests.store_helpers import run_threads, unique_items


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
    """Failing takes abort their child transactions while other threads read.

    py-lmdb 3.0.0 deadlocks if a write transaction is aborted while another thread is inside a
    read call; the store keeps every LMDB call on its writer thread, so this must finish.
    """
    store = LmdbStore(tmp_path / "api.db", sync=False)
    store.push("trng", unique_items(0, 100))
    stop = threading.Event()

    def failing_taker() -> None:
        try:
            for _ in range(2000):  # a few hundred ms here; minutes with readers off-thread
                with pytest.raises(NotEnoughDataError):
                    store.take("trng", 1 << 20)
        finally:
            stop.set()

    def reader(index: int) -> None:
        reads = [
            lambda: store.stats("trng"),
            lambda: store.take("trng", 64, consume=False, account=False),
            lambda: store.usage("trng"),
            store.config,
            store.database,
        ]
        while not stop.is_set():
            for read in reads[index:] + reads[:index]:
                read()

    threads = [threading.Thread(target=failing_taker, daemon=True)]
    threads += [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(4)]
    run_threads(threads, timeout=15)
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
    run_threads([], timeout=0)
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert set(outcomes) <= {"done", "StoreClosedError"}
    assert len(outcomes) == 4

"""Why the LMDB store keeps every LMDB call on its writer thread: a py-lmdb 3.0.0 behaviour.

A write transaction's ``abort()`` does not return while two or more other threads keep entering
LMDB read calls; it returns once they pause. Commits are not affected. The store aborts a child
transaction for every failing operation (a take of more than the queue holds, for one), so with
readers on other threads a busy API would stall its writer for as long as the reads kept coming.

Measured on py-lmdb 3.0.0 / LMDB 0.9.36 / CPython 3.11.7: without readers 20 abort cycles take
0.2-5 ms; with three readers they had not finished after one second in 15 runs of 16 (0.66 s in
the other), also with a CPU hog beside them; 20 commit cycles with the same readers took
5-160 ms. This test pins that behaviour: if it ever fails, py-lmdb no longer stalls aborts, and
reads could leave the writer thread (see the lokey.store.lmdb_store docstring).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import lmdb

CYCLES = 20
READERS = 3


def write_cycles(env: lmdb.Environment, db: lmdb._Database, abort: bool) -> None:
    """Parent write transactions with one child each, the child aborted or committed."""
    for _ in range(CYCLES):
        with env.begin(write=True) as txn:
            child = env.begin(write=True, parent=txn)
            child.put(b"key", b"value", db=db)
            if abort:
                child.abort()
            else:
                child.commit()


def timed(
    env: lmdb.Environment, db: lmdb._Database, abort: bool, wait: float
) -> tuple[float, threading.Thread]:
    thread = threading.Thread(target=write_cycles, args=(env, db, abort), daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(wait)
    return time.perf_counter() - start, thread


def test_an_abort_stalls_while_other_threads_read(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "x.db"), subdir=False, max_dbs=2, map_size=1 << 24)
    db = env.open_db(b"q")
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with env.begin() as txn:
                txn.get(b"key", db=db)

    readers = [threading.Thread(target=reader, daemon=True) for _ in range(READERS)]
    for thread in readers:
        thread.start()
    try:
        committed, commits = timed(env, db, abort=False, wait=10)
        assert not commits.is_alive(), "commits stalled too: not the behaviour pinned here"
        aborted, aborts = timed(env, db, abort=True, wait=1.0)
        stalled = aborts.is_alive() or aborted > 0.3
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    aborts.join(10)
    assert not aborts.is_alive(), "the aborts never finished, even with the readers gone"
    env.close()
    assert stalled, (
        f"{CYCLES} aborts took {aborted * 1e3:.1f} ms beside {READERS} readers"
        f" ({CYCLES} commits: {committed * 1e3:.1f} ms): py-lmdb no longer stalls aborts"
    )

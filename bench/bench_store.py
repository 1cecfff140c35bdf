"""API queue store: the consume path of LmdbStore against a raw py-lmdb loop, same sync setting.

Workload (Fortuna-like): 256-byte items; four consumer threads each repeatedly
``take("fortuna", 100_000)`` (consuming) while one producer thread pushes a batch of 391
items (100,096 bytes) after every take, so the queue stays filled. The figure is bytes consumed
per second. The limit, measured in the same run on the same file system (a temporary
directory): one thread, one write transaction per 100,000-byte request that deletes the 391 head
items and appends 391 new 256-byte items (``putmulti``, append), committed with the same
``sync`` flag. Target (issue 8): ratio at least 0.5, for ``sync=True`` and for ``sync=False``.
For reference the same loop is also run reading (joining) the bytes it deletes, as any consume
must; that figure is printed but not judged.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import lmdb

from lokey.store import LmdbStore

TARGET_RATIO = 0.5
ITEM_BYTES = 256  # one Fortuna poll (service-api.md §1.9)
REQUEST_BYTES = 100_000  # POST /api/v1/data's largest binary limit (§1.2)
ITEMS_PER_REQUEST = -(-REQUEST_BYTES // ITEM_BYTES)  # 391
CONSUMERS = 4
PREFILL_REQUESTS = 64  # ~6.4 MB queued before timing starts
MAP_SIZE = 1 << 30
SECONDS = 0.7


@dataclass(frozen=True)
class Result:
    nbytes: int
    seconds: float
    commits: int = 0
    requests: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def make_batch() -> list[bytes]:
    return [os.urandom(ITEM_BYTES) for _ in range(ITEMS_PER_REQUEST)]


def store_run(directory: Path, sync: bool, seconds: float = SECONDS) -> Result:
    path = Path(tempfile.mkdtemp(dir=directory)) / "store.db"
    store = LmdbStore(path, sync=sync, map_size=MAP_SIZE)
    batch = make_batch()
    for _ in range(PREFILL_REQUESTS):
        store.push("fortuna", batch)
    refill = threading.Semaphore(0)
    stop = threading.Event()
    taken = [0] * CONSUMERS

    def consume(index: int) -> None:
        while not stop.is_set():
            taken[index] += len(store.take("fortuna", REQUEST_BYTES))
            refill.release()

    def produce() -> None:
        while True:
            refill.acquire()
            if stop.is_set():
                return
            owed = 1  # one batch per finished take, all owed batches in one push
            while refill.acquire(blocking=False):
                owed += 1
            store.push("fortuna", batch * owed)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(CONSUMERS)]
    producer = threading.Thread(target=produce)
    producer.start()
    commits_before = store.commits
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    refill.release()
    producer.join()
    commits = store.commits - commits_before
    store.close()
    total = sum(taken)
    return Result(total, elapsed, commits, total // REQUEST_BYTES)


def raw_run(directory: Path, sync: bool, read: bool = False, seconds: float = SECONDS) -> Result:
    """The limit; with ``read`` it also reads (joins) the bytes it deletes, as a take must."""
    path = Path(tempfile.mkdtemp(dir=directory)) / "raw.db"
    env = lmdb.open(str(path), subdir=False, map_size=MAP_SIZE, max_dbs=2, sync=sync)
    db = env.open_db(b"fortuna")
    batch = make_batch()
    next_id = 0

    def append(txn: lmdb.Transaction) -> None:
        nonlocal next_id
        keys = (i.to_bytes(8, "big") for i in range(next_id, next_id + len(batch)))
        txn.cursor(db=db).putmulti(zip(keys, batch, strict=True), append=True)
        next_id += len(batch)

    with env.begin(write=True) as txn:
        for _ in range(PREFILL_REQUESTS):
            append(txn)
    requests = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        with env.begin(write=True) as txn:
            cursor = txn.cursor(db=db)
            if read:
                data = b"".join(islice(cursor.iternext(keys=False), ITEMS_PER_REQUEST))
                assert len(data) >= REQUEST_BYTES
            cursor.first()
            for _ in range(ITEMS_PER_REQUEST):
                cursor.delete()
            append(txn)
        requests += 1
    elapsed = time.perf_counter() - start
    env.close()
    return Result(requests * REQUEST_BYTES, elapsed, requests, requests)


def best(results: list[Result]) -> Result:
    return max(results, key=lambda r: r.mb_per_s)


def main(rounds: int = 3) -> bool:
    ok = True
    print(
        f"queue store: {CONSUMERS} threads take({REQUEST_BYTES:,}) from {ITEM_BYTES}-byte items,"
        " one producer refilling; raw: one py-lmdb write txn per request"
    )
    with tempfile.TemporaryDirectory(prefix="lokey-bench-store-") as tmp:
        directory = Path(tmp)
        for sync in (True, False):
            # fsync latency on shared disks drifts by 10x within seconds: interleave the runs
            # and keep each one's best, so a slow patch does not land on one side only
            runs: list[tuple[Result, Result, Result]] = [
                (
                    raw_run(directory, sync),
                    raw_run(directory, sync, read=True),
                    store_run(directory, sync),
                )
                for _ in range(rounds)
            ]
            raw, raw_read, store = (best(list(column)) for column in zip(*runs, strict=True))
            ratio = store.mb_per_s / raw.mb_per_s
            ok = ok and ratio >= TARGET_RATIO
            verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
            per_commit = store.requests / store.commits if store.commits else 0.0
            print(f"  sync={sync}")
            print(f"    raw loop: delete + put           {raw.mb_per_s:>8,.1f} MB/s")
            print(
                f"    raw loop: read + delete + put    {raw_read.mb_per_s:>8,.1f} MB/s"
                " (reference only)"
            )
            print(
                f"    LmdbStore.take, 4 threads        {store.mb_per_s:>8,.1f} MB/s"
                f" ({store.commits:,} commits, {per_commit:.1f} takes per commit)"
            )
            print(
                f"    ratio to delete + put            {ratio:>8.2f}"
                f" ({verdict} the {TARGET_RATIO} target;"
                f" {store.mb_per_s / raw_read.mb_per_s:.2f} to read + delete + put)"
            )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

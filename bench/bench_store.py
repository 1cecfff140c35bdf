"""API queue store: the consume path of LmdbStore against a raw py-lmdb loop, like for like.

Workload (Fortuna-like): 256-byte items; four consumer threads each repeatedly
``take("fortuna", 100_000)`` (consuming) while one producer thread pushes a batch of 391
items (100,096 bytes) after every take, so the queue stays filled (a consumer waits rather than
take more than has been pushed). The figure is bytes consumed per second.

The limit, measured in the same run on the same file system (a temporary directory): one
thread, write transactions that each serve ``k`` requests, deleting 391 head items and
appending 391 new 256-byte items (``putmulti``, append) per request, committed with the same
``sync`` flag. ``k`` is the requests per commit the store itself achieved in the run just
before (group commit shares one commit, one fsync with ``sync=True``, between the takes and
pushes of a batch), so both sides pay the same number of commits per request; both are
printed. Target (API issue): ratio at least 0.5, for ``sync=True`` and for ``sync=False``. For
reference the same loop is also run reading (joining) the bytes it deletes, as any consume
must; that figure is printed but not judged.

Each measurement runs :data:`SECONDS`; each figure is the median of :data:`ROUNDS` runs, the
three kinds interleaved so that a slow patch of the disk does not land on one side only. A
consumer or producer thread that fails stops the benchmark with its error: a figure from fewer
threads than claimed would be meaningless.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import lmdb

from bench._report import Direction, Figure, Target, all_met
from lokey.store import LmdbStore

NAME = "bench_store"
TARGET_RATIO = 0.5
ITEM_BYTES = 256  # one Fortuna poll (service-api.md §1.9)
REQUEST_BYTES = 100_000  # POST /api/v1/data's largest binary limit (§1.2)
ITEMS_PER_REQUEST = -(-REQUEST_BYTES // ITEM_BYTES)  # 391
CONSUMERS = 4
PREFILL_REQUESTS = 64  # ~6.4 MB queued before timing starts
MAP_SIZE = 1 << 30
SECONDS = 2.0
ROUNDS = 3


@dataclass(frozen=True)
class Result:
    nbytes: int
    seconds: float
    commits: int
    requests: int

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6

    @property
    def commits_per_request(self) -> float:
        return self.commits / self.requests if self.requests else float("nan")


class WorkerFailedError(RuntimeError):
    """A benchmark thread died: the run's figure would not mean what it says."""


def make_batch() -> list[bytes]:
    return [os.urandom(ITEM_BYTES) for _ in range(ITEMS_PER_REQUEST)]


def store_run(directory: Path, sync: bool, seconds: float = SECONDS) -> Result:
    path = Path(tempfile.mkdtemp(dir=directory)) / "store.db"
    store = LmdbStore(path, sync=sync, map_size=MAP_SIZE)
    batch = make_batch()
    for _ in range(PREFILL_REQUESTS):
        store.push("fortuna", batch)
    refill = threading.Semaphore(0)  # one per finished take: a batch the producer owes
    # One per request's worth of bytes queued: a consumer takes only what is there, so a
    # producer that falls behind for a moment slows the consumers instead of starving them.
    credits = threading.Semaphore(PREFILL_REQUESTS)
    stop = threading.Event()
    taken = [0] * CONSUMERS
    failures: list[tuple[str, BaseException]] = []

    def guarded(name: str, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:
            failures.append((name, exc))
            stop.set()
            refill.release()

    def consume(index: int) -> None:
        while not stop.is_set():
            if not credits.acquire(timeout=0.05):
                continue
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
            credits.release(owed)

    threads = [
        threading.Thread(target=guarded, args=(f"consumer {i}", partial(consume, i)))
        for i in range(CONSUMERS)
    ]
    producer = threading.Thread(target=guarded, args=("producer", produce))
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
    if failures:
        name, exc = failures[0]
        raise WorkerFailedError(f"the store benchmark's {name} failed: {exc!r}") from exc
    total = sum(taken)
    return Result(total, elapsed, commits, total // REQUEST_BYTES)


def raw_run(
    directory: Path, sync: bool, per_commit: int = 1, read: bool = False, seconds: float = SECONDS
) -> Result:
    """The limit: ``per_commit`` requests per write transaction; with ``read`` it also reads
    (joins) the bytes it deletes, as a take must."""
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
    requests = commits = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        with env.begin(write=True) as txn:
            for _ in range(per_commit):
                cursor = txn.cursor(db=db)
                if read:
                    data = b"".join(islice(cursor.iternext(keys=False), ITEMS_PER_REQUEST))
                    assert len(data) >= REQUEST_BYTES
                cursor.first()
                for _ in range(ITEMS_PER_REQUEST):
                    cursor.delete()
                append(txn)
        requests += per_commit
        commits += 1
    elapsed = time.perf_counter() - start
    env.close()
    return Result(requests * REQUEST_BYTES, elapsed, commits, requests)


def median(results: list[Result]) -> Result:
    """The run with the median throughput (an actual run, so its commit counts go with it)."""
    ordered = sorted(results, key=lambda r: r.mb_per_s)
    return ordered[len(ordered) // 2]


def measure(rounds: int = ROUNDS, seconds: float = SECONDS) -> list[Figure]:
    figures: list[Figure] = []
    print(
        f"queue store: {CONSUMERS} threads take({REQUEST_BYTES:,}) from {ITEM_BYTES}-byte items,"
        f" one producer refilling; raw: one py-lmdb thread, as many requests per commit as the"
        f" store achieved; {seconds:g} s per run, median of {rounds}"
    )
    with tempfile.TemporaryDirectory(prefix="lokey-bench-store-") as tmp:
        directory = Path(tmp)
        for sync in (True, False):
            stores: list[Result] = []
            raws: list[Result] = []
            raw_reads: list[Result] = []
            ratios: list[float] = []
            for _ in range(rounds):
                store = store_run(directory, sync, seconds)
                per_commit = max(1, round(store.requests / max(store.commits, 1)))
                raw = raw_run(directory, sync, per_commit, seconds=seconds)
                raw_read = raw_run(directory, sync, per_commit, read=True, seconds=seconds)
                stores.append(store)
                raws.append(raw)
                raw_reads.append(raw_read)
                ratios.append(store.mb_per_s / raw.mb_per_s)
            store, raw, raw_read = median(stores), median(raws), median(raw_reads)
            ratio = statistics.median(ratios)
            verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
            print(f"  sync={sync}")
            print(
                f"    raw loop: delete + put           {raw.mb_per_s:>8,.1f} MB/s"
                f" ({raw.commits_per_request:.2f} commits per request)"
            )
            print(
                f"    raw loop: read + delete + put    {raw_read.mb_per_s:>8,.1f} MB/s"
                f" ({raw_read.commits_per_request:.2f} commits per request; reference only)"
            )
            print(
                f"    LmdbStore.take, {CONSUMERS} threads        {store.mb_per_s:>8,.1f} MB/s"
                f" ({store.commits_per_request:.2f} commits per request,"
                f" {store.commits:,} commits)"
            )
            print(
                f"    ratio to delete + put            {ratio:>8.2f}"
                f" (median of {', '.join(f'{r:.2f}' for r in ratios)};"
                f" {verdict} the {TARGET_RATIO} target;"
                f" {store.mb_per_s / raw_read.mb_per_s:.2f} to read + delete + put)"
            )
            figures += [
                # judged on the median of the per-round ratios (each round's store and raw loop
                # ran back to back), not on the ratio of the two medians printed beside it
                Figure(
                    NAME,
                    f"take, {CONSUMERS} threads, sync={sync}",
                    store.mb_per_s,
                    "MB/s",
                    limit=raw.mb_per_s,
                    limit_what="raw LMDB delete + put",
                    target=Target(TARGET_RATIO, Direction.AT_LEAST, on_ratio=True),
                    ratio=ratio,
                ),
                Figure(
                    NAME,
                    f"take, {CONSUMERS} threads, sync={sync}, vs read",
                    store.mb_per_s,
                    "MB/s",
                    limit=raw_read.mb_per_s,
                    limit_what="raw LMDB read + delete + put",
                ),
            ]
    return figures


def main(rounds: int = ROUNDS, seconds: float = SECONDS) -> bool:
    return all_met(measure(rounds, seconds))


def run(quick: bool = False) -> list[Figure]:
    return measure(rounds=1, seconds=0.5) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

"""Shared pieces for the queue store tests: a settable clock, store factories, unique items,
and the child process of the crash test (``python -c "from tests.store_helpers import ..."``).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from lokey.store import LmdbStore, MemoryStore, QueueStore
from lokey.store.redis_store import RedisStore
from tests.redis_helpers import new_prefix, redis_url

Kind = Literal["memory", "lmdb", "redis"]
KINDS: tuple[Kind, ...] = ("memory", "lmdb", "redis")
# The stores that live in this process (no server): for tests of in-process waiting.
LOCAL_KINDS: tuple[Kind, ...] = ("memory", "lmdb")


class FakeClock:
    """Unix time that only moves when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StoreFactory:
    """Opens stores of one kind on one path (Redis: one key prefix on this process's test
    server) and closes them all at teardown."""

    def __init__(self, kind: Kind, directory: Path, clock: FakeClock | None = None) -> None:
        self.kind = kind
        self.path = directory / "queue.db"
        self.clock = clock if clock is not None else FakeClock()
        self._opened: list[QueueStore] = []
        if kind == "redis":
            self.redis_url = redis_url()  # skips (or fails) here without a redis-server
            self.prefix = new_prefix()

    @property
    def persistent(self) -> bool:
        """Reopening keeps the data: LMDB's file, or Redis keys under the same prefix."""
        return self.kind in ("lmdb", "redis")

    def open(
        self,
        default_capacity: int = 1000,
        *,
        sync: bool = False,
        now: Callable[[], float] | None = None,
    ) -> QueueStore:
        clock = self.clock if now is None else now
        store: QueueStore
        if self.kind == "memory":
            store = MemoryStore(default_capacity=default_capacity, now=clock)
        elif self.kind == "redis":
            store = RedisStore(
                self.redis_url, prefix=self.prefix, default_capacity=default_capacity, now=clock
            )
        else:
            store = LmdbStore(self.path, sync=sync, default_capacity=default_capacity, now=clock)
        self._opened.append(store)
        return store

    def reopen(self, store: QueueStore, default_capacity: int = 1000) -> QueueStore:
        """A persistent store closed and opened again; the memory store is kept as it is."""
        if not self.persistent:
            return store
        store.close()
        return self.open(default_capacity)

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


def unique_item(index: int, size: int = 32) -> bytes:
    """Item ``index`` of a stream in which no 16-byte window repeats (SHA-256 output)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(index.to_bytes(8, "big") + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:size]


def unique_items(start: int, count: int, size: int = 32) -> list[bytes]:
    return [unique_item(i, size) for i in range(start, start + count)]


def run_threads(targets: list[threading.Thread], timeout: float = 30.0) -> None:
    for thread in targets:
        thread.start()
    join_threads(targets, timeout)


def join_threads(threads: list[threading.Thread], timeout: float = 30.0) -> None:
    """Join threads already started, failing if any is alive ``timeout`` seconds from now."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
        assert not thread.is_alive(), f"{thread.name} did not finish"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` every millisecond; fail if it is not true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.001)


def writer_backlog(store: QueueStore) -> int:
    """Operations waiting in an LmdbStore's writer queue (not the one it is running)."""
    assert isinstance(store, LmdbStore)
    return store._writer._queue.qsize()


def windows(data: bytes, width: int = 16) -> Iterator[bytes]:
    for start in range(len(data) - width + 1):
        yield data[start : start + width]


def crash_child(path: str, sync: bool, seed: int, threads: int = 2) -> None:
    """Consume forever from ``path``'s trng queue; print each chunk (hex) after take() returned.

    The parent kills this process with SIGKILL at a moment of its choosing; a line on stdout is
    a promise that those bytes left the store, so no line may ever repeat a byte.
    """
    import random

    from lokey.errors import NotEnoughDataError

    store = LmdbStore(Path(path), sync=sync, default_capacity=1_000_000)
    out_lock = threading.Lock()

    def consume(worker: int) -> None:
        rng = random.Random(seed * 1000 + worker)
        while True:
            try:
                chunk = store.take("trng", rng.randint(16, 200))
            except NotEnoughDataError:
                return
            with out_lock:
                sys.stdout.write(chunk.hex() + "\n")
                sys.stdout.flush()

    workers = [threading.Thread(target=consume, args=(i,)) for i in range(threads)]
    with out_lock:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()

"""No byte twice under concurrency (design.md "No byte twice"), for every store (Redis: one
store object shared by the threads; tests/test_store_redis.py adds two on one prefix).

Items are SHA-256 output, so every 16-byte window of the pushed stream is unique: a chunk's
place in the stream is found by searching for it, and a repeated window means a byte was
served twice.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from lokey.errors import NotEnoughDataError
from lokey.store import QueueStore
from tests.store_helpers import KINDS, Kind, StoreFactory, run_threads, unique_items, windows

CONSUMERS = 8


@pytest.fixture(params=KINDS)
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    kind: Kind = request.param
    made = StoreFactory(kind, tmp_path)
    yield made
    made.close_all()


def hammer(
    store: QueueStore,
    items: list[bytes],
    *,
    prefill: int,
    max_skip: int,
    seed: int,
    max_take: int = 300,
) -> list[bytes]:
    """Consumers take while one pusher pushes the rest of ``items``; returns every chunk."""
    store.push("trng", items[:prefill])
    served: list[bytes] = []
    lock = threading.Lock()
    pushed_all = threading.Event()
    attempts = threading.Semaphore(0)  # one push per take attempt, so both sides interleave

    def pusher() -> None:
        rng = random.Random(seed)
        position = prefill
        while position < len(items):
            attempts.acquire()
            count = rng.randint(1, 40)
            store.push("trng", items[position : position + count], polls=1)
            position += count
        pushed_all.set()

    def consumer(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        while True:
            attempts.release()
            try:
                chunk = store.take("trng", rng.randint(16, max_take), skip=rng.randint(0, max_skip))
            except NotEnoughDataError:
                if pushed_all.is_set():
                    return
                continue
            with lock:
                served.append(chunk)

    threads = [threading.Thread(target=pusher, name="pusher")]
    threads += [
        threading.Thread(target=consumer, args=(i,), name=f"c{i}") for i in range(CONSUMERS)
    ]
    run_threads(threads)
    return served


@pytest.mark.parametrize("capacity", [1_000_000, 60])
def test_head_takes_serve_each_byte_exactly_once(factory: StoreFactory, capacity: int) -> None:
    store = factory.open(default_capacity=capacity)
    items = unique_items(0, 6000)
    # With a small queue the consumers take less than the pusher adds (about 1.3 items a take
    # against 20 a push), so it fills and drops under concurrency; with 300-byte takes eight
    # consumers could keep it nearly empty, and whether anything was dropped was down to luck.
    max_take = 300 if capacity > 1000 else 48
    served = hammer(
        store, items, prefill=min(capacity, 1000), max_skip=0, seed=capacity, max_take=max_take
    )
    stream = b"".join(items)
    spans = sorted((stream.find(chunk), len(chunk)) for chunk in served)
    assert all(start >= 0 for start, _ in spans)  # every chunk is a piece of the stream
    for (start, size), (next_start, _) in pairwise(spans):
        assert start + size <= next_start  # no byte in two chunks
    rest = store.take("trng", 1 << 30, partial=True, account=False)
    stats = store.stats("trng")
    served_bytes = sum(size for _, size in spans)
    assert stats.consumed_bytes == served_bytes + len(rest)
    assert served_bytes + len(rest) == len(stream) - stats.dropped_bytes
    assert stats.total_generated == len(items)
    assert stats.polling_count > 0
    if capacity == 1_000_000:
        assert len(served) > 500  # 192 kB in chunks of at most 300 bytes, all of it served
        assert stats.dropped == 0
    else:
        assert stats.dropped > 0
        assert rest == stream[len(stream) - len(rest) :]


def test_takes_with_skips_never_repeat_a_byte(factory: StoreFactory) -> None:
    store = factory.open(default_capacity=1_000_000)
    items = unique_items(0, 6000)
    served = hammer(store, items, prefill=1000, max_skip=64, seed=7)
    assert len(served) > 500
    rest = store.take("trng", 1 << 30, partial=True, account=False)
    seen: set[bytes] = set()
    for chunk in [*served, rest]:
        for window in windows(chunk):
            assert window not in seen
            seen.add(window)
    total = sum(map(len, served)) + len(rest)
    assert total == sum(map(len, items))  # nothing dropped, nothing lost
    assert store.stats("trng").consumed_bytes == total
    # The same bytes as the pushed stream, each as often: none lost, none made up, none twice.
    stream = b"".join(items)
    assert sorted(b"".join([*served, rest])) == sorted(stream)

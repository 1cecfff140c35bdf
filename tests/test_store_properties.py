"""The three stores against a plain model (a list of bytearrays per source) under random operations.

The model is the contract written the simplest way: Q is the items joined, a consuming take
cuts Q[skip:skip+n] out item by item, a push appends then drops from the front. Reopening the
LMDB store mid-run checks that everything the model knows survives a restart; its map starts
at 64 KiB, so it grows (and reruns batches) along the way. The Redis store is reopened on the
same key prefix of this process's test server, and the take and drop scripts read with the
same small rounds. Drops run in chunks of three items, so a resize takes several calls.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lokey.errors import NotEnoughDataError
from lokey.store import (
    SOURCES,
    LmdbStore,
    MemoryStore,
    QueueStats,
    QueueStore,
    Source,
    queue,
    redis_scripts,
)
from lokey.store.redis_store import RedisStore
from tests.redis_helpers import new_prefix, redis_url
from tests.store_helpers import FakeClock

CAPACITY = 30
MAP_SIZE = 64 << 10  # small: the map grows during a run


@dataclass
class ModelQueue:
    capacity: int = CAPACITY
    items: list[bytearray] = field(default_factory=list)
    polls: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    consumed: int = 0
    consumed_bytes: int = 0
    generated: int = 0
    generated_bytes: int = 0
    usage_bytes: int = 0
    usage_requests: int = 0
    hours: dict[int, tuple[int, int]] = field(default_factory=dict)

    def queued(self) -> bytes:
        return b"".join(self.items)

    def push(self, new: list[bytes], polls: int) -> int:
        self.items.extend(bytearray(item) for item in new)
        self.generated += len(new)
        self.generated_bytes += sum(map(len, new))
        dropped = 0
        while len(self.items) > self.capacity:
            self.dropped_bytes += len(self.items.pop(0))
            dropped += 1
        self.dropped += dropped
        self.polls += polls
        return dropped

    def resize(self, capacity: int) -> int:
        self.capacity = capacity
        return self.push([], 0)

    def take(self, n: int, skip: int, consume: bool, partial: bool) -> bytes:
        total = sum(map(len, self.items))
        if skip + n > total:
            if not partial:
                raise NotEnoughDataError("model", skip + n, total)
            n = max(0, total - skip)
        result = self.queued()[skip : skip + n]
        if consume and n:
            position = 0
            kept: list[bytearray] = []
            for item in self.items:
                lo, hi = max(skip - position, 0), min(skip + n - position, len(item))
                position += len(item)
                if lo < hi:
                    del item[lo:hi]
                if item:
                    kept.append(item)
                else:
                    self.consumed += 1
            self.items = kept
            self.consumed_bytes += n
        return result

    def account(self, now: float, nbytes: int) -> None:
        if not nbytes:
            return
        start = math.floor(now / 3600) * 3600
        old_bytes, old_requests = self.hours.get(start, (0, 0))
        self.hours[start] = (old_bytes + nbytes, old_requests + 1)
        self.usage_bytes += nbytes
        self.usage_requests += 1

    def stats(self) -> QueueStats:
        return QueueStats(
            capacity=self.capacity,
            items=len(self.items),
            bytes=sum(map(len, self.items)),
            polling_count=self.polls,
            dropped=self.dropped,
            dropped_bytes=self.dropped_bytes,
            consumed=self.consumed,
            consumed_bytes=self.consumed_bytes,
            total_generated=self.generated,
            generated_bytes=self.generated_bytes,
        )


sources = st.sampled_from(SOURCES)
item_lists = st.lists(
    st.binary(min_size=1, max_size=3) | st.binary(min_size=1, max_size=300), max_size=12
)


class StoreMachine(RuleBasedStateMachine):
    persistent = False

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="lokey-store-machine-"))
        self.clock = FakeClock()
        self.model = {source: ModelQueue() for source in SOURCES}
        self.drop_chunk = queue.DROP_CHUNK
        queue.DROP_CHUNK = 3  # type: ignore[misc]
        self.store = self.open()

    def open(self) -> QueueStore:
        raise NotImplementedError

    def teardown(self) -> None:
        queue.DROP_CHUNK = self.drop_chunk  # type: ignore[misc]
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(source=sources, items=item_lists, polls=st.integers(0, 2))
    def push(self, source: Source, items: list[bytes], polls: int) -> None:
        assert self.store.push(source, items, polls=polls) == self.model[source].push(items, polls)

    @rule(
        source=sources,
        n=st.integers(1, 2000) | st.integers(1, 8),
        skip=st.integers(0, 2000) | st.integers(0, 5) | st.just(0),
        consume=st.booleans(),
        partial=st.booleans(),
        account=st.booleans(),
    )
    def take(
        self, *, source: Source, n: int, skip: int, consume: bool, partial: bool, account: bool
    ) -> None:
        model = self.model[source]
        available = len(model.queued())
        try:
            expected: bytes | None = model.take(n, skip, consume, partial)
        except NotEnoughDataError:
            expected = None
        error: NotEnoughDataError | None = None
        try:
            got: bytes | None = self.store.take(
                source, n, skip=skip, consume=consume, partial=partial, account=account
            )
        except NotEnoughDataError as exc:
            error, got = exc, None
        assert got == expected
        if error is not None:
            assert (error.requested, error.available) == (skip + n, available)
        if got is not None and account:
            model.account(self.clock.now, len(got))

    @rule(source=sources, capacity=st.integers(10, 40))
    def resize(self, source: Source, capacity: int) -> None:
        assert self.store.resize(source, capacity) == self.model[source].resize(capacity)

    @rule(hours=st.integers(0, 3))
    def wait(self, hours: int) -> None:
        self.clock.advance(hours * 3600 + 1)

    @precondition(lambda self: self.persistent)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self.open()

    @invariant()
    def matches_the_model(self) -> None:
        for source in SOURCES:
            model = self.model[source]
            stats = self.store.stats(source)
            assert stats == model.stats()
            assert stats.total_generated == stats.items + stats.dropped + stats.consumed
            assert stats.generated_bytes == stats.bytes + stats.dropped_bytes + stats.consumed_bytes
            assert stats.items <= stats.capacity
            queued = self.store.take(source, 1 << 20, partial=True, consume=False, account=False)
            assert queued == model.queued()
            usage = self.store.usage(source)
            assert (usage.bytes, usage.requests) == (model.usage_bytes, model.usage_requests)
            recent = sorted(model.hours.items())[-48:]
            assert [(b.start, b.bytes, b.requests) for b in usage.recent] == [
                (start, nbytes, requests) for start, (nbytes, requests) in recent
            ]


class MemoryMachine(StoreMachine):
    def open(self) -> QueueStore:
        return MemoryStore(default_capacity=CAPACITY, now=self.clock)


class LmdbMachine(StoreMachine):
    persistent = True

    def open(self) -> QueueStore:
        return LmdbStore(
            self.directory / "api.db",
            sync=False,
            default_capacity=CAPACITY,
            now=self.clock,
            map_size=MAP_SIZE,
        )


class RedisMachine(StoreMachine):
    """Reads in rounds of two or three items, so the scripts' round logic runs on every take."""

    persistent = True

    def __init__(self) -> None:
        self.rounds = (queue.MIN_ROUND, queue.SKIP_ROUND, redis_scripts.DROP_ROUND)
        queue.MIN_ROUND, queue.SKIP_ROUND, redis_scripts.DROP_ROUND = 2, 3, 2  # type: ignore[misc]
        super().__init__()

    def teardown(self) -> None:
        queue.MIN_ROUND, queue.SKIP_ROUND, redis_scripts.DROP_ROUND = self.rounds  # type: ignore[misc]
        super().teardown()

    def open(self) -> QueueStore:
        if not hasattr(self, "prefix"):
            self.prefix = new_prefix()  # one per run: reopening finds the same keys
        return RedisStore(
            redis_url(), prefix=self.prefix, default_capacity=CAPACITY, now=self.clock
        )


MACHINE_SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestMemoryStoreAgainstModel = MemoryMachine.TestCase
TestMemoryStoreAgainstModel.settings = MACHINE_SETTINGS
TestLmdbStoreAgainstModel = LmdbMachine.TestCase
TestLmdbStoreAgainstModel.settings = MACHINE_SETTINGS
TestRedisStoreAgainstModel = RedisMachine.TestCase
TestRedisStoreAgainstModel.settings = MACHINE_SETTINGS

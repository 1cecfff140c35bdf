"""ByteRing: capacity, drop-oldest, exactly-once consumption, unread, resize (service-api.md §4)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.virtio.ring import ByteRing


def test_capacity_range() -> None:
    assert ByteRing().capacity_items == 15_000
    for bad in (0, 9, 1_000_001):
        with pytest.raises(ValueError, match="between 10 and 1,000,000"):
            ByteRing(bad)
    with pytest.raises(ValueError, match="between 10 and 1,000,000"):
        ByteRing(10).resize(9)
    assert ByteRing(10).capacity_bytes == 320


def test_drop_oldest_and_counters() -> None:
    ring = ByteRing(10)
    assert ring.push(bytes(range(200))) == 0
    assert ring.push(bytes(range(200))) == 80
    stats = ring.snapshot()
    assert (stats.current_bytes, stats.current_items) == (320, 10)
    assert (stats.generated, stats.consumed, stats.dropped) == (400, 0, 80)
    assert ring.take(5) == bytes(range(80, 85))
    assert ring.snapshot().consumed == 5
    assert ring.snapshot().current_items == 10  # a partly used item still counts


def test_oversized_push_keeps_newest() -> None:
    ring = ByteRing(10)
    ring.push(b"a" * 10)
    data = bytes(i % 251 for i in range(1000))
    assert ring.push(data) == 10 + 680
    assert ring.take(1000) == data[-320:]


def test_take_exact_consumes_nothing_when_short() -> None:
    ring = ByteRing(10)
    ring.push(b"x" * 31)
    assert ring.take_exact(32) is None
    assert ring.available == 31
    assert ring.take_exact(31) == b"x" * 31
    assert ring.take(5) == b""
    assert ring.take_exact(0) == b""


def test_unread_goes_back_to_the_front() -> None:
    ring = ByteRing(10)
    ring.push(b"abcdef")
    got = ring.take(4)
    ring.push(b"gh")
    ring.unread(got[2:])
    assert ring.snapshot().consumed == 2
    assert ring.take(100) == b"cdefgh"


def test_resize_keeps_newest_and_stats() -> None:
    ring = ByteRing(20)
    ring.push(bytes(range(256)) + bytes(range(256))[:384])
    ring.take(10)
    before = ring.snapshot()
    ring.resize(10)
    after = ring.snapshot()
    assert after.capacity_items == 10
    assert after.current_bytes == 320
    assert after.generated == before.generated
    assert after.consumed == before.consumed
    assert after.dropped == before.dropped + before.current_bytes - 320
    ring.resize(100)
    assert ring.available == 320


def test_wait_for_data() -> None:
    ring = ByteRing(10)
    assert ring.wait_for_data(0.01) is False
    timer = threading.Timer(0.05, ring.push, args=(b"z",))
    timer.start()
    assert ring.wait_for_data(5.0) is True
    timer.join()


def test_concurrent_consumers_never_share_a_byte() -> None:
    ring = ByteRing(1_000_000)
    total = 200_000
    ring.push(b"".join(i.to_bytes(4, "big") for i in range(total // 4)))
    parts: list[list[bytes]] = [[] for _ in range(4)]

    def consume(out: list[bytes]) -> None:
        while chunk := ring.take(4):
            out.append(chunk)

    threads = [threading.Thread(target=consume, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = [c for p in parts for c in p]
    assert len(seen) == total // 4 == len(set(seen))
    assert ring.snapshot().consumed == total


class Model:
    """The obvious list-of-bytes model."""

    def __init__(self, cap_items: int) -> None:
        self.cap = cap_items * 32
        self.data = bytearray()
        self.generated = self.consumed = self.dropped = 0

    def push(self, b: bytes) -> int:
        self.generated += len(b)
        self.data += b
        over = max(0, len(self.data) - self.cap)
        del self.data[:over]
        self.dropped += over
        return over

    def take(self, n: int) -> bytes:
        out = bytes(self.data[:n])
        del self.data[: len(out)]
        self.consumed += len(out)
        return out

    def unread(self, b: bytes) -> int:
        self.consumed -= len(b)
        self.data[0:0] = b
        over = max(0, len(self.data) - self.cap)
        del self.data[:over]
        self.dropped += over
        return over

    def resize(self, items: int) -> None:
        self.cap = items * 32
        over = max(0, len(self.data) - self.cap)
        del self.data[:over]
        self.dropped += over


ops = st.one_of(
    st.tuples(st.just("push"), st.binary(max_size=700)),
    st.tuples(st.just("take"), st.integers(0, 700)),
    st.tuples(st.just("exact"), st.integers(0, 700)),
    st.tuples(st.just("unread"), st.integers(0, 200)),
    st.tuples(st.just("resize"), st.integers(10, 40)),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(10, 40), st.lists(ops, max_size=60))
def test_ring_matches_model(cap: int, program: list[tuple[str, object]]) -> None:
    ring, model = ByteRing(cap), Model(cap)
    taken = b""
    for op, arg in program:
        if op == "push":
            assert isinstance(arg, bytes)
            assert ring.push(arg) == model.push(arg)
        elif op == "take":
            assert isinstance(arg, int)
            taken = ring.take(arg)
            assert taken == model.take(arg)
        elif op == "exact":
            assert isinstance(arg, int)
            want = bytes(model.data[:arg]) if len(model.data) >= arg else None
            got = ring.take_exact(arg)
            assert got == want
            if got is not None:
                model.take(arg)
                taken = got
        elif op == "unread":
            assert isinstance(arg, int)
            back = taken[len(taken) - min(arg, len(taken)) :]
            taken = taken[: len(taken) - len(back)]
            assert ring.unread(back) == model.unread(back)
        else:
            assert isinstance(arg, int)
            ring.resize(arg)
            model.resize(arg)
        s = ring.snapshot()
        assert s.current_bytes == len(model.data) <= s.capacity_items * 32
        assert (s.generated, s.consumed, s.dropped) == (
            model.generated,
            model.consumed,
            model.dropped,
        )
        assert s.generated == s.consumed + s.dropped + s.current_bytes
    assert ring.take(10**6) == bytes(model.data)

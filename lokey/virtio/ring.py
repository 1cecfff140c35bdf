"""The VirtIO byte ring (service-api.md §4, design.md "No byte twice").

Capacity is set in 32-byte items (``VIRTIO_QUEUE_SIZE``, 10..1,000,000) but data is held and
handed out at byte granularity. When full, the oldest bytes are dropped (and counted). Every byte
leaves the ring at most once: :meth:`ByteRing.take` removes what it returns under the lock, so two
consumers can never receive the same byte. :meth:`ByteRing.unread` puts bytes that a consumer took
but could not deliver (a short pipe write) back at the front, in order, undoing their consumption.

Counters are in **bytes** (``generated``, ``consumed``, ``dropped``); :class:`RingStats` also gives
them in whole items for the reference's item-based JSON fields.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CAPACITY_ITEMS",
    "ITEM_SIZE",
    "MAX_CAPACITY_ITEMS",
    "MIN_CAPACITY_ITEMS",
    "ByteRing",
    "RingStats",
]

ITEM_SIZE = 32
DEFAULT_CAPACITY_ITEMS = 15_000
MIN_CAPACITY_ITEMS = 10
MAX_CAPACITY_ITEMS = 1_000_000


@dataclass(frozen=True)
class RingStats:
    """One consistent view of the ring. ``generated``/``consumed``/``dropped`` count bytes."""

    capacity_items: int
    current_bytes: int
    current_items: int
    generated: int
    consumed: int
    dropped: int
    item_size: int = ITEM_SIZE

    @property
    def capacity_bytes(self) -> int:
        return self.capacity_items * self.item_size

    @property
    def generated_items(self) -> int:
        return self.generated // self.item_size

    @property
    def consumed_items(self) -> int:
        return self.consumed // self.item_size

    @property
    def dropped_items(self) -> int:
        return self.dropped // self.item_size


def _check_capacity(capacity_items: int) -> None:
    if isinstance(capacity_items, bool) or not isinstance(capacity_items, int):
        raise TypeError(f"capacity_items must be an int, got {type(capacity_items).__name__}")
    if not MIN_CAPACITY_ITEMS <= capacity_items <= MAX_CAPACITY_ITEMS:
        raise ValueError(
            f"capacity_items must be between {MIN_CAPACITY_ITEMS} and {MAX_CAPACITY_ITEMS:,},"
            f" got {capacity_items:,}"
        )


class ByteRing:
    """A thread-safe, drop-oldest byte FIFO sized in items.

    Internally two buffers: ``_front`` (bytes given back by :meth:`unread`, delivered first) and
    ``_buf`` (everything pushed). ``del bytearray[:n]`` is O(1) amortised in CPython, so taking
    from the head never moves the rest of a large ring.
    """

    def __init__(self, capacity_items: int = DEFAULT_CAPACITY_ITEMS, *, item_size: int = ITEM_SIZE):
        _check_capacity(capacity_items)
        if item_size < 1:
            raise ValueError(f"item_size must be positive, got {item_size}")
        self._item_size = item_size
        self._capacity_items = capacity_items
        self._capacity_bytes = capacity_items * item_size
        self._cond = threading.Condition(threading.Lock())
        self._front = bytearray()
        self._buf = bytearray()
        self._generated = 0
        self._consumed = 0
        self._dropped = 0

    # -- properties -------------------------------------------------------------------------

    @property
    def capacity_items(self) -> int:
        return self._capacity_items

    @property
    def capacity_bytes(self) -> int:
        return self._capacity_bytes

    @property
    def item_size(self) -> int:
        return self._item_size

    @property
    def available(self) -> int:
        """Bytes currently held."""
        with self._cond:
            return len(self._front) + len(self._buf)

    def snapshot(self) -> RingStats:
        with self._cond:
            current = len(self._front) + len(self._buf)
            return RingStats(
                capacity_items=self._capacity_items,
                current_bytes=current,
                current_items=-(-current // self._item_size),
                generated=self._generated,
                consumed=self._consumed,
                dropped=self._dropped,
                item_size=self._item_size,
            )

    # -- internals (lock held) ----------------------------------------------------------------

    def _drop_oldest(self, n: int) -> None:
        """Drop ``n`` bytes from the head (``_front`` first)."""
        from_front = min(n, len(self._front))
        if from_front:
            del self._front[:from_front]
        rest = n - from_front
        if rest:
            del self._buf[:rest]
        self._dropped += n

    def _take_locked(self, n: int) -> bytes:
        if not self._front:
            out = bytes(self._buf[:n])
            del self._buf[: len(out)]
        else:
            out_front = bytes(self._front[:n])
            del self._front[: len(out_front)]
            rest = n - len(out_front)
            if rest > 0 and self._buf:
                tail = bytes(self._buf[:rest])
                del self._buf[: len(tail)]
                out = out_front + tail
            else:
                out = out_front
        self._consumed += len(out)
        return out

    # -- producers ------------------------------------------------------------------------------

    def push(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; when full, drop the oldest bytes. Returns the number of bytes dropped.

        If ``data`` alone exceeds the capacity, only its newest ``capacity_bytes`` are kept (the
        rest counts as dropped, and as generated).
        """
        size = len(data)
        if size == 0:
            return 0
        with self._cond:
            self._generated += size
            cap = self._capacity_bytes
            dropped = 0
            if size >= cap:
                held = len(self._front) + len(self._buf)
                dropped = held + (size - cap)
                self._front.clear()
                self._buf = bytearray(memoryview(data)[size - cap :])
                self._dropped += dropped
            else:
                overflow = len(self._front) + len(self._buf) + size - cap
                if overflow > 0:
                    self._drop_oldest(overflow)
                    dropped = overflow
                self._buf += data
            self._cond.notify_all()
            return dropped

    def unread(self, data: bytes | bytearray | memoryview) -> int:
        """Give back bytes a consumer took but could not deliver, at the FRONT, in order.

        Their consumption is undone (``consumed`` decreases). If the ring filled up meanwhile, the
        oldest bytes (these, first) are dropped as usual; returns the number of bytes dropped.
        """
        size = len(data)
        if size == 0:
            return 0
        with self._cond:
            self._consumed -= size
            self._front[0:0] = data
            overflow = len(self._front) + len(self._buf) - self._capacity_bytes
            dropped = 0
            if overflow > 0:
                self._drop_oldest(overflow)
                dropped = overflow
            self._cond.notify_all()
            return dropped

    # -- consumers ------------------------------------------------------------------------------

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` bytes from the head (``b""`` if empty or ``n <= 0``)."""
        if n <= 0:
            return b""
        with self._cond:
            return self._take_locked(n)

    def take_exact(self, n: int) -> bytes | None:
        """Remove and return exactly ``n`` bytes, or return ``None`` and consume nothing."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        if n == 0:
            return b""
        with self._cond:
            if len(self._front) + len(self._buf) < n:
                return None
            return self._take_locked(n)

    def wait_for_data(self, timeout_s: float) -> bool:
        """Block until the ring holds at least one byte or ``timeout_s`` passes; True if data."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not (self._front or self._buf):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- configuration ----------------------------------------------------------------------------

    def resize(self, capacity_items: int) -> None:
        """Change the capacity; keep the newest bytes that fit (the rest count as dropped).

        Statistics survive (LoKey behaviour; the reference resets them).
        """
        _check_capacity(capacity_items)
        with self._cond:
            self._capacity_items = capacity_items
            self._capacity_bytes = capacity_items * self._item_size
            overflow = len(self._front) + len(self._buf) - self._capacity_bytes
            if overflow > 0:
                self._drop_oldest(overflow)

    def clear(self) -> int:
        """Drop everything held (counted as dropped); returns the number of bytes dropped."""
        with self._cond:
            held = len(self._front) + len(self._buf)
            if held:
                self._drop_oldest(held)
            return held

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"ByteRing(capacity_items={s.capacity_items}, current_bytes={s.current_bytes},"
            f" dropped={s.dropped})"
        )

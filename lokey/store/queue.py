"""The byte-granular queue logic, written once for both stores (service-api.md §1.2, §5).

A queue is an ordered table of items (id -> bytes) plus a :class:`QueueMeta` record of counters.
Clients see Q, the concatenation of the unconsumed bytes of the items, oldest first. Only the
oldest item can have a consumed prefix: ``head_offset`` says how much of it is gone, so the
common take (``skip=0``) never rewrites a large item it only partly used. A take with a skip
that removes bytes from inside an item rewrites that item with what is left of it.

Every function reads what it needs before its first write: LMDB buffers handed out by a cursor
are only valid until the transaction's next write, and the in-memory table must not change while
it is iterated. Every check that can fail runs before the first write too, so a failed call
leaves the memory store untouched (the LMDB store also runs each call in a child transaction).
"""

from __future__ import annotations

import builtins
import struct
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import accumulate, islice
from operator import attrgetter
from typing import Protocol

from lokey.errors import NotEnoughDataError, StoreError
from lokey.store.base import QueueStats

__all__ = ["Buffer", "QueueMeta", "Table", "push", "resize", "take"]

Buffer = bytes | memoryview


class Table(Protocol):
    """Items in id order; buffers are valid until the table's next write."""

    def values(self) -> Iterator[Buffer]: ...

    def entries(self) -> Iterator[tuple[int, Buffer]]: ...

    def append(self, first_id: int, values: Sequence[bytes]) -> None: ...

    def replace(self, item_id: int, value: bytes) -> None: ...

    def delete(self, item_ids: Iterable[int]) -> None: ...

    def delete_head(self, count: int) -> None: ...


@dataclass
class QueueMeta:
    """A queue's counters; ``items``/``bytes``/``head_offset`` describe what is queued now."""

    capacity: int
    items: int = 0
    bytes: int = 0
    head_offset: int = 0
    next_id: int = 0
    polling_count: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    consumed: int = 0
    consumed_bytes: int = 0
    total_generated: int = 0
    generated_bytes: int = 0

    def stats(self) -> QueueStats:
        return QueueStats(
            capacity=self.capacity,
            items=self.items,
            bytes=self.bytes,
            polling_count=self.polling_count,
            dropped=self.dropped,
            dropped_bytes=self.dropped_bytes,
            consumed=self.consumed,
            consumed_bytes=self.consumed_bytes,
            total_generated=self.total_generated,
            generated_bytes=self.generated_bytes,
        )

    def encode(self) -> builtins.bytes:  # the field `bytes` shadows the type
        return _META.pack(*_meta_values(self))

    @classmethod
    def decode(cls, data: Buffer) -> QueueMeta:
        return cls(*_META.unpack(data))


# Unsigned 64-bit big-endian, like the reference's bbolt counters (service-api.md §5).
_META = struct.Struct(">" + "Q" * len(fields(QueueMeta)))
_meta_values = attrgetter(*(f.name for f in fields(QueueMeta)))


def push(meta: QueueMeta, table: Table, items: list[bytes], polls: int) -> int:
    """Append ``items``, drop the oldest beyond capacity, count ``polls``; return items dropped.

    Items that would be dropped straight away (a batch larger than the capacity) are counted as
    generated and dropped without being written.
    """
    nbytes = sum(map(len, items))
    meta.total_generated += len(items)
    meta.generated_bytes += nbytes
    meta.polling_count += polls
    overflow = meta.items + len(items) - meta.capacity
    if overflow <= 0:
        _append(meta, table, items, nbytes)
        return 0
    from_queue = min(overflow, meta.items)
    _drop_head(meta, table, from_queue)
    from_batch = overflow - from_queue
    if from_batch:
        lost = sum(map(len, items[:from_batch]))
        meta.dropped += from_batch
        meta.dropped_bytes += lost
        items = items[from_batch:]
        nbytes -= lost
    _append(meta, table, items, nbytes)
    return overflow


def resize(meta: QueueMeta, table: Table, capacity: int) -> int:
    """Set the capacity; drop the oldest items beyond it; return how many were dropped."""
    meta.capacity = capacity
    overflow = meta.items - capacity
    if overflow <= 0:
        return 0
    _drop_head(meta, table, overflow)
    return overflow


def take(
    source: str,
    meta: QueueMeta,
    table: Table,
    n: int,
    *,
    skip: int,
    consume: bool,
    partial: bool,
) -> bytes:
    """Q[skip:skip+n]; with ``consume`` those bytes leave the queue (arguments already checked).

    Without ``partial`` a short queue raises :class:`NotEnoughDataError` before anything changes;
    with it the result is cut to what is there (possibly ``b""``, which changes nothing).
    """
    available = meta.bytes
    if skip + n > available:
        if not partial:
            raise NotEnoughDataError(source, requested=skip + n, available=available)
        n = available - skip
        if n <= 0:
            return b""
    if skip == 0:
        return _take_head(meta, table, n, consume)
    return _take_inside(meta, table, n, skip, consume)


def _append(meta: QueueMeta, table: Table, items: list[bytes], nbytes: int) -> None:
    if not items:
        return
    table.append(meta.next_id, items)
    meta.next_id += len(items)
    meta.items += len(items)
    meta.bytes += nbytes


def _drop_head(meta: QueueMeta, table: Table, count: int) -> None:
    if count <= 0:
        return
    lost = sum(map(len, islice(table.values(), count))) - meta.head_offset
    table.delete_head(count)
    meta.items -= count
    meta.bytes -= lost
    meta.head_offset = 0
    meta.dropped += count
    meta.dropped_bytes += lost


def _take_head(meta: QueueMeta, table: Table, n: int, consume: bool) -> bytes:
    """The hot path: Q[:n], whole items from the head and maybe a prefix of the next one.

    Items are read in runs sized from the first item's length and cut with C-level helpers
    (islice, accumulate, bisect): a 100 kB take from 256-byte items touches 391 of them, and a
    Python statement per item would cost more than LMDB's own work.
    """
    offset = meta.head_offset
    need = offset + n  # measured from the head item's first stored byte
    values = table.values()
    window: list[Buffer] = list(islice(values, 1))
    total = sum(map(len, window))
    while total < need:
        average = max(total // len(window), 1)
        more = list(islice(values, (need - total) // average + 1))
        if not more:
            raise StoreError(f"the queue holds {total - offset} bytes, less than its counters say")
        window += more
        total += sum(map(len, more))
    ends = list(accumulate(map(len, window)))
    last = bisect_left(ends, need)  # the item holding the last byte wanted
    cut = need - (ends[last - 1] if last else 0)  # bytes of that item taken, from its start
    if last == 0:
        pieces = [window[0][offset:cut]]
    else:
        pieces = [window[0][offset:], *window[1:last], window[last][:cut]]
    result = b"".join(pieces)  # a copy: the buffers die at the first write below
    if consume:
        finished = last + 1 if cut == len(window[last]) else last
        table.delete_head(finished)
        meta.items -= finished
        meta.head_offset = 0 if cut == len(window[last]) else cut
        _count_consumed(meta, finished, n)
    return result


def _take_inside(meta: QueueMeta, table: Table, n: int, skip: int, consume: bool) -> bytes:
    """Q[skip:skip+n] with skip > 0: the skipped bytes stay, so the cut is inside the queue.

    Items wholly inside the range are deleted; an item cut by the range keeps its bytes outside
    it, as one item (prefix + suffix when the range is inside a single item).
    """
    end = skip + n
    pieces: list[Buffer] = []
    deleted: list[int] = []
    rewritten: list[tuple[int, bytes]] = []
    head_rewritten = False
    pos = 0  # position in Q of the current item's first unconsumed byte
    first = meta.head_offset  # where the current item's unconsumed bytes start
    is_head = True
    for item_id, value in table.entries():
        size = len(value) - first
        item_end = pos + size
        if item_end > skip:
            lo = first + max(skip - pos, 0)
            hi = first + min(end - pos, size)
            pieces.append(value[lo:hi])
            if consume:
                if lo == first and hi == len(value):
                    deleted.append(item_id)
                else:
                    rewritten.append((item_id, b"".join((value[first:lo], value[hi:]))))
                    head_rewritten = head_rewritten or is_head
            if item_end >= end:
                break
        pos = item_end
        first = 0
        is_head = False
    result = b"".join(pieces)
    if consume:
        table.delete(deleted)
        for item_id, value in rewritten:
            table.replace(item_id, value)
        if head_rewritten:
            meta.head_offset = 0  # the rewritten value holds only unconsumed bytes
        meta.items -= len(deleted)
        _count_consumed(meta, len(deleted), n)
    return result


def _count_consumed(meta: QueueMeta, items: int, nbytes: int) -> None:
    meta.bytes -= nbytes
    meta.consumed += items
    meta.consumed_bytes += nbytes

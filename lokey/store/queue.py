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

**Bounded work.** Items are read in rounds and cut with C-level helpers (islice, accumulate,
bisect), never with a Python statement per item. A round's length is estimated from the bytes
still wanted and the mean item size seen so far, but is never longer than everything read
before it (or :data:`MIN_ROUND`): a misleading estimate (a tiny head item left by a skip, a mix
of item sizes) costs at most twice the items the take needs plus MIN_ROUND, never a scan of the
queue. Dropping is bounded as well. A drop reads the dropped items' lengths, or, when fewer
items stay than go, only the items that stay (the dropped bytes follow from the counters, and
LMDB empties the table without reading its leaf pages). :func:`trim` drops at most
:data:`DROP_CHUNK` items per call unless at most DROP_CHUNK stay: a resize from a million
items to ten reads and rewrites ten, and one to half a million runs as fifty calls (each its
own LMDB commit) instead of one transaction that dirties the whole file.
"""

from __future__ import annotations

import builtins
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import accumulate, islice
from operator import attrgetter, itemgetter
from typing import Final, Protocol, TypeVar

from lokey.errors import NotEnoughDataError, StoreError
from lokey.store.base import QueueStats

__all__ = [
    "DROP_CHUNK",
    "MIN_ROUND",
    "SKIP_ROUND",
    "Buffer",
    "QueueMeta",
    "Table",
    "over_capacity",
    "push",
    "resize",
    "take",
    "trim",
]

Buffer = bytes | memoryview
T = TypeVar("T")

# The most items one call drops from the head (resize, or a push onto an overfull queue).
DROP_CHUNK: Final = 10_000
# The shortest read round; rounds then grow with what was read (see "Bounded work").
MIN_ROUND: Final = 128
# The longest round of items read only to be skipped: bounds the memory a large skip holds.
SKIP_ROUND: Final = 4096


class Table(Protocol):
    """Items in id order; buffers are valid until the table's next write.

    ``delete``, ``delete_head``, ``keep_tail`` and ``replace`` raise :class:`StoreError` for a
    missing item (the counters and the table disagree): never a short result, never a later
    crash.
    """

    def values(self) -> Iterator[Buffer]: ...

    def entries(self, start: int = 0) -> Iterator[tuple[int, Buffer]]:
        """(id, value) from the ``start``-th item on (the head's is 0)."""
        ...

    def append(self, first_id: int, values: Sequence[bytes]) -> None: ...

    def replace(self, item_id: int, value: bytes) -> None: ...

    def delete(self, item_ids: Iterable[int]) -> None: ...

    def delete_head(self, count: int) -> None: ...

    def keep_tail(self, count: int, *, of: int) -> int:
        """Delete all but the newest ``count`` items of the ``of`` there must be (StoreError if
        not); return the kept items' total length. Reads only the kept items."""
        ...


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
_value = itemgetter(1)


def push(meta: QueueMeta, table: Table, items: list[bytes], polls: int) -> int:
    """Append ``items``, drop the oldest beyond capacity, count ``polls``; return items dropped.

    Items that would be dropped straight away (a batch larger than the capacity) are counted as
    generated and dropped without being written. A queue already above its capacity (a resize
    still trimming it, or interrupted) loses at most ``len(items) + DROP_CHUNK`` old items here:
    the push stays bounded, the queue shrinks with every push, and nothing newer is dropped while
    anything older is left.
    """
    nbytes = sum(map(len, items))
    overflow = meta.items + len(items) - meta.capacity
    from_queue = from_batch = 0
    if overflow > 0:
        from_queue = min(overflow, meta.items, len(items) + DROP_CHUNK)
        from_batch = overflow - from_queue if from_queue == meta.items else 0
        _drop_head(meta, table, from_queue)  # checks before it changes anything
    if from_batch:
        lost = sum(map(len, items[:from_batch]))
        meta.dropped += from_batch
        meta.dropped_bytes += lost
        meta.total_generated += from_batch
        meta.generated_bytes += lost
        items = items[from_batch:]
        nbytes -= lost
    meta.total_generated += len(items)
    meta.generated_bytes += nbytes
    meta.polling_count += polls
    _append(meta, table, items, nbytes)
    return from_queue + from_batch


def resize(meta: QueueMeta, table: Table, capacity: int) -> int:
    """Set the capacity and drop as :func:`trim` does; return how many items were dropped.

    While :func:`over_capacity` is still true the caller calls :func:`trim` again, each time in
    a call of its own (for LMDB, its own commit).
    """
    dropped = _trim_to(meta, table, capacity)
    meta.capacity = capacity
    return dropped


def trim(meta: QueueMeta, table: Table) -> int:
    """Drop the oldest items beyond the capacity, at most DROP_CHUNK; return how many."""
    return _trim_to(meta, table, meta.capacity)


def over_capacity(meta: QueueMeta) -> bool:
    return meta.items > meta.capacity


def _trim_to(meta: QueueMeta, table: Table, capacity: int) -> int:
    excess = meta.items - capacity
    if excess <= 0:
        return 0
    # Keeping at most DROP_CHUNK items costs reading those alone (_drop_head): all in one go.
    count = excess if capacity < excess and capacity <= DROP_CHUNK else min(excess, DROP_CHUNK)
    _drop_head(meta, table, count)
    return count


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
    """Drop the ``count`` oldest items, reading whichever is fewer: those or the ones kept.

    Dropping most of the queue keeps the tail (:meth:`Table.keep_tail`) and takes the dropped
    bytes from the counters: a resize from a million items to ten reads ten.
    """
    if count <= 0:
        return
    keep = meta.items - count
    if keep < count:
        lost = meta.bytes - table.keep_tail(keep, of=meta.items)  # the head goes: no offset
    else:
        sizes = list(map(len, islice(table.values(), count)))
        if len(sizes) < count:
            raise _drift(f"holds {len(sizes)} items, fewer than the {count} to drop")
        lost = sum(sizes) - meta.head_offset
        table.delete_head(count)
    meta.items -= count
    meta.bytes -= lost
    meta.head_offset = 0
    meta.dropped += count
    meta.dropped_bytes += lost


def _mean_item(meta: QueueMeta) -> int:
    """The queue's mean unconsumed bytes per item (from the counters: nothing is read)."""
    return max(meta.bytes // meta.items, 1) if meta.items else 1


def _extend(
    window: list[T],
    source: Iterator[T],
    sizes: Callable[[list[T]], Iterable[int]],
    *,
    total: int,
    target: int,
    mean: int,
) -> int:
    """Read ``source`` into ``window`` until ``total`` (its bytes) reaches ``target``.

    Each round reads the estimated items still needed, but no more than the window already
    holds (or MIN_ROUND): every item read before the last round was needed, so at most twice
    the needed items plus MIN_ROUND are read. Returns the new total; StoreError if the table
    ends first (the counters say there is more).
    """
    while total < target:
        if window:
            mean = max(total // len(window), 1)
        count = min(-(-(target - total) // mean), max(len(window), MIN_ROUND))
        more = list(islice(source, count))
        if not more:
            raise _drift(f"ran out {target - total} bytes before its counters say it ends")
        window += more
        total += sum(sizes(more))
    return total


def _value_sizes(values: list[Buffer]) -> Iterator[int]:
    return map(len, values)


def _entry_sizes(entries: list[tuple[int, Buffer]]) -> Iterator[int]:
    return map(len, map(_value, entries))


def _take_head(meta: QueueMeta, table: Table, n: int, consume: bool) -> bytes:
    """The hot path: Q[:n], whole items from the head and maybe a prefix of the next one."""
    offset = meta.head_offset
    need = offset + n  # measured from the head item's first stored byte
    window: list[Buffer] = []
    _extend(window, table.values(), _value_sizes, total=0, target=need, mean=_mean_item(meta))
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


def _skip_to(values: Iterator[Buffer], position: int, skip: int, mean: int) -> tuple[int, int]:
    """Skip whole items up to the one holding Q[skip]; return its index (the head's is 0) and
    where it starts in Q. ``values`` starts at item 1, which starts at ``position``.

    Only lengths are needed, so the rounds read values alone: no key is decoded. Rounds follow
    the doubling rule of :func:`_extend` and hold at most SKIP_ROUND items at a time.
    """
    index = 1
    while True:
        count = min((skip - position) // mean + 1, max(index, MIN_ROUND), SKIP_ROUND)
        chunk = list(islice(values, count))
        if not chunk:
            raise _drift(f"ends before byte {skip:,}, which its counters say it holds")
        starts = list(accumulate(map(len, chunk), initial=position))
        found = bisect_right(starts, skip) - 1  # starts[found] <= skip < starts[found + 1]
        if found < len(chunk):
            return index + found, starts[found]
        index += len(chunk)
        mean = max((starts[-1] - position) // len(chunk), 1)
        position = starts[-1]


def _take_inside(meta: QueueMeta, table: Table, n: int, skip: int, consume: bool) -> bytes:
    """Q[skip:skip+n] with skip > 0: the skipped bytes stay, so the cut is inside the queue.

    Items wholly inside the range are deleted; an item cut by the range keeps its bytes outside
    it, as one item (prefix + suffix when the range is inside a single item).
    """
    end = skip + n
    first = meta.head_offset  # where the range's first item's unconsumed bytes start
    position = 0  # where they sit in Q
    index = 0  # that item's place in the table (the head's is 0)
    values = table.values()
    head = list(islice(values, 1))
    if not head:
        raise _drift("is empty")
    head_size = len(head[0]) - first
    is_head = head_size > skip
    if not is_head:  # skip the head and whole items in bulk, up to the one holding Q[skip]
        index, position = _skip_to(values, head_size, skip, _mean_item(meta))
        first = 0
    base = position - first  # the Q position of the range's first item's first stored byte
    entries = table.entries(index)
    window = list(islice(entries, 1))
    if not window:
        raise _drift(f"has no item {index}")
    size = len(window[0][1])
    _extend(window, entries, _entry_sizes, total=size, target=end - base, mean=_mean_item(meta))
    values_in = list(map(_value, window))
    ends = list(accumulate(map(len, values_in), initial=base))[1:]  # Q position after each
    lo = skip - base  # the range's start inside window[0]
    last = bisect_left(ends, end)  # the item holding the range's last byte
    hi = end - (ends[last - 1] if last else base)  # the range's end inside window[last]
    if last == 0:
        result = bytes(values_in[0][lo:hi])
    else:
        result = b"".join((values_in[0][lo:], *values_in[1:last], values_in[last][:hi]))
    if not consume:
        return result
    # Read everything needed before the first write: the buffers die with it.
    if last == 0:
        kept_first = b"".join((values_in[0][first:lo], values_in[0][hi:]))
    else:
        kept_first = bytes(values_in[0][first:lo])
    kept_last = bytes(values_in[last][hi:]) if last else b""
    keys = [key for key, _ in window[: last + 1]]
    deleted = keys[1:last]  # wholly inside the range
    cut = [(keys[0], kept_first), (keys[last], kept_last)] if last else [(keys[0], kept_first)]
    rewritten: list[tuple[int, bytes]] = []
    for key, kept in cut:
        if kept:
            rewritten.append((key, kept))
        else:
            deleted.append(key)
    table.delete(deleted)
    for key, kept in rewritten:
        table.replace(key, kept)
    if is_head:
        meta.head_offset = 0  # the head was rewritten: its new value holds unconsumed bytes only
    meta.items -= len(deleted)
    _count_consumed(meta, len(deleted), n)
    return result


def _count_consumed(meta: QueueMeta, items: int, nbytes: int) -> None:
    meta.bytes -= nbytes
    meta.consumed += items
    meta.consumed_bytes += nbytes


def _drift(problem: str) -> StoreError:
    return StoreError(f"the queue {problem}: its counters and its items disagree")

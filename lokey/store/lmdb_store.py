"""The LMDB queue store (service-api.md §5): the API's queues, counters, config and usage.

One LMDB environment in a single file (``subdir=False``, mode 0600, ``<path>-lock`` beside it)
holds five named databases: ``queue.trng`` and ``queue.fortuna`` (8-byte big-endian id -> raw
item bytes), ``meta`` (the layout version and one packed :class:`QueueMeta` per queue, so
push/take/stats never count anything), ``config`` (key -> JSON value) and ``usage`` (one
:class:`UsageRecord` per source).

**No byte twice.** Every write goes through one writer thread (:mod:`lokey.store.writer`) that
runs a batch of operations in one write transaction, each in a child transaction (a failing
operation leaves nothing behind), commits once and only then returns results to the callers. A
consuming take therefore hands out bytes only after their removal is committed; LMDB is
copy-on-write, so a process killed at any instant reopens at the last commit, where those bytes
are already gone. Two takes never overlap because the writer runs them one after the other.

**sync.** With ``sync=True`` (``DB_SYNC=true``) every commit is fsynced: a consumed byte stays
consumed even across a power loss. With ``sync=False`` commits reach the OS page cache without
an fsync: a killed process loses nothing (the kernel still writes the pages), but a power loss
or kernel crash can roll the file back to an earlier commit, and bytes handed out after it would
be served again. Group commit makes ``sync=True`` cheap under concurrency, so it is the default.

**One thread touches LMDB.** Reads (stats, usage, config, database size, peeks) queue for the
writer too and run inside its batch, so they see exactly what the batch commits and are answered
only after that commit. Two reasons:

* Growing the map must be exclusive: ``mdb_env_set_mapsize`` requires that no transaction be
  open in the process, and py-lmdb makes other threads' calls fail fast (EINVAL) while a resize
  is in progress rather than race the remap (py-lmdb PR #478). Readers on other threads would
  see those errors whenever the map grows (three reader threads beside 300 ``set_mapsize``
  calls got 22,505 ``InvalidParameterError`` and 3 "closed object" errors, and no read done);
  on the writer thread nothing else is running.
* py-lmdb 3.0.0 stalls a write transaction's ``abort()`` (top-level or child) for as long as two
  or more other threads keep entering LMDB read calls; it returns once they pause, and commits
  are not affected. The store aborts a child transaction for every failing operation (a take
  of more than the queue holds, say), so readers on other threads would stall the writer, and
  with it every consumer, while reads kept coming. ``tests/test_store_pylmdb_abort.py``
  reproduces it (20 aborts beside three reader threads: not done after a second, against
  0.2-5 ms alone). The author first took it for a deadlock; the reviewer's scripts seemed to
  pass because their readers stopped on a timer, which let the writer finish (in most runs it
  had done 1-3 write cycles in 4-5 s).

Because every call waits for the writer, :meth:`LmdbStore.healthy` waits at most
:data:`HEALTH_TIMEOUT` seconds and then answers False: a health probe never hangs the service.
A batch that only reads dirties no page, so LMDB commits it without writing or syncing anything:
plain peeks (``consume=False, account=False``), stats, usage, config and failed takes cost no
fsync (an accounted peek writes its usage record, and so does cost one).

**Reads are copies.** Values are read as ``bytes`` (``buffers=False``): for the 32- and 256-byte
items of the hot path py-lmdb's per-value memoryview costs more than the copy (391 values of a
100 kB take: 115 us with buffers, 64 us without), and for 64 KiB items the two measured the same.

**Map size.** The map starts at ``map_size`` and doubles whenever a batch fills it (the batch is
aborted and run again; operations are pure functions of the transaction, so a take consumes and
accounts once). Opening grows it the same way if the layout itself does not fit. At
:data:`MAX_MAP_SIZE` only the operation that did not fit fails (StoreError), and the batch runs
again without it. If LMDB fails to resize, it may have unmapped the file: the store is then
broken, every call raises StoreError and ``healthy()`` is False until it is reopened. Nothing else
uses the environment while the map grows, as ``mdb_env_set_mapsize`` requires. One process at a
time: another process growing the map is not followed.

**Large drops.** A resize that drops many items runs as several operations of at most
:data:`~lokey.store.queue.DROP_CHUNK` items, each committed on its own, so no transaction holds
a million dirty pages and other callers get their turn in between; they may see the queue above
its new capacity until the last one has run.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice, repeat, starmap
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import lmdb

from lokey.errors import StoreClosedError, StoreError
from lokey.store import queue
from lokey.store.base import (
    DEFAULT_CAPACITY,
    SOURCES,
    DatabaseInfo,
    ProcessLocalLeases,
    QueueStats,
    Source,
    Usage,
    check_capacity,
    check_items,
    check_polls,
    check_source,
    check_take,
    encode_config,
)
from lokey.store.queue import Buffer, QueueMeta
from lokey.store.usage import UsageRecord
from lokey.store.writer import HEALTH_TIMEOUT, GroupCommitWriter, Operation, Outcome

__all__ = ["DEFAULT_MAP_SIZE", "HEALTH_TIMEOUT", "LAYOUT_VERSION", "MAX_MAP_SIZE", "LmdbStore"]

T = TypeVar("T")

DEFAULT_MAP_SIZE: Final = 64 << 20
# A 32-bit Raspberry Pi OS process cannot map much more than 1 GiB next to Python; a 64-bit one
# could map far more, but 1 TiB already exceeds any SD card or disk it would sit on.
MAX_MAP_SIZE: Final = (1 << 40) if sys.maxsize > 2**32 else (1 << 30)
# Bumped when the on-disk layout changes; a store refuses a layout it does not know.
LAYOUT_VERSION: Final = b"lokey-store-1"
# LMDB keeps two meta pages at the start of the file (NUM_METAS in mdb.c).
_META_PAGES: Final = 2

# Item ids: 8-byte big-endian, as the reference's bbolt keys; LMDB's byte order sorts them.
_KEY_BYTES: Final = 8
_KEY_ORDER: Final[Literal["big"]] = "big"
_FORMAT_KEY: Final = b"format"
_QUEUE_DBS: Final = {source: f"queue.{source}".encode() for source in SOURCES}
_SOURCE_KEYS: Final = {source: source.encode() for source in SOURCES}  # in meta and usage
_OTHER_DBS: Final = (b"meta", b"config", b"usage")


def _key(item_id: int) -> bytes:
    return item_id.to_bytes(_KEY_BYTES, _KEY_ORDER)


class _OperationFullError(Exception):
    """Operation ``index`` of a batch hit MDB_MAP_FULL (its child transaction is aborted)."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class _LmdbTable:
    """A queue's named database inside one transaction (the :class:`queue.Table` interface)."""

    __slots__ = ("_db", "_txn")

    def __init__(self, txn: Any, db: Any) -> None:
        self._txn = txn
        self._db = db

    def values(self) -> Iterator[Buffer]:
        cursor = self._txn.cursor(db=self._db)
        values: Iterator[Buffer] = cursor.iternext(keys=False, values=True)
        return values

    def entries(self, start: int = 0) -> Iterator[tuple[int, Buffer]]:
        values = self._txn.cursor(db=self._db)
        if not values.first():
            return iter(())
        # Cursor.next() returns False at the end; a C-level loop moves `start` items, no copies.
        if sum(starmap(values.next, repeat((), start))) != start:
            return iter(())
        keys = self._txn.cursor(db=self._db)
        keys.set_key(values.key())
        # Two cursors zipped keep the iteration in C: a generator would run Python per item.
        return zip(
            map(int.from_bytes, keys.iternext(keys=True, values=False), repeat(_KEY_ORDER)),
            values.iternext(keys=False, values=True),
            strict=True,
        )

    def append(self, first_id: int, values: Sequence[bytes]) -> None:
        ids = range(first_id, first_id + len(values))
        keys = map(int.to_bytes, ids, repeat(_KEY_BYTES), repeat(_KEY_ORDER))
        cursor = self._txn.cursor(db=self._db)
        _, added = cursor.putmulti(zip(keys, values, strict=True), append=True)
        if added != len(values):  # ids only grow, so this is a damaged meta record
            raise StoreError(f"queue ids out of order: {added} of {len(values)} items appended")

    def replace(self, item_id: int, value: bytes) -> None:
        if self._txn.replace(_key(item_id), value, db=self._db) is None:
            raise StoreError(f"the queue has no item {item_id} to rewrite")

    def delete(self, item_ids: Iterable[int]) -> None:
        ids = list(item_ids)
        keys = map(int.to_bytes, ids, repeat(_KEY_BYTES), repeat(_KEY_ORDER))
        deleted = sum(map(self._txn.delete, keys, repeat(b""), repeat(self._db)))
        if deleted != len(ids):  # the child transaction is aborted: nothing is lost
            raise StoreError(f"the queue lacks {len(ids) - deleted} of {len(ids)} items to delete")

    def delete_head(self, count: int) -> None:
        cursor = self._txn.cursor(db=self._db)
        cursor.first()
        # Cursor.delete() moves on to the next item and returns False once there is none; a
        # C-level loop calls it `count` times.
        deleted = sum(starmap(cursor.delete, repeat((), count)))
        if deleted != count:
            raise StoreError(f"the queue held {deleted} items, not {count} to delete")

    def keep_tail(self, count: int, *, of: int) -> int:
        entries = int(self._txn.stat(self._db)["entries"])
        if entries != of or count > of:
            raise StoreError(
                f"the queue holds {entries} items, not {of}: its counters and its items disagree"
            )
        kept: list[tuple[bytes, bytes]] = []
        if count:
            cursor = self._txn.cursor(db=self._db)
            cursor.last()
            kept = list(islice(cursor.iterprev(), count))
            kept.reverse()
        # mdb_drop frees the pages walking the branch pages only: the dropped items' leaf pages
        # are never read, so emptying a million-item queue costs no more than a few hundred.
        self._txn.drop(self._db, delete=False)
        if kept:
            self._txn.cursor(db=self._db).putmulti(kept, append=True)
        return sum(len(value) for _, value in kept)


class LmdbStore(ProcessLocalLeases):
    """Both queues in one LMDB file; see the module docstring for durability and layout."""

    def __init__(
        self,
        path: Path,
        *,
        sync: bool = True,
        default_capacity: int = DEFAULT_CAPACITY,
        now: Callable[[], float] = time.time,
        map_size: int = DEFAULT_MAP_SIZE,
    ) -> None:
        capacity = check_capacity(default_capacity, "default_capacity")
        if isinstance(map_size, bool) or not isinstance(map_size, int) or map_size <= 0:
            raise ValueError(f"map_size must be a positive int, got {map_size!r}")
        self._path = Path(path)
        self._now = now
        self._closed = False
        self._close_lock = threading.Lock()
        self._commits = 0
        self._last_txnid = 0
        # Set when the map could not be resized: LMDB may have unmapped the file, so nothing
        # touches the environment again and every call fails with a StoreError.
        self._broken: BaseException | None = None
        try:
            self._env = lmdb.open(
                str(self._path),
                subdir=False,
                map_size=map_size,
                max_dbs=len(_QUEUE_DBS) + len(_OTHER_DBS),
                sync=sync,
                mode=0o600,
            )
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the queue store at {self._path}: {exc}") from exc
        try:
            while True:
                try:
                    self._init_layout(capacity)
                    break
                except lmdb.MapFullError as exc:  # a map too small for the layout itself
                    if not self._grow():
                        raise StoreError(
                            f"cannot set up the queue store at {self._path}: {exc}"
                        ) from exc
            self._last_txnid = int(self._env.info()["last_txnid"])
        except BaseException:
            self._env.close()
            raise
        self._writer = GroupCommitWriter(self._execute, name=f"lokey-store {self._path.name}")

    def _init_layout(self, capacity: int) -> None:
        try:
            with self._env.begin(write=True) as txn:
                self._queues = {
                    source: self._env.open_db(name, txn=txn) for source, name in _QUEUE_DBS.items()
                }
                self._meta, self._config, self._usage = (
                    self._env.open_db(name, txn=txn) for name in _OTHER_DBS
                )
                version = txn.get(_FORMAT_KEY, db=self._meta)
                if version is None:
                    txn.put(_FORMAT_KEY, LAYOUT_VERSION, db=self._meta)
                elif version != LAYOUT_VERSION:
                    raise StoreError(
                        f"{self._path} holds queue store layout {version!r};"
                        f" this LoKey reads {LAYOUT_VERSION!r}"
                    )
                for source in SOURCES:
                    txn.put(
                        source.encode(),
                        QueueMeta(capacity).encode(),
                        overwrite=False,
                        db=self._meta,
                    )
        except lmdb.MapFullError:
            raise
        except lmdb.Error as exc:
            raise StoreError(f"cannot set up the queue store at {self._path}: {exc}") from exc

    # -- the QueueStore protocol ------------------------------------------------------------

    def push(self, source: Source, items: Sequence[bytes], *, polls: int = 0) -> int:
        src = check_source(source)
        data = check_items(items)
        count = check_polls(polls)

        def run(txn: Any) -> int:
            meta = self._load_meta(txn, src)
            dropped = queue.push(meta, _LmdbTable(txn, self._queues[src]), data, count)
            self._save_meta(txn, src, meta)
            return dropped

        return self._submit(run)

    def take(
        self,
        source: Source,
        n: int,
        *,
        skip: int = 0,
        consume: bool = True,
        partial: bool = False,
        account: bool = True,
    ) -> bytes:
        src = check_source(source)
        check_take(n, skip)

        def run(txn: Any) -> bytes:
            meta = self._load_meta(txn, src)
            table = _LmdbTable(txn, self._queues[src])
            result = queue.take(src, meta, table, n, skip=skip, consume=consume, partial=partial)
            if consume and result:
                self._save_meta(txn, src, meta)
            if account and result:
                record = self._load_usage(txn, src).add(self._now(), len(result))
                txn.put(_SOURCE_KEYS[src], record.encode(), db=self._usage)
            return result

        return self._submit(run)

    def resize(self, source: Source, capacity: int) -> int:
        src = check_source(source)
        size = check_capacity(capacity)

        def first(txn: Any) -> tuple[int, bool]:
            meta = self._load_meta(txn, src)
            dropped = queue.resize(meta, _LmdbTable(txn, self._queues[src]), size)
            self._save_meta(txn, src, meta)
            return dropped, queue.over_capacity(meta)

        def more(txn: Any) -> tuple[int, bool]:
            meta = self._load_meta(txn, src)
            dropped = queue.trim(meta, _LmdbTable(txn, self._queues[src]))
            if dropped:
                self._save_meta(txn, src, meta)
            return dropped, queue.over_capacity(meta)

        # A large drop runs as one bounded operation per batch (queue.trim): each commits on
        # its own, so the transaction's dirty pages and the writer's pause stay small.
        dropped, pending = self._submit(first)
        while pending:
            count, pending = self._submit(more)
            dropped += count
        return dropped

    def count_poll(self, source: Source) -> None:
        self.push(source, (), polls=1)

    def stats(self, source: Source) -> QueueStats:
        src = check_source(source)
        return self._submit(lambda txn: self._load_meta(txn, src).stats())

    def usage(self, source: Source) -> Usage:
        src = check_source(source)
        return self._submit(lambda txn: self._load_usage(txn, src).usage())

    def config(self) -> dict[str, object]:
        def run(txn: Any) -> dict[str, object]:
            cursor = txn.cursor(db=self._config)
            return {key.decode(): json.loads(value) for key, value in cursor.iternext()}

        return self._submit(run)

    def update_config(self, values: Mapping[str, object]) -> None:
        encoded = {
            key.encode(): json.dumps(value).encode() for key, value in encode_config(values).items()
        }

        def run(txn: Any) -> None:
            for key, value in encoded.items():
                txn.put(key, value, db=self._config)

        self._submit(run)

    def database(self) -> DatabaseInfo:
        def run(txn: Any) -> int:
            stats = [
                txn.stat(db)
                for db in (
                    self._env.open_db(None, txn=txn),
                    self._meta,
                    self._config,
                    self._usage,
                    *self._queues.values(),
                )
            ]
            pages = _META_PAGES + sum(
                s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats
            )
            return int(pages * stats[0]["psize"])

        return DatabaseInfo(path=str(self._path), size_bytes=self._submit(run), in_memory=False)

    def healthy(self) -> bool:
        """The store answers a read within HEALTH_TIMEOUT seconds; never blocks longer."""
        try:
            return self._submit(
                lambda txn: txn.get(_FORMAT_KEY, db=self._meta) is not None,
                timeout=HEALTH_TIMEOUT,
            )
        except StoreError:
            return False

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()  # finishes what was submitted; nothing touches the env after
            self._env.close()

    # -- extras for tests and benchmarks ------------------------------------------------------

    @property
    def commits(self) -> int:
        """Commits that wrote to the file since this store was opened (at most one per batch).

        A batch that only read commits nothing LMDB has to write, so it is not counted and costs
        no fsync; with ``sync=True`` every counted commit is one.
        """
        return self._commits

    @property
    def map_size(self) -> int:
        """The current LMDB map size in bytes."""
        return self._submit(lambda _: int(self._env.info()["map_size"]))

    @property
    def path(self) -> Path:
        return self._path

    # -- plumbing ---------------------------------------------------------------------------

    def _load_meta(self, txn: Any, source: Source) -> QueueMeta:
        data = txn.get(_SOURCE_KEYS[source], db=self._meta)
        if data is None:
            raise StoreError(f"{self._path}: the {source} queue's counters are missing")
        return QueueMeta.decode(data)

    def _save_meta(self, txn: Any, source: Source, meta: QueueMeta) -> None:
        txn.put(_SOURCE_KEYS[source], meta.encode(), db=self._meta)

    def _load_usage(self, txn: Any, source: Source) -> UsageRecord:
        data = txn.get(_SOURCE_KEYS[source], db=self._usage)
        return UsageRecord() if data is None else UsageRecord.decode(data)

    def _submit(self, run: Callable[[Any], T], *, timeout: float | None = None) -> T:
        if self._closed:
            raise StoreClosedError("the queue store is closed")
        if self._broken is not None:
            raise self._broken_error()
        return self._writer.submit(run, timeout=timeout)

    def _execute(self, batch: Sequence[Operation]) -> list[Outcome]:
        """Run ``batch`` in one write transaction, each operation in a child; commit once.

        A full map is grown and the whole batch run again (its operations are pure functions
        of the transaction, so nothing is done twice). At MAX_MAP_SIZE the operation that did
        not fit fails alone and the batch runs again without it.
        """
        if self._broken is not None:
            return [(None, self._broken_error()) for _ in batch]
        full: set[int] = set()  # operations that do not fit in a map of MAX_MAP_SIZE
        while True:
            try:
                return self._execute_once(batch, full)
            except _OperationFullError as exc:
                culprit: int | None = exc.index
            except lmdb.MapFullError:  # on commit: no single operation to blame
                culprit = None
            except lmdb.Error as exc:
                return [(None, self._write_error(exc)) for _ in batch]
            try:
                grown = self._grow()
            except StoreError:  # broken now: every call fails from here on
                return [(None, self._broken_error()) for _ in batch]
            if grown:
                continue
            if culprit is None:  # blame the last operation still running
                culprit = max(i for i in range(len(batch)) if i not in full)
            full.add(culprit)
            if len(full) == len(batch):
                return [(None, self._full_error()) for _ in batch]

    def _execute_once(self, batch: Sequence[Operation], full: set[int]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._env.begin(write=True, buffers=False) as txn:  # aborts on any exception
            for index, operation in enumerate(batch):
                if index in full:
                    outcomes.append((None, self._full_error()))
                    continue
                child = self._env.begin(write=True, parent=txn, buffers=False)
                try:
                    value = operation(child)
                    child.commit()
                except lmdb.MapFullError as exc:
                    child.abort()  # no effect if its commit already failed
                    raise _OperationFullError(index) from exc
                except Exception as exc:
                    child.abort()
                    error = self._write_error(exc) if isinstance(exc, lmdb.Error) else exc
                    outcomes.append((None, error))
                else:
                    outcomes.append((value, None))
        self._count_commit()
        return outcomes

    def _count_commit(self) -> None:
        """Count the batch just committed if LMDB wrote it: it commits a transaction that
        dirtied nothing without writing (or syncing) a page, and then the last id stays."""
        try:
            last = int(self._env.info()["last_txnid"])
        except lmdb.Error:  # the batch is committed whatever this says: never fail it here
            return
        if last != self._last_txnid:
            self._last_txnid = last
            self._commits += 1

    def _write_error(self, exc: BaseException) -> StoreError:
        error = StoreError(f"cannot write the queue store at {self._path}: {exc}")
        error.__cause__ = exc
        return error

    def _full_error(self) -> StoreError:
        return StoreError(
            f"the queue store at {self._path} is full at {MAX_MAP_SIZE:,} bytes;"
            " this operation does not fit"
        )

    def _broken_error(self) -> StoreError:
        error = StoreError(
            f"the queue store at {self._path} is unusable: growing its map failed"
            f" ({self._broken}); restart the service"
        )
        error.__cause__ = self._broken
        return error

    def _grow(self) -> bool:
        """Double the map (up to MAX_MAP_SIZE); False if it is already that large.

        Only the writer thread (or ``__init__``, before it starts) calls this, with no
        transaction open, as ``mdb_env_set_mapsize`` requires. If LMDB fails to resize, the
        map may be gone: the store is marked broken and StoreError raised.
        """
        try:
            size = int(self._env.info()["map_size"])
            if size >= MAX_MAP_SIZE:
                return False
            self._env.set_mapsize(min(size * 2, MAX_MAP_SIZE))
        except lmdb.Error as exc:
            self._broken = exc
            raise self._broken_error() from exc
        return True

    def __repr__(self) -> str:
        return f"LmdbStore({str(self._path)!r})"

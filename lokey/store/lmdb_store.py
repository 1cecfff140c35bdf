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
only after that commit. py-lmdb 3.0.0 deadlocks when a write transaction is aborted while another
thread is inside a read call (the abort waits on a condition variable holding the GIL that the
reader needs to return); a failing operation aborts its child transaction, so concurrent readers
in other threads are not safe. A batch that only reads dirties no page and costs no fsync.

**Reads are copies.** Values are read as ``bytes`` (``buffers=False``): for the 32- and 256-byte
items of the hot path py-lmdb's per-value memoryview costs more than the copy (391 values of a
100 kB take: 115 us with buffers, 64 us without), and for 64 KiB items the two measured the same.

**Map size.** The map starts at ``map_size`` and doubles whenever a batch fills it (the batch is
aborted and run again; operations are pure functions of the transaction). Nothing else uses the
environment meanwhile, as ``mdb_env_set_mapsize`` requires. One process at a time: another
process growing the map is not followed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat, starmap
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import lmdb

from lokey.errors import StoreClosedError, StoreError
from lokey.store import queue
from lokey.store.base import (
    DEFAULT_CAPACITY,
    SOURCES,
    DatabaseInfo,
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
from lokey.store.writer import GroupCommitWriter, Operation, Outcome

__all__ = ["DEFAULT_MAP_SIZE", "LAYOUT_VERSION", "LmdbStore"]

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

    def entries(self) -> Iterator[tuple[int, Buffer]]:
        cursor = self._txn.cursor(db=self._db)
        for key, value in cursor.iternext():
            yield int.from_bytes(key, _KEY_ORDER), value

    def append(self, first_id: int, values: Sequence[bytes]) -> None:
        ids = range(first_id, first_id + len(values))
        keys = map(int.to_bytes, ids, repeat(_KEY_BYTES), repeat(_KEY_ORDER))
        cursor = self._txn.cursor(db=self._db)
        _, added = cursor.putmulti(zip(keys, values, strict=True), append=True)
        if added != len(values):  # ids only grow, so this is a damaged meta record
            raise StoreError(f"queue ids out of order: {added} of {len(values)} items appended")

    def replace(self, item_id: int, value: bytes) -> None:
        self._txn.put(_key(item_id), value, db=self._db)

    def delete(self, item_ids: Iterable[int]) -> None:
        for item_id in item_ids:
            self._txn.delete(_key(item_id), db=self._db)

    def delete_head(self, count: int) -> None:
        cursor = self._txn.cursor(db=self._db)
        cursor.first()
        # Cursor.delete() moves on to the next item; a C-level loop calls it `count` times.
        deque(starmap(cursor.delete, repeat((), count)), maxlen=0)


class LmdbStore:
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
            self._init_layout(capacity)
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

        def run(txn: Any) -> int:
            meta = self._load_meta(txn, src)
            dropped = queue.resize(meta, _LmdbTable(txn, self._queues[src]), size)
            self._save_meta(txn, src, meta)
            return dropped

        return self._submit(run)

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
        try:
            return self._submit(lambda txn: txn.get(_FORMAT_KEY, db=self._meta) is not None)
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
        """Write transactions committed since this store was opened (one per batch)."""
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

    def _submit(self, run: Callable[[Any], T]) -> T:
        if self._closed:
            raise StoreClosedError("the queue store is closed")
        return self._writer.submit(run)

    def _execute(self, batch: Sequence[Operation]) -> list[Outcome]:
        """Run ``batch`` in one write transaction, each operation in a child; commit once."""
        while True:
            try:
                return self._execute_once(batch)
            except lmdb.MapFullError:
                pass
            except lmdb.Error as exc:
                return [(None, self._write_error(exc)) for _ in batch]
            try:
                self._grow()
            except StoreError as exc:
                return [(None, exc) for _ in batch]

    def _execute_once(self, batch: Sequence[Operation]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._env.begin(write=True, buffers=False) as txn:  # aborts on any exception
            for operation in batch:
                child = self._env.begin(write=True, parent=txn, buffers=False)
                try:
                    value = operation(child)
                except lmdb.MapFullError:
                    child.abort()
                    raise
                except Exception as exc:
                    child.abort()
                    error = self._write_error(exc) if isinstance(exc, lmdb.Error) else exc
                    outcomes.append((None, error))
                else:
                    child.commit()
                    outcomes.append((value, None))
        self._commits += 1
        return outcomes

    def _write_error(self, exc: BaseException) -> StoreError:
        error = StoreError(f"cannot write the queue store at {self._path}: {exc}")
        error.__cause__ = exc
        return error

    def _grow(self) -> None:
        size = int(self._env.info()["map_size"])
        if size >= MAX_MAP_SIZE:
            raise StoreError(f"the queue store at {self._path} is full at {size:,} bytes")
        self._env.set_mapsize(min(size * 2, MAX_MAP_SIZE))

    def __repr__(self) -> str:
        return f"LmdbStore({str(self._path)!r})"

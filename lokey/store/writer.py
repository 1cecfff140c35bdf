"""Group commit: one writer thread runs every operation, many callers share each commit.

Callers :meth:`~GroupCommitWriter.submit` an operation (the LMDB store sends its reads too) and
block until it is done. The writer
takes everything pending (up to :data:`MAX_BATCH` operations), hands the batch to the store's
``execute`` (which runs the operations in one transaction and commits it once), then resolves
every caller. With ``sync=True`` each commit costs an fsync; under concurrency the fsync is
shared by the whole batch instead of paid per call.

Closing stops accepting operations, lets the writer finish everything already submitted, and
joins it: an operation submitted before :meth:`~GroupCommitWriter.close` completes, one submitted
after raises :class:`StoreClosedError`, none hangs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast

from lokey.errors import StoreClosedError

__all__ = ["MAX_BATCH", "Execute", "GroupCommitWriter", "Operation", "Outcome"]

T = TypeVar("T")

# Bounds the transaction (and the memory it holds) when thousands of callers are waiting.
MAX_BATCH: Final = 256

Operation = Callable[[Any], object]
# (value, None) for an operation that succeeded, (None, error) for one that raised.
Outcome = tuple[object, BaseException | None]
Execute = Callable[[Sequence[Operation]], list[Outcome]]

_STOP: Final = object()


class _Pending:
    """One submitted operation; its caller blocks on ``done`` (held until the outcome is set).

    A bare lock is the cheapest thing CPython can block on; a Future would add a Condition.
    """

    __slots__ = ("done", "error", "operation", "value")

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.value: object = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()

    def resolve(self, value: object, error: BaseException | None) -> None:
        self.value = value
        self.error = error
        self.done.release()


class GroupCommitWriter:
    """Runs submitted operations in batches on one thread, through ``execute``."""

    def __init__(self, execute: Execute, *, name: str, max_batch: int = MAX_BATCH) -> None:
        self._execute = execute
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, operation: Callable[[Any], T]) -> T:
        """Run ``operation`` in the next batch; return its value once the batch has committed."""
        pending = _Pending(operation)
        with self._lock:  # close() enqueues its stop marker under the same lock: none after it
            if self._closed:
                raise StoreClosedError("the queue store is closed")
            self._queue.put(pending)
        pending.done.acquire()
        if pending.error is not None:
            raise pending.error
        return cast(T, pending.value)

    def close(self) -> None:
        """Finish every submitted operation, then stop the thread; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Pending] = []
            entry = self._queue.get()
            while True:
                if entry is _STOP:
                    stopping = True
                    break
                batch.append(entry)
                if len(batch) >= self._max_batch:
                    break
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self._execute([pending.operation for pending in batch])
        except BaseException as exc:  # the thread must survive, or every caller would hang
            outcomes = [(None, exc)] * len(batch)
        for pending, (value, error) in zip(batch, outcomes, strict=True):
            pending.resolve(value, error)

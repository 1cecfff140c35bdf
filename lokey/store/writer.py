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

**No caller hangs.** Whatever goes wrong in a batch (``execute`` raising, or returning the wrong
number of outcomes) resolves every caller of that batch with its own :class:`StoreError` and
the thread carries on. Should the thread end anyway, it marks the writer closed on its way out
and resolves everything still pending with a StoreError; :meth:`~GroupCommitWriter.submit`
then fails at once (it also checks that the thread is alive).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast

from lokey.errors import StoreClosedError, StoreError

__all__ = ["HEALTH_TIMEOUT", "MAX_BATCH", "Execute", "GroupCommitWriter", "Operation", "Outcome"]

T = TypeVar("T")

# Bounds the transaction (and the memory it holds) when thousands of callers are waiting.
MAX_BATCH: Final = 256
# How long a store's healthy() waits for an answer before it says False (LMDB and memory).
HEALTH_TIMEOUT: Final = 2.0

Operation = Callable[[Any], object]
# (value, None) for an operation that succeeded, (None, error) for one that raised.
Outcome = tuple[object, BaseException | None]
Execute = Callable[[Sequence[Operation]], list[Outcome]]

_STOP: Final = object()

log = logging.getLogger("lokey.store")


class _Pending:
    """One submitted operation; its caller blocks on ``done`` (held until the outcome is set).

    A bare lock is the cheapest thing CPython can block on; a Future would add a Condition.
    Only the writer thread resolves, once: a second resolve is ignored.
    """

    __slots__ = ("done", "error", "operation", "resolved", "value")

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.value: object = None
        self.error: BaseException | None = None
        self.resolved = False
        self.done = threading.Lock()
        self.done.acquire()

    def resolve(self, value: object, error: BaseException | None) -> None:
        if self.resolved:
            return
        self.resolved = True
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
        self._failure: BaseException | None = None  # why the thread ended, if it crashed
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, operation: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """Run ``operation`` in the next batch; return its value once the batch has committed.

        With ``timeout`` a caller that waits longer gets a :class:`StoreError` (the operation
        still runs later; its result is dropped): for reads that must not hang, like a health
        check.
        """
        pending = _Pending(operation)
        with self._lock:  # close() enqueues its stop marker under the same lock: none after it
            if self._closed or not self._thread.is_alive():
                raise self._stopped_error()
            self._queue.put(pending)
        if timeout is None:
            pending.done.acquire()
        elif not pending.done.acquire(timeout=max(timeout, 0.0)):
            raise StoreError(f"the queue store did not answer within {timeout:g} s")
        if pending.error is not None:
            raise pending.error
        return cast(T, pending.value)

    @property
    def alive(self) -> bool:
        """The thread is running and accepting operations."""
        return not self._closed and self._thread.is_alive()

    def close(self) -> None:
        """Finish every submitted operation, then stop the thread; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _stopped_error(self) -> StoreError:
        if self._failure is None:
            return StoreClosedError("the queue store is closed")
        error = StoreError(f"the queue store's writer thread stopped: {self._failure!r}")
        error.__cause__ = self._failure
        return error

    def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            stopping = False
            while not stopping:
                batch = []
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
        except BaseException as exc:
            self._failure = exc
            log.critical("the queue store's writer thread failed", exc_info=exc)
        finally:
            self._shut_down(batch)

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self._execute([pending.operation for pending in batch])
            if len(outcomes) != len(batch):
                raise StoreError(
                    f"the store answered {len(outcomes)} outcomes for {len(batch)} operations"
                )
            checked = [(value, error) for value, error in outcomes]
        except BaseException as exc:  # the thread must survive, or every caller would hang
            for pending in batch:
                pending.resolve(None, _batch_error(exc))
            return
        for pending, (value, error) in zip(batch, checked, strict=True):
            pending.resolve(value, error)

    def _shut_down(self, batch: list[_Pending]) -> None:
        """The thread is ending: refuse new operations, fail every one still waiting."""
        with self._lock:
            self._closed = True
        for pending in batch:  # unresolved only if the thread crashed in the middle of it
            pending.resolve(None, self._stopped_error())
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not _STOP:
                entry.resolve(None, self._stopped_error())


def _batch_error(exc: BaseException) -> StoreError:
    """A caller's own StoreError for a batch that failed as a whole (never a shared instance)."""
    error = StoreError(f"the queue store failed to run the operation: {exc}")
    error.__cause__ = exc
    return error

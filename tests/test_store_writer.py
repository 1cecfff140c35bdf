"""The group-commit writer (lokey.store.writer) never leaves a caller hanging.

Whatever ``execute`` does (raise, return the wrong number of outcomes) every caller of the batch
gets its own StoreError and the thread carries on; if the thread ends anyway, everything still
waiting fails and later submits fail at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from lokey.errors import StoreClosedError, StoreError
from lokey.store import LmdbStore, MemoryStore, lmdb_store, memory
from lokey.store.writer import GroupCommitWriter, Operation, Outcome
from tests.store_helpers import join_threads, wait_until

Result = object


def ok(batch: Sequence[Operation]) -> list[Outcome]:
    return [(operation(None), None) for operation in batch]


class Gate:
    """An execute that holds its first batch until opened, then delegates to ``then``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.then = ok

    def __call__(self, batch: Sequence[Operation]) -> list[Outcome]:
        if not self.opened.is_set():
            self.entered.set()
            assert self.opened.wait(10)
        return self.then(batch)


def submit_in_threads(
    writer: GroupCommitWriter, count: int, results: list[Result] | None = None
) -> tuple[list[Result], list[threading.Thread]]:
    """``count`` threads submitting one operation each; outcomes land in ``results``."""
    out: list[Result] = [] if results is None else results
    lock = threading.Lock()

    def call(index: int) -> None:
        try:
            value: Result = writer.submit(lambda _: index)
        except BaseException as exc:
            value = exc
        with lock:
            out.append(value)

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return out, threads


def queued_behind(
    writer: GroupCommitWriter, gate: Gate, count: int
) -> tuple[list[Result], list[threading.Thread]]:
    """``count`` callers: the first held inside the gate, the rest queued behind it."""
    results, threads = submit_in_threads(writer, 1)
    assert gate.entered.wait(10)
    _, others = submit_in_threads(writer, count - 1, results)
    wait_until(lambda: writer._queue.qsize() == count - 1)
    return results, threads + others


@pytest.mark.parametrize("wrong", [[], [(1, None)] * 3, [1], [1, 2], None])
def test_wrong_outcomes_fail_every_caller_of_the_batch(wrong: object) -> None:
    """The reviewer's death.py: execute returned [] and the thread died, hanging everyone."""
    gate = Gate()
    writer = GroupCommitWriter(gate, name="test-writer")
    _, first = submit_in_threads(writer, 1)
    assert gate.entered.wait(10)
    gate.then = lambda batch: wrong  # type: ignore[assignment,return-value]
    results, threads = submit_in_threads(writer, 2)
    wait_until(lambda: writer._queue.qsize() == 2)
    gate.opened.set()
    join_threads([*first, *threads], timeout=10)
    errors = [r for r in results if isinstance(r, StoreError)]
    assert len(errors) == 2
    assert errors[0] is not errors[1]  # each caller raises its own instance
    assert writer.alive
    gate.then = ok
    assert writer.submit(lambda _: "still works") == "still works"
    writer.close()


def test_an_execute_that_raises_fails_the_batch_not_the_writer() -> None:
    gate = Gate()
    writer = GroupCommitWriter(gate, name="test-writer")

    def broken(batch: Sequence[Operation]) -> list[Outcome]:
        raise KeyError("bug in execute")

    results, threads = queued_behind(writer, gate, 4)
    gate.then = broken
    gate.opened.set()
    join_threads(threads, timeout=10)
    errors = [r for r in results if isinstance(r, StoreError)]
    assert len(errors) == 4  # a batch of one, then a batch of three
    assert len({id(e) for e in errors}) == 4
    assert all(isinstance(e.__cause__, KeyError) for e in errors)
    gate.then = ok
    assert writer.submit(lambda _: 5) == 5
    writer.close()


def test_if_the_thread_dies_nothing_hangs_and_submit_fails_fast(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    writer = GroupCommitWriter(gate, name="test-writer")
    held = threading.Event()
    release = threading.Event()

    def dying_run_batch(batch: object) -> None:
        held.set()
        assert release.wait(10)
        raise RuntimeError("writer thread bug")

    writer._run_batch = dying_run_batch  # type: ignore[method-assign]
    gate.opened.set()
    results, threads = submit_in_threads(writer, 1)
    assert held.wait(10)
    _, others = submit_in_threads(writer, 3, results)
    wait_until(lambda: writer._queue.qsize() == 3)
    release.set()
    join_threads([*threads, *others], timeout=10)
    assert len(results) == 4  # the batch it died in and the three queued behind it
    assert all(type(r) is StoreError for r in results)
    assert all("writer thread bug" in str(r) for r in results)
    assert not writer.alive
    with pytest.raises(StoreError, match="writer thread stopped") as caught:
        writer.submit(lambda _: 1)
    assert not isinstance(caught.value, StoreClosedError)
    assert "writer thread failed" in caplog.text
    writer.close()  # still fine


def test_submit_checks_that_the_thread_is_alive() -> None:
    writer = GroupCommitWriter(ok, name="test-writer")
    writer.close()
    writer._closed = False  # as if the thread had gone without marking the writer closed
    with pytest.raises(StoreError):
        writer.submit(lambda _: 1)


def test_a_submit_with_a_timeout_gives_up() -> None:
    gate = Gate()
    writer = GroupCommitWriter(gate, name="test-writer")
    _, threads = submit_in_threads(writer, 1)
    assert gate.entered.wait(10)
    with pytest.raises(StoreError, match="did not answer"):
        writer.submit(lambda _: 1, timeout=0.02)
    gate.opened.set()
    join_threads(threads, timeout=10)
    assert writer.submit(lambda _: 2, timeout=5) == 2
    writer.close()


# -- through the LMDB store -----------------------------------------------------------------------


def test_an_lmdb_store_with_a_broken_execute_fails_calls_instead_of_hanging(
    tmp_path: Path,
) -> None:
    store = LmdbStore(tmp_path / "api.db", sync=False)
    store.push("trng", [b"abcdef"])
    execute = store._writer._execute
    store._writer._execute = lambda batch: []
    with pytest.raises(StoreError, match="0 outcomes"):
        store.take("trng", 3)
    assert not store.healthy()
    store._writer._execute = execute
    assert store.healthy()
    assert store.take("trng", 3) == b"abc"
    store.close()


def test_healthy_answers_false_instead_of_waiting_for_a_busy_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lmdb_store, "HEALTH_TIMEOUT", 0.05)
    gate = threading.Event()
    entered = threading.Event()

    def slow_now() -> float:  # holds the writer inside an accounted take
        entered.set()
        assert gate.wait(10)
        return 1_700_000_000.0

    store = LmdbStore(tmp_path / "api.db", sync=False, now=slow_now)
    store.push("trng", [b"abcdef"])
    taker = threading.Thread(target=store.take, args=("trng", 2), daemon=True)
    taker.start()
    assert entered.wait(10)
    assert not store.healthy()
    gate.set()
    join_threads([taker], timeout=10)
    assert store.healthy()
    store.close()


def test_memory_healthy_does_not_wait_for_a_held_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "HEALTH_TIMEOUT", 0.05)
    store = MemoryStore()
    with store._lock:
        assert not store.healthy()
    assert store.healthy()

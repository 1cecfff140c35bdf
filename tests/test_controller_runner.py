"""The background worker: steps the controller, sleeps on the injected clock, stops promptly."""

from __future__ import annotations

import math
import threading
import time

import pytest

from lokey.controller import ControllerRunner
from sim.clock import VirtualClock


class Recorder:
    """A stand-in controller: records step calls, returns scripted delays, may raise."""

    def __init__(self, delays: list[float], *, fail_first: bool = False) -> None:
        self.delays = delays
        self.fail_first = fail_first
        self.calls = 0
        self.enough = threading.Event()

    def step(self) -> float:
        self.calls += 1
        if self.calls >= 10:
            self.enough.set()
        if self.fail_first and self.calls == 1:
            raise RuntimeError("a bug in step")
        return self.delays[min(self.calls, len(self.delays)) - 1]


def test_sleeps_until_due_but_never_longer_than_the_poll_interval() -> None:
    clock = VirtualClock()
    recorder = Recorder([0.01, 0.02, math.inf, 10.0])
    runner = ControllerRunner(recorder, clock, poll_s=0.05)
    with runner:
        assert recorder.enough.wait(5.0)
    # 0.01, 0.02, then at most 0.05 per step however far the next due time is (the last step
    # may or may not have been followed by its sleep when stop() arrived)
    slept = clock.monotonic() - 0.03
    assert slept / 0.05 == pytest.approx(round(slept / 0.05))
    assert recorder.calls - 3 <= round(slept / 0.05) <= recorder.calls - 2
    assert not runner.running


def test_an_error_in_step_does_not_kill_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder([0.001], fail_first=True)
    with (
        caplog.at_level("ERROR", logger="lokey.controller.runner"),
        ControllerRunner(recorder, VirtualClock()),
    ):
        assert recorder.enough.wait(5.0)
    assert any("controller step failed" in r.getMessage() for r in caplog.records)


def test_stop_is_prompt_and_start_twice_is_refused() -> None:
    recorder = Recorder([math.inf])
    runner = ControllerRunner(recorder, VirtualClock(), poll_s=0.05)
    runner.start()
    with pytest.raises(RuntimeError, match="already running"):
        runner.start()
    began = time.monotonic()
    runner.stop()
    assert time.monotonic() - began < 1.0
    assert not runner.running
    runner.start()  # a stopped runner can start again
    runner.stop()


def test_poll_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="poll_s"):
        ControllerRunner(Recorder([1.0]), VirtualClock(), poll_s=0.0)


class Blocking:
    """A stand-in controller whose step can be held inside (a bus transfer that hangs)."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self.threads: set[threading.Thread] = set()  # objects: idents are recycled

    def step(self) -> float:
        with self.lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.threads.add(threading.current_thread())
        try:
            self.inside.set()
            assert self.release.wait(10.0), "the test never released the step"
        finally:
            with self.lock:
                self.concurrent -= 1
        return 0.001


def test_a_stop_that_times_out_keeps_the_worker_and_start_refuses() -> None:
    """stop() used to forget a worker it could not join, and start() then ran a second one."""
    controller = Blocking()
    name = "lokey-controller-stop-timeout-test"
    runner = ControllerRunner(controller, VirtualClock(), poll_s=0.01, name=name)
    runner.start()
    assert controller.inside.wait(5.0)
    assert runner.stop(timeout=0.05) is False  # the step outlasts the timeout
    assert runner.running
    assert runner.stopping
    with pytest.raises(RuntimeError, match="has not stopped yet"):
        runner.start()
    assert runner.running
    calls = controller.calls
    controller.release.set()
    assert runner.stop(timeout=5.0) is True  # the second stop waits for the same worker
    assert not runner.running
    assert not runner.stopping
    assert controller.calls == calls  # it ended after its step: no step after the stop
    assert controller.max_concurrent == 1
    assert len(controller.threads) == 1
    controller.release.clear()
    controller.inside.clear()
    runner.start()  # now a new worker may start
    assert controller.inside.wait(5.0)
    controller.release.set()
    assert runner.stop() is True
    assert controller.max_concurrent == 1
    assert len(controller.threads) == 2  # one after the other, never side by side
    workers = [t for t in threading.enumerate() if t.name == name]
    assert not workers


def test_a_worker_told_to_stop_stays_stopped_even_if_the_runner_is_reused() -> None:
    """Each run has its own stop event: restarting cannot revive a worker that was stopping."""
    controller = Blocking()
    runner = ControllerRunner(controller, VirtualClock(), poll_s=0.01)
    runner.start()
    assert controller.inside.wait(5.0)
    old_stop = runner._stop  # white-box: the run's own event
    assert not runner.stop(timeout=0.01)
    with pytest.raises(RuntimeError):
        runner.start()
    assert runner._stop is old_stop  # the refused start left it set
    assert old_stop.is_set()
    controller.release.set()
    assert runner.stop(timeout=5.0)
    assert not runner.running

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

"""Smoke test of ``bench/bench_controller.py``: it runs and prints its ratios; its virtual-time
figure is the protocol's (wall-clock figures vary by machine and are not asserted)."""

from __future__ import annotations

import pytest

from bench import bench_controller


def test_controller_bench_runs_and_prints_its_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    bench_controller.main(samples=200, repeats=1, requests=2)
    out = capsys.readouterr().out
    for line in ("ratio to driver", "ratio to target", "ratio to ceiling", "ratio to /health"):
        assert line in out


def test_the_controller_adds_no_virtual_time_to_a_sample() -> None:
    """Typical timing: tWHI (1.5 ms) + Random's typical 2 ms per sample, as the raw driver."""
    rate = bench_controller.controller_rate(bench_controller.TYPICAL, 200)
    assert rate.virtual_s / rate.samples == pytest.approx(0.0035, rel=1e-6)

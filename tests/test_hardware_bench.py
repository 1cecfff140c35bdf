"""Smoke test of ``bench/bench_driver.py``: it runs, prints its ratios, and its virtual-time
figures are the protocol's (wall-clock figures vary by machine and are not asserted)."""

from __future__ import annotations

import pytest

from bench import bench_driver


def test_driver_bench_runs_and_prints_its_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    bench_driver.main(count=300, repeats=1)
    out = capsys.readouterr().out
    assert "ratio to target" in out
    assert out.count("ratio to ceiling") == 3
    assert "ratio to model" in out


def test_typical_timing_wastes_no_virtual_time() -> None:
    """With typical chip timing a sample takes exactly tWHI (1.5 ms) + Random's 2 ms."""
    result = bench_driver.run_driver("typical", 200)
    assert result.virtual_per_sample_s == pytest.approx(0.0035, rel=1e-6)
    assert result.wire_bytes / result.samples == 53  # pulse, wake read, command, response, idle


def test_maximum_timing_stays_close_to_the_datasheet_ceiling() -> None:
    result = bench_driver.run_driver("maximum", 100)
    ceiling = 0.0015 + 0.023  # tWHI + Random maximum (spec §1.3, §4)
    assert ceiling <= result.virtual_per_sample_s <= ceiling + 0.002  # one poll step at most

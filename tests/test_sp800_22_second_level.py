"""SP 800-22 §4.2 second-level evaluation: proportion passing and uniformity of p-values."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from lokey.quality.sp800_22.cusum import cumulative_sums
from lokey.quality.sp800_22.second_level import (
    MIN_SEQUENCES_UNIFORMITY,
    Proportion,
    proportion_passing,
    uniformity,
)
from tests.sp800_22_known_inputs import pcg64_bits


def test_interval_for_1000_sequences() -> None:
    # health-tests.md §3.1: m = 1000 -> 0.99 ± 3·sqrt(0.99·0.01/1000) = 0.9806..0.9994.
    result = proportion_passing(np.full(1000, 0.5))
    assert result.low == pytest.approx(0.980561, abs=1e-6)
    assert result.high == pytest.approx(0.999439, abs=1e-6)
    assert round(result.low, 4) == 0.9806
    assert round(result.high, 4) == 0.9994


@pytest.mark.parametrize(
    ("failures", "within"),
    [(0, False), (1, True), (10, True), (19, True), (20, False), (100, False)],
)
def test_proportion_within_interval(failures: int, within: bool) -> None:
    # All 1000 passing lies above 0.9994: the standard's interval is two-sided (§4.2.1).
    p_values = np.concatenate((np.full(failures, 0.001), np.full(1000 - failures, 0.5)))
    result = proportion_passing(p_values)
    assert result == Proportion(
        passed=1000 - failures,
        total=1000,
        proportion=(1000 - failures) / 1000,
        low=result.low,
        high=result.high,
        within=within,
    )


def test_alpha_is_the_pass_threshold() -> None:
    result = proportion_passing([0.01, 0.0099, 0.5, 1.0], alpha=0.01)
    assert (result.passed, result.total) == (3, 4)
    loose = proportion_passing([0.01, 0.0099, 0.5, 1.0], alpha=0.001)
    assert loose.passed == 4
    assert loose.low == pytest.approx(0.999 - 3 * (0.999 * 0.001 / 4) ** 0.5)


def test_results_are_frozen() -> None:
    result = proportion_passing([0.5] * 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = 3  # type: ignore[misc]


def test_uniform_p_values_pass() -> None:
    generator = np.random.Generator(np.random.PCG64(11))
    result = uniformity(generator.random(1000))
    assert sum(result.counts) == 1000
    assert len(result.counts) == 10
    assert result.uniform
    assert result.p_value > 0.01


def test_evenly_spread_p_values_give_chi_squared_zero() -> None:
    result = uniformity((np.arange(100) + 0.5) / 100)
    assert result.counts == (10,) * 10
    assert result.chi_squared == 0.0
    assert result.p_value == 1.0


def test_clustered_p_values_fail() -> None:
    generator = np.random.Generator(np.random.PCG64(12))
    clustered = 0.4 + 0.1 * generator.random(1000)  # all in one bin
    result = uniformity(clustered)
    assert not result.uniform
    assert result.p_value < 1e-4
    # milder: a uniform sample with a fifth of the values piled into [0.9, 1]
    mixed = np.concatenate((generator.random(800), 0.9 + 0.1 * generator.random(200)))
    assert not uniformity(mixed).uniform


def test_bin_edges() -> None:
    values = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] * 5
    counts = uniformity(values).counts
    assert counts == (5, 5, 5, 5, 5, 5, 5, 5, 5, 10)  # P = 1 falls into the last bin


def test_other_bin_count() -> None:
    result = uniformity((np.arange(60) + 0.5) / 60, bins=4)
    assert result.counts == (15, 15, 15, 15)
    assert result.p_value == 1.0


def test_uniformity_needs_55_sequences() -> None:
    with pytest.raises(ValueError, match="55"):
        uniformity(np.linspace(0, 1, MIN_SEQUENCES_UNIFORMITY - 1))
    uniformity(np.linspace(0, 1, MIN_SEQUENCES_UNIFORMITY))


def test_end_to_end_on_pcg64() -> None:
    # 100 independent 10^4-bit sequences through the cumulative sums test (forward p-values).
    p_values = [cumulative_sums(pcg64_bits(seed, 10_000)).p_values[0] for seed in range(100)]
    assert proportion_passing(p_values).within
    assert uniformity(p_values).uniform


@pytest.mark.parametrize("function", [proportion_passing, uniformity])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([], "no p-values"),
        (np.full((60, 2), 0.5), "1-D"),
        ([0.5] * 59 + [1.5], r"\[0, 1\]"),
        ([0.5] * 59 + [-0.1], r"\[0, 1\]"),
        ([0.5] * 59 + [float("nan")], r"\[0, 1\]"),
        (["0.5"] * 60, "numbers"),
        (np.full(60, True), "numbers"),
    ],
)
def test_bad_p_values(function: Any, bad: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(bad)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2.0])
def test_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        proportion_passing([0.5], alpha=alpha)


@pytest.mark.parametrize("bins", [1, 0, True, 2.5])
def test_bad_bins(bins: Any) -> None:
    with pytest.raises(ValueError, match="bins"):
        uniformity([0.5] * 100, bins=bins)

"""SP 800-22 §2.3 runs and §2.4 longest run of ones: known answers, sanity, invariants, errors."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22.runs import longest_run, longest_run_probabilities, runs
from tests.sp800_22_helpers_a import (
    ALPHA,
    bad_sequences,
    bits_of,
    cases,
    pi_100,
    random_bits,
    tolerance,
)

# SP 800-22 Rev 1a §2.4.8: n = 128, M = 8.
EXAMPLE_2_4_8 = bits_of(
    "11001100000101010110110001001100111000000000001001"
    "00110101010001000100111101011010000000110101111100"
    "1100111001101101100010110010"
)


@pytest.mark.parametrize("example", cases("runs"), ids=lambda c: c["section"])
def test_runs_reproduces_the_vectors_file(example: dict[str, Any]) -> None:
    result = runs(bits_of(example["bits"]))
    assert result.test == "runs"
    assert result.p_value == pytest.approx(example["p_value"], abs=tolerance())
    for name, value in example["intermediate"].items():
        assert result.statistics[name] == pytest.approx(value, abs=tolerance()), name


def test_runs_example_2_3_8() -> None:
    # SP 800-22 Rev 1a §2.3.8: the first 100 bits of π; π = 0.42, V_n(obs) = 52, P = 0.500798.
    result = runs(pi_100())
    assert result.statistics["pi"] == pytest.approx(0.42, abs=tolerance())
    assert result.statistics["tau"] == pytest.approx(0.2, abs=tolerance())
    assert result.statistics["V_n_obs"] == 52
    assert result.p_value == pytest.approx(0.500798, abs=tolerance())


def test_runs_prerequisite_boundary_is_exact() -> None:
    # n = 100: τ = 0.2. 30 ones give |π - ½| = 0.2 = τ exactly: not run, P = 0 (§2.3.4 step 2).
    at_limit = np.array([1] * 30 + [0] * 70)
    result = runs(at_limit)
    assert result.p_values == (0.0,)
    assert result.statistics["prerequisite_met"] == 0.0
    inside = np.array([1] * 31 + [0] * 69)
    assert runs(inside).statistics["prerequisite_met"] == 1.0


def test_constant_short_sequence_is_not_run() -> None:
    # n < 16: τ > ½, so the prerequisite alone cannot reject a constant sequence (0/0 statistic).
    assert runs(np.ones(10, dtype=np.int64)).p_values == (0.0,)
    assert runs(np.zeros(2, dtype=np.int64)).p_values == (0.0,)


def test_longest_run_example_2_4_8() -> None:
    # nu = (4, 9, 3, 0) and the printed P = 0.180609 reproduce with the exact π (LoKey's
    # convention). The printed χ² = 4.882605 comes from the rounded table instead
    # (health-tests.md §3.4); the exact χ² is 4.882457.
    result = longest_run(EXAMPLE_2_4_8)
    stats = result.statistics
    assert (stats["M"], stats["N"], stats["K"]) == (8, 16, 3)
    assert [stats[f"nu_{i}"] for i in range(4)] == [4, 9, 3, 0]
    assert result.p_value == pytest.approx(0.180609, abs=tolerance())
    assert stats["chi_square"] == pytest.approx(4.882457, abs=tolerance())
    rounded = [0.2148, 0.3672, 0.2305, 0.1875]
    nu = [4, 9, 3, 0]
    printed_chi = sum((v - 16 * p) ** 2 / (16 * p) for v, p in zip(nu, rounded, strict=True))
    assert printed_chi == pytest.approx(4.882605, abs=tolerance())


def _exact_class_probabilities(m: int, low: int, high: int) -> list[Fraction]:
    """Independent exact count: blocks of m bits whose longest run of ones is ≤ k, for each k."""

    def at_most(k: int) -> int:
        ending = [1] + [0] * k  # ending[r]: strings ending in exactly r ones, none longer than k
        for _ in range(m):
            ending = [sum(ending), *ending[:-1]]
        return sum(ending)

    cdf = [Fraction(at_most(k), 2**m) for k in range(low, high)]
    return [cdf[0], *(b - a for a, b in itertools.pairwise(cdf)), 1 - cdf[-1]]


@pytest.mark.parametrize(
    ("m", "low", "high", "published"),
    [
        # §2.4.8 / NIST STS: exact dyadic values for M = 8.
        (8, 1, 4, [0.21484375, 0.3671875, 0.23046875, 0.1875]),
        # NIST STS 2.1.2's ten-digit values for M = 128 (the standard prints them rounded).
        (128, 4, 9, [0.1174035788, 0.242955959, 0.249363483, 0.17517706, 0.102701071, 0.112398847]),
    ],
)
def test_longest_run_probabilities_are_exact(
    m: int, low: int, high: int, published: list[float]
) -> None:
    computed = longest_run_probabilities(m)
    exact = _exact_class_probabilities(m, low, high)
    assert computed == pytest.approx([float(p) for p in exact], rel=1e-12)
    assert computed == pytest.approx(published, abs=1e-9)


def test_longest_run_probabilities_for_ten_thousand_bit_blocks() -> None:
    # The standard's table for M = 10^4 (0.0882, 0.2092, 0.2483, 0.1933, 0.1208, 0.0675,
    # 0.0727) is an approximation: the exact values differ by up to 0.0016 (runs.py docstring).
    computed = longest_run_probabilities(10_000)
    exact = _exact_class_probabilities(10_000, 10, 16)
    assert computed == pytest.approx([float(p) for p in exact], rel=1e-10)
    assert computed == pytest.approx(
        [0.0866, 0.2082, 0.2484, 0.1939, 0.1215, 0.0680, 0.0734], abs=5e-5
    )
    assert sum(computed) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize(
    ("n", "m"), [(128, 8), (6271, 8), (6272, 128), (749_999, 128), (750_000, 10_000)]
)
def test_longest_run_block_size_follows_the_table(n: int, m: int) -> None:
    result = longest_run(random_bits(n))
    assert result.statistics["M"] == m
    assert result.statistics["N"] == n // m


def _naive_longest(block: list[int]) -> int:
    best = current = 0
    for bit in block:
        current = current + 1 if bit else 0
        best = max(best, current)
    return best


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=128, max_size=1200))
def test_longest_run_counts_match_a_naive_scan(bits: list[int]) -> None:
    nu = [0, 0, 0, 0]
    for i in range(len(bits) // 8):
        nu[min(max(_naive_longest(bits[8 * i : 8 * i + 8]), 1), 4) - 1] += 1
    stats = longest_run(np.array(bits)).statistics
    assert [stats[f"nu_{i}"] for i in range(4)] == nu


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.3, 0.5, 0.9]))
def test_longest_run_counts_match_a_naive_scan_for_128_bit_blocks(seed: int, p: float) -> None:
    bits = (np.random.Generator(np.random.PCG64(seed)).random(6272) < p).astype(np.int64)
    nu = [0] * 6
    for i in range(49):
        nu[min(max(_naive_longest(bits[128 * i : 128 * i + 128].tolist()), 4), 9) - 4] += 1
    stats = longest_run(bits).statistics
    assert [stats[f"nu_{i}"] for i in range(6)] == nu


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=2, max_size=400))
def test_runs_is_invariant_under_reversal_and_complement(bits: list[int]) -> None:
    epsilon = np.array(bits, dtype=np.int64)
    result = runs(epsilon)
    assert runs(epsilon[::-1]).p_values == result.p_values
    assert runs(1 - epsilon).statistics["V_n_obs"] == result.statistics["V_n_obs"]


@pytest.mark.parametrize("test", [runs, longest_run])
def test_random_megabit_passes(test: Any) -> None:
    result = test(random_bits())
    assert all(0.0 <= p <= 1.0 for p in result.p_values)
    assert result.passed()


@pytest.mark.parametrize("name", ["zeros", "alternating", "bias_0.6"])
@pytest.mark.parametrize("test", [runs, longest_run])
def test_bad_sequences_fail(test: Any, name: str) -> None:
    assert test(bad_sequences()[name]).p_value < ALPHA


def test_bias_fails_runs_through_the_prerequisite() -> None:
    result = runs(bad_sequences()["bias_0.6"])
    assert result.statistics["prerequisite_met"] == 0.0
    assert result.p_values == (0.0,)


@pytest.mark.parametrize("test", [runs, longest_run])
@pytest.mark.parametrize(
    "bad",
    [np.zeros((20, 20), dtype=np.int64), np.array([0, 1, 2] * 100), np.full(300, 1.0)],
    ids=["2-D", "value 2", "float"],
)
def test_bad_input_is_refused(test: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match=test.__name__):
        test(bad)


def test_too_short() -> None:
    with pytest.raises(InsufficientDataError):
        runs(np.array([1]))
    with pytest.raises(InsufficientDataError) as info:
        longest_run(random_bits(127))
    assert info.value.needed == 128
    with pytest.raises(InsufficientDataError) as info:
        longest_run(random_bits(10_000), block_size=10_000)
    assert info.value.needed == 750_000


@pytest.mark.parametrize("block_size", [0, 16, 10_000.0, True])
def test_bad_block_size(block_size: Any) -> None:
    with pytest.raises(ValueError, match="block_size"):
        longest_run(random_bits(1000), block_size=block_size)
    if not isinstance(block_size, bool | float):
        with pytest.raises(ValueError, match="block_size"):
            longest_run_probabilities(block_size)

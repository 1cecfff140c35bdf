"""SP 800-22 §2.1 frequency and §2.2 block frequency: known answers, sanity, invariants, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22.frequency import RECOMMENDED_MIN_BITS_A, block_frequency, frequency
from tests.sp800_22_helpers_a import (
    ALPHA,
    bad_sequences,
    bits_of,
    cases,
    pi_100,
    random_bits,
    tolerance,
)

BIT_LISTS = st.lists(st.integers(0, 1), min_size=1, max_size=400)


@pytest.mark.parametrize("example", cases("frequency"), ids=lambda c: c["section"])
def test_frequency_reproduces_the_vectors_file(example: dict[str, Any]) -> None:
    result = frequency(bits_of(example["bits"]))
    assert result.test == "frequency"
    assert result.p_value == pytest.approx(example["p_value"], abs=tolerance())
    for name, value in example["intermediate"].items():
        assert result.statistics[name] == pytest.approx(value, abs=tolerance()), name


def test_block_frequency_example_2_2_4() -> None:
    # SP 800-22 Rev 1a §2.2.4: ε = 0110011010, n = 10, M = 3 → N = 3, χ² = 1, P = 0.801252.
    result = block_frequency(bits_of("0110011010"), block_size=3)
    assert result.statistics["N"] == 3
    assert result.statistics["chi_square"] == pytest.approx(1.0, abs=tolerance())
    assert result.p_value == pytest.approx(0.801252, abs=tolerance())


def test_block_frequency_example_2_2_8() -> None:
    # SP 800-22 Rev 1a §2.2.8: the first 100 bits of π (the vectors file's 2.1.8 input), M = 10
    # → N = 10, χ² = 7.2, P = 0.706438.
    result = block_frequency(pi_100(), block_size=10)
    assert result.statistics["N"] == 10
    assert result.statistics["chi_square"] == pytest.approx(7.2, abs=tolerance())
    assert result.p_value == pytest.approx(0.706438, abs=tolerance())


def test_block_frequency_defaults_to_sts_block_size() -> None:
    result = block_frequency(random_bits(1000))
    assert result.statistics["M"] == 128
    assert result.statistics["N"] == 7  # remainder of 104 bits discarded


@pytest.mark.parametrize("test", [frequency, block_frequency])
def test_random_megabit_passes(test: Any) -> None:
    result = test(random_bits())
    assert all(0.0 <= p <= 1.0 for p in result.p_values)
    assert result.passed()


@pytest.mark.parametrize(
    ("name", "fails"),
    [
        ("zeros", True),
        ("bias_0.6", True),
        ("alternating", False),
        ("repeating_32_bit_block", False),
    ],
)
@pytest.mark.parametrize("test", [frequency, block_frequency])
def test_bad_sequences(test: Any, name: str, fails: bool) -> None:
    # Both tests see only proportions: they catch bias and are blind to balanced structure
    # (alternating bits and a repeated balanced word give P = 1), which runs, rank and DFT catch.
    result = test(bad_sequences()[name])
    assert result.p_value < ALPHA if fails else result.p_value == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(BIT_LISTS)
def test_frequency_of_the_complement_is_the_same(bits: list[int]) -> None:
    epsilon = np.array(bits, dtype=np.int64)
    direct, complement = frequency(epsilon), frequency(1 - epsilon)
    assert complement.p_values == direct.p_values
    assert complement.statistics["S_n"] == -direct.statistics["S_n"]


@settings(max_examples=200, deadline=None)
@given(BIT_LISTS, st.integers(1, 40))
def test_block_frequency_of_the_complement_is_the_same(bits: list[int], m: int) -> None:
    epsilon = np.array(bits, dtype=np.int64)
    if epsilon.size < m:
        return
    assert block_frequency(1 - epsilon, m).p_values == block_frequency(epsilon, m).p_values


@settings(max_examples=100, deadline=None)
@given(BIT_LISTS, st.integers(1, 40))
def test_block_frequency_matches_the_formula_literally(bits: list[int], m: int) -> None:
    if len(bits) < m:
        return
    blocks = len(bits) // m
    pis = [sum(bits[i * m : (i + 1) * m]) / m for i in range(blocks)]
    chi_square = 4 * m * sum((p - 0.5) ** 2 for p in pis)
    result = block_frequency(np.array(bits), m)
    assert result.statistics["chi_square"] == pytest.approx(chi_square, rel=1e-12, abs=1e-12)


def test_dtypes_do_not_overflow() -> None:
    # health-tests.md §3.5: 2*sum - n wraps for uint8 arrays unless converted first.
    ones = np.ones(1000, dtype=np.uint8)
    assert frequency(ones).statistics["S_n"] == 1000
    assert frequency(ones.astype(bool)).statistics["S_n"] == 1000
    assert frequency(np.zeros(1000, dtype=np.int8)).statistics["S_n"] == -1000


@pytest.mark.parametrize("test", [frequency, block_frequency])
@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10), dtype=np.int64), np.array([0, 1, 2] * 50), np.full(200, 0.5), [0.0] * 200],
    ids=["2-D", "value 2", "float", "float list"],
)
def test_bad_input_is_refused(test: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match=test.__name__):
        test(bad)


def test_too_short() -> None:
    with pytest.raises(InsufficientDataError) as info:
        frequency(np.array([], dtype=np.int64))
    assert info.value.needed == 1
    with pytest.raises(InsufficientDataError) as info:
        block_frequency(np.ones(127, dtype=np.int64))
    assert (info.value.needed, info.value.given) == (128, 127)


@pytest.mark.parametrize("block_size", [0, -3, 2.0, True, "8"])
def test_bad_block_size(block_size: Any) -> None:
    with pytest.raises(ValueError, match="block_size"):
        block_frequency(random_bits(1000), block_size=block_size)


def test_recommended_minimums_follow_the_spec_table() -> None:
    # health-tests.md §3.1, tests 1-8; non-overlapping template has no n there (LoKey's choice:
    # N = 8 blocks, each expecting >= 5 matches of a 9-bit template).
    assert dict(RECOMMENDED_MIN_BITS_A) == {
        "frequency": 100,
        "block_frequency": 100,
        "runs": 100,
        "longest_run": 128,
        "rank": 38_912,
        "dft": 1000,
        "non_overlapping_template": 20_544,
        "overlapping_template": 1_000_000,
    }
    with pytest.raises(TypeError):
        RECOMMENDED_MIN_BITS_A["frequency"] = 1  # type: ignore[index]

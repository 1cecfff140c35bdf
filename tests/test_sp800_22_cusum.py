"""SP 800-22 §2.13 cumulative sums test."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22 import cusum
from lokey.quality.sp800_22.cusum import cumulative_sums, cusum_p_value
from tests.sp800_22_known_inputs import biased_bits, bits_of, pcg64_bits, pi_100

TOL = 1e-6


def floored_p_value(n: int, z: int) -> float:
    """The other reading of §2.13.4 step 4: real-valued bounds, floor(lower) and floor(upper)."""
    root = math.sqrt(n)
    upper = math.floor((n / z - 1) / 4)
    k1 = np.arange(math.floor((-n / z + 1) / 4), upper + 1)
    k2 = np.arange(math.floor((-n / z - 3) / 4), upper + 1)
    sum1 = np.sum(special.ndtr((4 * k1 + 1) * z / root) - special.ndtr((4 * k1 - 1) * z / root))
    sum2 = np.sum(special.ndtr((4 * k2 + 3) * z / root) - special.ndtr((4 * k2 + 1) * z / root))
    return float(1 - sum1 + sum2)


def slow_max_excursion(bits: list[int]) -> int:
    s, best = 0, 0
    for bit in bits:
        s += 1 if bit else -1
        best = max(best, abs(s))
    return best


# --- the standard's examples ---------------------------------------------------------------------


def test_example_2_13_8() -> None:
    # §2.13.8: the first 100 bits of pi: forward z = 16, P = 0.219194; backward z = 19,
    # P = 0.114866. Reproduced with either reading of the summation bounds.
    result = cumulative_sums(pi_100())
    assert result.test == "cumulative_sums"
    assert result.statistics["z_forward"] == 16
    assert result.statistics["z_backward"] == 19
    assert result.p_values == pytest.approx((0.219194, 0.114866), abs=TOL)
    assert floored_p_value(100, 16) == pytest.approx(0.219194, abs=TOL)
    assert floored_p_value(100, 19) == pytest.approx(0.114866, abs=TOL)


def test_example_2_13_4_needs_c_truncation() -> None:
    # §2.13.4: epsilon = 1011010111 (n = 10 < 100, so only the p-value function applies):
    # S = 1 0 1 2 1 2 1 2 3 4, z = 4, printed P = 0.4116588. Summing over the integers inside the
    # bounds (= C truncation) reproduces it; flooring the lower bounds gives 0.411585
    # (health-tests.md §3.4).
    assert slow_max_excursion(bits_of("1011010111").tolist()) == 4
    assert cusum_p_value(10, 4) == pytest.approx(0.4116588, abs=TOL)
    assert floored_p_value(10, 4) == pytest.approx(0.411585, abs=TOL)
    assert abs(floored_p_value(10, 4) - 0.4116588) > 5e-5


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(-10, 4, -2), (-5, 4, -1), (-1, 4, 0), (7, 4, 1), (7, -4, -1), (-8, 4, -2), (0, 3, 0)],
)
def test_c_division_truncates_toward_zero(a: int, b: int, expected: int) -> None:
    assert cusum._c_div(a, b) == expected


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(100, 5000), st.data())
def test_bound_conventions_agree_from_100_bits(n: int, data: st.DataObject) -> None:
    # The choice only matters for tiny n: from n = 100 on the readings differ by < 2e-10
    # (largest at n = 100, z = 21; from n = 200 on they agree to rounding).
    z = data.draw(st.integers(1, n))
    floored = min(1.0, max(0.0, floored_p_value(n, z)))
    assert cusum_p_value(n, z) == pytest.approx(floored, abs=2e-10)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 10**7), st.data())
def test_c_bounds_are_the_integers_inside_the_real_interval(n: int, data: st.DataObject) -> None:
    z = data.draw(st.integers(1, n))
    q = cusum._c_div(n, z)
    assert cusum._c_div(cusum._c_div(-n, z) + 1, 4) == math.ceil((Fraction(-n, z) + 1) / 4)
    assert cusum._c_div(cusum._c_div(-n, z) - 3, 4) == math.ceil((Fraction(-n, z) - 3) / 4)
    assert cusum._c_div(q - 1, 4) == math.floor((Fraction(n, z) - 1) / 4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=100, max_size=600))
def test_backward_is_forward_of_reversed(bits: list[int]) -> None:
    epsilon = np.array(bits, dtype=np.int64)
    result = cumulative_sums(epsilon)
    reversed_result = cumulative_sums(epsilon[::-1])
    assert result.statistics["z_forward"] == slow_max_excursion(bits)
    assert result.statistics["z_backward"] == slow_max_excursion(bits[::-1])
    assert result.statistics["z_backward"] == reversed_result.statistics["z_forward"]
    assert result.p_values[1] == reversed_result.p_values[0]
    assert all(0.0 <= p <= 1.0 for p in result.p_values)


def test_p_value_decreases_with_z() -> None:
    p = [cusum_p_value(10_000, z) for z in range(1, 10_001, 50)]
    assert all(a >= b for a, b in itertools.pairwise(p))
    assert p[0] == 1.0
    assert p[-1] == 0.0


@pytest.mark.parametrize(("n", "z"), [(10, 0), (10, 11), (0, 1)])
def test_p_value_rejects_impossible_z(n: int, z: int) -> None:
    with pytest.raises(ValueError, match="z"):
        cusum_p_value(n, z)


# --- statistical sanity --------------------------------------------------------------------------


def test_pcg64_megabit_passes() -> None:
    result = cumulative_sums(pcg64_bits(1))
    assert all(0.0 <= p <= 1.0 for p in result.p_values)
    assert result.passed(), result


def test_bad_sequences_fail() -> None:
    n = 1_000_000
    assert cumulative_sums(np.zeros(n, dtype=np.int64)).p_values == (0.0, 0.0)
    assert not cumulative_sums(biased_bits(4, n, 0.6)).passed()
    # Balanced overall (monobit would pass) but ones first: the walk climbs to n/2 and back.
    drift = np.concatenate((np.ones(n // 2, dtype=np.int64), np.zeros(n // 2, dtype=np.int64)))
    assert not cumulative_sums(drift).passed()
    # int8 bits must not overflow the walk (health-tests.md §3.5).
    assert cumulative_sums(np.ones(n, dtype=np.int8)).p_values == (0.0, 0.0)


# --- bad input -----------------------------------------------------------------------------------


def test_too_short_raises_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError) as info:
        cumulative_sums(pcg64_bits(0, 99))
    assert info.value.needed == 100
    assert info.value.given == 99


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 100), dtype=np.int64), "1-D"),
        (np.full(100, 2), "0 or 1"),
        (np.full(100, -1), "0 or 1"),
        (np.zeros(100, dtype=np.float64), "integer"),
    ],
)
def test_bad_input(bad: npt.NDArray[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cumulative_sums(bad)

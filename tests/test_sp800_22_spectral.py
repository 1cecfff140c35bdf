"""SP 800-22 §2.6 discrete Fourier transform test: formula, naive transform, sanity, errors.

The standard's examples 2.6.4 and 2.6.8 are not known answers (health-tests.md §3.4), so the
FFT-based count is checked against an O(n²) transform written from the definition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22.spectral import dft
from tests.sp800_22_helpers_a import ALPHA, bad_sequences, random_bits


def _naive(bits: list[int]) -> tuple[int, float, float]:
    """N1, d, P from S_j = Σ_k x_k exp(-2πi·jk/n) evaluated term by term (§2.6.4)."""
    n = len(bits)
    x = np.array(bits, dtype=np.float64) * 2 - 1
    k = np.arange(n)
    j = np.arange(n // 2)[:, np.newaxis]
    moduli = np.abs((x * np.exp(-2j * np.pi * ((j * k) % n) / n)).sum(axis=1))
    threshold = math.sqrt(math.log(20) * n)
    n1 = int(np.count_nonzero(moduli < threshold))
    d = (n1 - 0.95 * n / 2) / math.sqrt(n * 0.95 * 0.05 / 4)
    return n1, d, math.erfc(abs(d) / math.sqrt(2))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=2, max_size=600))
def test_count_matches_a_naive_transform(bits: list[int]) -> None:
    n1, d, p = _naive(bits)
    result = dft(np.array(bits))
    assert result.statistics["N1"] == n1
    assert result.statistics["d"] == pytest.approx(d, rel=1e-12, abs=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-9, abs=1e-15)


def test_threshold_and_expected_count() -> None:
    stats = dft(random_bits(1000)).statistics
    assert stats["T"] == pytest.approx(math.sqrt(math.log(1 / 0.05) * 1000), rel=1e-15)
    assert stats["N0"] == pytest.approx(475.0)


def test_all_zeros_has_only_the_constant_peak() -> None:
    # X = -1 everywhere: S_0 = -n, every other S_j = 0 < T, so N1 = n/2 - 1.
    stats = dft(np.zeros(1000, dtype=np.int64)).statistics
    assert stats["N1"] == 499


def test_random_megabit_passes() -> None:
    result = dft(random_bits())
    assert 0.0 <= result.p_value <= 1.0
    assert result.passed()


@pytest.mark.parametrize("name", ["zeros", "alternating", "repeating_32_bit_block", "bias_0.6"])
def test_bad_sequences_fail(name: str) -> None:
    assert dft(bad_sequences()[name]).p_value < ALPHA


def test_odd_length() -> None:
    result = dft(random_bits(1001))
    assert result.statistics["N0"] == pytest.approx(0.95 * 1001 / 2)
    assert 0.0 <= result.p_value <= 1.0


@pytest.mark.parametrize(
    "bad",
    [np.zeros((40, 40), dtype=np.int64), np.array([0, 1, 2] * 400), np.full(1200, 0.0)],
    ids=["2-D", "value 2", "float"],
)
def test_bad_input_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="dft"):
        dft(bad)


def test_too_short() -> None:
    with pytest.raises(InsufficientDataError) as info:
        dft(np.array([1]))
    assert info.value.needed == 2

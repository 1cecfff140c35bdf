"""SP 800-22 §2.11 serial test and §2.12 approximate entropy test."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22 import entropy
from lokey.quality.sp800_22.entropy import approximate_entropy, pattern_counts, serial
from tests.sp800_22_known_inputs import (
    biased_bits,
    bits_of,
    counter_bits,
    e_bits,
    pcg64_bits,
    pi_100,
    repeated_block_bits,
)

TOL = 1e-6


def slow_counts(bits: list[int], m: int) -> list[int]:
    """Cyclic m-bit pattern counts, straight from §2.11.4 steps 1-2."""
    augmented = bits + bits[: m - 1]
    seen = Counter(tuple(augmented[i : i + m]) for i in range(len(bits)))
    return [
        seen.get(tuple((value >> (m - 1 - j)) & 1 for j in range(m)), 0) for value in range(1 << m)
    ]


def slow_psi_squared(bits: list[int], m: int) -> float:
    if m <= 0:
        return 0.0
    n = len(bits)
    return (1 << m) / n * sum(c * c for c in slow_counts(bits, m)) - n


# --- approximate entropy: the standard's reliable examples ---------------------------------------


def test_example_2_12_4() -> None:
    # §2.12.4: epsilon = 0100110101, m = 3: phi(3) = -1.643418, phi(4) = -1.834372,
    # ApEn = 0.190954, chi² = 10.043859 (printed as 0.502193 by a slip; health-tests.md §3.4
    # counts the example as reliable: its P-value follows from the correct chi²), P = 0.261961.
    result = approximate_entropy(bits_of("0100110101"), m=3, strict=False)
    assert result.test == "approximate_entropy"
    assert result.statistics["phi_m"] == pytest.approx(-1.643418, abs=TOL)
    assert result.statistics["phi_m_plus_1"] == pytest.approx(-1.834372, abs=TOL)
    assert result.statistics["ApEn"] == pytest.approx(0.190954, abs=TOL)
    assert result.statistics["chi_squared"] == pytest.approx(10.043859, abs=TOL)
    assert result.p_values == pytest.approx((0.261961,), abs=TOL)


def test_example_2_12_8() -> None:
    # §2.12.8: the first 100 bits of pi, m = 2: ApEn = 0.665393, chi² = 5.550792, P = 0.235301.
    result = approximate_entropy(pi_100(), m=2, strict=False)
    assert result.statistics["ApEn"] == pytest.approx(0.665393, abs=TOL)
    assert result.statistics["chi_squared"] == pytest.approx(5.550792, abs=TOL)
    assert result.p_values == pytest.approx((0.235301,), abs=TOL)


# --- serial: examples ----------------------------------------------------------------------------


def test_example_2_11_8_serial_on_e() -> None:
    # §2.11.8: first 10^6 bits of e, m = 2: del psi² = 0.339764, del² psi² = 0.336400,
    # P1 = 0.843764, P2 = 0.561915.
    result = serial(e_bits(), m=2)
    assert result.test == "serial"
    assert result.statistics["del_psi_sq"] == pytest.approx(0.339764, abs=TOL)
    assert result.statistics["del2_psi_sq"] == pytest.approx(0.336400, abs=TOL)
    assert result.p_values == pytest.approx((0.843764, 0.561915), abs=TOL)


def test_example_2_11_4_statistics() -> None:
    # §2.11.4: epsilon = 0011011101, m = 3: psi²_3 = 2.8, psi²_2 = 1.2, psi²_1 = 0.4, del = 1.6,
    # del² = 0.8 - reproduced. The printed P-values (0.9057, 0.8805) are not (health-tests.md
    # §3.4); the formula gives igamc(2, 0.8) = 1.8·e^-0.8 and igamc(1, 0.4) = e^-0.4.
    result = serial(bits_of("0011011101"), m=3, strict=False)
    assert result.statistics["psi_sq_m"] == pytest.approx(2.8, abs=1e-12)
    assert result.statistics["psi_sq_m_minus_1"] == pytest.approx(1.2, abs=1e-12)
    assert result.statistics["psi_sq_m_minus_2"] == pytest.approx(0.4, abs=1e-12)
    assert result.statistics["del_psi_sq"] == pytest.approx(1.6, abs=1e-12)
    assert result.statistics["del2_psi_sq"] == pytest.approx(0.8, abs=1e-12)
    assert result.p_values == pytest.approx((1.8 * math.exp(-0.8), math.exp(-0.4)), abs=1e-12)


# --- properties against slow references ----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pattern_counts_match_reference(data: st.DataObject) -> None:
    bits = data.draw(st.lists(st.integers(0, 1), min_size=1, max_size=200))
    m = data.draw(st.integers(1, min(len(bits), 8)))
    counts = pattern_counts(np.array(bits, dtype=np.int64), m)
    assert counts.tolist() == slow_counts(bits, m)
    assert int(counts.sum()) == len(bits)
    if m > 1:  # the (m-1)-bit counts derived from the m-bit ones equal the direct count
        assert entropy._shorter(counts).tolist() == slow_counts(bits, m - 1)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_serial_statistics_match_reference(data: st.DataObject) -> None:
    bits = data.draw(st.lists(st.integers(0, 1), min_size=2, max_size=200))
    m = data.draw(st.integers(2, min(len(bits), 7)))
    result = serial(np.array(bits, dtype=np.int64), m=m, strict=False)
    psi = [slow_psi_squared(bits, m - k) for k in range(3)]
    assert result.statistics["del_psi_sq"] == pytest.approx(psi[0] - psi[1], abs=1e-9)
    assert result.statistics["del2_psi_sq"] == pytest.approx(psi[0] - 2 * psi[1] + psi[2], abs=1e-9)
    assert all(0.0 <= p <= 1.0 for p in result.p_values)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_approximate_entropy_matches_reference(data: st.DataObject) -> None:
    bits = data.draw(st.lists(st.integers(0, 1), min_size=2, max_size=200))
    m = data.draw(st.integers(1, min(len(bits) - 1, 6)))
    n = len(bits)

    def phi(k: int) -> float:
        return sum(c / n * math.log(c / n) for c in slow_counts(bits, k) if c)

    result = approximate_entropy(np.array(bits, dtype=np.int64), m=m, strict=False)
    assert result.statistics["ApEn"] == pytest.approx(phi(m) - phi(m + 1), abs=1e-9)
    assert 0.0 <= result.p_value <= 1.0


# --- statistical sanity --------------------------------------------------------------------------


def test_pcg64_megabit_passes() -> None:
    bits = pcg64_bits(1)
    for result in (serial(bits), approximate_entropy(bits)):
        assert all(0.0 <= p <= 1.0 for p in result.p_values)
        assert result.passed(), result


BAD_SEQUENCES = {
    "all zeros": np.zeros(1 << 20, dtype=np.int64),
    "8-bit counter": counter_bits(1 << 20, width=8),
    "repeated 4096-bit block": repeated_block_bits(3, 1 << 20, 4096),
    "bias 0.6": biased_bits(3, 1 << 20, 0.6),
}


@pytest.mark.parametrize("name", BAD_SEQUENCES)
def test_bad_sequences_fail(name: str) -> None:
    bits = BAD_SEQUENCES[name]
    assert not serial(bits).passed()
    assert not approximate_entropy(bits).passed()


def test_one_sided_tests_do_not_flag_too_even_counts() -> None:
    # A full-period 16-bit counter (2^16 values · 16 bits) makes every cyclic 16-bit pattern
    # exactly equally frequent: psi² = 0 and P = 1. Both tests only reject large chi² (§3.11,
    # §3.12), so "too uniform" passes; Maurer's universal test catches this counter
    # (tests/test_sp800_22_universal.py).
    result = serial(counter_bits(1 << 20))
    assert result.statistics["psi_sq_m"] == 0.0
    assert result.p_values == (1.0, 1.0)
    # ApEn = ln 2 exactly in theory; chi² comes out as -4e-9 and must not turn into NaN.
    apen = approximate_entropy(counter_bits(1 << 20))
    assert apen.statistics["chi_squared"] == pytest.approx(0.0, abs=1e-6)
    assert apen.p_values == (1.0,)


# --- limits and bad input ------------------------------------------------------------------------


def test_serial_enforces_m_limit() -> None:
    # m < floor(log2 n) - 2  <=>  n >= 2^(m+3): 2^19 bits for m = 16.
    with pytest.raises(InsufficientDataError) as info:
        serial(pcg64_bits(0, (1 << 19) - 1))
    assert info.value.needed == 1 << 19
    assert info.value.test == "serial"
    serial(pcg64_bits(0, 1 << 19))
    with pytest.raises(InsufficientDataError) as info:
        serial(pcg64_bits(0, 100), m=5)
    assert info.value.needed == 256


def test_approximate_entropy_enforces_m_limit() -> None:
    # m < floor(log2 n) - 5  <=>  n >= 2^(m+6): 65,536 bits for m = 10.
    with pytest.raises(InsufficientDataError) as info:
        approximate_entropy(pcg64_bits(0, 65_535))
    assert info.value.needed == 65_536
    approximate_entropy(pcg64_bits(0, 65_536))
    with pytest.raises(InsufficientDataError) as info:
        approximate_entropy(pi_100(), m=2)  # the standard's own example violates its limit
    assert info.value.needed == 256


def test_not_strict_still_needs_m_bits() -> None:
    with pytest.raises(InsufficientDataError):
        serial(bits_of("01"), m=3, strict=False)
    with pytest.raises(InsufficientDataError):
        approximate_entropy(bits_of("010"), m=3, strict=False)


@pytest.mark.parametrize("m", [1, 0, 25, True, 2.0])
def test_serial_bad_m(m: Any) -> None:
    with pytest.raises(ValueError, match="m must be"):
        serial(pcg64_bits(0, 1 << 20), m=m)


@pytest.mark.parametrize("m", [0, 24, False, 3.0])
def test_approximate_entropy_bad_m(m: Any) -> None:
    with pytest.raises(ValueError, match="m must be"):
        approximate_entropy(pcg64_bits(0, 1 << 20), m=m)


@pytest.mark.parametrize("test", [serial, approximate_entropy])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 1 << 19), dtype=np.int64), "1-D"),
        (np.full(1 << 19, 2), "0 or 1"),
        (np.zeros(1 << 19, dtype=np.float64), "integer"),
    ],
)
def test_bad_input(test: Any, bad: npt.NDArray[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        test(bad)

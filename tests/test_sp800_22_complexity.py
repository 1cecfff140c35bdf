"""SP 800-22 §2.10 linear complexity test and its bit-sliced Berlekamp-Massey."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22._common import igamc
from lokey.quality.sp800_22.complexity import (
    CLASS_PROBABILITIES,
    linear_complexities,
    linear_complexity,
    mean_complexity,
)
from tests.sp800_22_known_inputs import bits_of, e_bits, pcg64_bits

TOL = 1e-6


def slow_berlekamp_massey(s: list[int]) -> int:
    """Textbook Berlekamp-Massey over GF(2) (Massey 1969), one sequence, pure Python."""
    n = len(s)
    c, b = [1] + [0] * n, [1] + [0] * n
    length, last = 0, -1
    for i in range(n):
        d = s[i]
        for j in range(1, length + 1):
            d ^= c[j] & s[i - j]
        if d:
            previous = c[:]
            shift = i - last
            for j in range(n + 1 - shift):
                c[j + shift] ^= b[j]
            if 2 * length <= i:
                length, last, b = i + 1 - length, i, previous
    return length


def lfsr_bits(count: int, taps: tuple[int, ...] = (3, 20), seed: int = 1) -> list[int]:
    """s_t = XOR of s_{t-k} for k in taps (1 + x^3 + x^20 is primitive): linear complexity 20."""
    degree = max(taps)
    state = [(seed >> i) & 1 for i in range(degree)]
    while len(state) < count:
        t = len(state)
        bit = 0
        for k in taps:
            bit ^= state[t - k]
        state.append(bit)
    return state[:count]


# --- Berlekamp-Massey ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 60).flatmap(
        lambda size: st.lists(
            st.lists(st.integers(0, 1), min_size=size, max_size=size), min_size=1, max_size=70
        )
    )
)
def test_parallel_berlekamp_massey_matches_reference(rows: list[list[int]]) -> None:
    got = linear_complexities(np.array(rows, dtype=np.int64))
    assert got.tolist() == [slow_berlekamp_massey(row) for row in rows]


def test_berlekamp_massey_known_sequences() -> None:
    size = 500
    blocks = np.zeros((5, size), dtype=np.int64)
    blocks[1, :] = 1  # constant 1: L = 1
    blocks[2, -1] = 1  # 0...01: L = M (no shorter LFSR can produce it)
    blocks[3] = lfsr_bits(size)  # primitive degree-20 LFSR: L = 20
    blocks[4, ::2] = 1  # 1010...: L = 2
    assert linear_complexities(blocks).tolist() == [0, 1, size, 20, 2]


def test_example_2_10_4_block_complexity_and_t() -> None:
    # §2.10.4: the block 1101011110001 (M = 13) has L = 4; mu = 6.777222, T = 2.999444.
    assert linear_complexities(bits_of("1101011110001")[None, :]).tolist() == [4]
    mu = mean_complexity(13)
    assert mu == pytest.approx(6.777222, abs=TOL)
    assert (-1) ** 13 * (4 - mu) + 2 / 9 == pytest.approx(2.999444, abs=TOL)


def test_mean_complexity_even_and_odd() -> None:
    assert mean_complexity(500) == pytest.approx(250 + 8 / 36, abs=1e-12)
    assert mean_complexity(501) == pytest.approx(250.5 + 10 / 36, abs=1e-12)
    assert mean_complexity(5000) == pytest.approx(2500 + 8 / 36, abs=1e-12)  # 2^-5000 underflows


def test_odd_block_size_above_1023() -> None:
    result = linear_complexity(pcg64_bits(1), block_size=1025)
    assert result.statistics["N"] == 975
    assert result.statistics["mu"] == pytest.approx(512.5 + 10 / 36, abs=1e-12)
    assert result.passed(), result


# --- the test ------------------------------------------------------------------------------------


def test_example_2_10_8_on_e() -> None:
    # §2.10.8: epsilon = first 10^6 bits of e, M = 1000, N = 1000. The standard prints
    # nu = 11, 31, 116, 501, 258, 57, 26 - reproduced - and chi² = 2.700348, P = 0.845406, which do
    # not follow from those nu: chi² of the printed nu with the printed pi is 2.706147,
    # P = igamc(3, 2.706147/2) = 0.844721 (not reproducible as printed; checked here by hand).
    result = linear_complexity(e_bits(), block_size=1000)
    nu = [int(result.statistics[f"nu_{i}"]) for i in range(7)]
    assert nu == [11, 31, 116, 501, 258, 57, 26]
    expected = 1000 * np.array(CLASS_PROBABILITIES)
    by_hand = float(np.sum((np.array(nu) - expected) ** 2 / expected))
    assert result.statistics["chi_squared"] == pytest.approx(by_hand, abs=1e-9)
    assert result.statistics["chi_squared"] == pytest.approx(2.706147, abs=TOL)
    assert result.p_values[0] == pytest.approx(igamc(3, by_hand / 2), abs=1e-12)
    assert result.p_values[0] == pytest.approx(0.844721, abs=TOL)
    assert result.statistics["N"] == 1000


def test_class_probabilities_sum_to_one() -> None:
    assert sum(CLASS_PROBABILITIES) == pytest.approx(1.0, abs=1e-12)


def test_pcg64_megabit_passes_quickly() -> None:
    bits = pcg64_bits(1)
    start = time.perf_counter()
    result = linear_complexity(bits)
    elapsed = time.perf_counter() - start
    assert result.test == "linear_complexity"
    assert 0.0 <= result.p_value <= 1.0
    assert result.passed(), result
    assert result.statistics["N"] == 2000
    assert elapsed < 2.0  # typically ~0.03 s


def test_lfsr_output_fails() -> None:
    bits = np.array(lfsr_bits(200 * 500), dtype=np.int64)
    result = linear_complexity(bits)
    assert result.statistics["nu_0"] == 200  # every block has L = 20, far below mu
    assert result.p_value < 1e-10


def test_repeated_short_block_fails() -> None:
    bits = np.tile(pcg64_bits(5, 100), 1000)  # period 100 -> L <= 100 in every block
    assert linear_complexity(bits).p_value < 1e-10


# --- parameters and bad input --------------------------------------------------------------------


def test_too_short_raises_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError) as info:
        linear_complexity(pcg64_bits(0, 99_999))
    assert info.value.needed == 100_000  # N >= 200 blocks of M = 500
    with pytest.raises(InsufficientDataError) as info:
        linear_complexity(pcg64_bits(0, 500_000), block_size=5000)
    assert info.value.needed == 1_000_000


@pytest.mark.parametrize("block_size", [499, 5001, 0, True])
def test_block_size_outside_standard_range(block_size: int) -> None:
    with pytest.raises(ValueError, match="block_size"):
        linear_complexity(pcg64_bits(0, 100_000), block_size=block_size)


def test_only_k_6_is_defined() -> None:
    with pytest.raises(ValueError, match="K"):
        linear_complexity(pcg64_bits(0, 100_000), K=5)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 100_000), dtype=np.int64), "1-D"),
        (np.full(100_000, 2), "0 or 1"),
        (np.zeros(100_000, dtype=np.float64), "integer"),
    ],
)
def test_bad_input(bad: npt.NDArray[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        linear_complexity(bad)

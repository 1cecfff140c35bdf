"""SP 800-22 §2.5 binary matrix rank: probabilities, GF(2) ranks, example, sanity, errors."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22.matrix import gf2_ranks, rank, rank_probabilities
from tests.sp800_22_helpers_a import ALPHA, bad_sequences, bits_of, random_bits, tolerance


def _slow_rank(rows: list[int]) -> int:
    """Reference GF(2) rank: repeatedly take a row, clear its lowest set bit from the rest."""
    remaining = list(rows)
    found = 0
    while remaining:
        pivot = remaining.pop()
        if pivot:
            found += 1
            low = pivot & -pivot
            remaining = [row ^ pivot if row & low else row for row in remaining]
    return found


def _as_row_ints(bits: np.ndarray[Any, Any], rows: int, cols: int) -> list[list[int]]:
    matrices = bits[: (bits.size // (rows * cols)) * rows * cols].reshape(-1, rows, cols)
    return [[int("".join(map(str, row)), 2) for row in matrix] for matrix in matrices.tolist()]


def test_probabilities_for_32_by_32_round_to_the_standards() -> None:
    full, minus_1, rest = rank_probabilities(32, 32)
    assert (full, minus_1, rest) == pytest.approx((0.2888, 0.5776, 0.1336), abs=5e-5)
    assert full == pytest.approx(0.2887880951538411, rel=1e-12)
    assert full + minus_1 + rest == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize(("rows", "cols"), [(2, 2), (2, 3), (3, 2), (3, 3), (3, 4)])
def test_probabilities_match_enumeration_of_all_small_matrices(rows: int, cols: int) -> None:
    ranks = Counter(
        _slow_rank(list(matrix)) for matrix in itertools.product(range(2**cols), repeat=rows)
    )
    total = 2 ** (rows * cols)
    full = min(rows, cols)
    expected = (
        ranks[full] / total,
        ranks[full - 1] / total,
        sum(count for r, count in ranks.items() if r <= full - 2) / total,
    )
    assert rank_probabilities(rows, cols) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_example_2_5_4_ranks_and_its_32_by_32_convention() -> None:
    # SP 800-22 Rev 1a §2.5.4: ε = 01011001001010101101, M = Q = 3 → N = 2 matrices of ranks 3 and
    # 2, F_M = 1, F_{M-1} = 1. The printed χ² = 0.596953, P = 0.741948 use the 32 x 32
    # probabilities (health-tests.md §3.4); LoKey uses the exact 3 x 3 ones (matrix.py docstring).
    result = rank(bits_of("01011001001010101101"), rows=3, cols=3)
    stats = result.statistics
    assert (stats["N"], stats["F_M"], stats["F_M_minus_1"], stats["F_rest"]) == (2, 1, 1, 0)
    assert (stats["p_full"], stats["p_minus_1"], stats["p_rest"]) == pytest.approx(
        (0.328125, 0.57421875, 0.09765625), abs=1e-15
    )
    printed = (0.2888, 0.5776, 0.1336)
    chi_square = sum((f - 2 * p) ** 2 / (2 * p) for f, p in zip((1, 1, 0), printed, strict=True))
    assert chi_square == pytest.approx(0.596953, abs=tolerance())
    assert math.exp(-chi_square / 2) == pytest.approx(0.741948, abs=tolerance())
    assert result.p_value == pytest.approx(math.exp(-stats["chi_square"] / 2), rel=1e-15)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(2, 12),
    cols=st.integers(2, 64),
    count=st.integers(1, 16),
    density=st.sampled_from([0.05, 0.5, 0.95]),
    seed=st.integers(0, 2**32 - 1),
)
def test_batch_ranks_equal_a_slow_reference(
    rows: int, cols: int, count: int, density: float, seed: int
) -> None:
    generator = np.random.Generator(np.random.PCG64(seed))
    bits = (generator.random(rows * cols * count) < density).astype(np.int64)
    matrices = _as_row_ints(bits, rows, cols)
    packed = np.array(matrices, dtype=np.uint64).reshape(count, rows)
    expected = [_slow_rank(m) for m in matrices]
    assert gf2_ranks(packed, cols).tolist() == expected
    stats = rank(bits, rows=rows, cols=cols).statistics
    full = min(rows, cols)
    assert stats["F_M"] == expected.count(full)
    assert stats["F_M_minus_1"] == expected.count(full - 1)
    assert stats["F_rest"] == sum(r <= full - 2 for r in expected)


def test_known_ranks() -> None:
    identity = np.eye(32, dtype=np.int64)
    duplicated = np.tile(identity[:16], (2, 1))  # 16 distinct rows, each twice
    one_zero_row = identity.copy()
    one_zero_row[5] = 0
    bits = np.concatenate([identity, duplicated, one_zero_row, np.zeros((32, 32))]).astype(int)
    stats = rank(bits.ravel()).statistics
    assert (stats["F_M"], stats["F_M_minus_1"], stats["F_rest"]) == (1, 1, 2)


def test_random_megabit_passes() -> None:
    result = rank(random_bits())
    assert result.statistics["N"] == 976
    assert 0.0 <= result.p_value <= 1.0
    assert result.passed()


@pytest.mark.parametrize("name", ["zeros", "alternating", "repeating_32_bit_block"])
def test_linear_structure_fails(name: str) -> None:
    # Constant, alternating and 32-periodic data give 32 x 32 matrices of rank <= 2.
    result = rank(bad_sequences()[name])
    assert result.statistics["F_rest"] == result.statistics["N"]
    assert result.p_value < ALPHA


@pytest.mark.parametrize(
    "bad",
    [np.zeros((64, 64), dtype=np.int64), np.array([0, 1, 2] * 400), np.full(1200, 1.0)],
    ids=["2-D", "value 2", "float"],
)
def test_bad_input_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="rank"):
        rank(bad)


def test_too_short() -> None:
    with pytest.raises(InsufficientDataError) as info:
        rank(random_bits(1023))
    assert (info.value.needed, info.value.given) == (1024, 1023)
    assert rank(random_bits(1024)).statistics["N"] == 1


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("rows", {"rows": 1}),
        ("cols", {"cols": 1}),
        ("cols", {"cols": 65}),
        ("rows", {"rows": True}),
        ("rows", {"rows": 32.0}),
    ],
)
def test_bad_shape(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=name):
        rank(random_bits(10_000), **kwargs)

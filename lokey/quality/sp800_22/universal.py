"""Maurer's "universal statistical" test (SP 800-22 Rev 1a §2.9, §3.9).

The sequence is cut into non-overlapping L-bit blocks: Q initialisation blocks, then K test
blocks. For every test block the distance (in blocks) back to the previous occurrence of the same
L-bit pattern is taken; fn, the mean of log2 of those distances, estimates the per-block entropy
and is compared with its expected value for a random sequence. A compressible sequence (one that
repeats patterns sooner than chance) has a small fn.

Vectorised: a stable argsort of the block values puts equal patterns next to each other in
original order, so every block's previous occurrence is its predecessor in that order. A pattern
not seen before has "previous occurrence" 0, i.e. distance i (the table T of §2.9.4 step 2 holds
0 for patterns absent from the initialisation segment, as in NIST STS).

sigma follows the standard's formula (§2.9.4 step 5): sigma = c(L, K)·√(variance(L)/K) with
c(L, K) = 0.7 - 0.8/L + (4 + 32/L)·K^(-3/L)/15. The standard's worked example 2.9.4 instead puts
√variance in the denominator (its printed P = 0.767189 follows only that way, health-tests.md
§3.4). LoKey follows the formula: c(L, K) is Coron and Naccache's (1998) correction for the
dependence between test blocks, and with it the p-values of random data are uniform (checked in
tests/test_sp800_22_universal.py), whereas sigma = √variance puts them all above 0.9.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import Bits, TestResult, as_bits, erfc, require_length

__all__ = [
    "EXPECTED_VALUE",
    "VARIANCE",
    "block_length_for",
    "universal",
    "universal_sigma",
]

# §2.9.4 step 5 table: expectedValue(L) and variance(L) of log2(distance) for a random sequence.
EXPECTED_VALUE: Final[dict[int, float]] = {
    1: 0.7326495,
    2: 1.5374383,
    3: 2.4016068,
    4: 3.3112247,
    5: 4.2534266,
    6: 5.2177052,
    7: 6.1962507,
    8: 7.1836656,
    9: 8.1764248,
    10: 9.1723243,
    11: 10.170032,
    12: 11.168765,
    13: 12.168070,
    14: 13.167693,
    15: 14.167488,
    16: 15.167379,
}
VARIANCE: Final[dict[int, float]] = {
    1: 0.690,
    2: 1.338,
    3: 1.901,
    4: 2.358,
    5: 2.705,
    6: 2.954,
    7: 3.125,
    8: 3.238,
    9: 3.311,
    10: 3.356,
    11: 3.384,
    12: 3.401,
    13: 3.410,
    14: 3.416,
    15: 3.419,
    16: 3.421,
}

# §2.9.7 table: the smallest n for each recommended L (n ≥ 1010·2^L·L: Q = 10·2^L initialisation
# blocks plus K = 1000·2^L test blocks of L bits).
_L_BY_N: Final = (
    (1_059_061_760, 16),
    (496_435_200, 15),
    (231_669_760, 14),
    (107_560_960, 13),
    (49_643_520, 12),
    (22_753_280, 11),
    (10_342_400, 10),
    (4_654_080, 9),
    (2_068_480, 8),
    (904_960, 7),
    (387_840, 6),
)
MIN_BITS: Final = _L_BY_N[-1][0]


def block_length_for(n: int) -> int | None:
    """The standard's L for an n-bit sequence (§2.9.7), or None when n < 387,840."""
    for threshold, length in _L_BY_N:
        if n >= threshold:
            return length
    return None


def universal_sigma(block_length: int, test_blocks: int) -> float:
    """sigma = c(L, K)·√(variance(L)/K), c = 0.7 - 0.8/L + (4 + 32/L)·K^(-3/L)/15 (§2.9.4 (5))."""
    length, k = block_length, test_blocks
    if not 2 <= length <= 16 or k < 1:
        raise ValueError(f"need 2 <= L <= 16 and K >= 1 (c(1, K) < 0), got L = {length}, K = {k}")
    c = 0.7 - 0.8 / length + (4.0 + 32.0 / length) * math.pow(k, -3.0 / length) / 15.0
    return c * math.sqrt(VARIANCE[length] / k)


def _previous_occurrence(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each block (1-based index i), the 1-based index of the previous equal block, else 0."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = ordered[1:] == ordered[:-1]
    previous = np.zeros(values.size, dtype=np.int64)
    previous[order[1:][same]] = order[:-1][same] + 1
    return previous


def _block_values(epsilon: Bits, length: int, count: int) -> npt.NDArray[np.int64]:
    blocks = epsilon[: count * length].reshape(count, length)
    weights = np.left_shift(np.int64(1), np.arange(length - 1, -1, -1, dtype=np.int64))
    values: npt.NDArray[np.int64] = blocks @ weights
    return values


def universal(
    bits: npt.ArrayLike, block_length: int | None = None, init_blocks: int | None = None
) -> TestResult:
    """SP 800-22 §2.9 Maurer's universal statistical test: one p-value.

    ``block_length`` L defaults to the standard's choice for n (§2.9.7: L = 6 from 387,840 bits,
    7 from 904,960, 8 from 2,068,480, ... 16); below 387,840 bits the default raises
    :class:`~lokey.errors.InsufficientDataError`. ``init_blocks`` Q defaults to 10·2^L. With
    K = ⌊n/L⌋ - Q test blocks, fn = (1/K)·Σ log2(i - T_{block i}) and
    P = erfc(|fn - expectedValue(L)| / (√2·sigma)). An explicit L (2..16; for L = 1 the table has
    values but c(1, K) = -0.1 + 2.4/K^3 is negative) and Q are accepted down to
    K = 1 test block (n ≥ L·(Q + 1)), which the standard's own example 2.9.4 needs; the standard
    recommends K ≈ 1000·2^L, i.e. n ≥ 1010·2^L·L.
    """
    test = "universal"
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    if block_length is None:
        require_length(test, n, MIN_BITS)
        length = next(size for threshold, size in _L_BY_N if n >= threshold)
    elif isinstance(block_length, bool) or not isinstance(block_length, int):
        raise ValueError(f"{test}: block_length must be an integer, got {block_length!r}")
    elif not 2 <= block_length <= 16:
        raise ValueError(f"{test}: block_length must be in 2..16, got {block_length}")
    else:
        length = block_length
    if init_blocks is None:
        q = 10 * (1 << length)
    elif isinstance(init_blocks, bool) or not isinstance(init_blocks, int) or init_blocks < 1:
        raise ValueError(f"{test}: init_blocks must be a positive integer, got {init_blocks!r}")
    else:
        q = init_blocks
    require_length(test, n, length * (q + 1))
    total_blocks = n // length
    k = total_blocks - q
    values = _block_values(epsilon, length, total_blocks)
    previous = _previous_occurrence(values)
    index = np.arange(q + 1, total_blocks + 1, dtype=np.int64)  # 1-based test-block indices
    fn = float(np.sum(np.log2(index - previous[q:]))) / k
    expected = EXPECTED_VALUE[length]
    sigma = universal_sigma(length, k)
    p_value = erfc(abs(fn - expected) / (math.sqrt(2.0) * sigma))
    return TestResult(
        test=test,
        p_values=(p_value,),
        statistics={
            "L": float(length),
            "Q": float(q),
            "K": float(k),
            "fn": fn,
            "expected_value": expected,
            "variance": VARIANCE[length],
            "sigma": sigma,
        },
    )

"""Linear complexity test (SP 800-22 Rev 1a §2.10, §3.10).

The sequence is cut into N blocks of M bits; the linear complexity L_i of each block (length of
the shortest LFSR generating it, found with the Berlekamp-Massey algorithm over GF(2)) is compared
with its mean μ for random blocks. Too-short LFSRs mean the data is predictable.

Berlekamp-Massey runs on all N blocks at once, bit-sliced: bit j of word w holds block 64·w + j,
so one uint64 operation advances 64 blocks. Per step t the discrepancy of every block is an
AND/XOR-reduce over the connection polynomial C and the last t bits; the blocks whose discrepancy
is 1 and whose length changes (2L ≤ t) are selected with packed masks. The polynomial B of the
last length change is kept pre-multiplied by x^(t - m) so all blocks shift together. 10^6 bits
with M = 500 take well under a second.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import Bits, TestResult, as_bits, igamc, require_length

__all__ = [
    "CLASS_PROBABILITIES",
    "linear_complexities",
    "linear_complexity",
    "mean_complexity",
]

CLASS_PROBABILITIES: Final = (0.010417, 0.03125, 0.125, 0.5, 0.25, 0.0625, 0.020833)
"""π_0..π_6 as printed in §2.10.4 step 6 / §3.10 (exactly 1/96, 1/32, 1/8, 1/2, 1/4, 1/16, 1/48
in the limit of large M; the printed values are what NIST STS uses and they sum to 1)."""

_CLASS_EDGES: Final = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
_DEGREES_OF_FREEDOM: Final = 6
_MIN_BLOCK: Final = 500
_MAX_BLOCK: Final = 5000
_MIN_BLOCKS: Final = 200


def mean_complexity(block_size: int) -> float:
    """μ = M/2 + (9 + (-1)^(M+1))/36 - (M/3 + 2/9)/2^M (§2.10.4 step 3)."""
    m = block_size
    sign = 1 if (m + 1) % 2 == 0 else -1
    return (
        m / 2.0 + (9 + sign) / 36.0 - math.ldexp(m / 3.0 + 2.0 / 9.0, -m)
    )  # no overflow at M > 1023


def _pack_rows(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint64]:
    """Bool vector (length a multiple of 64) → uint64 words, element 64·w + j at bit j of word w."""
    packed: npt.NDArray[np.uint64] = np.packbits(mask, bitorder="little").view(np.uint64)
    return packed


def _unpack_rows(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    unpacked: npt.NDArray[np.bool_] = np.unpackbits(words.view(np.uint8), bitorder="little").view(
        np.bool_
    )
    return unpacked


def linear_complexities(blocks: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Linear complexity of every row of an (N, M) 0/1 array (Berlekamp-Massey, §2.10.4 step 2).

    Massey's formulation over GF(2), for all rows in parallel (module docstring): with
    connection polynomial C (initially 1), D = x^(t-m)·B (initially x) and length L (initially 0),
    step t computes the discrepancy d = s_t + Σ_{i=1..L} C_i s_{t-i}; where d = 1, C ← C + D, and
    where also 2L ≤ t, L ← t + 1 - L and D ← x·(old C); elsewhere D ← x·D.
    """
    count, size = blocks.shape
    if count == 0 or size == 0:
        return np.zeros(count, dtype=np.int64)
    lanes = -(-count // 64) * 64
    padded = np.zeros((size, lanes), dtype=np.uint8)
    padded[:, :count] = blocks.T
    # sequence[t] = bit t of every block, packed: shape (M, lanes / 64)
    sequence = np.packbits(padded, axis=1, bitorder="little").view(np.uint64)
    words = sequence.shape[1]
    ones = np.full(words, np.iinfo(np.uint64).max, dtype=np.uint64)
    connection = np.zeros((size + 2, words), dtype=np.uint64)
    connection[0] = ones
    shifted = np.zeros((size + 2, words), dtype=np.uint64)
    shifted[1] = ones
    lengths = np.zeros(lanes, dtype=np.int64)
    for t in range(size):
        discrepancy = sequence[t].copy()
        if t > 0:
            discrepancy ^= np.bitwise_xor.reduce(
                connection[1 : t + 1] & sequence[t - 1 :: -1], axis=0
            )
        if not discrepancy.any():
            shifted[1 : t + 3] = shifted[0 : t + 2].copy()
            shifted[0] = 0
            continue
        change_bits = _unpack_rows(discrepancy) & (2 * lengths <= t)
        change = _pack_rows(change_bits)
        top = t + 2  # degrees of C and D stay ≤ t + 1 before this step's shift
        old = connection[:top].copy()
        connection[:top] ^= shifted[:top] & discrepancy
        keep = shifted[:top] & ~change
        shifted[1 : top + 1] = (old & change) | keep
        shifted[0] = 0
        lengths = np.where(change_bits, t + 1 - lengths, lengths)
    return lengths[:count]


def linear_complexity(bits: npt.ArrayLike, block_size: int = 500, K: int = 6) -> TestResult:  # noqa: N803
    """SP 800-22 §2.10 linear complexity test: one p-value.

    With N = ⌊n/M⌋ blocks (leftover bits are discarded), L_i the linear complexity of block i and
    μ its mean (:func:`mean_complexity`), T_i = (-1)^M·(L_i - μ) + 2/9 falls into the classes
    T ≤ -2.5, (-2.5, -1.5], ..., (1.5, 2.5], T > 2.5; χ² = Σ (nu_i - Nπ_i)²/(Nπ_i) over the
    K + 1 = 7 classes and P = igamc(K/2, χ²/2).

    ``block_size`` M must lie in the standard's range 500..5000 (§2.10.7; the class probabilities
    are asymptotic in M); ``K`` must be 6, the only value the standard gives probabilities for.
    At least N = 200 blocks are required (§2.10.7), i.e. n ≥ 200·M; the standard recommends
    n ≥ 10^6.
    """
    test = "linear_complexity"
    epsilon = as_bits(bits, test)
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise ValueError(f"{test}: block_size must be an integer, got {block_size!r}")
    if not _MIN_BLOCK <= block_size <= _MAX_BLOCK:
        raise ValueError(
            f"{test}: block_size must be in {_MIN_BLOCK}..{_MAX_BLOCK} (§2.10.7), got {block_size}"
        )
    if K != _DEGREES_OF_FREEDOM or isinstance(K, bool):
        raise ValueError(f"{test}: K must be 6, the standard's class count minus one, got {K!r}")
    n = int(epsilon.size)
    require_length(test, n, _MIN_BLOCKS * block_size)
    count = n // block_size
    complexities = linear_complexities(_blocks(epsilon, block_size, count))
    mu = mean_complexity(block_size)
    sign = 1.0 if block_size % 2 == 0 else -1.0
    t_values = sign * (complexities - mu) + 2.0 / 9.0
    nu = np.bincount(np.searchsorted(_CLASS_EDGES, t_values, side="left"), minlength=7)
    expected = count * np.asarray(CLASS_PROBABILITIES)
    chi_squared = float(np.sum((nu - expected) ** 2 / expected))
    statistics = {"N": float(count), "mu": mu, "chi_squared": chi_squared}
    statistics.update({f"nu_{i}": float(v) for i, v in enumerate(nu)})
    return TestResult(
        test=test, p_values=(igamc(K / 2.0, chi_squared / 2.0),), statistics=statistics
    )


def _blocks(epsilon: Bits, size: int, count: int) -> npt.NDArray[np.int64]:
    return epsilon[: size * count].reshape(count, size)

"""Binary matrix rank test (SP 800-22 Rev 1a §2.5, §3.5).

Consecutive M·Q-bit slices of the sequence are read row by row into M x Q matrices over GF(2);
linear dependence among fixed-length substrings lowers their ranks.

Rank over GF(2), vectorised: each matrix row is packed into one ``uint64`` (Q ≤ 64), and Gaussian
elimination runs column by column over *all* matrices at once: per column, every matrix picks its
first unused row with that bit set as pivot and XORs it into its other rows with that bit set.
That is Q numpy passes over an (N, M) array instead of N Python eliminations.

Class probabilities (convention). The standard's χ² uses the probabilities of rank M, rank M - 1
and lower for a random M x Q matrix. LoKey computes them from the exact formula of §3.5,

    p_r = 2^{r(Q+M-r) - MQ} · Π_{i=0}^{r-1} (1 - 2^{i-Q})(1 - 2^{i-M}) / (1 - 2^{i-r}),

for the M x Q actually used (:func:`rank_probabilities`); for 32 x 32 these are 0.2887880951…,
0.5775761901…, 0.1336357146…, the standard's 0.2888, 0.5776, 0.1336 before rounding. The
standard's example 2.5.4 (3 x 3 matrices) applies the 32 x 32 values to 3 x 3 matrices, whose
exact probabilities are 0.328125, 0.57421875, 0.09765625, so it does not reproduce under this
convention (health-tests.md §3.4); LoKey's tests check its ranks instead.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import Bits, TestResult, as_bits, require_length

__all__ = ["gf2_ranks", "rank", "rank_probabilities"]

_MAX_COLS = 64


def rank_probabilities(rows: int, cols: int) -> tuple[float, float, float]:
    """P(rank = m), P(rank = m - 1), P(rank ≤ m - 2) of a uniform random rows x cols GF(2) matrix.

    m = min(rows, cols); formula of §3.5 (module docstring). The third class is summed directly
    over r = 0..m - 2 rather than taken as 1 - p_m - p_{m-1}, so it stays accurate when tiny.
    """

    def p(r: int) -> float:
        log2_scale = r * (cols + rows - r) - rows * cols
        product = 1.0
        for i in range(r):
            product *= (
                (1.0 - 2.0 ** (i - cols)) * (1.0 - 2.0 ** (i - rows)) / (1.0 - 2.0 ** (i - r))
            )
        return math.ldexp(product, log2_scale)

    full = min(rows, cols)
    return p(full), p(full - 1), math.fsum(p(r) for r in range(full - 1))


def gf2_ranks(packed: npt.NDArray[np.uint64], cols: int) -> npt.NDArray[np.int64]:
    """Ranks over GF(2) of a batch of matrices, rows packed as bits of ``uint64``.

    ``packed`` has shape (N, rows); bit j (j < ``cols``) of an entry is one matrix element (which
    bit maps to which column does not change the rank). Returns N ranks.
    """
    work = packed.copy()
    count, nrows = work.shape
    ranks = np.zeros(count, dtype=np.int64)
    used = np.zeros((count, nrows), dtype=bool)
    everyone = np.arange(count)
    zero = np.uint64(0)
    for column in range(cols):
        has_bit = (work & np.uint64(1 << column)) != zero
        candidates = has_bit & ~used
        found = candidates.any(axis=1)
        if not found.any():
            continue
        pivot = candidates.argmax(axis=1)
        pivot_rows = work[everyone, pivot]
        eliminate = has_bit & found[:, np.newaxis]
        eliminate[everyone, pivot] = False
        work ^= np.where(eliminate, pivot_rows[:, np.newaxis], zero)
        used[everyone[found], pivot[found]] = True
        ranks += found
    return ranks


def _pack_rows(bits: Bits, cols: int) -> npt.NDArray[np.uint64]:
    """(R, cols) 0/1 → (R,) uint64, first bit of the row most significant."""
    wide = np.zeros((bits.shape[0], _MAX_COLS), dtype=np.uint8)
    wide[:, _MAX_COLS - cols :] = bits
    return np.packbits(wide, axis=1).view(">u8").ravel().astype(np.uint64)


def rank(bits: npt.ArrayLike, rows: int = 32, cols: int = 32) -> TestResult:
    """SP 800-22 §2.5 binary matrix rank test: one p-value.

    Detects linear dependence among fixed-length substrings (e.g. an LFSR or a short period).
    N = ⌊n/(MQ)⌋ disjoint M x Q matrices (M = ``rows``, Q = ``cols``, filled row by row; the
    remainder is discarded). F_M = number of full-rank matrices, F_{M-1} = rank M - 1 (m - 1
    for non-square, m = min(M, Q)); χ² = Σ (F - Np)²/(Np) over the three classes and
    P = e^{-χ²/2} (= igamc(1, χ²/2), two degrees of freedom) (§2.5.4). Class probabilities are
    exact for M x Q (module docstring).

    ``rows`` and ``cols`` (default 32, the standard's and NIST STS's choice) must be ≥ 2 (the
    third class must be possible) and ``cols`` ≤ 64 (one ``uint64`` per row). n must hold one
    matrix; the standard recommends n ≥ 38·M·Q (§2.5.7).

    Statistics: ``n``, ``M``, ``Q``, ``N``, ``F_M``, ``F_M_minus_1``, ``F_rest``,
    ``p_full``, ``p_minus_1``, ``p_rest``, ``chi_square``.
    """
    test = "rank"
    for name, value, upper in (("rows", rows, None), ("cols", cols, _MAX_COLS)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{test}: {name} must be an integer >= 2, got {value!r}")
        if upper is not None and value > upper:
            raise ValueError(f"{test}: {name} must be <= {upper}, got {value!r}")
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    per_matrix = rows * cols
    require_length(test, n, per_matrix)
    count = n // per_matrix
    packed = _pack_rows(epsilon[: count * per_matrix].reshape(count * rows, cols), cols)
    ranks = gf2_ranks(packed.reshape(count, rows), cols)
    full = min(rows, cols)
    f_full = int(np.count_nonzero(ranks == full))
    f_minus_1 = int(np.count_nonzero(ranks == full - 1))
    f_rest = count - f_full - f_minus_1
    probabilities = rank_probabilities(rows, cols)
    chi_square = math.fsum(
        (observed - count * p) ** 2 / (count * p)
        for observed, p in zip((f_full, f_minus_1, f_rest), probabilities, strict=True)
    )
    return TestResult(
        test=test,
        p_values=(math.exp(-chi_square / 2.0),),
        statistics={
            "n": n,
            "M": rows,
            "Q": cols,
            "N": count,
            "F_M": f_full,
            "F_M_minus_1": f_minus_1,
            "F_rest": f_rest,
            "p_full": probabilities[0],
            "p_minus_1": probabilities[1],
            "p_rest": probabilities[2],
            "chi_square": chi_square,
        },
    )

"""Runs tests (SP 800-22 Rev 1a §2.3 runs, §2.4 longest run of ones in a block).

§2.3 counts runs (maximal blocks of identical bits) over the whole sequence: too few means the
bits stick, too many that they alternate. §2.4 looks at the longest run of ones inside M-bit
blocks and compares the histogram of those lengths with its distribution under randomness.

Class probabilities of §2.4 (convention). The standard tabulates π_i rounded to four or more
digits (SP 800-22 §2.4.4, §3.4). LoKey computes them exactly from their definition instead, as
P(longest run ≤ k) for a uniformly random M-bit block, by raising the transfer matrix of the
"current run of ones" chain to the M-th power (:func:`longest_run_probabilities`). For M = 8 this
gives the exact dyadic values 0.21484375, 0.3671875, 0.23046875, 0.1875; for M = 128 it
reproduces NIST STS's ten-digit values (0.1174035788, …). For M = 10^4 the standard's table
(0.0882, 0.2092, 0.2483, 0.1933, 0.1208, 0.0675, 0.0727) is an approximation; the exact values
are 0.0866, 0.2082, 0.2484, 0.1939, 0.1215, 0.0680, 0.0734, and LoKey uses them: under the null
hypothesis they are the correct expected class frequencies. With these, the standard's example
2.4.8 reproduces its printed p-value 0.180609 (its printed χ² = 4.882605 comes from the rounded
M = 8 table; the exact χ² is 4.882457; health-tests.md §3.4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import Bits, TestResult, as_bits, erfc, igamc, require_length

__all__ = ["longest_run", "longest_run_probabilities", "runs"]

_LONGEST_RUN_CLASSES: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {8: (1, 4), 128: (4, 9), 10_000: (10, 16)}
)
"""§2.4.4 step 2: M → (k_low, k_high); classes ≤ k_low, k_low + 1, …, ≥ k_high (K + 1 classes)."""

_LONGEST_RUN_MIN_BITS: Final[Mapping[int, int]] = MappingProxyType(
    {8: 128, 128: 6272, 10_000: 750_000}
)
"""§2.4.2: the smallest n for which each M is used."""


def runs(bits: npt.ArrayLike) -> TestResult:
    """SP 800-22 §2.3 runs test: one p-value.

    Detects oscillation that is too slow or too fast. π = (ones)/n; V_n(obs) = 1 + the number of
    k with ε_k ≠ ε_{k+1}; P = erfc(|V_n(obs) - 2nπ(1 - π)| / (2√(2n)·π(1 - π))) (§2.3.4).

    Prerequisite (§2.3.4 step 2): the frequency test must pass, |π - ½| < τ = 2/√n; otherwise
    the test is not run and P = 0.0, as the standard prescribes. The comparison is done exactly
    in integers, (2·ones - n)² ≥ 16n. A constant sequence slips through the prerequisite only
    when n < 16 (τ > ½); its statistic is then 0/0, and it also gets P = 0.0.

    Computes any n ≥ 2 (the standard's example 2.3.4 has n = 10); the standard recommends
    n ≥ 100 (§2.3.7).

    Statistics: ``n``, ``pi``, ``tau``, ``V_n_obs``, ``prerequisite_met`` (1.0 or 0.0).
    """
    test = "runs"
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, 2)
    ones = int(epsilon.sum())
    pi = ones / n
    tau = 2.0 / math.sqrt(n)
    v_obs = 1 + int(np.count_nonzero(epsilon[1:] != epsilon[:-1]))
    prerequisite_met = (2 * ones - n) ** 2 < 16 * n and 0 < ones < n
    if prerequisite_met:
        spread = pi * (1.0 - pi)
        p_value = erfc(abs(v_obs - 2.0 * n * spread) / (2.0 * math.sqrt(2.0 * n) * spread))
    else:
        p_value = 0.0
    return TestResult(
        test=test,
        p_values=(p_value,),
        statistics={
            "n": n,
            "pi": pi,
            "tau": tau,
            "V_n_obs": v_obs,
            "prerequisite_met": 1.0 if prerequisite_met else 0.0,
        },
    )


def _probability_longest_at_most(block_size: int, k: int) -> float:
    """P(no run of more than k ones in a uniformly random block of ``block_size`` bits).

    Markov chain on the length r = 0..k of the current run of ones: a 0 (probability ½) sends any
    r to 0, a 1 sends r to r + 1, and mass that would reach k + 1 is dropped. The probability is
    the mass left after ``block_size`` steps from r = 0. All entries are non-negative, so the
    matrix power has no cancellation: relative error ~1e-15.
    """
    transfer = np.zeros((k + 1, k + 1), dtype=np.float64)
    transfer[:, 0] = 0.5
    transfer[np.arange(k), np.arange(1, k + 1)] = 0.5
    return float(np.linalg.matrix_power(transfer, block_size)[0].sum())


def longest_run_probabilities(block_size: int) -> tuple[float, ...]:
    """Exact class probabilities π_0..π_K of §2.4 for M = ``block_size`` (8, 128 or 10^4).

    π_0 = P(longest ≤ k_low), π_i = P(longest = k_low + i), π_K = P(longest ≥ k_high); see the
    module docstring for why these are computed rather than copied from the standard's table.
    """
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, int)
        or block_size not in _LONGEST_RUN_CLASSES
    ):
        raise ValueError(
            f"longest_run: block_size must be one of {sorted(_LONGEST_RUN_CLASSES)}, "
            f"got {block_size!r}"
        )
    low, high = _LONGEST_RUN_CLASSES[block_size]
    cdf = [_probability_longest_at_most(block_size, k) for k in range(low, high)]
    return (cdf[0], *np.diff(cdf).tolist(), 1.0 - cdf[-1])


def _longest_runs_per_row(blocks: Bits) -> npt.NDArray[np.int64]:
    """Longest run of ones in each row of a 2-D 0/1 array, without a Python loop over rows.

    Each row is framed by zeros, so every run starts and ends inside its own row of the
    flattened array; run lengths are end - start, grouped by row with ``maximum.reduceat``.
    """
    rows, width = blocks.shape
    framed = np.zeros((rows, width + 2), dtype=np.int8)
    framed[:, 1:-1] = blocks
    steps = np.diff(framed.ravel())
    starts = np.flatnonzero(steps == 1)
    ends = np.flatnonzero(steps == -1)
    longest = np.zeros(rows, dtype=np.int64)
    if starts.size:
        row_of_run = starts // (width + 2)
        present, first = np.unique(row_of_run, return_index=True)
        longest[present] = np.maximum.reduceat(ends - starts, first)
    return longest


def longest_run(bits: npt.ArrayLike, block_size: int | None = None) -> TestResult:
    """SP 800-22 §2.4 longest run of ones in a block: one p-value.

    Detects runs of ones that are too long or too short for a random sequence (and, by symmetry
    of the other tests, clustering). The sequence is cut into N = ⌊n/M⌋ blocks of M bits (the
    remainder is discarded, as in NIST STS); nu_i counts the blocks whose longest run of ones falls
    in class i; χ² = Σ (nu_i - Nπ_i)² / (Nπ_i), P = igamc(K/2, χ²/2) (§2.4.4).

    ``block_size`` None chooses M by n as the standard's table (§2.4.2) does: M = 8 for
    128 ≤ n < 6272, M = 128 for n < 750,000, M = 10^4 above, with K = 3, 5, 6 and the class
    bounds ≤1..≥4, ≤4..≥9, ≤10..≥16. An explicit M (8, 128 or 10^4) needs that table's n
    (128, 6272, 750,000). π_i are exact (module docstring).

    Statistics: ``n``, ``M``, ``N``, ``K``, ``nu_0``..``nu_K``, ``pi_0``..``pi_K``,
    ``chi_square``.
    """
    test = "longest_run"
    if block_size is not None and (
        isinstance(block_size, bool)
        or not isinstance(block_size, int)
        or block_size not in _LONGEST_RUN_CLASSES
    ):
        raise ValueError(
            f"{test}: block_size must be None or one of {sorted(_LONGEST_RUN_CLASSES)}, "
            f"got {block_size!r}"
        )
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    if block_size is None:
        require_length(test, n, _LONGEST_RUN_MIN_BITS[8])
        block_size = max(m for m, needed in _LONGEST_RUN_MIN_BITS.items() if n >= needed)
    else:
        require_length(test, n, _LONGEST_RUN_MIN_BITS[block_size])
    low, high = _LONGEST_RUN_CLASSES[block_size]
    k = high - low
    blocks = n // block_size
    longest = _longest_runs_per_row(epsilon[: blocks * block_size].reshape(blocks, block_size))
    nu = np.bincount(np.clip(longest, low, high) - low, minlength=k + 1)
    pi = np.asarray(longest_run_probabilities(block_size))
    expected = blocks * pi
    chi_square = float(np.sum((nu - expected) ** 2 / expected))
    statistics: dict[str, float] = {"n": n, "M": block_size, "N": blocks, "K": k}
    statistics.update({f"nu_{i}": int(count) for i, count in enumerate(nu)})
    statistics.update({f"pi_{i}": float(p) for i, p in enumerate(pi)})
    statistics["chi_square"] = chi_square
    return TestResult(
        test=test,
        p_values=(igamc(k / 2.0, chi_square / 2.0),),
        statistics=statistics,
    )

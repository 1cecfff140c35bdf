"""Frequency tests (SP 800-22 Rev 1a §2.1 monobit, §2.2 frequency within a block).

Both count ones and compare with the n/2 (or M/2 per block) a fair coin gives. Counts are exact
integers (int64 arithmetic, health-tests.md §3.5); floating point enters only in the final
statistic and the p-value.

Minimum lengths. Each function refuses (``InsufficientDataError``) only what it cannot compute at
all, so that the standard's short worked examples (n = 10) reproduce. How much data a test needs
to *mean* something is a separate matter: :data:`RECOMMENDED_MIN_BITS_A` lists the standard's
recommended n (health-tests.md §3.1) for the eight tests of this group (§2.1-§2.8), for an assess
layer that skips tests on too little data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy.typing as npt

from lokey.quality.sp800_22._common import TestResult, as_bits, erfc, igamc, require_length

__all__ = ["RECOMMENDED_MIN_BITS_A", "block_frequency", "frequency"]

RECOMMENDED_MIN_BITS_A: Final[Mapping[str, int]] = MappingProxyType(
    {
        "frequency": 100,  # §2.1.7
        "block_frequency": 100,  # §2.2.7 (the STS default M = 128 itself needs n >= 128)
        "runs": 100,  # §2.3.7
        "longest_run": 128,  # §2.4.2 table: smallest n for which M (= 8) is defined
        "rank": 38 * 32 * 32,  # §2.5.7: at least 38 matrices of 32 x 32 bits
        "dft": 1000,  # §2.6.7
        # §2.7.7 gives no n. LoKey's choice: with N = 8 blocks and m = 9 every block should
        # expect at least 5 matches (mu = (M - m + 1) / 2^m >= 5), the usual validity rule of a
        # chi-square statistic: M >= 5 * 2^9 + 8 = 2568 bits.
        "non_overlapping_template": 8 * (5 * 2**9 + 8),
        "overlapping_template": 1_000_000,  # §2.8.7
    }
)
"""Test name → the n (bits) below which the standard does not recommend running the test."""


def frequency(bits: npt.ArrayLike) -> TestResult:
    """SP 800-22 §2.1 frequency (monobit) test: one p-value.

    Detects bias, the most basic failure: S_n = Σ(2ε_i - 1), s_obs = |S_n| / √n,
    P = erfc(s_obs / √2) (§2.1.4). Every other test assumes this one passes.

    Computes any n ≥ 1 (the standard's example 2.1.4 has n = 10); the standard recommends
    n ≥ 100 (§2.1.7, :data:`RECOMMENDED_MIN_BITS_A`).

    Statistics: ``n``, ``S_n``, ``s_obs``.
    """
    test = "frequency"
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, 1)
    s_n = 2 * int(epsilon.sum()) - n
    s_obs = abs(s_n) / math.sqrt(n)
    return TestResult(
        test=test,
        p_values=(erfc(s_obs / math.sqrt(2.0)),),
        statistics={"n": n, "S_n": s_n, "s_obs": s_obs},
    )


def block_frequency(bits: npt.ArrayLike, block_size: int = 128) -> TestResult:
    """SP 800-22 §2.2 frequency within a block: one p-value.

    Detects local bias that cancels out over the whole sequence. The sequence is cut into
    N = ⌊n/M⌋ blocks of M = ``block_size`` bits (the remainder is discarded); with π_i the
    proportion of ones in block i, χ² = 4M Σ(π_i - ½)² and P = igamc(N/2, χ²/2) (§2.2.4).
    χ² is evaluated as Σ(2·ones_i - M)² / M, exact in integers up to the one division.

    ``block_size`` defaults to NIST STS's M = 128. The standard recommends M ≥ 20, M > 0.01n
    and N < 100 (§2.2.7) but does not require them (its own examples use M = 3 and M = 10), so
    any M ≥ 1 is accepted; n must hold at least one block.

    Statistics: ``n``, ``M``, ``N``, ``chi_square``.
    """
    test = "block_frequency"
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"{test}: block_size must be an integer >= 1, got {block_size!r}")
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, block_size)
    blocks = n // block_size
    ones = epsilon[: blocks * block_size].reshape(blocks, block_size).sum(axis=1)
    deviation = 2 * ones - block_size
    chi_square = int((deviation * deviation).sum()) / block_size
    return TestResult(
        test=test,
        p_values=(igamc(blocks / 2.0, chi_square / 2.0),),
        statistics={"n": n, "M": block_size, "N": blocks, "chi_square": chi_square},
    )

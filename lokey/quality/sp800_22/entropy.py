"""Serial test (SP 800-22 Rev 1a §2.11, §3.11) and approximate entropy test (§2.12, §3.12).

Both count the overlapping m-bit patterns of the sequence read cyclically (the first m - 1 bits
are appended, §2.11.4 step 1 / §2.12.4 step 1), so every one of the n starting positions yields a
pattern. Windows are integer-encoded (most significant bit first) with m shifted adds over the
augmented array and counted with ``np.bincount``. Because the windows are cyclic, the counts for
pattern length m - 1 follow from those for m by adding the two patterns that share the first
m - 1 bits (nu_{m-1}[p] = nu_m[2p] + nu_m[2p + 1]); one pass over the data serves every length.

Parameter limits. The standard requires m < ⌊log2 n⌋ - 2 for the serial test and
m < ⌊log2 n⌋ - 5 for approximate entropy (§2.11.7, §2.12.7): below that the pattern counts are too
small for the χ² approximation. LoKey enforces them as :class:`~lokey.errors.InsufficientDataError`
naming the smallest n that admits the requested m (n ≥ 2^(m+3), resp. n ≥ 2^(m+6)). The
standard's own worked examples violate these limits (2.12.4 has n = 10, m = 3); ``strict=False``
lifts the check so that they can be reproduced, and should not be used on real data.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22._common import Bits, TestResult, as_bits, igamc

__all__ = ["MAX_M", "approximate_entropy", "pattern_counts", "serial"]

MAX_M: Final = 24
"""Largest pattern length accepted: 2^m counters must fit in memory (2^24 int64 = 128 MiB)."""


def pattern_counts(epsilon: Bits, m: int) -> npt.NDArray[np.int64]:
    """nu: occurrences of each m-bit pattern among the n cyclic windows (index = pattern value).

    Pattern value is the window read most significant bit first, e.g. ``011`` → 3. Requires
    1 <= m <= n (the wrap-around appends m - 1 bits of the sequence itself).
    """
    n = int(epsilon.size)
    if not 1 <= m <= n:
        raise ValueError(f"m: need 1 <= m <= n, got m = {m}, n = {n}")
    augmented = np.concatenate((epsilon, epsilon[: m - 1]))
    windows = np.zeros(n, dtype=np.int64)
    for offset in range(m):
        windows <<= 1
        windows |= augmented[offset : offset + n]
    return np.bincount(windows, minlength=1 << m).astype(np.int64, copy=False)


def _shorter(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Counts of (m-1)-bit cyclic patterns from those of m-bit patterns (module docstring)."""
    result: npt.NDArray[np.int64] = counts[0::2] + counts[1::2]
    return result


def _psi_squared(counts: npt.NDArray[np.int64], m: int, n: int) -> float:
    """ψ²_m = (2^m / n)·Σ nu_i² - n (§2.11.4 step 3), evaluated exactly in integers, then divided.

    The two terms are both ≈ n and cancel to ≈ 2^m; exact integers keep every digit of the
    difference. ψ²_0 = ψ²_{-1} = 0 by definition (§2.11.4 step 3).
    """
    if m <= 0:
        return 0.0
    sum_of_squares = int(np.dot(counts, counts))
    return ((sum_of_squares << m) - n * n) / n


def _check_limit(test: str, n: int, m: int, *, slack: int, strict: bool, minimum: int) -> None:
    if strict:
        needed = 1 << (m + slack)  # ⌊log2 n⌋ - slack > m  ⇔  n ≥ 2^(m + slack)
        if n < needed:
            raise InsufficientDataError(test, needed, n)
    elif n < minimum:
        raise InsufficientDataError(test, minimum, n)


def serial(bits: npt.ArrayLike, m: int = 16, *, strict: bool = True) -> TestResult:
    """SP 800-22 §2.11 serial test: p-values (P1 from ∇ψ²_m, P2 from ∇²ψ²_m) in that order.

    Detects over- or under-represented m-bit patterns (all 2^m should be equally frequent):
    ∇ψ²_m = ψ²_m - ψ²_{m-1}, ∇²ψ²_m = ψ²_m - 2ψ²_{m-1} + ψ²_{m-2},
    P1 = igamc(2^(m-2), ∇ψ²_m / 2), P2 = igamc(2^(m-3), ∇²ψ²_m / 2).

    ``m`` (≥ 2; NIST STS default 16) must satisfy m < ⌊log2 n⌋ - 2, i.e. n ≥ 2^(m+3) (§2.11.7),
    else :class:`~lokey.errors.InsufficientDataError`. ``strict=False`` only requires n ≥ m, to
    reproduce the standard's short examples.
    """
    test = "serial"
    epsilon = as_bits(bits, test)
    if isinstance(m, bool) or not isinstance(m, int) or not 2 <= m <= MAX_M:
        raise ValueError(f"{test}: m must be an integer in 2..{MAX_M}, got {m!r}")
    n = int(epsilon.size)
    _check_limit(test, n, m, slack=3, strict=strict, minimum=m)
    counts_m = pattern_counts(epsilon, m)
    counts_m1 = _shorter(counts_m)
    counts_m2 = _shorter(counts_m1)
    psi_m = _psi_squared(counts_m, m, n)
    psi_m1 = _psi_squared(counts_m1, m - 1, n)
    psi_m2 = _psi_squared(counts_m2, m - 2, n)
    delta1 = psi_m - psi_m1
    delta2 = psi_m - 2.0 * psi_m1 + psi_m2
    return TestResult(
        test=test,
        p_values=(igamc(2.0 ** (m - 2), delta1 / 2.0), igamc(2.0 ** (m - 3), delta2 / 2.0)),
        statistics={
            "psi_sq_m": psi_m,
            "psi_sq_m_minus_1": psi_m1,
            "psi_sq_m_minus_2": psi_m2,
            "del_psi_sq": delta1,
            "del2_psi_sq": delta2,
        },
    )


def _phi(counts: npt.NDArray[np.int64], n: int) -> float:
    """φ(m) = Σ_i π_i ln π_i over the patterns that occur, π_i = nu_i / n (§2.12.4 step 4)."""
    present = counts[counts > 0].astype(np.float64) / n
    return float(np.sum(present * np.log(present)))


def approximate_entropy(bits: npt.ArrayLike, m: int = 10, *, strict: bool = True) -> TestResult:
    """SP 800-22 §2.12 approximate entropy test: one p-value.

    Compares the frequencies of overlapping m-bit and (m+1)-bit patterns: for a random sequence
    ApEn(m) = φ(m) - φ(m+1) is close to ln 2. χ² = 2n(ln 2 - ApEn(m)), P = igamc(2^(m-1), χ²/2).

    ``m`` (≥ 1; NIST STS default 10) must satisfy m < ⌊log2 n⌋ - 5, i.e. n ≥ 2^(m+6) (§2.12.7),
    else :class:`~lokey.errors.InsufficientDataError`. ``strict=False`` only requires n ≥ m + 1,
    to reproduce the standard's short examples.
    """
    test = "approximate_entropy"
    epsilon = as_bits(bits, test)
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m < MAX_M:
        raise ValueError(f"{test}: m must be an integer in 1..{MAX_M - 1}, got {m!r}")
    n = int(epsilon.size)
    _check_limit(test, n, m, slack=6, strict=strict, minimum=m + 1)
    counts_long = pattern_counts(epsilon, m + 1)
    counts = _shorter(counts_long)
    phi_m = _phi(counts, n)
    phi_m1 = _phi(counts_long, n)
    apen = phi_m - phi_m1
    chi_squared = 2.0 * n * (math.log(2.0) - apen)
    return TestResult(
        test=test,
        p_values=(igamc(2.0 ** (m - 1), chi_squared / 2.0),),
        statistics={
            "phi_m": phi_m,
            "phi_m_plus_1": phi_m1,
            "ApEn": apen,
            "chi_squared": chi_squared,
        },
    )

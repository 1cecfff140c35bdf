"""Discrete Fourier transform (spectral) test (SP 800-22 Rev 1a §2.6, §3.6).

Periodic structure concentrates the spectrum of X = 2ε - 1 in a few peaks. For random bits
about 95 % of the moduli |S_j| of the first n/2 Fourier coefficients lie below the threshold
T = √(ln(1/0.05)·n); the test compares the observed count with that 95 %.

The Rev 1a forms are used: T = √(ln(1/0.05)·n) and d = (N1 - N0)/√(n·0.95·0.05/4); earlier
texts and implementations of this test differ in both constants. The standard's examples 2.6.4
and 2.6.8 do not follow from these formulas and are not used as known answers (health-tests.md
§3.4); the tests check the count N1 against a naive O(n²) transform instead.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import TestResult, as_bits, erfc, require_length

__all__ = ["dft"]


def dft(bits: npt.ArrayLike) -> TestResult:
    """SP 800-22 §2.6 discrete Fourier transform (spectral) test: one p-value.

    S = DFT(2ε - 1); M_j = |S_j| for j = 0..⌊n/2⌋ - 1; T = √(ln(1/0.05)·n); N0 = 0.95·n/2;
    N1 = #{j : M_j < T}; d = (N1 - N0)/√(n·0.95·0.05/4); P = erfc(|d|/√2) (§2.6.4). The
    transform is numpy's real FFT (O(n log n), any n).

    Computes any n ≥ 2 (at least one coefficient); the standard recommends n ≥ 1000 (§2.6.7).

    Statistics: ``n``, ``T``, ``N0``, ``N1``, ``d``.
    """
    test = "dft"
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, 2)
    spectrum = np.fft.rfft(2.0 * epsilon - 1.0)
    moduli = np.abs(spectrum[: n // 2])
    threshold = math.sqrt(math.log(1.0 / 0.05) * n)
    n0 = 0.95 * n / 2.0
    n1 = int(np.count_nonzero(moduli < threshold))
    d = (n1 - n0) / math.sqrt(n * 0.95 * 0.05 / 4.0)
    return TestResult(
        test=test,
        p_values=(erfc(abs(d) / math.sqrt(2.0)),),
        statistics={"n": n, "T": threshold, "N0": n0, "N1": n1, "d": d},
    )

"""Cumulative sums test (SP 800-22 Rev 1a §2.13, §3.13).

The random walk S_k = X_1 + ... + X_k (X_i = 2ε_i - 1) of a fair coin stays near zero; the test
takes z = max_k |S_k| and asks how likely so large an excursion is. Forward mode walks ε_1..ε_n,
backward mode ε_n..ε_1. Sums are int64 (health-tests.md §3.5: ``int8`` overflows and turned the
test into "p = 1.0 on everything" in nistrng).

Summation bounds (§2.13.4 step 4). The p-value is a truncated form of the series

    P = 1 - Σ_k [Φ((4k+1)z/√n) - Φ((4k-1)z/√n)] + Σ_k [Φ((4k+3)z/√n) - Φ((4k+1)z/√n)]

with k from (-n/z + 1)/4 to (n/z - 1)/4 in the first sum and from (-n/z - 3)/4 to (n/z - 1)/4 in
the second. The standard does not say how the fractional bounds are rounded. LoKey sums over the
integers k inside the real interval, i.e. from ceil(lower) to floor(upper). That is exactly what
NIST STS 2.1.2 computes with C integer arithmetic (n/z, then +1 or -3, then /4, each truncated
toward zero; the tests check the identity), and with it the standard's example 2.13.4
(n = 10, P = 0.4116588) reproduces, while flooring the lower bound as well, as some
reimplementations do, adds a term outside the interval and gives 0.411585 (health-tests.md
§3.4). Example 2.13.8 reproduces under both. From n = 100 (the test's minimum) on the two
readings differ by less than 2e-10, so the choice never changes a reported p-value.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

from lokey.quality.sp800_22._common import TestResult, as_bits, require_length

__all__ = ["MIN_BITS", "cumulative_sums", "cusum_p_value"]

MIN_BITS: Final = 100
"""§2.13.7: n ≥ 100."""


def _c_div(a: int, b: int) -> int:
    """Integer division truncated toward zero, as C's ``/`` on ints (Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def cusum_p_value(n: int, z: int) -> float:
    """P-value of the maximum excursion z of an n-step walk (§2.13.4 step 4, §3.13).

    The first sum runs over the integers k in [(-n/z + 1)/4, (n/z - 1)/4], the second over those
    in [(-n/z - 3)/4, (n/z - 1)/4] (module docstring), computed with C-style integer division as
    NIST STS does. The result is clipped to [0, 1] against rounding in the difference of sums.
    """
    if n < 1 or not 1 <= z <= n:
        raise ValueError(f"z: need 1 <= z <= n, got z = {z}, n = {n}")
    sqrt_n = math.sqrt(n)
    upper = _c_div(_c_div(n, z) - 1, 4)
    k1 = np.arange(_c_div(_c_div(-n, z) + 1, 4), upper + 1, dtype=np.float64)
    k2 = np.arange(_c_div(_c_div(-n, z) - 3, 4), upper + 1, dtype=np.float64)
    sum1 = np.sum(special.ndtr((4 * k1 + 1) * z / sqrt_n) - special.ndtr((4 * k1 - 1) * z / sqrt_n))
    sum2 = np.sum(special.ndtr((4 * k2 + 3) * z / sqrt_n) - special.ndtr((4 * k2 + 1) * z / sqrt_n))
    p = 1.0 - float(sum1) + float(sum2)
    return min(1.0, max(0.0, p))


def cumulative_sums(bits: npt.ArrayLike) -> TestResult:
    """SP 800-22 §2.13 cumulative sums test: p-values (forward, backward) in that order.

    Detects walks that wander too far from zero (too many ones or zeros early or late in the
    sequence), which the monobit test, looking only at the end point, misses. z_forward is
    max|S_k| of ε_1..ε_n; z_backward of ε_n..ε_1, computed as max_k |S_n - S_{k-1}| from the
    same forward sums. Needs n ≥ 100 (§2.13.7).
    """
    test = "cumulative_sums"
    epsilon = as_bits(bits, test)
    n = int(epsilon.size)
    require_length(test, n, MIN_BITS)
    walk = np.cumsum(2 * epsilon - 1, dtype=np.int64)
    z_forward = int(np.max(np.abs(walk)))
    # Backward partial sums X_n + ... + X_k = S_n - S_{k-1} for k = n..1 (S_0 = 0).
    total = int(walk[-1])
    z_backward = max(abs(total), int(np.max(np.abs(total - walk[:-1]))) if n > 1 else 0)
    return TestResult(
        test=test,
        p_values=(cusum_p_value(n, z_forward), cusum_p_value(n, z_backward)),
        statistics={"z_forward": float(z_forward), "z_backward": float(z_backward)},
    )

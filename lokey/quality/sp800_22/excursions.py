"""Random excursions (SP 800-22 Rev 1a §2.14, §3.14) and its variant (§2.15, §3.15).

Both tests look at the random walk S_k = X_1 + ... + X_k with X_i = 2ε_i - 1, cut into *cycles*:
stretches between consecutive returns to zero (the walk is framed as S' = 0, S_1..S_n, 0). For a
random sequence the number of visits a cycle pays to a state x has a known distribution, and the
total number of visits to x over the whole walk has mean J (the number of cycles).

The walk is computed vectorised in int64 (health-tests.md §3.5: ``int8`` overflows); the per-cycle
visit counts come from one ``np.bincount`` over (cycle, state) keys instead of a loop over cycles.

Cycle counting follows NIST STS 2.1.2 (the standard's §2.14.4 step 3 is silent on the corner case):
J is the number of zeros among S_1..S_n, plus one when S_n ≠ 0 for the final, unfinished cycle
closed by the appended zero. When S_n = 0 the appended zero would close an empty cycle, which is
not counted.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from lokey.errors import NotApplicableError
from lokey.quality.sp800_22._common import (
    Bits,
    TestResult,
    as_bits,
    erfc,
    igamc,
    require_length,
)

__all__ = [
    "EXCURSION_STATES",
    "MIN_CYCLES",
    "RECOMMENDED_MIN_BITS_B",
    "VARIANT_STATES",
    "excursion_probabilities",
    "random_excursions",
    "random_excursions_variant",
]

MIN_CYCLES: Final = 500
"""§2.14.7 / §2.15.7: with fewer cycles than this the χ² / normal approximations are not trusted."""

EXCURSION_STATES: Final = (-4, -3, -2, -1, 1, 2, 3, 4)
VARIANT_STATES: Final = (-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9)

# 500 cycles need at least 499 completed cycles (two steps each, out and back) plus one step of
# the unfinished last one: no shorter sequence can ever reach J = 500.
_HARD_MIN_BITS: Final = 2 * MIN_CYCLES - 1

RECOMMENDED_MIN_BITS_B: Final[dict[str, int]] = {
    # health-tests.md §3.1 "minimum n" for the tests implemented in universal.py, complexity.py,
    # entropy.py, cusum.py and this module. The assess layer skips a test below these numbers.
    "universal": 387_840,  # §2.9.7: L = 6 needs n ≥ 1010·2^6·6
    "linear_complexity": 1_000_000,  # §2.10.7: n ≥ 10^6, M = 500, N ≥ 200
    # §2.11.7 / §2.12.7 give no n, only m < ⌊log2 n⌋ - 2 (serial) and m < ⌊log2 n⌋ - 5 (ApEn);
    # these are the smallest n that admit the default m = 16 and m = 10.
    "serial": 2 ** (16 + 3),
    "approximate_entropy": 2 ** (10 + 6),
    "cumulative_sums": 100,  # §2.13.7
    "random_excursions": 1_000_000,  # §2.14.7
    "random_excursions_variant": 1_000_000,  # §2.15.7
}


def excursion_probabilities(x: int) -> npt.NDArray[np.float64]:
    """π_k(x), k = 0..5: probability that a cycle visits state x exactly k times (k = 5: ≥ 5).

    §3.14: π_0(x) = 1 - 1/(2|x|); π_k(x) = (1/(4x²))·(1 - 1/(2|x|))^(k-1) for k = 1..4;
    π_5(x) = (1/(2|x|))·(1 - 1/(2|x|))^4. Computed from these formulas rather than copied from a
    rounded table: the standard's example 2.14.4 prints chi² = 4.333033 for x = +1, which follows
    from the 4-decimal values π_4(1) = π_5(1) = 0.0312, whereas the exact ones give 4.333333
    (health-tests.md §3.4). The six values sum to 1.
    """
    if x == 0:
        raise ValueError("x: the excursion states exclude 0")
    a = abs(x)
    q = 1.0 - 1.0 / (2 * a)
    probabilities = np.empty(6, dtype=np.float64)
    probabilities[0] = q
    probabilities[1:5] = (1.0 / (4 * a * a)) * q ** np.arange(4)
    probabilities[5] = (1.0 / (2 * a)) * q**4
    return probabilities


def _walk(bits: Bits) -> tuple[npt.NDArray[np.int64], int]:
    """Partial sums S_1..S_n and the number of cycles J (see the module docstring)."""
    walk = np.cumsum(2 * bits - 1, dtype=np.int64)
    zeros = int(np.count_nonzero(walk == 0))
    cycles = zeros + (1 if walk[-1] != 0 else 0)
    return walk, cycles


def _require_cycles(test: str, cycles: int) -> None:
    if cycles < MIN_CYCLES:
        raise NotApplicableError(
            test, f"J = {cycles} cycles, SP 800-22 requires J >= {MIN_CYCLES} (§2.14.7, §2.15.7)"
        )


def _visit_histogram(walk: npt.NDArray[np.int64], cycles: int) -> npt.NDArray[np.int64]:
    """nu_k(x): an (8, 6) array, rows the states -4..-1, +1..+4, columns k = 0..5 (5 = "≥ 5").

    Cycle index of step i = number of zeros strictly before i; one bincount over the keys
    cycle·8 + state gives every cycle's visit count to every state at once.
    """
    is_zero = walk == 0
    cycle_of = np.cumsum(is_zero, dtype=np.int64) - is_zero  # zeros before step i
    in_range = (walk >= -4) & (walk <= 4) & ~is_zero
    values = walk[in_range]
    state_index = np.where(values < 0, values + 4, values + 3)  # -4..-1 → 0..3, 1..4 → 4..7
    keys = cycle_of[in_range] * 8 + state_index
    per_cycle = np.bincount(keys, minlength=cycles * 8).reshape(cycles, 8)
    capped = np.minimum(per_cycle, 5)
    histogram = np.zeros((8, 6), dtype=np.int64)
    for state in range(8):
        histogram[state] = np.bincount(capped[:, state], minlength=6)
    return histogram


def _state_visits(walk: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """xi(x) for x = -9..9 at index x + 9: how often the whole walk is in state x."""
    near = walk[(walk >= -9) & (walk <= 9)] + 9
    visits: npt.NDArray[np.int64] = np.bincount(near, minlength=19)
    return visits


def random_excursions(bits: npt.ArrayLike) -> TestResult:
    """SP 800-22 §2.14 random excursions test: 8 p-values, states -4..-1, +1..+4 in that order.

    For each state x, nu_k(x) counts the cycles that visit x exactly k times (k = 0..4) or at least
    5 times (k = 5); χ²(x) = Σ_k (nu_k(x) - J·π_k(x))² / (J·π_k(x)) and P = igamc(5/2, χ²/2).
    Detects walks whose excursions from zero are too long or too short for a fair coin.

    Raises :class:`~lokey.errors.NotApplicableError` when the sequence has fewer than 500 cycles
    (§2.14.7: the χ² approximation needs J ≥ 500; a random 10^6-bit sequence has J < 500 in
    about 38 % of cases, P(|Z| < 1/2) for the walk's local time at 0) and
    :class:`~lokey.errors.InsufficientDataError` below 999 bits, which can never hold 500
    cycles. The standard recommends n ≥ 10^6.
    """
    test = "random_excursions"
    epsilon = as_bits(bits, test)
    require_length(test, epsilon.size, _HARD_MIN_BITS)
    walk, cycles = _walk(epsilon)
    _require_cycles(test, cycles)
    histogram = _visit_histogram(walk, cycles)
    p_values: list[float] = []
    statistics: dict[str, float] = {"J": float(cycles)}
    for row, x in enumerate(EXCURSION_STATES):
        expected = cycles * excursion_probabilities(x)
        chi_squared = float(np.sum((histogram[row] - expected) ** 2 / expected))
        p_values.append(igamc(2.5, chi_squared / 2.0))
        statistics[f"chi_squared[{x:+d}]"] = chi_squared
    return TestResult(test=test, p_values=tuple(p_values), statistics=statistics)


def random_excursions_variant(bits: npt.ArrayLike) -> TestResult:
    """SP 800-22 §2.15 random excursions variant: 18 p-values, states -9..-1, +1..+9 in that order.

    ξ(x) is the total number of visits to state x over the whole walk, expected J for every x;
    P = erfc(|ξ(x) - J| / √(2J(4|x| - 2))). Detects walks that linger in some states.

    Same applicability rule and bit minimum as :func:`random_excursions` (§2.15.7).
    """
    test = "random_excursions_variant"
    epsilon = as_bits(bits, test)
    require_length(test, epsilon.size, _HARD_MIN_BITS)
    walk, cycles = _walk(epsilon)
    _require_cycles(test, cycles)
    visits = _state_visits(walk)
    p_values: list[float] = []
    statistics: dict[str, float] = {"J": float(cycles)}
    for x in VARIANT_STATES:
        xi = int(visits[x + 9])
        p_values.append(erfc(abs(xi - cycles) / math.sqrt(2.0 * cycles * (4 * abs(x) - 2))))
        statistics[f"xi[{x:+d}]"] = float(xi)
    return TestResult(test=test, p_values=tuple(p_values), statistics=statistics)

"""Second-level interpretation of many sequences' p-values (SP 800-22 Rev 1a §4.2).

A single sequence failing a test at alpha = 0.01 happens 1 % of the time for a perfect generator,
so a generator is judged on many sequences: the proportion that pass must lie in a confidence
interval around 1 - alpha (§4.2.1), and the p-values must be uniformly distributed on [0, 1]
(§4.2.2).
Both checks take the p-values of one test (one p-value per sequence; for tests with several
p-values, one of them, e.g. the forward cumulative-sums p-value, across sequences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from lokey.quality.sp800_22._common import ALPHA, igamc

__all__ = [
    "MIN_SEQUENCES_UNIFORMITY",
    "UNIFORMITY_THRESHOLD",
    "Proportion",
    "Uniformity",
    "proportion_passing",
    "uniformity",
]

UNIFORMITY_THRESHOLD: Final = 0.0001
"""§4.2.2: the p-values are uniform when P-value_T ≥ 0.0001."""

MIN_SEQUENCES_UNIFORMITY: Final = 55
"""§4.2.2: the uniformity χ² needs at least 55 sequences (5.5 expected per bin of ten)."""


@dataclass(frozen=True)
class Proportion:
    """Pass proportion of m sequences and the §4.2.1 acceptance interval.

    ``low``/``high`` = p̂ ± 3·√(p̂(1 - p̂)/m) with p̂ = 1 - alpha; ``within`` is
    low ≤ proportion ≤ high. ``high`` is the formula's value and may exceed 1 for small m.
    """

    passed: int
    total: int
    proportion: float
    low: float
    high: float
    within: bool


@dataclass(frozen=True)
class Uniformity:
    """The §4.2.2 histogram of p-values, its χ², P-value_T and the verdict P-value_T ≥ 0.0001."""

    counts: tuple[int, ...]
    chi_squared: float
    p_value: float
    uniform: bool


def _as_p_values(p_values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(p_values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of p-values, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: no p-values given")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name}: p-values must be numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(f"{name}: p-values must lie in [0, 1]")
    return values


def proportion_passing(p_values: npt.ArrayLike, alpha: float = ALPHA) -> Proportion:
    """§4.2.1 proportion of sequences passing (P ≥ alpha) and whether it lies in p̂ ± 3sigma-hat.

    For m = 1000 and alpha = 0.01 the interval is 0.9806..0.9994 (health-tests.md §3.1). The
    interval is a normal approximation to the binomial; the standard applies it to any m, and so
    does this function, but with small m (say < 100) a single failure already leaves it.
    """
    values = _as_p_values(p_values, "proportion_passing")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must lie in (0, 1), got {alpha!r}")
    total = int(values.size)
    passed = int(np.count_nonzero(values >= alpha))
    proportion = passed / total
    expected = 1.0 - alpha
    half_width = 3.0 * math.sqrt(expected * alpha / total)
    low, high = expected - half_width, expected + half_width
    return Proportion(
        passed=passed,
        total=total,
        proportion=proportion,
        low=low,
        high=high,
        within=low <= proportion <= high,
    )


def uniformity(p_values: npt.ArrayLike, bins: int = 10) -> Uniformity:
    """§4.2.2 uniformity of p-values: χ² of a ``bins``-bin histogram on [0, 1].

    χ² = Σ (F_i - s/bins)² / (s/bins) over the bins (the last one closed, so P = 1 counts),
    P-value_T = igamc((bins - 1)/2, χ²/2) and the p-values are uniform when P-value_T ≥ 0.0001.
    The standard asks for at least 55 sequences; fewer raise ValueError rather than return a
    verdict the χ² approximation cannot support.
    """
    values = _as_p_values(p_values, "uniformity")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins: must be an integer >= 2, got {bins!r}")
    if values.size < MIN_SEQUENCES_UNIFORMITY:
        raise ValueError(
            f"uniformity: needs at least {MIN_SEQUENCES_UNIFORMITY} p-values (§4.2.2), "
            f"got {values.size}"
        )
    index = np.minimum((values * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    expected = values.size / bins
    chi_squared = float(np.sum((counts - expected) ** 2) / expected)
    p_value = igamc((bins - 1) / 2.0, chi_squared / 2.0)
    return Uniformity(
        counts=tuple(int(c) for c in counts),
        chi_squared=chi_squared,
        p_value=p_value,
        uniform=p_value >= UNIFORMITY_THRESHOLD,
    )

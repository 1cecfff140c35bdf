"""What every SP 800-22 test shares: input checking, the result type, special functions.

Tests take a 1-D numpy array of 0/1 bits (any integer or bool dtype) and return a
:class:`TestResult`. Arithmetic happens in int64: ``uint8`` bit arrays make ``2*sum - n`` wrap and
``int8`` overflows in cumulative sums (health-tests.md §3.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from scipy import special

from lokey.errors import InsufficientDataError

__all__ = [
    "ALPHA",
    "Bits",
    "TestResult",
    "as_bits",
    "bits_from_bytes",
    "erfc",
    "igamc",
    "require_length",
]

ALPHA = 0.01  # SP 800-22 Rev 1a §4.2.1: a sequence passes a test when P >= 0.01

Bits = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TestResult:
    """A test's p-value(s) and the intermediate values the standard names.

    Tests with several p-values (serial, cumulative sums, templates, excursions) list them in
    the order the standard gives; the sequence passes only if every one is >= alpha.
    """

    __test__ = False  # not a pytest test class, despite the name

    test: str
    p_values: tuple[float, ...]
    statistics: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.p_values:
            raise ValueError(f"{self.test}: a result needs at least one p-value")
        object.__setattr__(self, "statistics", MappingProxyType(dict(self.statistics)))

    @property
    def p_value(self) -> float:
        """The single p-value, or the smallest of several (the one that decides)."""
        return min(self.p_values)

    def passed(self, alpha: float = ALPHA) -> bool:
        return all(p >= alpha for p in self.p_values)


def as_bits(bits: npt.ArrayLike, test: str) -> Bits:
    """Validate a sequence of bits and return it as a 1-D int64 array.

    Refuses (ValueError naming the test) anything that is not one-dimensional or holds values
    other than 0 and 1.
    """
    array = np.asarray(bits)
    if array.ndim != 1:
        raise ValueError(f"{test}: expected a 1-D array of bits, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{test}: expected integer 0/1 bits, got dtype {array.dtype}")
    out = array.astype(np.int64, copy=False)
    if out.size and (out.min() < 0 or out.max() > 1):
        raise ValueError(f"{test}: bits must be 0 or 1")
    return out


def bits_from_bytes(data: bytes | bytearray | memoryview) -> Bits:
    """Bytes to bits, most significant bit first (the order NIST STS reads binary files in)."""
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)


def require_length(test: str, n: int, minimum: int) -> None:
    """Raise :class:`InsufficientDataError` when ``n`` bits are fewer than ``minimum``."""
    if n < minimum:
        raise InsufficientDataError(test, minimum, n)


def erfc(x: float) -> float:
    """Complementary error function."""
    return float(special.erfc(x))


def igamc(a: float, x: float) -> float:
    """Upper regularized incomplete gamma Q(a, x) (the standard's igamc, §5.5.3).

    Like the standard's cephes igamc it returns 1 for x <= 0, where scipy gives NaN: a
    chi-squared statistic that rounding left a hair below zero (approximate entropy on a
    full-period counter) means "no evidence against randomness", not "undefined".
    """
    if x <= 0:
        return 1.0
    return float(special.gammaincc(a, x))

"""The seed-quality gate inherited from the Go reference (fortuna.md §7, ``ValidateSeedQuality``).

Four rules, checked in this order; the first that fails names the rejection:

1. at least 4 bytes (``too_short``);
2. not every byte equal (``all_equal``);
3. at most 90 % of the bytes are 0xFF (``mostly_ff``);
4. Shannon entropy over byte frequencies, H = -Σ p_v log2 p_v, at least 3.0 bits/byte
   (``low_entropy``).

This is a sanity check on samples, not an entropy estimate: the SP 800-90B health tests are the
real gate. It never sits inside the generator or the accumulator (§7, and §9 defect 9): the
caller drops a rejected sample before it becomes an event, so one bad sample cannot abort a
reseed. Messages carry the measured figures, never the sample's bytes.
"""

from __future__ import annotations

import enum
import math
from collections import Counter

from lokey.errors import SeedQualityError

__all__ = [
    "MAX_FF_FRACTION",
    "MIN_ENTROPY_BITS",
    "MIN_SEED_BYTES",
    "SeedRejectReason",
    "check_seed",
    "shannon_entropy",
]

MIN_SEED_BYTES = 4  # §7 rule 1
MAX_FF_FRACTION = 0.9  # §7 rule 3: a larger fraction of 0xFF bytes is rejected
MIN_ENTROPY_BITS = 3.0  # §7 rule 4: bits per byte


class SeedRejectReason(enum.StrEnum):
    """The rule of fortuna.md §7 that rejected a sample (``SeedQualityError.reason``)."""

    TOO_SHORT = "too_short"  # rule 1: fewer than 4 bytes
    ALL_EQUAL = "all_equal"  # rule 2: every byte the same
    MOSTLY_FF = "mostly_ff"  # rule 3: more than 90 % 0xFF
    LOW_ENTROPY = "low_entropy"  # rule 4: Shannon entropy below 3.0 bits/byte


_NUMPY_FROM = 1 << 16  # bytes: below this a Counter is fast enough and numpy stays unloaded


def _histogram(data: bytes | bytearray | memoryview) -> list[int]:
    """How often each byte value 0..255 occurs in ``data``."""
    if len(data) < _NUMPY_FROM:  # seeds are a few KB: the services need no numpy for them
        counts = Counter(memoryview(data).tobytes())
        return [counts[value] for value in range(256)]
    import numpy as np  # noqa: PLC0415 - loaded only for large inputs

    return [int(c) for c in np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)]


def _entropy(counts: list[int], n: int) -> float:
    # the spec's form, -sum p log2 p, summed exactly; "+ 0.0" turns -0.0 into 0.0
    return -math.fsum(c / n * math.log2(c / n) for c in counts if c) + 0.0


def shannon_entropy(data: bytes | bytearray | memoryview) -> float:
    """H = -Σ p_v log2 p_v over the byte values of ``data``, in bits per byte (fortuna.md §7).

    0.0 for empty data. Summed with :func:`math.fsum` in the spec's form, so distributions whose
    probabilities are powers of two (eight values, equally often: exactly 3.0) come out exact.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"entropy is measured over bytes, not {type(data).__name__}")
    n = len(data)
    if n == 0:
        return 0.0
    return _entropy(_histogram(data), n)


def check_seed(data: bytes | bytearray | memoryview) -> None:
    """Apply the seed-quality gate (fortuna.md §7); return quietly if ``data`` passes.

    Raises :class:`~lokey.errors.SeedQualityError` (a ``ValueError``) whose ``reason`` is the
    first failing rule's :class:`SeedRejectReason`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a seed sample must be bytes, not {type(data).__name__}")
    n = len(data)
    if n < MIN_SEED_BYTES:
        raise SeedQualityError(
            SeedRejectReason.TOO_SHORT,
            f"seed rejected: {n} bytes, at least {MIN_SEED_BYTES} are needed",
        )
    counts = _histogram(data)
    if max(counts) == n:
        raise SeedQualityError(
            SeedRejectReason.ALL_EQUAL, f"seed rejected: all {n} bytes are equal"
        )
    ff = counts[0xFF]
    if 10 * ff > 9 * n:  # ff / n > MAX_FF_FRACTION, in exact integers
        raise SeedQualityError(
            SeedRejectReason.MOSTLY_FF,
            f"seed rejected: {ff} of {n} bytes ({ff / n:.1%}) are 0xFF, at most 90 % allowed",
        )
    entropy = _entropy(counts, n)
    if entropy < MIN_ENTROPY_BITS:
        raise SeedQualityError(
            SeedRejectReason.LOW_ENTROPY,
            f"seed rejected: Shannon entropy {entropy:.3f} bits/byte, "
            f"at least {MIN_ENTROPY_BITS} needed",
        )

"""Inputs of the SP 800-22 Rev 1a worked examples, shared by the tests of tests 9-15.

* the first 100 bits of pi (examples 2.1.8, 2.12.8, 2.13.8) come from the shared vectors file;
* the first 10^6 bits of e (examples 2.10.8, 2.11.8, 2.14.8, 2.15.8) are computed here: the
  standard's "binary expansion of e" is NIST STS's ``data.e``, which starts with the integer
  part, e = 10.1011011111100001...b, so bit 1 is the leading 1 of "10". (With that convention
  the random-excursions examples give the printed J = 1490; without it J = 1489.)
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lokey.quality.sp800_22._common import Bits

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"


def bits_of(text: str) -> Bits:
    """'0110' -> array([0, 1, 1, 0]) (first character = epsilon_1)."""
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - ord("0")


@functools.cache
def _vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VECTORS / "sp800_22_examples.json").read_text())
    return loaded


def pi_100() -> Bits:
    """The first 100 bits of pi's binary expansion, as the vectors file gives them (2.1.8)."""
    for case in _vectors()["cases"]:
        if case["section"] == "2.1.8":
            text: str = case["bits"]
            assert len(text) == 100
            return bits_of(text)
    raise LookupError("example 2.1.8 (pi) missing from sp800_22_examples.json")


def _e_series(a: int, b: int) -> tuple[int, int]:
    """Binary splitting: P/Q = sum over k = a+1..b of a!/k!, as exact integers."""
    if b - a == 1:
        return 1, b
    middle = (a + b) // 2
    p1, q1 = _e_series(a, middle)
    p2, q2 = _e_series(middle, b)
    return p1 * q2 + p2, q1 * q2


@functools.cache
def _e_bits(count: int) -> bytes:
    fraction_bits = count + 64  # guard bits against the truncated series' error
    terms, log2_factorial = 1, 0.0
    while log2_factorial < fraction_bits + 64:
        terms += 1
        log2_factorial += math.log2(terms)
    p, q = _e_series(0, terms)  # e - 1 ≈ p/q
    scaled = ((q + p) << fraction_bits) // q  # floor(e · 2^fraction_bits)
    return format(scaled, "b")[:count].encode("ascii")


def e_bits(count: int = 1_000_000) -> Bits:
    """The first ``count`` bits of e's binary expansion, integer part "10" first (about 1.5 s)."""
    return np.frombuffer(_e_bits(count), dtype=np.uint8).astype(np.int64) - ord("0")


def pcg64_bits(seed: int, count: int = 1_000_000) -> Bits:
    """Seeded numpy PCG64 output as bits (the "good generator" of the sanity tests)."""
    generator = np.random.Generator(np.random.PCG64(seed))
    return generator.integers(0, 2, size=count, dtype=np.int64)


def biased_bits(seed: int, count: int, p_one: float) -> Bits:
    """Independent bits with P(1) = p_one."""
    generator = np.random.Generator(np.random.PCG64(seed))
    return (generator.random(count) < p_one).astype(np.int64)


def counter_bits(count: int, width: int = 16) -> Bits:
    """0, 1, 2, ... written as ``width``-bit big-endian integers, concatenated, cut to ``count``."""
    values = np.arange(-(-count // width), dtype=np.int64) % (1 << width)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] >> shifts) & 1).reshape(-1)[:count]


def repeated_block_bits(seed: int, count: int, block: int) -> Bits:
    """One random ``block``-bit pattern repeated to ``count`` bits."""
    pattern = pcg64_bits(seed, block)
    return np.tile(pattern, -(-count // block))[:count]

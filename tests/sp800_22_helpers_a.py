"""Shared data for the tests of SP 800-22 tests 1-8 (frequency ... overlapping template).

Known answers come from ../shared/vectors/sp800_22_examples.json (health-tests.md §3.3); the
other worked examples are typed into the test files with the section they come from. Random data
is numpy PCG64 with fixed seeds, so every run sees the same bits.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from lokey.quality.sp800_22._common import Bits

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"

MEGABIT = 1_000_000
SEED = 20240601
"""A fixed seed whose 1 Mbit passes every test of this group (templates: 147 of 148 p-values)."""

ALPHA = 0.01

# First 32 bits of the fractional part of sqrt(2) (SHA-256's H0): 16 ones, so a sequence repeating
# it is perfectly balanced and only its structure can fail a test.
BALANCED_WORD = 0x6A09E667


@cache
def _vectors() -> dict[str, Any]:
    with (VECTORS / "sp800_22_examples.json").open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def tolerance() -> float:
    return float(_vectors()["tolerance_abs"])


def cases(test: str) -> list[dict[str, Any]]:
    """The vectors file's worked examples of one test."""
    return [case for case in _vectors()["cases"] if case["test"] == test]


def case(section: str) -> dict[str, Any]:
    """The vectors file's worked example of one section of the standard."""
    (found,) = (c for c in _vectors()["cases"] if c["section"] == section)
    example: dict[str, Any] = found
    return example


def bits_of(text: str) -> Bits:
    """'0110…' → int64 array, first character = ε_1."""
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - ord("0")


def pi_100() -> Bits:
    """The first 100 bits of π's binary expansion (the input of 2.1.8, 2.2.8, 2.3.8)."""
    return bits_of(case("2.1.8")["bits"])


def _read_only(array: Bits) -> Bits:
    array.flags.writeable = False
    return array


@cache
def random_bits(n: int = MEGABIT, seed: int = SEED) -> Bits:
    """n bits of PCG64(seed), read-only (cached: shared between tests)."""
    return _read_only(np.random.Generator(np.random.PCG64(seed)).integers(0, 2, n, dtype=np.int64))


@cache
def bad_sequences(n: int = MEGABIT) -> dict[str, Bits]:
    """Clearly non-random sequences of n bits, by name (read-only, cached)."""
    word = np.unpackbits(np.array([BALANCED_WORD], dtype=">u4").view(np.uint8)).astype(np.int64)
    biased = np.random.Generator(np.random.PCG64(SEED)).random(n) < 0.6
    sequences = {
        "zeros": np.zeros(n, dtype=np.int64),
        "alternating": np.arange(n, dtype=np.int64) % 2,
        "repeating_32_bit_block": np.resize(word, n),
        "bias_0.6": biased.astype(np.int64),
    }
    return {name: _read_only(bits) for name, bits in sequences.items()}

"""NIST SP 800-22 Rev 1a: the 15 statistical tests and the second-level evaluation.

Each test takes a 1-D numpy array of 0/1 bits and keyword parameters defaulting to the
standard's recommendations, and returns a :class:`TestResult`. Input too short for the maths
raises :class:`~lokey.errors.InsufficientDataError`; a test whose own applicability rule
excludes the data (random excursions with fewer than 500 cycles) raises
:class:`~lokey.errors.NotApplicableError`. :data:`BATTERY` lists the tests in the standard's
order with the length below which the standard does not recommend running each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

import numpy.typing as npt

from lokey.quality.sp800_22._common import (
    ALPHA,
    Bits,
    TestResult,
    as_bits,
    bits_from_bytes,
)
from lokey.quality.sp800_22.complexity import linear_complexity
from lokey.quality.sp800_22.cusum import cumulative_sums
from lokey.quality.sp800_22.entropy import approximate_entropy, serial
from lokey.quality.sp800_22.excursions import (
    RECOMMENDED_MIN_BITS_B,
    random_excursions,
    random_excursions_variant,
)
from lokey.quality.sp800_22.frequency import RECOMMENDED_MIN_BITS_A, block_frequency, frequency
from lokey.quality.sp800_22.matrix import rank
from lokey.quality.sp800_22.runs import longest_run, runs
from lokey.quality.sp800_22.second_level import (
    Proportion,
    Uniformity,
    proportion_passing,
    uniformity,
)
from lokey.quality.sp800_22.spectral import dft
from lokey.quality.sp800_22.templates import non_overlapping_template, overlapping_template
from lokey.quality.sp800_22.universal import universal

__all__ = [
    "ALPHA",
    "BATTERY",
    "RECOMMENDED_MIN_BITS",
    "Bits",
    "Proportion",
    "TestResult",
    "Uniformity",
    "approximate_entropy",
    "as_bits",
    "bits_from_bytes",
    "block_frequency",
    "cumulative_sums",
    "dft",
    "frequency",
    "linear_complexity",
    "longest_run",
    "non_overlapping_template",
    "overlapping_template",
    "proportion_passing",
    "random_excursions",
    "random_excursions_variant",
    "rank",
    "runs",
    "serial",
    "uniformity",
    "universal",
]

TestFunction = Callable[[npt.ArrayLike], TestResult]

RECOMMENDED_MIN_BITS: Final[Mapping[str, int]] = MappingProxyType(
    {**RECOMMENDED_MIN_BITS_A, **RECOMMENDED_MIN_BITS_B}
)
"""Test name → the n (bits) below which the standard does not recommend running the test."""

BATTERY: Final[tuple[tuple[str, TestFunction, int], ...]] = tuple(
    (function.__name__, function, RECOMMENDED_MIN_BITS[function.__name__])
    for function in (
        frequency,  # 2.1
        block_frequency,  # 2.2
        runs,  # 2.3
        longest_run,  # 2.4
        rank,  # 2.5
        dft,  # 2.6
        non_overlapping_template,  # 2.7
        overlapping_template,  # 2.8
        universal,  # 2.9
        linear_complexity,  # 2.10
        serial,  # 2.11
        approximate_entropy,  # 2.12
        cumulative_sums,  # 2.13
        random_excursions,  # 2.14
        random_excursions_variant,  # 2.15
    )
)
"""The 15 tests in the standard's order: (name, function with default parameters, minimum n)."""

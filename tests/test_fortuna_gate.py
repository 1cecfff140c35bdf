"""The seed-quality gate (fortuna.md §7): each rule at its boundary, the order of the rules,
the entropy formula, and what the errors carry.
"""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lokey.errors import FortunaError, LokeyError, SeedQualityError
from lokey.fortuna import SeedRejectReason, check_seed, shannon_entropy


def rejection(data: bytes) -> SeedQualityError:
    with pytest.raises(SeedQualityError) as caught:
        check_seed(data)
    return caught.value


# eight distinct values, twice each: H = log2(8) = 3.0 exactly
EXACTLY_3_BITS = bytes(range(8)) * 2


def test_length_boundary_3_and_4_bytes() -> None:
    assert rejection(b"\x01\x02\x03").reason == SeedRejectReason.TOO_SHORT
    assert rejection(b"").reason == "too_short"
    # 4 bytes pass rule 1 (and fail only later: H of 4 distinct bytes is 2.0 < 3.0)
    assert rejection(b"\x01\x02\x03\x04").reason == SeedRejectReason.LOW_ENTROPY


def test_all_equal() -> None:
    for value in (0x00, 0x42, 0xFF):
        assert rejection(bytes([value]) * 32).reason == SeedRejectReason.ALL_EQUAL
    assert rejection(b"\x07" * 4).reason == "all_equal"
    assert rejection(b"\x07" * 3).reason == "too_short"  # rule 1 comes first


def test_ff_fraction_90_percent_passes_rule_3_and_91_fails_it() -> None:
    ninety = b"\xff" * 90 + bytes(range(10))
    ninety_one = b"\xff" * 91 + bytes(range(9))
    # 90 % is allowed by rule 3; such data always fails rule 4 (H <= 1.27), which names it
    assert rejection(ninety).reason == SeedRejectReason.LOW_ENTROPY
    assert rejection(ninety_one).reason == SeedRejectReason.MOSTLY_FF
    assert "91 of 100" in str(rejection(ninety_one))
    # the same boundary at a length where 0.9 * n is not an integer
    assert rejection(b"\xff" * 9 + b"\x00").reason == "low_entropy"  # 90 %
    assert rejection(b"\xff" * 10 + b"\x00").reason == "mostly_ff"  # 90.9 %


def test_entropy_boundary_at_3_bits() -> None:
    assert shannon_entropy(EXACTLY_3_BITS) == 3.0
    check_seed(EXACTLY_3_BITS)  # >= 3.0 passes
    just_below = bytes(range(8)) * 2 + b"\x00"  # counts 3,2,2,2,2,2,2,2 of 17
    assert 2.9 < shannon_entropy(just_below) < 3.0
    error = rejection(just_below)
    assert error.reason == SeedRejectReason.LOW_ENTROPY
    assert "2.9" in str(error)
    check_seed(bytes(range(9)) * 2)  # log2(9) > 3


def test_unlocked_atecc_pattern_is_caught_by_rule_4_only() -> None:
    """§7: FF FF 00 00 x 8 has H = 1.0 and 50 % 0xFF."""
    pattern = b"\xff\xff\x00\x00" * 8
    assert shannon_entropy(pattern) == 1.0
    assert rejection(pattern).reason == SeedRejectReason.LOW_ENTROPY


def test_healthy_random_samples_pass() -> None:
    for _ in range(50):
        check_seed(os.urandom(32))


def test_shannon_entropy_values() -> None:
    assert shannon_entropy(b"") == 0.0
    assert shannon_entropy(b"\x05" * 10) == 0.0
    assert shannon_entropy(bytes(range(256))) == 8.0
    assert shannon_entropy(b"\x00\x01") == 1.0
    assert math.isclose(shannon_entropy(b"\x00\x00\x01"), 0.9182958340544896)
    assert shannon_entropy(bytearray(b"ab")) == shannon_entropy(memoryview(b"ab")) == 1.0


@given(st.binary(min_size=1, max_size=300))
def test_entropy_is_the_spec_formula(data: bytes) -> None:
    n = len(data)
    expected = -sum(data.count(v) / n * math.log2(data.count(v) / n) for v in set(data))
    assert math.isclose(shannon_entropy(data), expected, abs_tol=1e-12)
    assert 0.0 <= shannon_entropy(data) <= min(8.0, math.log2(n)) + 1e-12


def test_errors_belong_to_the_tree_and_never_carry_the_sample() -> None:
    sample = b"\xde\xad\xbe\xef" * 2
    error = rejection(sample)
    assert isinstance(error, FortunaError)
    assert isinstance(error, LokeyError)
    assert isinstance(error, ValueError)
    assert sample.hex() not in str(error)
    assert "deadbeef" not in str(error).lower()
    assert SeedQualityError("x").reason == "x"


@pytest.mark.parametrize("value", ["abcd", 1234, None])
def test_non_bytes_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError):
        check_seed(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        shannon_entropy(value)  # type: ignore[arg-type]

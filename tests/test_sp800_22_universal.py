"""SP 800-22 §2.9 Maurer's universal statistical test."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22.second_level import uniformity
from lokey.quality.sp800_22.universal import (
    EXPECTED_VALUE,
    VARIANCE,
    block_length_for,
    universal,
    universal_sigma,
)
from tests.sp800_22_known_inputs import (
    biased_bits,
    bits_of,
    counter_bits,
    e_bits,
    pcg64_bits,
    repeated_block_bits,
)

TOL = 1e-6


def slow_fn(bits: list[int], length: int, init: int) -> float:
    """fn straight from §2.9.4 steps 2-4: a table T of last occurrences, updated block by block."""
    blocks = [
        int("".join(map(str, bits[i * length : (i + 1) * length])), 2)
        for i in range(len(bits) // length)
    ]
    table = [0] * (1 << length)
    for i in range(init):
        table[blocks[i]] = i + 1
    total = 0.0
    for i in range(init, len(blocks)):
        total += math.log2(i + 1 - table[blocks[i]])
        table[blocks[i]] = i + 1
    return total / (len(blocks) - init)


# --- the standard's example and tables -----------------------------------------------------------


def test_example_2_9_4() -> None:
    # §2.9.4: epsilon = 01011010011101010111, L = 2, Q = 4, K = 6: fn = 1.1949875 - reproduced.
    # The printed P = 0.767189 uses sigma = sqrt(variance) (health-tests.md §3.4); with the
    # standard's formula sigma = c·sqrt(variance/K) the P-value differs. Both are checked.
    result = universal(bits_of("01011010011101010111"), block_length=2, init_blocks=4)
    assert result.test == "universal"
    assert (result.statistics["L"], result.statistics["Q"], result.statistics["K"]) == (2, 4, 6)
    fn = result.statistics["fn"]
    assert fn == pytest.approx(1.1949875, abs=1e-7)
    as_printed = math.erfc(abs(fn - 1.5374383) / (math.sqrt(2) * math.sqrt(1.338)))
    assert as_printed == pytest.approx(0.767189, abs=TOL)
    # c(2, 6) = 0.7 - 0.4 + 20·6^-1.5/15 = 0.390722, sigma = c·sqrt(1.338/6) = 0.184510
    assert result.statistics["sigma"] == pytest.approx(0.184510, abs=TOL)
    assert result.p_value == pytest.approx(
        math.erfc(abs(fn - 1.5374383) / (math.sqrt(2) * 0.18451009)), abs=TOL
    )


def test_sigma_formula() -> None:
    for length in range(2, 17):
        for k in (1, 10, 1000, 10**6):
            c = 0.7 - 0.8 / length + (4 + 32 / length) * k ** (-3 / length) / 15
            assert universal_sigma(length, k) == pytest.approx(c * math.sqrt(VARIANCE[length] / k))


def test_tables_cover_l_1_to_16() -> None:
    assert sorted(EXPECTED_VALUE) == sorted(VARIANCE) == list(range(1, 17))
    assert EXPECTED_VALUE[6] == 5.2177052
    assert VARIANCE[7] == 3.125
    assert EXPECTED_VALUE[16] == 15.167379


@pytest.mark.parametrize("length", range(6, 17))
def test_block_length_table_is_1010_2l_l(length: int) -> None:
    # §2.9.7: n ≥ (Q + K)·L with Q = 10·2^L, K = 1000·2^L.
    threshold = 1010 * (1 << length) * length
    assert block_length_for(threshold) == length
    assert block_length_for(threshold - 1) == (length - 1 if length > 6 else None)


def test_example_sizes_of_l() -> None:
    assert block_length_for(387_839) is None
    assert block_length_for(387_840) == 6
    assert block_length_for(904_960) == 7
    assert block_length_for(2_068_480) == 8
    assert block_length_for(10**12) == 16


def test_e_megabit() -> None:
    # 10^6 bits of e: L = 7, Q = 1280, K = 141,577. P = 0.282568 is also what NIST STS 2.1.2 gives
    # on its data.e (a regression pin, not one of the standard's printed examples).
    result = universal(e_bits())
    assert (result.statistics["L"], result.statistics["Q"], result.statistics["K"]) == (
        7,
        1280,
        141_577,
    )
    assert result.p_value == pytest.approx(0.282568, abs=TOL)


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fn_matches_reference(data: st.DataObject) -> None:
    length = data.draw(st.integers(2, 5))
    init = data.draw(st.integers(1, 40))
    extra = data.draw(st.integers(1, 60))
    bits = data.draw(
        st.lists(st.integers(0, 1), min_size=length * (init + extra), max_size=length * (init + 80))
    )
    result = universal(np.array(bits, dtype=np.int64), block_length=length, init_blocks=init)
    assert result.statistics["fn"] == pytest.approx(slow_fn(bits, length, init), abs=1e-12)
    assert 0.0 <= result.p_value <= 1.0


def test_p_values_of_random_data_are_uniform() -> None:
    # With the standard's sigma the p-values of random data are uniform (§4.2.2 check); with
    # sigma = sqrt(variance), as in the printed example, they would all crowd near 1.
    length, init = 4, 160
    n = length * (init + 1000 * 16)
    results = [
        universal(pcg64_bits(seed, n), block_length=length, init_blocks=init) for seed in range(200)
    ]
    assert uniformity([r.p_value for r in results]).uniform
    as_in_example = [
        math.erfc(
            abs(r.statistics["fn"] - EXPECTED_VALUE[length]) / math.sqrt(2 * VARIANCE[length])
        )
        for r in results
    ]
    assert min(as_in_example) > 0.9
    assert not uniformity(as_in_example).uniform


# --- statistical sanity --------------------------------------------------------------------------


def test_pcg64_megabit_passes() -> None:
    result = universal(pcg64_bits(1))
    assert result.statistics["L"] == 7
    assert 0.0 <= result.p_value <= 1.0
    assert result.passed(), result


BAD_SEQUENCES = {
    "all zeros": np.zeros(1_000_000, dtype=np.int64),
    "16-bit counter": counter_bits(1_000_000),
    "repeated 4096-bit block": repeated_block_bits(3, 1_000_000, 4096),
    "bias 0.6": biased_bits(3, 1_000_000, 0.6),
}


@pytest.mark.parametrize("name", BAD_SEQUENCES)
def test_bad_sequences_fail(name: str) -> None:
    assert universal(BAD_SEQUENCES[name]).p_value < 1e-6


# --- parameters and bad input --------------------------------------------------------------------


def test_default_needs_387840_bits() -> None:
    with pytest.raises(InsufficientDataError) as info:
        universal(pcg64_bits(0, 387_839))
    assert info.value.needed == 387_840
    assert info.value.test == "universal"


def test_explicit_parameters_need_one_test_block() -> None:
    with pytest.raises(InsufficientDataError) as info:
        universal(pcg64_bits(0, 2 * 40 + 1), block_length=2)  # Q = 40 needs 2·41 bits
    assert info.value.needed == 82
    universal(pcg64_bits(0, 82), block_length=2)


@pytest.mark.parametrize("length", [0, 1, 17, -1, True, 2.0])
def test_bad_block_length(length: Any) -> None:
    with pytest.raises(ValueError, match="block_length"):
        universal(pcg64_bits(0, 400_000), block_length=length)


@pytest.mark.parametrize("init", [0, -5, True, 1.5])
def test_bad_init_blocks(init: Any) -> None:
    with pytest.raises(ValueError, match="init_blocks"):
        universal(pcg64_bits(0, 400_000), block_length=6, init_blocks=init)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 400_000), dtype=np.int64), "1-D"),
        (np.full(400_000, 2), "0 or 1"),
        (np.zeros(400_000, dtype=np.float64), "integer"),
    ],
)
def test_bad_input(bad: npt.NDArray[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        universal(bad)

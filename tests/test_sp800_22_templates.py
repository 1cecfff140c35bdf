"""SP 800-22 §2.7 non-overlapping and §2.8 overlapping template matching."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import InsufficientDataError
from lokey.quality.sp800_22.templates import (
    aperiodic_templates,
    non_overlapping_template,
    overlapping_probabilities,
    overlapping_template,
)
from tests.sp800_22_helpers_a import ALPHA, bad_sequences, bits_of, random_bits, tolerance

# The π_0..π_5 the SP 800-22 Rev 1a text gives for m = 9, M = 1032 (§2.8).
REV_1A_OVERLAPPING_PI = (0.364091, 0.185659, 0.139381, 0.100571, 0.070432, 0.139865)

PERIODIC_TEMPLATES = [(1, 1), (0, 0, 0), (1, 0, 1), (0, 1, 0, 1), (1, 1, 0, 1, 1)]


def _naive_non_overlapping(block: list[int], template: list[int]) -> int:
    """§2.7.4 step 2 literally: slide by one; on a match count it and jump past it."""
    m, i, count = len(template), 0, 0
    while i <= len(block) - m:
        if block[i : i + m] == template:
            count += 1
            i += m
        else:
            i += 1
    return count


def _naive_overlapping(block: list[int], m: int) -> int:
    return sum(all(block[i : i + m]) for i in range(len(block) - m + 1))


def _biased_bits(seed: int, n: int, density: float) -> list[int]:
    generator = np.random.Generator(np.random.PCG64(seed))
    return [int(bit) for bit in generator.random(n) < density]


# --- aperiodic templates ------------------------------------------------------------------------


def test_template_counts_match_nist_sts() -> None:
    counts = [len(aperiodic_templates(m)) for m in range(2, 11)]
    assert counts == [2, 4, 6, 12, 20, 40, 74, 148, 284]


@pytest.mark.parametrize("m", range(2, 11))
def test_templates_are_exactly_the_aperiodic_words_in_lexicographic_order(m: int) -> None:
    def aperiodic(word: tuple[int, ...]) -> bool:
        return all(word[k:] != word[: m - k] for k in range(1, m))

    expected = [w for w in itertools.product((0, 1), repeat=m) if aperiodic(w)]
    assert list(aperiodic_templates(m)) == expected


def test_nine_bit_templates_start_and_end_like_sts_file() -> None:
    templates = aperiodic_templates(9)
    assert templates[0] == (0, 0, 0, 0, 0, 0, 0, 0, 1)
    assert templates[-1] == (1, 1, 1, 1, 1, 1, 1, 1, 0)


# --- non-overlapping: known answer, exact counting -----------------------------------------------


def test_non_overlapping_example_2_7_4() -> None:
    # SP 800-22 Rev 1a §2.7.4: ε = 10100100101110010110, B = 001, N = 2 → M = 10, W = (2, 1),
    # μ = 1, σ² = 0.46875, χ² = 2.133333, P = 0.344154.
    result = non_overlapping_template(bits_of("10100100101110010110"), template="001", blocks=2)
    stats = result.statistics
    assert (stats["M"], stats["W_1"], stats["W_2"]) == (10, 2, 1)
    assert stats["mu"] == pytest.approx(1.0, abs=tolerance())
    assert stats["sigma_squared"] == pytest.approx(0.46875, abs=tolerance())
    assert stats["chi_square"] == pytest.approx(2.133333, abs=tolerance())
    assert result.p_values == pytest.approx((0.344154,), abs=tolerance())


@pytest.mark.parametrize("form", [[0, 0, 1], (0, 0, 1), np.array([0, 0, 1]), "001"])
def test_template_forms_agree(form: Any) -> None:
    bits = bits_of("10100100101110010110")
    assert non_overlapping_template(bits, form, blocks=2).p_values == pytest.approx(
        (0.344154,), abs=1e-6
    )
    assert non_overlapping_template(bits, form, m=3, blocks=2).statistics["m"] == 3


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    density=st.sampled_from([0.1, 0.5, 0.9]),
    template=st.one_of(
        st.sampled_from([(0,), (1,)]),
        st.integers(2, 8).flatmap(lambda m: st.sampled_from(aperiodic_templates(m))),
    ),
    blocks=st.integers(1, 10),
)
def test_non_overlapping_counts_equal_the_standards_scan(
    seed: int, n: int, density: float, template: Any, blocks: int
) -> None:
    template = list(template)
    if n < blocks * len(template):
        return
    bits = _biased_bits(seed, n, density)
    size = n // blocks
    expected = [
        _naive_non_overlapping(bits[j * size : (j + 1) * size], template) for j in range(blocks)
    ]
    stats = non_overlapping_template(np.array(bits), template, blocks=blocks).statistics
    assert [stats[f"W_{j + 1}"] for j in range(blocks)] == expected


@pytest.mark.parametrize("template", PERIODIC_TEMPLATES)
def test_periodic_templates_are_refused(template: tuple[int, ...]) -> None:
    # §2.7's μ and σ² hold for aperiodic templates only (templates.py docstring).
    with pytest.raises(ValueError, match="periodic"):
        non_overlapping_template(random_bits(10_000), template)


@pytest.mark.parametrize(("m", "n"), [(4, 5000), (9, 100_000)])
def test_all_templates_equal_one_template_at_a_time(m: int, n: int) -> None:
    bits = random_bits(n, seed=m)
    together = non_overlapping_template(bits, m=m)
    templates = aperiodic_templates(m)
    assert together.statistics["templates"] == len(templates) == len(together.p_values)
    one_by_one = [non_overlapping_template(bits, t).p_value for t in templates]
    assert together.p_values == pytest.approx(one_by_one, rel=1e-12, abs=1e-300)
    name = "".join(map(str, templates[0]))
    single = non_overlapping_template(bits, templates[0])
    assert together.statistics[f"chi_square[{name}]"] == pytest.approx(
        single.statistics["chi_square"]
    )


def test_non_overlapping_random_megabit_passes() -> None:
    # 148 p-values: about 1.5 fail at alpha = 0.01 by chance. The standard's proportion rule (§4.2)
    # accepts a pass rate ≥ 0.99 - 3·√(0.99·0.01/148), i.e. at most 5 failures.
    result = non_overlapping_template(random_bits())
    assert len(result.p_values) == 148
    assert all(0.0 <= p <= 1.0 for p in result.p_values)
    failures = sum(p < ALPHA for p in result.p_values)
    assert failures <= 148 * (0.01 + 3 * math.sqrt(0.99 * 0.01 / 148))
    assert result.statistics["M"] == 125_000


@pytest.mark.parametrize("name", ["zeros", "alternating", "repeating_32_bit_block", "bias_0.6"])
def test_non_overlapping_bad_sequences_fail(name: str) -> None:
    assert non_overlapping_template(bad_sequences()[name]).p_value < ALPHA


# --- overlapping ------------------------------------------------------------------------------


def _exact_overlapping(m: int, block_size: int, k: int) -> list[float]:
    """Independent exact count of strings by (run of ones capped at m, matches capped at k)."""
    states: dict[tuple[int, int], int] = {(0, 0): 1}
    for _ in range(block_size):
        following: dict[tuple[int, int], int] = {}
        for (run, count), ways in states.items():
            following[0, count] = following.get((0, count), 0) + ways
            longer = min(run + 1, m)
            more = min(count + 1, k) if longer == m else count
            following[longer, more] = following.get((longer, more), 0) + ways
        states = following
    totals = [0] * (k + 1)
    for (_, count), ways in states.items():
        totals[count] += ways
    return [t / 2**block_size for t in totals]


def test_overlapping_probabilities_reproduce_the_rev_1a_values() -> None:
    computed = overlapping_probabilities(9, 1032, 5)
    assert computed == pytest.approx(REV_1A_OVERLAPPING_PI, abs=5e-7)
    assert sum(computed) == pytest.approx(1.0, abs=1e-14)


def test_section_3_8_closed_form_is_only_an_approximation() -> None:
    # π_u = e^{-η} 2^{-u} Σ_{l=1..u} C(u-1, l-1) η^l / l!, η = λ/2 = 1: what NIST STS computes.
    eta = (1032 - 9 + 1) / 2**9 / 2
    closed = [math.exp(-eta)] + [
        math.exp(-eta)
        / 2**u
        * sum(math.comb(u - 1, j - 1) * eta**j / math.factorial(j) for j in range(1, u + 1))
        for u in range(1, 5)
    ]
    closed.append(1 - sum(closed))
    assert closed == pytest.approx(
        [0.367879, 0.183940, 0.137955, 0.099634, 0.069935, 0.140657], abs=1e-6
    )
    assert max(abs(a - b) for a, b in zip(closed, REV_1A_OVERLAPPING_PI, strict=True)) > 3e-3


@pytest.mark.parametrize(
    ("m", "block_size", "k"),
    [(2, 10, 5), (1, 7, 3), (3, 40, 5), (5, 68, 5), (9, 1032, 5), (4, 9, 6)],
)
def test_overlapping_probabilities_are_exact(m: int, block_size: int, k: int) -> None:
    computed = overlapping_probabilities(m, block_size, k)
    assert computed == pytest.approx(_exact_overlapping(m, block_size, k), rel=1e-12, abs=1e-15)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from([0.3, 0.5, 0.8, 0.95]),
    m=st.integers(1, 6),
    k=st.integers(1, 5),
    blocks=st.integers(1, 30),
)
def test_overlapping_counts_equal_a_naive_scan(
    seed: int, density: float, m: int, k: int, blocks: int
) -> None:
    block_size = m + k - 1 + seed % 60
    extra = seed % block_size
    bits = _biased_bits(seed, block_size * blocks + extra, density)
    nu = [0] * (k + 1)
    for j in range(blocks):
        nu[min(_naive_overlapping(bits[j * block_size : (j + 1) * block_size], m), k)] += 1
    stats = overlapping_template(np.array(bits), m=m, block_size=block_size, K=k).statistics
    assert stats["N"] == blocks  # the extra bits (< block_size) are discarded
    assert [stats[f"nu_{u}"] for u in range(k + 1)] == nu


def test_overlapping_standard_parameters() -> None:
    result = overlapping_template(random_bits())
    stats = result.statistics
    assert (stats["N"], stats["M"], stats["m"], stats["K"]) == (968, 1032, 9, 5)
    assert (stats["lambda"], stats["eta"]) == (2.0, 1.0)
    assert sum(stats[f"nu_{u}"] for u in range(6)) == 968
    assert 0.0 <= result.p_value <= 1.0
    assert result.passed()


def test_overlapping_blocks_parameter() -> None:
    assert overlapping_template(random_bits(), blocks=100).statistics["N"] == 100
    with pytest.raises(InsufficientDataError) as info:
        overlapping_template(random_bits(), blocks=1000)
    assert info.value.needed == 1_032_000


@pytest.mark.parametrize("name", ["zeros", "alternating", "repeating_32_bit_block", "bias_0.6"])
def test_overlapping_bad_sequences_fail(name: str) -> None:
    assert overlapping_template(bad_sequences()[name]).p_value < ALPHA


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("test", [non_overlapping_template, overlapping_template])
@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 1100), dtype=np.int64), np.array([0, 1, 2] * 400), np.full(1200, 1.0)],
    ids=["2-D", "value 2", "float"],
)
def test_bad_input_is_refused(test: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match=test.__name__):
        test(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"template": [0, 2]}, "template"),
        ({"template": "01a"}, "template"),
        ({"template": ""}, "template"),
        ({"template": [[0, 1]]}, "template"),
        ({"template": [1] * 63}, "template"),
        ({"template": "001", "m": 4}, "m"),
        ({"m": 1}, "m"),
        ({"m": 22}, "m"),
        ({"m": 9.0}, "m"),
        ({"blocks": 0}, "blocks"),
        ({"blocks": True}, "blocks"),
    ],
)
def test_non_overlapping_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        non_overlapping_template(random_bits(10_000), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m": 0}, "m"),
        ({"m": 63}, "m"),
        ({"block_size": 8}, "block_size"),
        ({"K": 0}, "K"),
        ({"m": 9, "block_size": 10, "K": 5}, "K"),
        ({"blocks": 0}, "blocks"),
    ],
)
def test_overlapping_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        overlapping_template(random_bits(10_000), **kwargs)


def test_too_short() -> None:
    with pytest.raises(InsufficientDataError) as info:
        non_overlapping_template(random_bits(71))
    assert info.value.needed == 72
    with pytest.raises(InsufficientDataError) as info:
        overlapping_template(random_bits(1031))
    assert info.value.needed == 1032
    with pytest.raises(ValueError, match="m"):
        aperiodic_templates(1)

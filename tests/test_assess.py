"""``lokey.quality.assess``: sequences, skips, verdicts and the health judgement.

Verdicts are pinned to SP 800-22 §4.2.1 (proportion of p-values at or above 0.01) and to the
health tests' false-positive rates; data comes from seeded generators, never from os.urandom,
so every verdict here is deterministic.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lokey.errors import InsufficientDataError
from lokey.quality import sp800_22
from lokey.quality.assess import BATTERY_ALPHA, assess, health_verdict, judge, minimum_bits


def _keystream(size: int, label: bytes = b"test_assess") -> bytes:
    key = hashlib.sha256(label).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(size)) + encryptor.finalize()


def test_input_shorter_than_the_shortest_test_is_refused_naming_the_minimum() -> None:
    shortest = minimum_bits()
    assert shortest == 100  # SP 800-22 §2.1.7: the frequency test's recommended n
    with pytest.raises(InsufficientDataError, match="at least 100 bits, got 96") as raised:
        assess(bytes(12))
    assert raised.value.needed == 100


def test_short_input_is_one_sequence_and_longer_tests_are_skipped_not_failed() -> None:
    result = assess(_keystream(20_000))
    assert (result.sequences, result.sequence_bits) == (1, 160_000)
    by_name = {t.test: t for t in result.tests}
    for name, _, minimum in sp800_22.BATTERY:
        if minimum > 160_000:
            assert by_name[name].status == "skipped"
            assert f"{minimum:,} bits" in by_name[name].reason
    assert by_name["frequency"].status == "pass"
    assert result.passed


def test_long_input_is_split_into_1_mbit_sequences_and_the_tail_is_reported() -> None:
    result = assess(_keystream(2 * 125_000 + 1_000))
    assert (result.sequences, result.sequence_bits, result.unused_bits) == (2, 1_000_000, 8_000)
    frequency = next(t for t in result.tests if t.test == "frequency")
    assert frequency.sequences == 2
    assert len(frequency.p_values) == 2


def test_every_p_value_of_every_sequence_and_sub_test_is_reported() -> None:
    result = assess(_keystream(2 * 125_000))
    templates = next(t for t in result.tests if t.test == "non_overlapping_template")
    assert len(templates.p_values) == 2 * 148  # SP 800-22 §2.7: 148 aperiodic 9-bit templates
    assert templates.threshold is not None
    # Šidák over 148 column statistics at the per-test level of a 1 % battery (15 tests)
    per_test = 1 - 0.99 ** (1 / 15)
    assert templates.threshold == pytest.approx(1 - (1 - per_test) ** (1 / 148))


def test_proportion_rule_fails_a_test_whose_p_values_fall_below_alpha() -> None:
    bits = (np.random.Generator(np.random.PCG64(5)).random(1_000_000) < 0.51).astype(np.uint8)
    result = assess(np.packbits(bits).tobytes())
    frequency = next(t for t in result.tests if t.test == "frequency")
    assert frequency.status == "fail"
    assert frequency.proportion == 0.0
    assert frequency.statistic is not None
    assert frequency.threshold is not None
    assert frequency.statistic < frequency.threshold
    assert not result.passed


def test_progress_counts_up_to_every_test_of_every_sequence() -> None:
    seen: list[tuple[int, int]] = []
    assess(_keystream(2 * 125_000), progress=lambda done, total: seen.append((done, total)))
    total = 1 + len(sp800_22.BATTERY) * 2
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == list(range(1, total + 1))


def test_result_serialises_to_json() -> None:
    result = assess(_keystream(20_000))
    decoded = json.loads(json.dumps(result.to_dict()))
    assert decoded["passed"] is True
    assert len(decoded["tests"]) == 15
    assert decoded["health"]["rct_cutoff"] == 4  # SP 800-90B: 1 + ceil(20 / 8)


def test_health_passes_a_long_stream_with_the_false_alarms_its_alpha_predicts() -> None:
    data = bytearray(_keystream(16 << 20))
    data[5_000_000:5_000_004] = b"\x42" * 4  # one RCT false alarm: expected ~1 in 16 MiB
    verdict = health_verdict(bytes(data))
    assert verdict.rct_events >= 1
    assert verdict.passed, verdict.reason


def test_health_fails_when_failures_are_improbable_for_a_healthy_source() -> None:
    data = bytearray(_keystream(1 << 20))
    for start in range(10_000, 1_000_000, 100_000):  # ten stuck stretches
        data[start : start + 8] = b"\x00" * 8
    verdict = health_verdict(bytes(data))
    assert not verdict.passed
    assert "RCT" in verdict.reason


def test_health_fails_when_start_up_fails() -> None:
    data = b"\x00" * 8 + _keystream(1 << 20)
    verdict = health_verdict(data)
    assert verdict.startup == "failed"
    assert not verdict.passed
    assert "start-up" in verdict.reason


def test_start_up_is_not_run_on_fewer_than_1024_samples() -> None:
    result = assess(_keystream(13))
    assert result.health.startup == "not run"  # SP 800-90B §4.3 needs 1,024 samples


def test_health_counts_runs_not_samples_so_a_source_at_its_claimed_h_rarely_fails() -> None:
    # Bytes 0/1 (raw bits stored one per byte) carry exactly H = 1; counting every signalling
    # sample of a long run would overstate the evidence and fail such sources far too often.
    generator = np.random.Generator(np.random.PCG64(90))
    verdicts = [
        health_verdict(generator.integers(0, 2, 1 << 20, dtype=np.uint8).tobytes(), h=1.0)
        for _ in range(100)
    ]
    failed = sum(1 for verdict in verdicts if not verdict.passed)
    assert failed <= 4  # the tail threshold is 0.01: about 1 in 100 on average


def _battery_false_fail_rate(sequences: int, batteries: int, seed: int) -> float:
    """Judge simulated batteries of uniform p-values shaped like the real one."""
    generator = np.random.Generator(np.random.PCG64(seed))
    shapes = {name: 1 for name, _, _ in sp800_22.BATTERY}
    shapes.update(
        non_overlapping_template=148,
        serial=2,
        cumulative_sums=2,
        random_excursions=8,
        random_excursions_variant=18,
    )
    test_alpha = 1 - (1 - BATTERY_ALPHA) ** (1 / len(shapes))
    failures = 0
    for _ in range(batteries):
        failed = False
        for columns in shapes.values():
            p = generator.random((columns, sequences))
            verdict = judge([list(column) for column in p], test_alpha=test_alpha, uniformity=True)
            failed = failed or verdict.failed
        failures += failed
    return failures / batteries


@pytest.mark.parametrize("sequences", [1, 10])
def test_the_battery_verdict_fails_perfect_data_about_one_run_in_a_hundred(sequences: int) -> None:
    rate = _battery_false_fail_rate(sequences, batteries=300, seed=sequences)
    assert rate <= 0.03  # BATTERY_ALPHA = 0.01; 300 batteries leave room for chance


def test_judge_uses_the_p_value_itself_for_one_sequence_and_the_binomial_tail_for_many() -> None:
    one = judge([[0.004]], test_alpha=0.01, uniformity=False)
    assert one.statistic == 0.004
    assert one.threshold == pytest.approx(0.01)
    assert one.failed
    many = judge([[0.004] + [0.5] * 9], test_alpha=0.01, uniformity=False)
    assert many.statistic == pytest.approx(1 - 0.99**10)  # P(at least 1 of 10 below 0.01)
    assert not many.failed


def test_health_cut_offs_follow_the_claimed_min_entropy() -> None:
    verdict = health_verdict(_keystream(4096), h=4.0)
    # health-tests.md §1.2/§1.3 (alpha = 2^-20): RCT 6, APT W = 512 corrected 63
    assert (verdict.rct_cutoff, verdict.apt_cutoff, verdict.apt_window) == (6, 63, 512)

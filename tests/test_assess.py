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
from lokey.quality.assess import assess, health_verdict, minimum_bits


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


def test_every_p_value_of_every_sequence_and_sub_test_is_pooled() -> None:
    result = assess(_keystream(2 * 125_000))
    templates = next(t for t in result.tests if t.test == "non_overlapping_template")
    assert len(templates.p_values) == 2 * 148  # SP 800-22 §2.7: 148 aperiodic 9-bit templates
    assert templates.uniformity_p is not None  # >= 55 p-values: §4.2.2 applies


def test_proportion_rule_fails_a_test_whose_p_values_fall_below_alpha() -> None:
    bits = (np.random.Generator(np.random.PCG64(5)).random(1_000_000) < 0.51).astype(np.uint8)
    result = assess(np.packbits(bits).tobytes())
    frequency = next(t for t in result.tests if t.test == "frequency")
    assert frequency.status == "fail"
    assert frequency.proportion == 0.0
    assert "1 of 1 p-values below 0.01" in frequency.reason
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
    assert verdict.rct_failures >= 1
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
    assert not verdict.startup_passed
    assert not verdict.passed
    assert "start-up" in verdict.reason


def test_health_cut_offs_follow_the_claimed_min_entropy() -> None:
    verdict = health_verdict(_keystream(4096), h=4.0)
    # health-tests.md §1.2/§1.3 (alpha = 2^-20): RCT 6, APT W = 512 corrected 63
    assert (verdict.rct_cutoff, verdict.apt_cutoff, verdict.apt_window) == (6, 63, 512)

"""Legacy quality metrics (health-tests.md §2): the Go reference's numbers, reproduced exactly.

The expectations of §2.2/§2.3 are pinned directly; a straightforward byte-by-byte
transcription of the reference serves as the oracle for the vectorised implementation, over
random chunkings. The monobit p-value is pinned to the SP 800-22 frequency examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections import deque
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.quality.legacy import (
    LEGACY_APT_DEFAULT_WINDOW,
    LegacyMetrics,
    LegacySnapshot,
    apt_window_from_setting,
    clamp_apt_window,
    legacy_apt_cutoff,
    monobit_p_value,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"


@cache
def sp800_22_examples() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "sp800_22_examples.json").read_text())
    return data


class ReferenceMetrics:
    """randomness_metrics.go as health-tests.md §2 describes it, one byte at a time."""

    def __init__(self, window: int) -> None:
        self.window = max(256, min(2048, window))
        self.cutoff = math.floor(0.5 * self.window + 3 * math.sqrt(0.25 * self.window))
        self.zeros = self.ones = self.total = 0
        self.last_value = self.current_run = self.failures = 0
        self.buffer: deque[int] = deque()
        self.bias_count = self.samples_processed = 0

    def feed(self, data: bytes) -> None:
        for x in data:
            ones = bin(x).count("1")
            self.ones += ones
            self.zeros += 8 - ones
            self.total += 8
            if x == self.last_value:
                self.current_run += 1
            else:
                self.last_value, self.current_run = x, 1
            if self.current_run > 35:
                self.failures += 1
                self.current_run = 1
            self.samples_processed += 1
            if len(self.buffer) < self.window:
                self.buffer.append(x)
                continue
            if self.buffer.count(x) > self.cutoff:
                self.bias_count += 1
            self.buffer.popleft()
            self.buffer.append(x)

    def as_dict(self) -> dict[str, dict[str, int | float | None]]:
        return {
            "monobit": {
                "zeros": self.zeros,
                "ones": self.ones,
                "total": self.total,
                "average": self.ones / self.total if self.total else 0.0,
            },
            "repetition_count": {
                "failures": self.failures,
                "current_run": self.current_run,
                "last_value": self.last_value,
            },
            "apt": {
                "window_size": self.window,
                "cutoff": self.cutoff,
                "bias_count": self.bias_count,
                "samples_processed": self.samples_processed,
            },
        }


def fed(data: bytes, window: int = LEGACY_APT_DEFAULT_WINDOW) -> LegacySnapshot:
    metrics = LegacyMetrics(window)
    metrics.feed(data)
    return metrics.snapshot()


# --- §2.2 repetition count -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0x42, 0x00])
@pytest.mark.parametrize(
    ("repeats", "failures", "current_run"),
    [(30, 0, 30), (35, 0, 35), (36, 1, 1), (40, 1, 5), (71, 2, 1)],
)
def test_legacy_repetition_counter_matches_the_spec_expectations(
    value: int, repeats: int, failures: int, current_run: int
) -> None:
    rc = fed(bytes([value]) * repeats).repetition_count
    assert (rc.failures, rc.current_run, rc.last_value) == (failures, current_run, value)


def test_legacy_repetition_counter_starts_from_last_value_0_and_run_0() -> None:
    snap = LegacyMetrics().snapshot().repetition_count
    assert (snap.failures, snap.current_run, snap.last_value) == (0, 0, 0)
    assert fed(b"\x00").repetition_count.current_run == 1
    assert fed(b"\x07").repetition_count.current_run == 1


def test_legacy_repetition_run_continues_across_feeds() -> None:
    metrics = LegacyMetrics()
    for _ in range(71):
        metrics.feed(b"\x42")
    rc = metrics.snapshot().repetition_count
    assert (rc.failures, rc.current_run) == (2, 1)


# --- §2.3 adaptive proportion --------------------------------------------------------------------


@pytest.mark.parametrize(("window", "cutoff"), [(256, 152), (512, 289), (1024, 560), (2048, 1091)])
def test_legacy_apt_cutoffs_are_152_289_560_1091(window: int, cutoff: int) -> None:
    assert legacy_apt_cutoff(window) == cutoff
    assert fed(b"", window).apt.cutoff == cutoff


def test_legacy_apt_cutoff_equals_the_float_formula_for_every_window() -> None:
    for window in range(256, 2049):
        assert legacy_apt_cutoff(window) == math.floor(0.5 * window + 3 * math.sqrt(0.25 * window))


def test_600_identical_bytes_with_w_512_count_a_bias_from_byte_513_on() -> None:
    apt = fed(b"\x42" * 600, 512).apt
    # bytes 513..600 each see 512 copies in the window: 512 > 289
    assert (apt.bias_count, apt.samples_processed, apt.window_size) == (88, 600, 512)


def test_the_first_w_bytes_only_fill_the_window() -> None:
    assert fed(b"\x42" * 512, 512).apt.bias_count == 0
    assert fed(b"\x42" * 513, 512).apt.bias_count == 1


def test_a_value_at_the_cutoff_is_not_a_bias_one_more_is() -> None:
    filler = bytes(range(1, 256))[:223]  # 223 distinct non-zero bytes
    window = b"\x00" * 289 + filler  # 512 bytes, 289 zeros: exactly the cutoff
    assert fed(window + b"\x00", 512).apt.bias_count == 0
    window = b"\x00" * 290 + filler[:222]  # 290 zeros > 289
    assert fed(window + b"\x00", 512).apt.bias_count == 1


def test_1000_random_bytes_show_at_most_10_biases() -> None:
    data = np.random.default_rng(2026).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert fed(data).apt.bias_count <= 10


@pytest.mark.parametrize(
    ("window", "clamped"),
    [(0, 256), (100, 256), (256, 256), (700, 700), (2048, 2048), (5000, 2048)],
)
def test_the_metric_clamps_its_window_into_256_to_2048(window: int, clamped: int) -> None:
    assert clamp_apt_window(window) == clamped
    assert LegacyMetrics(window).snapshot().apt.window_size == clamped


@pytest.mark.parametrize(
    ("setting", "window"),
    [(None, 512), (100, 512), (255, 512), (256, 256), (1024, 1024), (2048, 2048), (2049, 512)],
)
def test_the_window_setting_outside_256_to_2048_falls_back_to_512(
    setting: int | None, window: int
) -> None:
    assert apt_window_from_setting(setting) == window


# --- §2.1 monobit and the SP 800-22 p-value ------------------------------------------------------


def test_monobit_counts_ones_and_zeros_of_every_byte() -> None:
    mono = fed(b"\xff\x00\x0f\x01").monobit
    assert (mono.ones, mono.zeros, mono.total) == (13, 19, 32)
    assert mono.average == 13 / 32


def test_monobit_without_data_has_average_0_and_no_p_value() -> None:
    mono = LegacyMetrics().snapshot().monobit
    assert (mono.total, mono.average, mono.p_value) == (0, 0.0, None)
    assert monobit_p_value(0, 0) is None


@pytest.mark.parametrize(
    "case",
    [c for c in sp800_22_examples()["cases"] if c["test"] == "frequency"],
    ids=lambda c: c["section"],
)
def test_monobit_p_value_reproduces_the_sp800_22_frequency_examples(case: dict[str, Any]) -> None:
    bits: str = case["bits"]
    p = monobit_p_value(bits.count("1"), len(bits))
    assert p is not None
    assert p == pytest.approx(case["p_value"], abs=sp800_22_examples()["tolerance_abs"])


def test_the_snapshot_p_value_is_the_frequency_test_over_all_bits_fed() -> None:
    mono = fed(b"\xff" * 3 + b"\x00").monobit  # 24 ones, 8 zeros: S_n = 16, n = 32
    assert mono.p_value == pytest.approx(math.erfc(16 / math.sqrt(64)))
    assert fed(b"\x0f\xf0").monobit.p_value == 1.0


# --- the /status shape (§2.4) --------------------------------------------------------------------


def test_to_dict_is_exactly_the_status_shape() -> None:
    out = fed(b"\x42" * 600).to_dict()
    assert out == {
        "monobit": {"zeros": 3600, "ones": 1200, "total": 4800, "average": 0.25},
        "repetition_count": {"failures": 17, "current_run": 5, "last_value": 0x42},
        "apt": {"window_size": 512, "cutoff": 289, "bias_count": 88, "samples_processed": 600},
    }
    assert all(type(v) is int for k, v in out["apt"].items())
    assert type(out["monobit"]["average"]) is float


def test_the_p_value_is_an_extra_monobit_key_only_on_request_and_null_without_data() -> None:
    snap = LegacyMetrics().snapshot()
    assert "p_value" not in snap.to_dict()["monobit"]
    extended = snap.to_dict(with_p_value=True)
    assert extended["monobit"]["p_value"] is None
    text = json.dumps(extended, allow_nan=False)
    assert '"p_value": null' in text
    assert set(extended["monobit"]) - set(snap.to_dict()["monobit"]) == {"p_value"}


def test_snapshots_are_frozen() -> None:
    snap = fed(b"abc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.apt = snap.apt  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.monobit.ones = 0  # type: ignore[misc]


def test_feed_accepts_bytes_like_and_refuses_other_types() -> None:
    for data in (b"\x01\x02", bytearray(b"\x01\x02"), memoryview(b"\x01\x02")):
        assert fed(bytes(data)) == _fed_any(data)
    with pytest.raises(TypeError):
        LegacyMetrics().feed([1, 2])  # type: ignore[arg-type]


def _fed_any(data: bytes | bytearray | memoryview) -> LegacySnapshot:
    metrics = LegacyMetrics()
    metrics.feed(data)
    return metrics.snapshot()


# --- vectorised == byte by byte == reference -----------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Random bytes with long runs injected, long enough to trip both legacy counters."""
    alphabet = draw(st.sampled_from([256, 4]))
    data = bytearray(b % alphabet for b in draw(st.binary(max_size=700)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = bytes([draw(st.integers(0, 3))]) * draw(st.integers(1, 400))
    return bytes(data)


def _parts(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=80, deadline=None)
@given(
    data=streams(),
    window=st.sampled_from([256, 300, 512]),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_legacy_metrics_chunked_equal_byte_by_byte_equal_the_reference(
    data: bytes, window: int, cuts: list[int]
) -> None:
    reference = ReferenceMetrics(window)
    reference.feed(data)
    expected = reference.as_dict()
    chunked = LegacyMetrics(window)
    for part in _parts(data, cuts):
        chunked.feed(part)
    assert chunked.snapshot().to_dict() == expected
    single = LegacyMetrics(window)
    for i in range(len(data)):
        single.feed(data[i : i + 1])
    assert single.snapshot() == chunked.snapshot()


def test_a_large_buffer_crossing_internal_blocks_equals_the_reference() -> None:
    rng = np.random.default_rng(7)
    data = bytearray(rng.integers(0, 256, 150_000, dtype=np.uint8).tobytes())
    for at in (1000, 65_400, 65_536 + 300, 131_000):
        data[at : at + 400] = bytes([at % 256]) * 400
    reference = ReferenceMetrics(256)
    reference.feed(bytes(data))
    metrics = LegacyMetrics(256)
    metrics.feed(data)
    assert metrics.snapshot().to_dict() == reference.as_dict()
    assert reference.bias_count > 0
    assert reference.failures > 0

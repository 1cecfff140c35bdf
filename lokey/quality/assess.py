"""Assess a byte stream: SP 800-90B health tests and the SP 800-22 battery, with verdicts.

Pure: bytes in, a frozen :class:`Assessment` out (the CLI does the reading and printing). The
input is split into sequences of ``sequence_bits`` (10^6 by default, the standard's usual length)
when it holds at least one; shorter input is one sequence, and a test whose recommended minimum
length exceeds it is reported as skipped, never failed.

**Verdicts.** A test yields one column of p-values per sub-statistic (1 for most tests, 2 for
serial and cumulative sums, 148 templates, 8 or 18 excursion states), each column holding one
p-value per sequence. Each column gives a statistic that is uniform-or-conservative on perfect
data: with one sequence the p-value itself; with several, the binomial tail of its number of
p-values below 0.01 (the exact form of the standard's proportion check, SP 800-22 §4.2.1), and,
from 55 sequences of at least 10^6 bits on, the uniformity P_T of §4.2.2. A test fails when its
smallest statistic is below a Šidák threshold, so that perfect data fails the **whole battery**
(15 tests) in 1 % of runs: pooling the columns of a test, or judging each of its 148 p-values at
0.01, would fail perfect data in a quarter of the runs (their p-values are correlated).

**Health.** The RCT and APT run over every byte with cut-offs from the claimed min-entropy. A
live source stops at its first failure; over a long file some failures are expected from the
tests' false-positive rate alone (at H = 8 about one RCT alarm per 16 MiB). The verdict counts
failing *events* (runs that reach the RCT cut-off, APT windows that reach theirs), which are
close to Poisson, and fails when their number is improbable for a source at exactly H (tail
<= 0.01), or when start-up (the first 1,024 samples) fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from lokey.errors import InsufficientDataError, NotApplicableError
from lokey.quality import sp800_22
from lokey.quality.health import apt_cutoff, rct_cutoff
from lokey.quality.sp800_22 import ALPHA, Bits

__all__ = [
    "BATTERY_ALPHA",
    "Assessment",
    "HealthVerdict",
    "TestVerdict",
    "assess",
    "health_verdict",
    "judge",
    "minimum_bits",
]

SEQUENCE_BITS = 1_000_000  # SP 800-22 §4: the battery's usual sequence length
STARTUP_SAMPLES = 1024  # SP 800-90B §4.3
APT_WINDOW_BYTES = 512  # SP 800-90B §4.4.2: W = 512 for non-binary samples
HEALTH_TAIL = 0.01  # verdict threshold on a failure count's Poisson tail
BATTERY_ALPHA = 0.01  # false-fail rate of the whole battery on perfect data
UNIFORMITY_SEQUENCES = 55  # SP 800-22 §4.2.2: at least 55 sequences for the uniformity check
UNIFORMITY_BITS = 1_000_000  # shorter sequences give p-values too discrete for a 10-bin chi-square

Status = Literal["pass", "fail", "skipped"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Judgement:
    """How one test's p-value columns were judged (see the module docstring)."""

    statistic: float  # the smallest column statistic
    threshold: float  # Šidák threshold it was compared with
    statistics: int  # how many column statistics were compared
    worst_column: int

    @property
    def failed(self) -> bool:
        return self.statistic < self.threshold


def judge(
    columns: Sequence[Sequence[float]],
    *,
    test_alpha: float,
    uniformity: bool,
) -> Judgement:
    """Judge a test from its p-value columns (one column per sub-statistic, one row per sequence).

    Each column contributes its p-value (one sequence) or the binomial tail of its count below
    0.01 (several), and with ``uniformity`` its P_T; the test fails when the smallest of these
    is below ``1 - (1 - test_alpha) ** (1 / count)``.
    """
    if not columns or not all(columns):
        raise ValueError("judge needs at least one non-empty column of p-values")
    found: list[tuple[float, int]] = []
    for index, column in enumerate(columns):
        if len(column) == 1:
            found.append((column[0], index))
            continue
        failures = sum(1 for p in column if p < ALPHA)
        tail = float(stats.binom.sf(failures - 1, len(column), ALPHA)) if failures else 1.0
        found.append((tail, index))
        if uniformity and len(column) >= UNIFORMITY_SEQUENCES:
            found.append((sp800_22.uniformity(column).p_value, index))
    statistic, worst = min(found)
    threshold = 1.0 - (1.0 - test_alpha) ** (1.0 / len(found))
    return Judgement(statistic, threshold, len(found), worst)


@dataclass(frozen=True)
class TestVerdict:
    """One SP 800-22 test over every sequence it could run on."""

    __test__ = False

    test: str
    status: Status
    minimum_bits: int
    sequences: int = 0
    p_values: tuple[float, ...] = ()
    proportion: float | None = None  # share of all p-values >= 0.01 (for people to read)
    statistic: float | None = None  # the smallest column statistic the verdict used
    threshold: float | None = None
    reason: str = ""

    @property
    def min_p(self) -> float | None:
        return min(self.p_values) if self.p_values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "status": self.status,
            "minimum_bits": self.minimum_bits,
            "sequences": self.sequences,
            "p_values": list(self.p_values),
            "min_p": self.min_p,
            "proportion": self.proportion,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "reason": self.reason,
        }


StartUp = Literal["passed", "failed", "not run"]


@dataclass(frozen=True)
class HealthVerdict:
    """SP 800-90B RCT and APT over the whole input, judged by their failure events."""

    h: float
    alpha: float
    rct_cutoff: int
    apt_cutoff: int
    apt_window: int
    samples: int
    rct_events: int  # runs of identical samples that reached the RCT cut-off
    apt_events: int  # APT windows that reached their cut-off
    rct_expected: float
    apt_expected: float
    startup: StartUp
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Assessment:
    size_bytes: int
    sequence_bits: int
    sequences: int
    health: HealthVerdict
    tests: tuple[TestVerdict, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.health.passed and all(t.status != "fail" for t in self.tests)

    @property
    def unused_bits(self) -> int:
        """Bits after the last whole sequence: the battery does not see them."""
        return self.size_bytes * 8 - self.sequences * self.sequence_bits

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "size_bytes": self.size_bytes,
            "sequence_bits": self.sequence_bits,
            "sequences": self.sequences,
            "unused_bits": self.unused_bits,
            "battery_alpha": BATTERY_ALPHA,
            "health": self.health.to_dict(),
            "tests": [t.to_dict() for t in self.tests],
        }


def minimum_bits() -> int:
    """The shortest input (in bits) any battery test can run on; shorter input is refused."""
    return min(minimum for _, _, minimum in sp800_22.BATTERY)


def assess(
    data: bytes,
    *,
    h: float = 8.0,
    alpha: float = 2**-20,
    sequence_bits: int = SEQUENCE_BITS,
    progress: Progress | None = None,
) -> Assessment:
    """Run the health tests and the battery over ``data`` (raw TRNG bytes)."""
    total_bits = len(data) * 8
    if total_bits < minimum_bits():
        raise InsufficientDataError("the SP 800-22 battery", minimum_bits(), total_bits)
    if sequence_bits < minimum_bits():
        raise ValueError(f"sequence_bits must be at least {minimum_bits()}, got {sequence_bits}")
    count = max(1, total_bits // sequence_bits)
    length = sequence_bits if total_bits >= sequence_bits else total_bits
    battery = sp800_22.BATTERY
    total = 1 + len(battery) * count
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    health = health_verdict(data, h=h, alpha=alpha)
    tick()
    # Sequence by sequence, so only one sequence is ever unpacked to bits (memory ~ 8 x 10^6).
    rows: dict[str, list[tuple[float, ...]]] = {name: [] for name, _, _ in battery}
    notes: dict[str, list[str]] = {name: [] for name, _, _ in battery}
    for index in range(count):
        bits = _unpack(data, index * length, length)
        for name, function, minimum in battery:
            if length >= minimum:
                try:
                    rows[name].append(function(bits).p_values)
                except (InsufficientDataError, NotApplicableError) as error:
                    notes[name].append(str(error))
            tick()
    test_alpha = 1.0 - (1.0 - BATTERY_ALPHA) ** (1.0 / len(battery))
    verdicts = tuple(
        _verdict(name, minimum, rows[name], notes[name], length=length, test_alpha=test_alpha)
        for name, _, minimum in battery
    )
    return Assessment(
        size_bytes=len(data),
        sequence_bits=length,
        sequences=count,
        health=health,
        tests=verdicts,
    )


def _unpack(data: bytes, start_bit: int, length: int) -> Bits:
    """Bits ``start_bit .. start_bit + length`` of ``data``, MSB first (as NIST STS reads)."""
    first, last = start_bit // 8, -(-(start_bit + length) // 8)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=last - first, offset=first))
    offset = start_bit - first * 8
    return sp800_22.as_bits(bits[offset : offset + length], "assess")


def _verdict(
    name: str,
    minimum: int,
    rows: list[tuple[float, ...]],
    notes: list[str],
    *,
    length: int,
    test_alpha: float,
) -> TestVerdict:
    if length < minimum:
        reason = f"needs at least {minimum:,} bits per sequence, has {length:,}"
        return TestVerdict(name, "skipped", minimum, reason=reason)
    if not rows:
        return TestVerdict(name, "skipped", minimum, reason=notes[0])
    columns = list(zip(*rows, strict=True))
    judgement = judge(columns, test_alpha=test_alpha, uniformity=length >= UNIFORMITY_BITS)
    p_values = tuple(p for row in rows for p in row)
    passing = sum(1 for p in p_values if p >= ALPHA)
    reason = ""
    if judgement.failed:
        reason = f"statistic {judgement.statistic:.2e} < {judgement.threshold:.2e}" + (
            f" (sub-test {judgement.worst_column + 1})" if len(columns) > 1 else ""
        )
    if notes:
        reason = (reason + "; " if reason else "") + f"{len(notes)} sequence(s) not applicable"
    return TestVerdict(
        name,
        "fail" if judgement.failed else "pass",
        minimum,
        sequences=len(rows),
        p_values=p_values,
        proportion=passing / len(p_values),
        statistic=judgement.statistic,
        threshold=judgement.threshold,
        reason=reason,
    )


def health_verdict(data: bytes, *, h: float = 8.0, alpha: float = 2**-20) -> HealthVerdict:
    """SP 800-90B RCT and APT over every byte of ``data``, judged as the module explains."""
    rct_c = rct_cutoff(h, alpha)
    apt_c = apt_cutoff(h, APT_WINDOW_BYTES, alpha)
    samples = np.frombuffer(data, dtype=np.uint8)
    rct_runs = _long_runs(samples, rct_c)  # start index of every run of length >= C
    apt_windows = _failing_windows(samples, apt_c)  # index of every window reaching C
    # Expected events of a source with exactly h bits of min-entropy per sample: a run reaching
    # C starts at a given sample with probability p^(C-1); a window fails when at least C - 1 of
    # its other W - 1 samples equal its first.
    p_same = 2.0**-h
    rct_expected = samples.size * p_same ** (rct_c - 1)
    window_fail = float(stats.binom.sf(apt_c - 2, APT_WINDOW_BYTES - 1, p_same))
    apt_expected = (samples.size // APT_WINDOW_BYTES) * window_fail
    if samples.size < STARTUP_SAMPLES:
        startup: StartUp = "not run"
    else:
        early = (rct_runs.size and rct_runs[0] + rct_c <= STARTUP_SAMPLES) or (
            apt_windows.size and (apt_windows[0] + 1) * APT_WINDOW_BYTES <= STARTUP_SAMPLES
        )
        startup = "failed" if early else "passed"
    reasons = []
    if startup == "failed":
        reasons.append(f"start-up failed within the first {STARTUP_SAMPLES} samples")
    for test, observed, expected in (
        ("RCT", int(rct_runs.size), rct_expected),
        ("APT", int(apt_windows.size), apt_expected),
    ):
        tail = float(stats.poisson.sf(observed - 1, expected)) if observed else 1.0
        if tail <= HEALTH_TAIL:
            reasons.append(
                f"{test}: {observed} failures where a healthy source gives {expected:.2g}"
            )
    return HealthVerdict(
        h=h,
        alpha=alpha,
        rct_cutoff=rct_c,
        apt_cutoff=apt_c,
        apt_window=APT_WINDOW_BYTES,
        samples=int(samples.size),
        rct_events=int(rct_runs.size),
        apt_events=int(apt_windows.size),
        rct_expected=rct_expected,
        apt_expected=apt_expected,
        startup=startup,
        passed=not reasons,
        reason="; ".join(reasons),
    )


def _long_runs(samples: np.ndarray[Any, np.dtype[np.uint8]], cutoff: int) -> np.ndarray[Any, Any]:
    """Start indices of runs of identical samples at least ``cutoff`` long (SP 800-90B §4.4.1)."""
    if samples.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], samples[1:] != samples[:-1])))
    lengths = np.diff(np.append(starts, samples.size))
    return starts[lengths >= cutoff]


def _failing_windows(
    samples: np.ndarray[Any, np.dtype[np.uint8]], cutoff: int
) -> np.ndarray[Any, Any]:
    """Indices of complete APT windows whose first sample recurs to the cut-off (§4.4.2)."""
    windows = samples[: samples.size // APT_WINDOW_BYTES * APT_WINDOW_BYTES].reshape(
        -1, APT_WINDOW_BYTES
    )
    counts = (windows == windows[:, :1]).sum(axis=1)  # B counts the first sample itself
    return np.flatnonzero(counts >= cutoff)

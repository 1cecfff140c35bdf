"""Assess a byte stream: SP 800-90B health tests and the SP 800-22 battery, with verdicts.

Pure: bytes in, a frozen :class:`Assessment` out (the CLI does the reading and printing). The
input is split into sequences of ``sequence_bits`` (1,000,000 by default, the standard's usual
length) when it holds at least one; shorter input is one sequence, and each test whose
recommended minimum length exceeds it is reported as skipped, never failed.

Verdicts follow SP 800-22 Rev 1a §4.2.1: a test's p-values (every sequence, and every
sub-statistic such as the 148 templates) pass when the proportion of them at or above
alpha = 0.01 is at least p̂ - 3·sqrt(p̂(1 - p̂)/m) with p̂ = 0.99 and m the number of p-values.
For one p-value that is exactly the single-sequence rule P >= 0.01. When there are at least 55
p-values their uniformity (§4.2.2, P_T >= 0.0001) must hold too.

The health tests run over the whole input with cut-offs from the claimed min-entropy. A live
source stops at its first failure; over a file of many samples a few failures are expected from
the tests' false-positive rate alone, so the verdict fails only when the number observed is
improbable for a healthy source (Poisson tail <= 0.01), or when start-up (the first 1,024
samples) fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy import stats

from lokey.errors import InsufficientDataError, NotApplicableError
from lokey.quality import sp800_22
from lokey.quality.health import (
    AdaptiveProportionTest,
    RepetitionCountTest,
    apt_cutoff,
    rct_cutoff,
)
from lokey.quality.sp800_22 import ALPHA, Bits, TestResult
from lokey.quality.sp800_22.second_level import proportion_passing, uniformity

__all__ = [
    "Assessment",
    "HealthVerdict",
    "TestVerdict",
    "assess",
    "health_verdict",
    "minimum_bits",
]

SEQUENCE_BITS = 1_000_000  # SP 800-22 §4: the battery's usual sequence length
STARTUP_SAMPLES = 1024  # SP 800-90B §4.3
APT_WINDOW_BYTES = 512  # SP 800-90B §4.4.2: W = 512 for non-binary samples
HEALTH_TAIL = 0.01  # verdict threshold on the failure count's Poisson tail
UNIFORMITY_MIN = 55  # SP 800-22 §4.2.2: at least 55 p-values for the uniformity check

Status = Literal["pass", "fail", "skipped"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TestVerdict:
    """One SP 800-22 test over every sequence it could run on."""

    __test__ = False

    test: str
    status: Status
    minimum_bits: int
    sequences: int = 0
    p_values: tuple[float, ...] = ()
    proportion: float | None = None
    proportion_low: float | None = None
    uniformity_p: float | None = None
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
            "proportion_low": self.proportion_low,
            "uniformity_p": self.uniformity_p,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HealthVerdict:
    """SP 800-90B RCT and APT over the whole input."""

    h: float
    alpha: float
    rct_cutoff: int
    apt_cutoff: int
    apt_window: int
    samples: int
    rct_failures: int
    apt_failures: int
    rct_expected: float
    apt_expected: float
    startup_passed: bool
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
    if len(data) * 8 < minimum_bits():
        raise InsufficientDataError("the SP 800-22 battery", minimum_bits(), len(data) * 8)
    if sequence_bits < 1:
        raise ValueError(f"sequence_bits must be positive, got {sequence_bits}")
    bits = sp800_22.bits_from_bytes(data)
    count = max(1, bits.size // sequence_bits)
    length = sequence_bits if bits.size >= sequence_bits else bits.size
    sequences = [bits[i * length : (i + 1) * length] for i in range(count)]
    total = 1 + len(sp800_22.BATTERY) * count
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    health = health_verdict(data, h=h, alpha=alpha)
    tick()
    verdicts = [
        _run_test(name, function, minimum, sequences, length=length, tick=tick)
        for name, function, minimum in sp800_22.BATTERY
    ]
    return Assessment(
        size_bytes=len(data),
        sequence_bits=length,
        sequences=count,
        health=health,
        tests=tuple(verdicts),
    )


def _run_test(
    name: str,
    function: Callable[[Bits], TestResult],
    minimum: int,
    sequences: list[Bits],
    *,
    length: int,
    tick: Callable[[], None],
) -> TestVerdict:
    if length < minimum:
        for _ in sequences:
            tick()
        reason = f"needs at least {minimum:,} bits per sequence, has {length:,}"
        return TestVerdict(name, "skipped", minimum, reason=reason)
    p_values: list[float] = []
    ran = 0
    skipped: list[str] = []
    for sequence in sequences:
        try:
            result = function(sequence)
        except (InsufficientDataError, NotApplicableError) as error:
            skipped.append(str(error))
            continue
        finally:
            tick()
        ran += 1
        p_values.extend(result.p_values)
    if not ran:
        return TestVerdict(name, "skipped", minimum, reason=skipped[0])
    proportion = proportion_passing(p_values, alpha=ALPHA)
    uniform_p = uniformity(p_values).p_value if len(p_values) >= UNIFORMITY_MIN else None
    failed = proportion.proportion < proportion.low or (
        uniform_p is not None and uniform_p < 0.0001
    )
    reason = ""
    if failed:
        below = proportion.total - proportion.passed
        reason = f"{below} of {proportion.total} p-values below {ALPHA}"
        if uniform_p is not None and uniform_p < 0.0001:
            reason += f"; p-values not uniform (P_T = {uniform_p:.2e})"
    if skipped:
        reason = (reason + "; " if reason else "") + f"{len(skipped)} sequence(s) not applicable"
    return TestVerdict(
        name,
        "fail" if failed else "pass",
        minimum,
        sequences=ran,
        p_values=tuple(p_values),
        proportion=proportion.proportion,
        proportion_low=proportion.low,
        uniformity_p=uniform_p,
        reason=reason,
    )


def health_verdict(data: bytes, *, h: float = 8.0, alpha: float = 2**-20) -> HealthVerdict:
    """SP 800-90B RCT and APT over every byte of ``data``, judged as the module explains."""
    rct_c = rct_cutoff(h, alpha)
    apt_c = apt_cutoff(h, APT_WINDOW_BYTES, alpha)
    rct = RepetitionCountTest(rct_c)
    apt = AdaptiveProportionTest(apt_c, APT_WINDOW_BYTES)
    rct.feed(data)
    apt.feed(data)
    samples = len(data)
    # Expected false alarms of a source with exactly h bits of min-entropy per sample.
    p_same = 2.0**-h
    rct_expected = samples * p_same ** (rct_c - 1)
    windows = samples // APT_WINDOW_BYTES
    apt_window_fail = float(stats.binom.sf(apt_c - 2, APT_WINDOW_BYTES - 1, p_same))
    apt_expected = windows * apt_window_fail
    startup_ok = all(
        first is None or first >= STARTUP_SAMPLES
        for first in (rct.first_failure, apt.first_failure)
    )
    reasons = []
    if not startup_ok:
        reasons.append(f"start-up failed within the first {STARTUP_SAMPLES} samples")
    for test, observed, expected in (
        ("RCT", rct.failures, rct_expected),
        ("APT", apt.failures, apt_expected),
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
        samples=samples,
        rct_failures=rct.failures,
        apt_failures=apt.failures,
        rct_expected=rct_expected,
        apt_expected=apt_expected,
        startup_passed=startup_ok,
        passed=not reasons,
        reason="; ".join(reasons),
    )

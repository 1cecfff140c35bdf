"""SP 800-90B continuous health tests: Repetition Count and Adaptive Proportion, plus start-up.

These tests gate raw TRNG samples before they are stored or credited to Fortuna
(health-tests.md §1). Everything here is pure: callers feed samples and read counters and
frozen snapshots; there is no I/O, no global state and no logging. Snapshots and failure
reasons carry counts and positions, never sample values, so nothing derived from them can leak
random output into logs or metrics.

Cut-offs are always computed from the claimed min-entropy H per sample and the false-positive
probability alpha (SP 800-90B §4.4.1 and §4.4.2), never hard-coded; the known answers live in
``shared/vectors/sp800_90b_cutoffs.json`` and the tests check every row.

Streaming: both tests carry their state across ``feed`` calls (RCT: the current run; APT: the
open window), so feeding a stream in chunks of any size, or one sample at a time, gives the same
counters and the same first-failure index.

Two implementations of each test give the same results: a bytes-like chunk shorter than
:data:`NUMPY_FROM` is tested sample by sample in Python, anything larger (or a numpy array) is
vectorised with numpy. numpy is imported only on that second path, so a service that tests its
samples as they arrive (32 bytes at a time) does not load it (about 12 MB resident).
"""

from __future__ import annotations

import copy
import enum
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final, TypeAlias

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "APT_WINDOW_BINARY",
    "APT_WINDOW_NON_BINARY",
    "DEFAULT_ALPHA",
    "NUMPY_FROM",
    "STARTUP_SAMPLES",
    "AdaptiveProportionTest",
    "AptSnapshot",
    "HealthFailure",
    "HealthSnapshot",
    "HealthState",
    "HealthTest",
    "HealthTracker",
    "RctSnapshot",
    "RepetitionCountTest",
    "Samples",
    "apt_cutoff",
    "rct_cutoff",
]

DEFAULT_ALPHA = 2.0**-20  # health-tests.md §1.1: LoKey's alpha, inside SP 800-90B's 2^-20..2^-40
APT_WINDOW_BINARY = 1024  # SP 800-90B §4.4.2: W for binary samples
APT_WINDOW_NON_BINARY = 512  # SP 800-90B §4.4.2: W for non-binary samples (bytes)
STARTUP_SAMPLES = 1024  # SP 800-90B §4.3 (9): start-up tests run on at least 1024 samples
BYTE_BITS = 8  # a byte sample carries at most 8 bits of min-entropy (health-tests.md §1.1)
#: Bytes-like chunks of at least this many samples are tested with numpy, shorter ones in Python.
NUMPY_FROM: Final = 4096

# Decimal precision for the cut-offs whose inputs are irrational (fractional H, or an alpha that
# is not a power of two). 60 significant digits leave ~45 digits of headroom after a 1024-term
# binomial sum; a result closer than _MARGIN to its decision boundary is refused, not guessed.
_PRECISION = 60
_MARGIN = Decimal(10) ** -30

Number: TypeAlias = float | Fraction
"""An entropy or probability argument: a float (or int) or an exact :class:`Fraction`."""

Samples: TypeAlias = "bytes | bytearray | memoryview | npt.NDArray[Any]"
"""Raw samples: a bytes-like object (one sample per byte) or a 1-D integer (or bool) array."""


# --- cut-offs ------------------------------------------------------------------------------------


def _entropy(h: Number) -> Fraction:
    """H as an exact rational.

    A float is read as the shortest decimal that prints as it (``repr``): a configured H of 0.3
    means 3/10, not 0.29999999999999998890 (the binary float), which would turn 30/H = 100
    into 100.000...04 and move the RCT cut-off up by one. A :class:`Fraction` is taken as is.
    """
    if isinstance(h, bool):
        raise TypeError("H must be a number of bits, not a bool")
    if isinstance(h, Fraction):
        value = h
    elif isinstance(h, int):
        value = Fraction(h)
    elif isinstance(h, float):
        if not math.isfinite(h):
            raise ValueError(f"H must be finite, got {h!r}")
        value = Fraction(repr(h))
    else:
        raise TypeError(f"H must be a float or a Fraction, got {type(h).__name__}")
    if value <= 0:
        raise ValueError(f"H (min-entropy per sample) must be positive, got {h!r}")
    return value


def _probability(alpha: Number) -> Fraction:
    """Alpha as an exact rational: a float's exact binary value (2**-20 is exactly 2^-20)."""
    if isinstance(alpha, bool):
        raise TypeError("alpha must be a probability, not a bool")
    if isinstance(alpha, Fraction | int):
        value = Fraction(alpha)
    elif isinstance(alpha, float):
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        value = Fraction(alpha)
    else:
        raise TypeError(f"alpha must be a float or a Fraction, got {type(alpha).__name__}")
    if not 0 < value < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    return value


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _decimal(value: Fraction) -> Decimal:
    """A Fraction as a Decimal in the current context (rounded to its precision)."""
    return Decimal(value.numerator) / Decimal(value.denominator)


def _checked_ceiling(value: Decimal) -> int:
    """Ceiling of an irrational quotient, refusing values too close to an integer to decide."""
    ceiling = value.to_integral_value(rounding=ROUND_CEILING)
    if min(ceiling - value, value - (ceiling - 1)) < _MARGIN:
        raise ArithmeticError(f"cut-off undecidable at {_PRECISION} digits: {value} is an integer?")
    return int(ceiling)


def rct_cutoff(h: Number, alpha: Number = DEFAULT_ALPHA) -> int:
    """Repetition Count Test cut-off C = 1 + ceil(-log2(alpha) / H) (SP 800-90B §4.4.1).

    C is the smallest run length with 2^(-H (C-1)) <= alpha: a run of C identical samples from a
    source with H bits of min-entropy per sample has probability at most alpha. The arithmetic
    is exact: for alpha a power of two (the usual 2^-20 .. 2^-60) -log2(alpha) is an integer and
    the quotient a Fraction, so 20 / 0.2 is exactly 100 and C = 101; any other alpha makes the
    quotient irrational and it is evaluated to 60 digits.

    Examples: H = 8, alpha = 2^-20 -> 4; H = 2 -> 11 (the standard's own example); H = 0.5 -> 41.
    """
    entropy = _entropy(h)
    probability = _probability(alpha)
    num, den = probability.numerator, probability.denominator
    if _is_power_of_two(num) and _is_power_of_two(den):
        bits = Fraction(den.bit_length() - num.bit_length())  # -log2(alpha), exactly
        return 1 + math.ceil(bits / entropy)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        bits_dec = (Decimal(den).ln() - Decimal(num).ln()) / Decimal(2).ln()
        return 1 + _checked_ceiling(bits_dec / _decimal(entropy))


def _critbinom_exact(n: int, entropy: int, alpha: Fraction) -> int:
    """CRITBINOM(n, 2^-H, 1 - alpha) for integer H, in exact integer arithmetic.

    With p = 1/D (D = 2^H) every binomial probability is an integer over D^n: the term for j
    successes is comb(n, j) (D-1)^(n-j). The upper tail P(X >= j) is accumulated from j = n
    downwards; the answer is the first j whose tail exceeds alpha, because then
    P(X > j) <= alpha < P(X > j - 1). Summing the small upper tail instead of the CDF avoids
    comparing against 1 - alpha, where 1 - 2^-20 sits within a few ulps of 1 in floating point.
    """
    denominator = 1 << entropy
    other = denominator - 1
    threshold = alpha.numerator * denominator**n  # tail * D^n > alpha * D^n, times alpha's den
    term = 1  # comb(n, n) * other**0
    tail = 0
    for j in range(n, -1, -1):
        tail += term
        if tail * alpha.denominator > threshold:
            return j
        # comb(n, j-1) (D-1)^(n-j+1) = comb(n, j) (D-1)^(n-j) * (D-1) * j / (n-j+1), exactly
        term = term * other * j // (n - j + 1)
    raise AssertionError("unreachable: the whole distribution has probability 1 > alpha")


def _critbinom_decimal(n: int, entropy: Fraction, alpha: Fraction) -> int:
    """CRITBINOM for a fractional H (p = 2^-H irrational), to 60 significant digits.

    Same upper-tail walk as the exact version. The decision is refused (ArithmeticError) if the
    tail lies within 1e-30 relative of alpha on either side, which no real input comes near.
    """
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        p = (-_decimal(entropy) * Decimal(2).ln()).exp()
        q = 1 - p
        ratio = q / p
        bound = _decimal(alpha)
        term = p**n
        tail = Decimal(0)
        for j in range(n, -1, -1):
            previous = tail
            tail += term
            if tail > bound:
                if (tail - bound) < _MARGIN * bound or (bound - previous) < _MARGIN * bound:
                    raise ArithmeticError(f"CRITBINOM({n}) too close to alpha to decide")
                return j
            term = term * ratio * j / (n - j + 1)
    raise AssertionError("unreachable: the whole distribution has probability 1 > alpha")


def _critbinom(n: int, entropy: Fraction, alpha: Fraction) -> int:
    """Smallest k with BinomCDF(k; n, 2^-H) >= 1 - alpha (R ``qbinom``, scipy ``binom.ppf``)."""
    if entropy.denominator == 1:
        return _critbinom_exact(n, int(entropy), alpha)
    return _critbinom_decimal(n, entropy, alpha)


def apt_cutoff(
    h: Number, window: int, alpha: Number = DEFAULT_ALPHA, *, corrected: bool = True
) -> int:
    """Adaptive Proportion Test cut-off for windows of ``window`` samples (SP 800-90B §4.4.2).

    ``corrected=True`` (the default): C' = 2 + CRITBINOM(W - 1, 2^-H, 1 - alpha). The counter B
    starts at 1 for the window's first sample, which is A itself and not a trial, so only the
    W - 1 remaining samples are Bernoulli trials (Joshua Hill's public comment #10b on SP 800-90B,
    adopted by jitterentropy). With this cut-off the probability that a healthy window fails is
    P(1 + Bin(W-1, p) >= C') <= alpha exactly, for every H and W.

    ``corrected=False``: C = 1 + CRITBINOM(W, 2^-H, 1 - alpha), as printed in the standard and
    used by most published implementations (Go's entropy package, the nRF54 datasheet). It
    treats all W samples as trials and can exceed alpha slightly: at H = 8, W = 512 it gives
    C = 13 with a false-positive rate of 1.22e-6 = 1.28 alpha, where the corrected C' = 14 gives
    1.8e-7 (health-tests.md §1.3).

    The corrected form is the default because a health test's documented alpha is a promise
    about false alarms, and only the corrected cut-off keeps it; the standard form stays
    selectable for comparison with other implementations. The binomial tail is summed exactly
    (integer arithmetic for integer H, 60-digit decimals for fractional H), not with a
    floating-point quantile function.
    """
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"window must be an int, got {type(window).__name__}")
    if window < 2:
        raise ValueError(f"the APT window needs at least 2 samples, got {window}")
    entropy = _entropy(h)
    probability = _probability(alpha)
    if corrected:
        return 2 + _critbinom(window - 1, entropy, probability)
    return 1 + _critbinom(window, entropy, probability)


# --- sample input --------------------------------------------------------------------------------


def _as_samples(samples: Samples) -> bytes | npt.NDArray[Any]:
    """The samples as ``bytes`` (a short bytes-like chunk: the pure-Python path) or as a 1-D
    integer array (without copying where the input allows it: the numpy path)."""
    if isinstance(samples, bytes | bytearray | memoryview):
        view = memoryview(samples)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if len(view) < NUMPY_FROM:
            return view.tobytes()
        import numpy as np  # noqa: PLC0415 - only large chunks need numpy

        return np.frombuffer(view, dtype=np.uint8)
    import numpy as np  # noqa: PLC0415 - anything else can only be a numpy array

    if isinstance(samples, np.ndarray):
        if samples.ndim != 1:
            raise ValueError(f"samples must be one-dimensional, got shape {samples.shape}")
        if samples.dtype == np.bool_:
            return samples.view(np.uint8)
        if not np.issubdtype(samples.dtype, np.integer):
            raise TypeError(f"samples must be integers, got dtype {samples.dtype}")
        return samples
    raise TypeError(f"samples must be bytes-like or a numpy array, got {type(samples).__name__}")


def _check_cutoff(cutoff: int) -> int:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int):
        raise TypeError(f"cutoff must be an int, got {type(cutoff).__name__}")
    if cutoff < 2:
        raise ValueError(f"a cut-off below 2 would fail on every first sample, got {cutoff}")
    return cutoff


# --- Repetition Count Test -----------------------------------------------------------------------


@dataclass(frozen=True)
class RctSnapshot:
    """Counters of a :class:`RepetitionCountTest` (no sample values).

    ``run_length`` is B, the length of the current run of identical samples (0 before the first
    sample); ``failures`` counts the samples on which the test signalled.
    """

    cutoff: int
    samples: int
    failures: int
    first_failure: int | None
    run_length: int


class RepetitionCountTest:
    """SP 800-90B §4.4.1, streaming: A = the last sample, B = the length of its run.

    For each sample x after the first: if x = A then B += 1, else A = x and B = 1; the test
    signals whenever B >= C. A run of L >= C identical samples therefore signals on its last
    L - C + 1 samples; ``failures`` counts those samples and ``first_failure`` is the index
    (0-based, counting every sample fed to this object) of the first one.

    The work is vectorised: only samples that repeat their predecessor (one in 2^H for a healthy
    source) are looked at individually, so a healthy stream costs one comparison pass.
    """

    __slots__ = ("_cutoff", "_failures", "_first_failure", "_last", "_run", "_samples")

    def __init__(self, cutoff: int) -> None:
        self._cutoff = _check_cutoff(cutoff)
        self._last: int | None = None
        self._run = 0
        self._samples = 0
        self._failures = 0
        self._first_failure: int | None = None

    @property
    def cutoff(self) -> int:
        return self._cutoff

    @property
    def samples(self) -> int:
        """How many samples were fed."""
        return self._samples

    @property
    def failures(self) -> int:
        """How many samples the test signalled on (each with B >= C)."""
        return self._failures

    @property
    def first_failure(self) -> int | None:
        """Index of the first sample the test signalled on, or None."""
        return self._first_failure

    @property
    def run_length(self) -> int:
        """B: the length of the run the last sample belongs to."""
        return self._run

    def feed(self, samples: Samples) -> int:
        """Test the next samples; return how many of them the test signalled on."""
        x = _as_samples(samples)
        if isinstance(x, bytes):
            return self._feed_bytes(x)
        return self._feed_array(x)

    def _feed_bytes(self, x: bytes) -> int:
        """The test as specified, one sample at a time (short chunks)."""
        n = len(x)
        if n == 0:
            return 0
        cutoff = self._cutoff
        last, run = self._last, self._run
        new_failures = 0
        first: int | None = None
        for index, value in enumerate(x):
            if value == last:
                run += 1
                if run >= cutoff:
                    new_failures += 1
                    if first is None:
                        first = index
            else:
                last, run = value, 1
        if first is not None and self._first_failure is None:
            self._first_failure = self._samples + first
        self._failures += new_failures
        self._samples += n
        self._last = last
        self._run = run
        return new_failures

    def _feed_array(self, x: npt.NDArray[Any]) -> int:
        import numpy as np  # noqa: PLC0415 - see the module docstring

        n = int(x.size)
        if n == 0:
            return 0
        cutoff = self._cutoff
        # positions (in this chunk) of the samples equal to their predecessor
        repeats = np.flatnonzero(x[1:] == x[:-1]) + 1
        continues = self._last is not None and int(x[0]) == self._last
        if continues:
            repeats = np.concatenate((np.zeros(1, dtype=repeats.dtype), repeats))
        new_failures = 0
        first: int | None = None
        run = 1
        if repeats.size:
            # group the repeat positions into streaks of consecutive positions: a streak
            # [s, e] is one run of identical samples that began at s - 1 (or earlier, carried)
            breaks = np.flatnonzero(np.diff(repeats) != 1)
            starts = repeats[np.concatenate(([0], breaks + 1))].astype(np.int64)
            ends = repeats[np.concatenate((breaks, [repeats.size - 1]))].astype(np.int64)
            base = np.ones(starts.size, dtype=np.int64)  # B at position s - 1
            if continues:
                base[0] = self._run
            # at position i of a streak B = base + (i - s + 1); it signals once B >= C
            first_signal = starts + np.maximum(0, cutoff - 1 - base)
            signals = ends - first_signal + 1
            failing = signals > 0
            if failing.any():
                new_failures = int(signals[failing].sum())
                first = int(first_signal[int(np.argmax(failing))])
            if int(ends[-1]) == n - 1:
                run = int(base[-1] + ends[-1] - starts[-1] + 1)
        if first is not None and self._first_failure is None:
            self._first_failure = self._samples + first
        self._failures += new_failures
        self._samples += n
        self._last = int(x[-1])
        self._run = run
        return new_failures

    def snapshot(self) -> RctSnapshot:
        return RctSnapshot(
            cutoff=self._cutoff,
            samples=self._samples,
            failures=self._failures,
            first_failure=self._first_failure,
            run_length=self._run,
        )


# --- Adaptive Proportion Test --------------------------------------------------------------------


@dataclass(frozen=True)
class AptSnapshot:
    """Counters of an :class:`AdaptiveProportionTest` (no sample values).

    ``window_position`` is how many samples of the open window were seen (0: the next sample
    opens a new window); ``window_count`` is that window's B.
    """

    cutoff: int
    window: int
    samples: int
    failures: int
    first_failure: int | None
    window_position: int
    window_count: int


class AdaptiveProportionTest:
    """SP 800-90B §4.4.2, streaming, over non-overlapping windows of W samples.

    The first sample of each window is A and sets B = 1; each of the next W - 1 samples equal to
    A increments B, and the test signals on every such sample that brings B to C or above. So a
    window in which A occurs B_final >= C times signals B_final - C + 1 times; ``failures``
    counts those samples, ``first_failure`` indexes the first one (counting every sample fed).

    Whole windows inside a chunk are tested by reshaping them to rows of W and comparing each
    row with its first column; a window split across chunks carries A, B and its position.
    """

    __slots__ = (
        "_count",
        "_cutoff",
        "_failures",
        "_first_failure",
        "_position",
        "_samples",
        "_value",
        "_window",
    )

    def __init__(self, cutoff: int, window: int) -> None:
        self._cutoff = _check_cutoff(cutoff)
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(f"window must be an int, got {type(window).__name__}")
        if window < 2:
            raise ValueError(f"the APT window needs at least 2 samples, got {window}")
        self._window = window
        self._value = 0  # A of the open window (meaningful only while _position > 0)
        self._count = 0  # B of the open window
        self._position = 0
        self._samples = 0
        self._failures = 0
        self._first_failure: int | None = None

    @property
    def cutoff(self) -> int:
        return self._cutoff

    @property
    def window(self) -> int:
        return self._window

    @property
    def samples(self) -> int:
        """How many samples were fed."""
        return self._samples

    @property
    def failures(self) -> int:
        """How many samples the test signalled on (each bringing B to C or above)."""
        return self._failures

    @property
    def first_failure(self) -> int | None:
        """Index of the first sample the test signalled on, or None."""
        return self._first_failure

    def feed(self, samples: Samples) -> int:
        """Test the next samples; return how many of them the test signalled on."""
        x = _as_samples(samples)
        if isinstance(x, bytes):
            return self._feed_bytes(x)
        return self._feed_array(x)

    def _feed_bytes(self, x: bytes) -> int:
        """The test as specified, one sample at a time (short chunks)."""
        n = len(x)
        if n == 0:
            return 0
        w, cutoff = self._window, self._cutoff
        value, count, position = self._value, self._count, self._position
        new_failures = 0
        first: int | None = None
        for index, sample in enumerate(x):
            if position == 0:  # A opens a window, B = 1 (below every cut-off, which is >= 2)
                value, count = sample, 1
            elif sample == value:
                count += 1
                if count >= cutoff:
                    new_failures += 1
                    if first is None:
                        first = index
            position += 1
            if position == w:
                position = 0
        if first is not None and self._first_failure is None:
            self._first_failure = self._samples + first
        self._value, self._count, self._position = value, count, position
        self._failures += new_failures
        self._samples += n
        return new_failures

    def _feed_array(self, x: npt.NDArray[Any]) -> int:
        import numpy as np  # noqa: PLC0415 - see the module docstring

        n = int(x.size)
        if n == 0:
            return 0
        w, cutoff = self._window, self._cutoff
        new_failures = 0
        first: int | None = None
        offset = 0
        if self._position:  # finish the window left open by the previous chunk
            take = min(w - self._position, n)
            hits = np.flatnonzero(x[:take] == self._value)
            # the k-th hit (0-based) brings B to count + k + 1; it signals from B = C on
            skip = max(0, cutoff - self._count - 1)
            if hits.size > skip:
                new_failures += int(hits.size) - skip
                first = int(hits[skip])
            self._count += int(hits.size)
            self._position = (self._position + take) % w
            offset = take
        whole = (n - offset) // w
        if whole:
            rows = x[offset : offset + whole * w].reshape(whole, w)
            equal = rows == rows[:, :1]
            counts = equal.view(np.uint8).sum(axis=1, dtype=np.uint16 if w < 1 << 16 else np.int64)
            failing = np.flatnonzero(counts >= cutoff)
            if failing.size:
                new_failures += int((counts[failing].astype(np.int64) - cutoff + 1).sum())
                if first is None:
                    row = int(failing[0])
                    first = offset + row * w + int(np.flatnonzero(equal[row])[cutoff - 1])
            offset += whole * w
        if offset < n:  # open a window that the next chunk finishes
            self._value = int(x[offset])
            hits = np.flatnonzero(x[offset:] == self._value)  # includes A itself, B = 1
            if hits.size >= cutoff:
                new_failures += int(hits.size) - cutoff + 1
                if first is None:
                    first = offset + int(hits[cutoff - 1])
            self._count = int(hits.size)
            self._position = n - offset
        if first is not None and self._first_failure is None:
            self._first_failure = self._samples + first
        self._failures += new_failures
        self._samples += n
        return new_failures

    def snapshot(self) -> AptSnapshot:
        return AptSnapshot(
            cutoff=self._cutoff,
            window=self._window,
            samples=self._samples,
            failures=self._failures,
            first_failure=self._first_failure,
            window_position=self._position,
            window_count=self._count if self._position else 0,
        )


# --- start-up and failure state machine ----------------------------------------------------------


class HealthState(enum.StrEnum):
    """States of one noise source (health-tests.md §1.5)."""

    INIT = "init"  # nothing fed since construction
    STARTUP = "startup"  # collecting the start-up samples; all are discarded
    STEADY = "steady"  # tested continuously; passing samples are usable
    FAILED = "failed"  # a test signalled; every sample is discarded until restart()


class HealthTest(enum.StrEnum):
    """Which continuous test signalled."""

    RCT = "repetition_count"  # SP 800-90B §4.4.1
    APT = "adaptive_proportion"  # SP 800-90B §4.4.2


@dataclass(frozen=True)
class HealthFailure:
    """The failure that put a tracker into FAILED.

    ``sample_index`` counts every sample fed to the tracker since construction (0-based), across
    restarts and including discarded ones.
    """

    test: HealthTest
    cutoff: int
    sample_index: int
    window: int | None = None  # the APT window, None for the RCT

    @property
    def reason(self) -> str:
        if self.test is HealthTest.RCT:
            return (
                f"repetition count test (SP 800-90B 4.4.1) failed at sample {self.sample_index}: "
                f"a run of identical samples reached the cutoff C={self.cutoff}"
            )
        return (
            f"adaptive proportion test (SP 800-90B 4.4.2) failed at sample {self.sample_index}: "
            f"the value of a {self.window}-sample window's first sample occurred "
            f"{self.cutoff} times in it, reaching the cutoff C={self.cutoff}"
        )


@dataclass(frozen=True)
class HealthSnapshot:
    """Everything a status page or a metrics exporter needs about one tracker.

    ``samples`` counts every sample fed; ``samples_usable`` those released (``feed`` returned
    them); ``samples_discarded`` the rest (start-up, after a failure, while FAILED).
    ``startup_passed`` counts the passing samples of the current start-up (capped at
    ``startup_samples``). ``failures`` counts entries into FAILED, ``restarts`` calls of
    ``restart()``. ``rct`` and ``apt`` describe the tests since the last (re)start.
    """

    state: HealthState
    h: float
    alpha: float
    bits: bool
    corrected: bool
    rct_cutoff: int
    apt_cutoff: int
    apt_window: int
    startup_samples: int
    startup_passed: int
    samples: int
    samples_usable: int
    samples_discarded: int
    failures: int
    restarts: int
    failure: HealthFailure | None
    rct: RctSnapshot
    apt: AptSnapshot

    @property
    def usable(self) -> bool:
        return self.state is HealthState.STEADY

    @property
    def reason(self) -> str | None:
        """Why the source is FAILED, or None."""
        return None if self.failure is None else self.failure.reason


class HealthTracker:
    """Start-up test, continuous RCT + APT and the failure state, for one noise source.

    States (health-tests.md §1.5): INIT until the first sample; STARTUP until ``startup_samples``
    consecutive samples passed both tests (they are discarded); STEADY while every sample passes;
    FAILED from the first signalling sample on. While FAILED, samples are counted as discarded
    and not tested. Recovery is the caller's policy: ``restart()`` re-runs the start-up test
    with fresh test state, whether the caller is an operator or an automatic retry.

    ``feed`` returns how many of the fed samples are usable: the prefix after the start-up and
    before the first signalling sample, so the caller releases exactly ``samples[:usable]``.
    Feeding in chunks or sample by sample releases the same samples.

    Parameters: ``h`` is the claimed min-entropy per sample (default: full entropy, 8 for
    bytes, 1 for bits); ``alpha`` the false-positive probability per test; ``corrected``
    selects the APT cut-off form (see :func:`apt_cutoff`); ``bits`` says the samples are single
    bits (0/1), which sets the APT window to 1024 instead of 512 (SP 800-90B §4.4.2) unless
    ``window`` overrides it; ``startup_samples`` may be raised above, never below, 1024.
    """

    __slots__ = (
        "_alpha",
        "_apt",
        "_apt_cutoff",
        "_base",
        "_bits",
        "_corrected",
        "_discarded",
        "_entropy",
        "_failure",
        "_failures",
        "_rct",
        "_rct_cutoff",
        "_restarts",
        "_samples",
        "_startup_passed",
        "_startup_samples",
        "_state",
        "_usable",
        "_window",
    )

    def __init__(
        self,
        h: Number | None = None,
        alpha: Number = DEFAULT_ALPHA,
        *,
        corrected: bool = True,
        bits: bool = False,
        window: int | None = None,
        startup_samples: int = STARTUP_SAMPLES,
    ) -> None:
        limit = 1 if bits else BYTE_BITS
        entropy = _entropy(limit if h is None else h)
        if entropy > limit:
            kind = "a bit" if bits else "a byte"
            raise ValueError(f"H={float(entropy)} exceeds the {limit} bit(s) {kind} can carry")
        if isinstance(startup_samples, bool) or not isinstance(startup_samples, int):
            raise TypeError("startup_samples must be an int")
        if startup_samples < STARTUP_SAMPLES:
            raise ValueError(
                f"SP 800-90B 4.3 requires at least {STARTUP_SAMPLES} start-up samples, "
                f"got {startup_samples}"
            )
        self._entropy = entropy
        self._alpha = _probability(alpha)
        self._bits = bits
        self._corrected = corrected
        self._window = (
            (APT_WINDOW_BINARY if bits else APT_WINDOW_NON_BINARY) if window is None else window
        )
        self._rct_cutoff = rct_cutoff(entropy, self._alpha)
        self._apt_cutoff = apt_cutoff(entropy, self._window, self._alpha, corrected=corrected)
        self._startup_samples = startup_samples
        self._rct = RepetitionCountTest(self._rct_cutoff)
        self._apt = AdaptiveProportionTest(self._apt_cutoff, self._window)
        self._state = HealthState.INIT
        self._base = 0  # tracker index of the tests' sample 0 (moves on restart)
        self._samples = 0
        self._usable = 0
        self._discarded = 0
        self._startup_passed = 0
        self._failures = 0
        self._restarts = 0
        self._failure: HealthFailure | None = None

    @property
    def state(self) -> HealthState:
        return self._state

    @property
    def usable(self) -> bool:
        """True only in STEADY: the source may feed storage and Fortuna."""
        return self._state is HealthState.STEADY

    @property
    def failure(self) -> HealthFailure | None:
        return self._failure

    @property
    def reason(self) -> str | None:
        """Why the source is FAILED (test, cut-off, sample index), or None."""
        return None if self._failure is None else self._failure.reason

    @property
    def rct_cutoff(self) -> int:
        return self._rct_cutoff

    @property
    def apt_cutoff(self) -> int:
        return self._apt_cutoff

    @property
    def apt_window(self) -> int:
        return self._window

    def _check_range(self, x: bytes | npt.NDArray[Any]) -> None:
        if isinstance(x, bytes):
            if self._bits and max(x) > 1:
                raise ValueError("bit samples must be 0 or 1")
            return
        if x.dtype.kind == "u" and x.dtype.itemsize == 1 and not self._bits:
            return
        top = 1 if self._bits else 0xFF
        if int(x.min()) < 0 or int(x.max()) > top:
            kind = "bit samples must be 0 or 1" if self._bits else "byte samples must be 0..255"
            raise ValueError(kind)

    def feed(self, samples: Samples) -> int:
        """Test the next samples; return how many of them (a prefix) are usable."""
        x = _as_samples(samples)
        n = len(x)
        if n == 0:
            return 0
        self._check_range(x)
        start = self._samples
        self._samples += n
        if self._state is HealthState.FAILED:
            self._discarded += n
            return 0
        if self._state is HealthState.INIT:
            self._state = HealthState.STARTUP
        rct, apt = copy.copy(self._rct), copy.copy(self._apt)
        self._rct.feed(x)
        self._apt.feed(x)
        failure = self._earliest_failure()
        clean = n if failure is None else failure.sample_index - start
        if failure is not None:
            # Re-test only up to the failing sample, so that the tests' counters, like
            # everything else in a snapshot, do not depend on how the stream was chunked.
            self._rct, self._apt = rct, apt
            rct.feed(x[: clean + 1])
            apt.feed(x[: clean + 1])
        still_starting = self._startup_samples - self._startup_passed
        usable = max(0, clean - still_starting)
        self._startup_passed = min(self._startup_samples, self._startup_passed + clean)
        if failure is not None:
            self._state = HealthState.FAILED
            self._failure = failure
            self._failures += 1
        elif self._startup_passed >= self._startup_samples:
            self._state = HealthState.STEADY
        self._usable += usable
        self._discarded += n - usable
        return usable

    def _earliest_failure(self) -> HealthFailure | None:
        """The first signal of either test (the RCT wins a tie), in tracker sample indices."""
        rct, apt = self._rct.first_failure, self._apt.first_failure
        if rct is not None and (apt is None or rct <= apt):
            return HealthFailure(HealthTest.RCT, self._rct_cutoff, self._base + rct)
        if apt is not None:
            return HealthFailure(HealthTest.APT, self._apt_cutoff, self._base + apt, self._window)
        return None

    def restart(self) -> None:
        """Re-run the start-up test from the next sample on, with fresh RCT and APT state.

        Allowed in any state (an operator may re-test a healthy source); the failure record
        is cleared, the cumulative counters are kept.
        """
        self._rct = RepetitionCountTest(self._rct_cutoff)
        self._apt = AdaptiveProportionTest(self._apt_cutoff, self._window)
        self._base = self._samples
        self._startup_passed = 0
        self._failure = None
        self._state = HealthState.STARTUP
        self._restarts += 1

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(
            state=self._state,
            h=float(self._entropy),
            alpha=float(self._alpha),
            bits=self._bits,
            corrected=self._corrected,
            rct_cutoff=self._rct_cutoff,
            apt_cutoff=self._apt_cutoff,
            apt_window=self._window,
            startup_samples=self._startup_samples,
            startup_passed=self._startup_passed,
            samples=self._samples,
            samples_usable=self._usable,
            samples_discarded=self._discarded,
            failures=self._failures,
            restarts=self._restarts,
            failure=self._failure,
            rct=self._rct.snapshot(),
            apt=self._apt.snapshot(),
        )

"""The Go reference's "quality metrics", kept only so ``/api/v1/status`` numbers stay comparable.

These reproduce ``randomness_metrics.go`` of LokeyTRaaS/Lokey exactly as health-tests.md §2
describes them: a monobit counter, a repetition counter with cut-off 35 and an APT-like bias
counter over a sliding window. They report and never gate; the SP 800-90B tests in
:mod:`lokey.quality.health` are the gate (§2.5 explains why these metrics are too weak to be one).

One addition: the monobit snapshot carries the SP 800-22 frequency-test p-value
(``monobit.p_value``), a statistic that, unlike the legacy interpretation bands, accounts for the
number of bits. :meth:`LegacySnapshot.to_dict` returns exactly the §2.4 shape by default; the
p-value is added as one extra key, ``monobit.p_value``, only when asked for, so the legacy
objects keep their original keys either way.

Counters are Python ints (unbounded). A chunk shorter than :data:`NUMPY_FROM` bytes is processed
byte by byte in Python, as the reference does; a larger one is vectorised with numpy (imported
only then, so the API service, which feeds a few hundred bytes per poll, does not load it). The
results equal a byte-by-byte implementation of the reference for any chunking.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "LEGACY_APT_DEFAULT_WINDOW",
    "LEGACY_APT_MAX_WINDOW",
    "LEGACY_APT_MIN_WINDOW",
    "LEGACY_RCT_CUTOFF",
    "NUMPY_FROM",
    "LegacyAptSnapshot",
    "LegacyMetrics",
    "LegacySnapshot",
    "MonobitSnapshot",
    "RepetitionSnapshot",
    "apt_window_from_setting",
    "clamp_apt_window",
    "legacy_apt_cutoff",
    "monobit_p_value",
]

LEGACY_RCT_CUTOFF = 35  # health-tests.md §2.2: fixed, "typical for 8-bit values"
LEGACY_APT_DEFAULT_WINDOW = 512  # health-tests.md §2.3
LEGACY_APT_MIN_WINDOW = 256  # health-tests.md §2.3: the metric clamps W to 256..2048
LEGACY_APT_MAX_WINDOW = 2048

# The sliding-window count sorts (value, position) keys; blocks of this many bytes bound the
# temporary arrays (a few MB) when a caller feeds a large buffer at once.
_BLOCK = 1 << 16
#: Chunks of at least this many bytes are processed with numpy, shorter ones in Python.
NUMPY_FROM: Final = 4096


@functools.cache
def _popcount() -> npt.NDArray[np.int64]:
    import numpy as np  # noqa: PLC0415 - see the module docstring

    table = np.array([bin(value).count("1") for value in range(256)], dtype=np.int64)
    table.flags.writeable = False
    return table


JsonDict = dict[str, dict[str, int | float | None]]


def clamp_apt_window(window: int) -> int:
    """The metric's own rule: W is clamped into 256..2048 (health-tests.md §2.3)."""
    return max(LEGACY_APT_MIN_WINDOW, min(LEGACY_APT_MAX_WINDOW, int(window)))


def apt_window_from_setting(value: int | None) -> int:
    """The ``TRNG_APT_WINDOW_SIZE`` setting rule: accepted only within 256..2048, else 512.

    This is a different rule from :func:`clamp_apt_window` on purpose (health-tests.md §2.3):
    the reference falls back to the default for an out-of-range setting (5000 -> 512), while
    the metric itself clamps a window it is given (5000 -> 2048). ``None`` (unset) -> 512.
    """
    if value is None:
        return LEGACY_APT_DEFAULT_WINDOW
    if LEGACY_APT_MIN_WINDOW <= value <= LEGACY_APT_MAX_WINDOW:
        return int(value)
    return LEGACY_APT_DEFAULT_WINDOW


def legacy_apt_cutoff(window: int) -> int:
    """floor(0.5 W + 3 sqrt(0.25 W)) (health-tests.md §2.3): 152, 289, 560, 1091 for 256..2048.

    Computed in integers: 0.5 W + 3 sqrt(0.25 W) = (W + sqrt(9 W)) / 2, and
    floor((W + s) / 2) = (W + floor(s)) // 2 for any real s >= 0. (The reference's documentation
    says 290 for W = 512; its code, like this, gives 289.)
    """
    return (window + math.isqrt(9 * window)) // 2


def monobit_p_value(ones: int, total: int) -> float | None:
    """SP 800-22 frequency (monobit) test p-value, P = erfc(|S_n| / sqrt(2 n)) (§2.1).

    S_n = ones - zeros over n = ``total`` bits. Returns None when there are no bits: no
    p-value exists, and None serialises to JSON ``null`` where NaN would produce invalid JSON.
    (SP 800-22 recommends n >= 100 for a meaningful result; the value is reported regardless,
    as the counters are, and gates nothing.)
    """
    if total <= 0:
        return None
    s_n = 2 * ones - total
    return math.erfc(abs(s_n) / math.sqrt(2 * total))


@dataclass(frozen=True)
class MonobitSnapshot:
    """Legacy monobit counters (health-tests.md §2.1) plus the SP 800-22 p-value."""

    zeros: int
    ones: int
    total: int
    average: float  # ones / total, 0.0 when total == 0 (as the reference)
    p_value: float | None  # None when total == 0

    def to_dict(self, *, with_p_value: bool = False) -> dict[str, int | float | None]:
        out: dict[str, int | float | None] = {
            "zeros": self.zeros,
            "ones": self.ones,
            "total": self.total,
            "average": self.average,
        }
        if with_p_value:
            out["p_value"] = self.p_value
        return out


@dataclass(frozen=True)
class RepetitionSnapshot:
    """Legacy repetition counter (health-tests.md §2.2)."""

    failures: int
    current_run: int
    last_value: int

    def to_dict(self) -> dict[str, int | float | None]:
        return {
            "failures": self.failures,
            "current_run": self.current_run,
            "last_value": self.last_value,
        }


@dataclass(frozen=True)
class LegacyAptSnapshot:
    """Legacy sliding-window bias counter (health-tests.md §2.3)."""

    window_size: int
    cutoff: int
    bias_count: int
    samples_processed: int

    def to_dict(self) -> dict[str, int | float | None]:
        return {
            "window_size": self.window_size,
            "cutoff": self.cutoff,
            "bias_count": self.bias_count,
            "samples_processed": self.samples_processed,
        }


@dataclass(frozen=True)
class LegacySnapshot:
    """The value of ``trng_quality`` in ``/api/v1/status`` (health-tests.md §2.4)."""

    monobit: MonobitSnapshot
    repetition_count: RepetitionSnapshot
    apt: LegacyAptSnapshot

    def to_dict(self, *, with_p_value: bool = False) -> JsonDict:
        """Exactly the §2.4 shape; ``with_p_value`` adds ``monobit.p_value`` (null if no bits)."""
        return {
            "monobit": self.monobit.to_dict(with_p_value=with_p_value),
            "repetition_count": self.repetition_count.to_dict(),
            "apt": self.apt.to_dict(),
        }


def _as_bytes(data: bytes | bytearray | memoryview) -> memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"legacy metrics take bytes-like data, got {type(data).__name__}")
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class LegacyMetrics:
    """The three legacy counters over every TRNG byte fed, cumulative since construction.

    ``apt_window`` is clamped into 256..2048 (the metric's rule; use
    :func:`apt_window_from_setting` first to apply the settings rule).
    """

    __slots__ = (
        "_apt_cutoff",
        "_bias",
        "_current_run",
        "_history",
        "_last_value",
        "_ones",
        "_processed",
        "_rct_failures",
        "_total",
        "_window",
    )

    def __init__(self, apt_window: int = LEGACY_APT_DEFAULT_WINDOW) -> None:
        self._window = clamp_apt_window(apt_window)
        self._apt_cutoff = legacy_apt_cutoff(self._window)
        self._ones = 0
        self._total = 0
        self._last_value = 0  # §2.2: initial state, so a leading 0x00 continues a "run"
        self._current_run = 0
        self._rct_failures = 0
        self._bias = 0
        self._processed = 0
        self._history = b""  # the last <= W bytes, oldest first

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = _as_bytes(data)
        if len(view) == 0:
            return
        if len(view) < NUMPY_FROM:
            self._feed_bytes(view.tobytes())
            return
        import numpy as np  # noqa: PLC0415 - see the module docstring

        x = np.frombuffer(view, dtype=np.uint8)
        for start in range(0, int(x.size), _BLOCK):
            block = x[start : start + _BLOCK]
            self._monobit(block)
            self._repetition(block)
            self._apt(block)

    def _feed_bytes(self, x: bytes) -> None:
        """The three counters byte by byte, as the reference computes them (short chunks)."""
        self._ones += int.from_bytes(x, "big").bit_count()
        self._total += 8 * len(x)
        # §2.2: a byte equal to the last one extends the run; past the cut-off it is a failure
        # and the counter restarts at 1
        last, run, failures = self._last_value, self._current_run, 0
        for value in x:
            if value == last:
                run += 1
                if run > LEGACY_RCT_CUTOFF:
                    failures += 1
                    run = 1
            else:
                last, run = value, 1
        self._last_value, self._current_run = last, run
        self._rct_failures += failures
        # §2.3: every byte after the first W is counted among the previous W bytes
        w, cutoff = self._window, self._apt_cutoff
        combined = self._history + x
        counts = [0] * 256
        for value in self._history:
            counts[value] += 1
        first = len(self._history)
        position = self._processed  # the global index of combined[first]
        bias = 0
        for index in range(first, len(combined)):
            value = combined[index]
            if position >= w and counts[value] > cutoff:
                bias += 1
            counts[value] += 1
            if index >= w:
                counts[combined[index - w]] -= 1
            position += 1
        self._bias += bias
        self._history = combined[-w:]
        self._processed += len(x)

    def _monobit(self, x: npt.NDArray[np.uint8]) -> None:
        import numpy as np  # noqa: PLC0415 - see the module docstring

        self._ones += int(np.bincount(x, minlength=256) @ _popcount())
        self._total += 8 * int(x.size)

    def _repetition(self, x: npt.NDArray[np.uint8]) -> None:
        """§2.2 vectorised over runs of identical bytes.

        Within one run, the counter goes 1, 2, ..., 35, then the 36th byte makes it 36 > 35:
        a failure, and the counter restarts at 1. So a run that reaches length L (counting the
        carried counter c as its first c bytes, which is exact because the counter alone
        decides the future) has had (L - 1) // 35 failures, and its counter is (L - 1) % 35 + 1.
        """
        import numpy as np  # noqa: PLC0415 - see the module docstring

        n = int(x.size)
        repeats = np.flatnonzero(x[1:] == x[:-1]) + 1
        continues = int(x[0]) == self._last_value
        if continues:
            repeats = np.concatenate((np.zeros(1, dtype=repeats.dtype), repeats))
        run = 1
        if repeats.size:
            breaks = np.flatnonzero(np.diff(repeats) != 1)
            starts = repeats[np.concatenate(([0], breaks + 1))].astype(np.int64)
            ends = repeats[np.concatenate((breaks, [repeats.size - 1]))].astype(np.int64)
            base = np.ones(starts.size, dtype=np.int64)  # the counter at the byte before s
            if continues:
                base[0] = self._current_run  # 0 only before the first byte: 0x00 then gives 1
            lengths = base + ends - starts + 1
            self._rct_failures += int(((lengths - 1) // LEGACY_RCT_CUTOFF).sum())
            if int(ends[-1]) == n - 1:
                run = int((lengths[-1] - 1) % LEGACY_RCT_CUTOFF + 1)
        self._last_value = int(x[-1])
        self._current_run = run

    def _apt(self, x: npt.NDArray[np.uint8]) -> None:
        """§2.3: for every byte after the first W, count its value among the previous W bytes.

        All bytes of the history and the block are sorted by (value, position) with a stable
        radix sort; the count for the byte at position i with value v is then the number of
        keys in [key(v, i - W), key(v, i)), found with one vectorised searchsorted.
        """
        import numpy as np  # noqa: PLC0415 - see the module docstring

        w = self._window
        history = np.frombuffer(self._history, dtype=np.uint8)
        combined = np.concatenate((history, x))
        size = int(combined.size)
        first_global = self._processed - int(history.size)
        # positions in `combined` that are tested: in this block and past the first W bytes
        first_tested = max(int(history.size), w - first_global)
        if first_tested < size:
            order = np.argsort(combined, kind="stable")
            # key = value * (size + w) + position + w: same-value keys stay ordered by
            # position, and key - w never reaches into the previous value's range
            keys = combined[order].astype(np.int64) * (size + w) + order + w
            below = np.searchsorted(keys, keys - w, side="left")
            counts = np.arange(size, dtype=np.int64) - below
            tested = order >= first_tested
            self._bias += int(np.count_nonzero(counts[tested] > self._apt_cutoff))
        self._history = combined[-w:].tobytes()
        self._processed += int(x.size)

    def snapshot(self) -> LegacySnapshot:
        total = self._total
        return LegacySnapshot(
            monobit=MonobitSnapshot(
                zeros=total - self._ones,
                ones=self._ones,
                total=total,
                average=self._ones / total if total else 0.0,
                p_value=monobit_p_value(self._ones, total),
            ),
            repetition_count=RepetitionSnapshot(
                failures=self._rct_failures,
                current_run=self._current_run,
                last_value=self._last_value,
            ),
            apt=LegacyAptSnapshot(
                window_size=self._window,
                cutoff=self._apt_cutoff,
                bias_count=self._bias,
                samples_processed=self._processed,
            ),
        )

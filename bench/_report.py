"""The benchmarks' common result: one :class:`Figure` per measured number, the table and the JSON.

A figure is a value with its unit, the physical limit measured in the same run (OpenSSL's
AES-256-CTR, a raw FIFO copy, a raw LMDB loop, a trivial HTTP endpoint, ...) and the ratio to
it, and a target: either on the ratio ("at least 0.4 of OpenSSL") or on the value itself ("at
least 20,000 round trips/s", "at most 70 MiB resident"). A figure without a target is printed
for information and never fails a run.

Everything here is pure (no clock, no I/O but the JSON file helpers), so the table, the JSON
round trip and the comparison between two runs are pinned by ``tests/test_bench_report.py``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "SCHEMA",
    "BenchError",
    "Delta",
    "Direction",
    "Figure",
    "Report",
    "ReportFormatError",
    "Target",
    "all_met",
    "compare",
    "exit_status",
    "format_number",
    "git_state",
    "load_report",
    "machine",
    "render_table",
    "save_report",
]

SCHEMA = "lokey-bench/1"  # bump when a field changes meaning; load_report refuses others
REPO_ROOT = Path(__file__).resolve().parents[1]
Better = Literal["higher", "lower"]


class Direction(StrEnum):
    AT_LEAST = ">="
    AT_MOST = "<="


@dataclass(frozen=True)
class Target:
    """A threshold on the figure's ratio to its limit (``on_ratio``) or on its value."""

    threshold: float
    direction: Direction
    on_ratio: bool = False

    def met(self, measured: float) -> bool:
        if self.direction is Direction.AT_LEAST:
            return measured >= self.threshold
        return measured <= self.threshold

    def describe(self, unit: str) -> str:
        if self.on_ratio:
            return f"ratio {self.direction} {format_number(self.threshold)}"
        return f"{self.direction} {format_number(self.threshold)} {unit}"


@dataclass(frozen=True)
class Figure:
    """One measured number.

    ``ratio`` defaults to ``value / limit``; a benchmark that judges something else (the store's
    median of per-round ratios) passes its own. ``better`` (which way is an improvement, for
    the comparison between runs) follows the target's direction unless given.
    """

    bench: str
    what: str
    value: float
    unit: str
    limit: float | None = None
    limit_what: str = ""
    target: Target | None = None
    ratio: float | None = None
    better: Better | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.limit is not None:
            ratio = self.value / self.limit if self.limit else math.inf
            object.__setattr__(self, "ratio", ratio)
        if self.better is None:
            lower = self.target is not None and self.target.direction is Direction.AT_MOST
            object.__setattr__(self, "better", "lower" if lower else "higher")
        if self.target is not None and self.target.on_ratio and self.ratio is None:
            raise ValueError(f"{self.bench}: {self.what}: a ratio target needs a limit")

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the figure across runs and versions."""
        return (self.bench, self.what)

    @property
    def passed(self) -> bool | None:
        """None for a figure printed for information only."""
        if self.target is None:
            return None
        measured = self.ratio if self.target.on_ratio else self.value
        assert measured is not None  # __post_init__ refuses a ratio target without a limit
        return self.target.met(measured)

    def to_json(self) -> dict[str, Any]:
        target = None
        if self.target is not None:
            target = {
                "threshold": self.target.threshold,
                "direction": self.target.direction.value,
                "on": "ratio" if self.target.on_ratio else "value",
            }
        return {
            "bench": self.bench,
            "what": self.what,
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit,
            "limit_what": self.limit_what,
            "ratio": self.ratio,
            "target": target,
            "better": self.better,
            "passed": self.passed,  # derived; written for readers of the file, not read back
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Figure:
        target = None
        if document.get("target") is not None:
            raw = document["target"]
            target = Target(
                float(raw["threshold"]), Direction(raw["direction"]), raw["on"] == "ratio"
            )
        better = document.get("better")
        if better not in ("higher", "lower", None):
            raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
        return cls(
            bench=str(document["bench"]),
            what=str(document["what"]),
            value=float(document["value"]),
            unit=str(document["unit"]),
            limit=None if document.get("limit") is None else float(document["limit"]),
            limit_what=str(document.get("limit_what", "")),
            target=target,
            ratio=None if document.get("ratio") is None else float(document["ratio"]),
            better=better,
        )


@dataclass(frozen=True)
class BenchError:
    """A benchmark that raised instead of returning its figures: the run fails."""

    bench: str
    error: str


@dataclass(frozen=True)
class Report:
    """One run: its figures and failures, and where and on what it ran."""

    figures: tuple[Figure, ...]
    errors: tuple[BenchError, ...] = ()
    started: str = ""
    seconds: float = 0.0
    lokey_version: str = ""
    git: Mapping[str, Any] | None = None
    machine: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "lokey_version": self.lokey_version,
            "git": dict(self.git) if self.git is not None else None,
            "machine": dict(self.machine),
            "started": self.started,
            "seconds": self.seconds,
            "options": dict(self.options),
            "figures": [f.to_json() for f in self.figures],
            "errors": [{"bench": e.bench, "error": e.error} for e in self.errors],
            "exit_status": exit_status(self),  # derived, like each figure's "passed"
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Report:
        if document.get("schema") != SCHEMA:
            raise ValueError(f"schema is {document.get('schema')!r}, expected {SCHEMA!r}")
        return cls(
            figures=tuple(Figure.from_json(f) for f in document["figures"]),
            errors=tuple(BenchError(str(e["bench"]), str(e["error"])) for e in document["errors"]),
            started=str(document.get("started", "")),
            seconds=float(document.get("seconds", 0.0)),
            lokey_version=str(document.get("lokey_version", "")),
            git=document.get("git"),
            machine=document.get("machine") or {},
            options=document.get("options") or {},
        )


class ReportFormatError(ValueError):
    """A file that is not a benchmark report this version can read."""


def save_report(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")


def load_report(path: Path) -> Report:
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise ReportFormatError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise ReportFormatError(f"{path} is not JSON: {error}") from None
    try:
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return Report.from_json(document)
    except (KeyError, TypeError, ValueError) as error:
        raise ReportFormatError(f"{path} is not a lokey bench report: {error}") from None


def all_met(figures: Iterable[Figure]) -> bool:
    """No figure misses its target (information-only figures never fail)."""
    return all(f.passed is not False for f in figures)


def exit_status(report: Report) -> int:
    """0 when every judged figure meets its target; 1 when one misses or a benchmark failed."""
    missed = any(f.passed is False for f in report.figures)
    return 1 if missed or report.errors else 0


# -- where the run happened ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
    }


def git_state(root: Path = REPO_ROOT) -> dict[str, Any] | None:
    """The checkout's commit and whether it had changes; None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if commit.returncode != 0:
            return None
        # --no-optional-locks: never take index.lock (someone may be committing meanwhile)
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return {"commit": commit.stdout.strip(), "dirty": dirty}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- comparison ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    """A figure against the same figure (bench and what) in an older run."""

    old: Figure
    new: Figure

    @property
    def change(self) -> float:
        """Relative change of the value: +0.10 is 10 % more."""
        if self.old.value == 0:
            return 0.0 if self.new.value == 0 else math.copysign(math.inf, self.new.value)
        return (self.new.value - self.old.value) / abs(self.old.value)

    @property
    def improved(self) -> bool | None:
        """True better, False worse, None unchanged (in the figure's ``better`` direction)."""
        if self.new.value == self.old.value:
            return None
        higher = self.new.value > self.old.value
        return higher if self.new.better == "higher" else not higher

    def describe(self) -> str:
        """``+4.2% better (was 43,700, ratio 0.36)``: the old ratio too, since the limits of
        two runs (two machines, or one busy machine) differ as much as the values."""
        was = f"was {format_number(self.old.value)}"
        if self.old.ratio is not None:
            was += f", ratio {format_number(self.old.ratio)}"
        if self.improved is None:
            return f"same ({was})"
        return f"{self.change * 100:+.1f}% {'better' if self.improved else 'worse'} ({was})"


def compare(
    figures: Iterable[Figure], old: Report
) -> tuple[dict[tuple[str, str], Delta], list[Figure]]:
    """Deltas for figures present in both runs, and the old figures this run did not measure."""
    before = {f.key: f for f in old.figures}
    deltas: dict[tuple[str, str], Delta] = {}
    for figure in figures:
        if figure.key in before:
            deltas[figure.key] = Delta(before.pop(figure.key), figure)
    return deltas, list(before.values())


# -- the table -----------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """About three significant digits, thousands separated: 45,123 / 812 / 12.3 / 0.41."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _shown_ratio(figure: Figure) -> str:
    """The ratio to about three digits, or one more where that would print the threshold itself
    (0.4961 against "at least 0.5" reads 0.496, not a puzzling "0.50 ... MISS")."""
    if figure.ratio is None:
        return ""
    text = format_number(figure.ratio)
    target = figure.target
    if target is not None and target.on_ratio and text == format_number(target.threshold):
        return f"{figure.ratio:.3f}"
    return text


def _result(figure: Figure) -> str:
    return {True: "pass", False: "MISS", None: "info"}[figure.passed]


def render_table(
    figures: Sequence[Figure],
    errors: Sequence[BenchError] = (),
    deltas: Mapping[tuple[str, str], Delta] | None = None,
    missing: Sequence[Figure] = (),
) -> str:
    """One aligned row per figure; with ``deltas`` (from :func:`compare`) a change column."""
    header = ["bench", "figure", "value", "unit", "ratio", "limit (same run)", "target", "result"]
    if deltas is not None:
        header.append("vs old")
    rows: list[list[str]] = []
    for figure in figures:
        limit = ""
        if figure.limit is not None:
            limit = f"{format_number(figure.limit)} {figure.limit_what}".rstrip()
        row = [
            figure.bench.removeprefix("bench_"),
            figure.what,
            format_number(figure.value),
            figure.unit,
            _shown_ratio(figure),
            limit,
            "" if figure.target is None else figure.target.describe(figure.unit),
            _result(figure),
        ]
        if deltas is not None:
            delta = deltas.get(figure.key)
            row.append(delta.describe() if delta is not None else "new")
        rows.append(row)
    numeric = {2, 4}  # right-aligned columns
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(padded).rstrip()

    lines = [line(header), line(["-" * w for w in widths])]
    lines.extend(line(row) for row in rows)
    for error in errors:  # the first line: the traceback is on stderr, the whole text in JSON
        first = error.error.splitlines()[0] if error.error else ""
        lines.append(f"{error.bench.removeprefix('bench_')}: FAILED TO RUN: {first}")
    for figure in missing:
        bench = figure.bench.removeprefix("bench_")
        lines.append(f"not measured in this run (was in the old one): {bench}: {figure.what}")
    judged = [f for f in figures if f.passed is not None]
    missed = [f for f in judged if f.passed is False]
    summary = f"{len(judged) - len(missed)} of {len(judged)} targets met"
    if missed:  # the rows say which figures; the benchmarks are what to rerun with --only
        names = dict.fromkeys(f.bench.removeprefix("bench_") for f in missed)
        summary += "; missed in: " + ", ".join(names)
    if errors:
        summary += f"; {len(errors)} benchmark(s) failed to run"
    lines.append(summary)
    return "\n".join(lines)

"""The end-of-run tables: outcome per suite file, recovery time per fault, faults under load.

Built from the test reports alone (no state kept while tests run), so they are right under
pytest-xdist too, where the reports reach the controlling process from the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "FAULT_PROPERTY",
    "LOAD_ANSWERS_PROPERTY",
    "LOAD_CHIP_BASELINE_PROPERTY",
    "LOAD_CHIP_FAULT_PROPERTY",
    "LOAD_COLUMNS",
    "LOAD_FAULT_PROPERTY",
    "LOAD_FORTUNA_BASELINE_PROPERTY",
    "LOAD_FORTUNA_FAULT_PROPERTY",
    "LOAD_PATHS_PROPERTY",
    "LOAD_RECOVERY_PROPERTY",
    "LOAD_SAMPLES_PROPERTY",
    "RECOVERY_BOUND_PROPERTY",
    "RECOVERY_PROPERTY",
    "Recovery",
    "Report",
    "SuiteRow",
    "format_table",
    "load_rows",
    "recoveries",
    "suite_rows",
]

#: ``record_property`` names the fault campaign writes (they land in the JUnit XML).
FAULT_PROPERTY: Final = "fault"
RECOVERY_PROPERTY: Final = "recovery_s"
RECOVERY_BOUND_PROPERTY: Final = "recovery_bound_s"
#: The faults-under-load suite's properties (throughputs in MB/s, recovery in seconds).
LOAD_FAULT_PROPERTY: Final = "load_fault"
LOAD_CHIP_BASELINE_PROPERTY: Final = "load_chip_baseline_MBps"
LOAD_CHIP_FAULT_PROPERTY: Final = "load_chip_during_fault_MBps"
LOAD_FORTUNA_BASELINE_PROPERTY: Final = "load_fortuna_baseline_MBps"
LOAD_FORTUNA_FAULT_PROPERTY: Final = "load_fortuna_during_fault_MBps"
LOAD_RECOVERY_PROPERTY: Final = "load_recovery_s"
LOAD_PATHS_PROPERTY: Final = "load_paths"
LOAD_SAMPLES_PROPERTY: Final = "load_samples"
LOAD_ANSWERS_PROPERTY: Final = "load_answers"
#: The columns of the faults-under-load table, from these properties.
LOAD_COLUMNS: Final = (
    ("fault", LOAD_FAULT_PROPERTY),
    ("chip MB/s base", LOAD_CHIP_BASELINE_PROPERTY),
    ("chip MB/s fault", LOAD_CHIP_FAULT_PROPERTY),
    ("fortuna MB/s base", LOAD_FORTUNA_BASELINE_PROPERTY),
    ("fortuna MB/s fault", LOAD_FORTUNA_FAULT_PROPERTY),
    ("recovery s", LOAD_RECOVERY_PROPERTY),
    ("bound s", RECOVERY_BOUND_PROPERTY),
)


class Report(Protocol):
    """The part of ``pytest.TestReport`` the tables read."""

    @property
    def nodeid(self) -> str: ...

    @property
    def when(self) -> str | None: ...

    @property
    def outcome(self) -> str: ...

    @property
    def duration(self) -> float: ...

    @property
    def user_properties(self) -> Sequence[tuple[str, object]]: ...


@dataclass
class SuiteRow:
    suite: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Recovery:
    test: str
    fault: str
    seconds: float
    bound_s: float | None


def _outcome(phases: Sequence[Report]) -> str:
    for report in phases:
        if report.outcome == "failed":
            return "failed" if report.when == "call" else "errors"
    if any(report.outcome == "skipped" for report in phases):
        return "skipped"
    return "passed"


def suite_rows(reports: Iterable[Report]) -> list[SuiteRow]:
    """One row per test file (in first-seen order), each test counted once by its outcome."""
    by_test: dict[str, list[Report]] = {}
    for report in reports:
        by_test.setdefault(report.nodeid, []).append(report)
    rows: dict[str, SuiteRow] = {}
    for nodeid, phases in by_test.items():
        suite = nodeid.split("::", 1)[0]
        row = rows.setdefault(suite, SuiteRow(suite))
        outcome = _outcome(phases)
        setattr(row, outcome, getattr(row, outcome) + 1)
        row.seconds += sum(report.duration for report in phases)
    return list(rows.values())


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def recoveries(reports: Iterable[Report]) -> list[Recovery]:
    """The recovery times the fault campaign recorded, one per test (its last report)."""
    found: dict[str, Recovery] = {}
    for report in reports:
        properties = dict(report.user_properties)
        seconds = _number(properties.get(RECOVERY_PROPERTY))
        if seconds is None:
            continue
        fault = str(properties.get(FAULT_PROPERTY, report.nodeid))
        bound = _number(properties.get(RECOVERY_BOUND_PROPERTY))
        found[report.nodeid] = Recovery(report.nodeid, fault, seconds, bound)
    return list(found.values())


def load_rows(reports: Iterable[Report]) -> list[tuple[str, ...]]:
    """One row per faults-under-load test (its last report), the cells of :data:`LOAD_COLUMNS`."""
    found: dict[str, tuple[str, ...]] = {}
    for report in reports:
        properties = dict(report.user_properties)
        if LOAD_FAULT_PROPERTY not in properties or LOAD_RECOVERY_PROPERTY not in properties:
            continue
        found[report.nodeid] = tuple(str(properties.get(key, "")) for _, key in LOAD_COLUMNS)
    return sorted(found.values())


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A plain-text table: the first column left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(cells[0]), rule, *(line(row) for row in cells[1:])]

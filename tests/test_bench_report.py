"""``lokey bench``: the figure model, the table, the JSON, the comparison and the exit status.

Pure functions are tested with hand-made figures; ``bench.__main__.main`` with fake benchmarks
in place of the real ones (so the plumbing is tested, not the machine's speed); two real
processes check the command line: a bad option exits 2 naming it, and one quick real benchmark
writes a report with figures.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench import bench_memory
from bench._report import (
    SCHEMA,
    BenchError,
    Direction,
    Figure,
    Report,
    ReportFormatError,
    Target,
    all_met,
    compare,
    exit_status,
    format_number,
    load_report,
    render_table,
    save_report,
)
from lokey import cli

ROOT = Path(__file__).resolve().parents[1]

FAST = Figure(
    "bench_x",
    "round trips",
    45_000.0,
    "round trips/s",
    limit=150_000.0,
    limit_what="trivial target",
    target=Target(20_000, Direction.AT_LEAST),
)
SLOW_RATIO = Figure(
    "bench_y",
    "1 MiB requests",
    1.2,
    "GB/s",
    limit=4.0,
    limit_what="openssl",
    target=Target(0.4, Direction.AT_LEAST, on_ratio=True),
)
MEMORY = Figure(
    "bench_memory",
    "api RSS",
    86.0,
    "MiB",
    limit=70.0,
    limit_what="target",
    target=Target(70.0, Direction.AT_MOST),
)
INFO = Figure("bench_y", "JSON form", 180.0, "MiB/s", limit=680.0, limit_what="static")


# -- the figure ----------------------------------------------------------------------------------


def test_ratio_is_value_over_the_same_run_limit_unless_given() -> None:
    assert FAST.ratio == pytest.approx(0.3)
    assert SLOW_RATIO.ratio == pytest.approx(0.3)
    given = Figure("b", "w", 100.0, "MB/s", limit=200.0, ratio=0.7)  # the store's median ratio
    assert given.ratio == 0.7
    assert Figure("b", "w", 5.0, "x").ratio is None


def test_a_target_on_the_ratio_is_judged_on_the_ratio_not_the_value() -> None:
    # 1.2 GB/s is far above 0.4, but 0.3 of the limit misses the ratio target
    assert SLOW_RATIO.passed is False
    assert FAST.passed is True  # 45,000/s >= 20,000/s although its ratio is only 0.3
    at_least = Figure(
        "b", "w", 1.0, "GB/s", limit=2.0, target=Target(0.5, Direction.AT_LEAST, True)
    )
    assert at_least.passed is True  # the threshold itself passes


def test_at_most_targets_pass_below_and_fail_above() -> None:
    assert MEMORY.passed is False
    assert MEMORY.ratio == pytest.approx(86 / 70)
    below = Figure("b", "w", 69.9, "MiB", target=Target(70.0, Direction.AT_MOST))
    assert below.passed is True
    assert below.better == "lower"
    assert FAST.better == "higher"
    assert INFO.passed is None


def test_a_ratio_just_under_its_threshold_shows_the_digit_that_misses() -> None:
    target = Target(0.5, Direction.AT_LEAST, on_ratio=True)
    under = Figure("bench_store", "take", 255.0, "MB/s", limit=514.0, target=target)
    assert under.ratio is not None
    assert round(under.ratio, 2) == 0.5  # two digits would print the threshold itself
    assert under.passed is False
    row = next(line for line in render_table([under]).splitlines() if "take" in line)
    assert "0.496" in row
    assert row.rstrip().endswith("MISS")
    clear = Figure("bench_store", "take", 300.0, "MB/s", limit=514.0, target=target)
    assert "0.58" in render_table([clear])  # away from the threshold: the usual digits


def test_a_ratio_target_without_a_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a limit"):
        Figure("b", "w", 1.0, "x", target=Target(0.5, Direction.AT_LEAST, on_ratio=True))


def test_exit_status_fails_on_a_missed_target_or_a_failed_bench_only() -> None:
    assert exit_status(Report(figures=(FAST, INFO))) == 0
    assert exit_status(Report(figures=(INFO,))) == 0  # information never fails a run
    assert exit_status(Report(figures=(FAST, MEMORY))) == 1
    assert exit_status(Report(figures=(FAST,), errors=(BenchError("bench_api", "boom"),))) == 1
    assert all_met([FAST, INFO]) is True
    assert all_met([FAST, SLOW_RATIO]) is False


# -- JSON ----------------------------------------------------------------------------------------


def _report() -> Report:
    return Report(
        figures=(FAST, SLOW_RATIO, MEMORY, INFO),
        errors=(BenchError("bench_api", "RuntimeError: no answer"),),
        started="2026-11-29T07:48:00Z",
        seconds=91.5,
        lokey_version="0.1.0",
        git={"commit": "c4fc172", "dirty": True},
        machine={"cpus": 2, "platform": "Linux", "python": "3.11.7"},
        options={"only": ["bench_x"], "quick": False},
    )


def test_json_round_trip_keeps_every_figure_and_the_run_details(tmp_path: Path) -> None:
    report = _report()
    path = tmp_path / "deep" / "run.json"
    save_report(report, path)
    assert load_report(path) == report
    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA
    assert [f["passed"] for f in document["figures"]] == [True, False, False, None]
    assert document["figures"][1]["target"] == {"threshold": 0.4, "direction": ">=", "on": "ratio"}
    assert document["machine"]["cpus"] == 2
    assert document["git"]["commit"] == "c4fc172"
    assert document["exit_status"] == 1


def test_load_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "lokey-bench/0", "figures": []}))
    with pytest.raises(ReportFormatError, match="schema"):
        load_report(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ReportFormatError, match="not JSON"):
        load_report(broken)
    with pytest.raises(ReportFormatError, match="cannot read"):
        load_report(tmp_path / "missing.json")


# -- comparison ----------------------------------------------------------------------------------


def test_compare_matches_figures_by_bench_and_name_in_their_better_direction() -> None:
    old = Report(
        figures=(
            Figure("bench_x", "round trips", 40_000.0, "round trips/s", limit=100_000.0),
            Figure("bench_memory", "api RSS", 80.0, "MiB", target=Target(70, Direction.AT_MOST)),
            Figure("bench_gone", "dropped", 1.0, "x"),
        )
    )
    deltas, missing = compare([FAST, MEMORY, INFO], old)
    assert set(deltas) == {FAST.key, MEMORY.key}
    assert deltas[FAST.key].change == pytest.approx(0.125)
    assert deltas[FAST.key].improved is True
    assert deltas[MEMORY.key].change == pytest.approx(0.075)
    assert deltas[MEMORY.key].improved is False  # more memory is worse
    assert deltas[FAST.key].describe() == "+12.5% better (was 40,000, ratio 0.40)"
    assert deltas[MEMORY.key].describe() == "+7.5% worse (was 80.0)"
    assert [f.what for f in missing] == ["dropped"]
    table = render_table([FAST, MEMORY, INFO], deltas=deltas, missing=missing)
    assert table.splitlines()[0].rstrip().endswith("vs old")
    info_row = next(line for line in table.splitlines() if "JSON form" in line)
    assert info_row.rstrip().endswith("new")
    assert "not measured in this run (was in the old one): gone: dropped" in table


# -- the table -----------------------------------------------------------------------------------


def test_table_has_one_aligned_row_per_figure_and_a_summary() -> None:
    figures = [FAST, SLOW_RATIO, MEMORY, INFO]
    error = BenchError("bench_api", "RuntimeError: no answer\nthe service's log, many lines")
    table = render_table(figures, errors=[error])
    lines = table.splitlines()
    header, rows = lines[0], lines[2:6]
    assert header.split()[:4] == ["bench", "figure", "value", "unit"]
    assert [row.split()[0] for row in rows] == ["x", "y", "memory", "y"]
    assert [row.split()[-1] for row in rows] == ["pass", "MISS", "MISS", "info"]
    # values are right-aligned under their header: every value ends where "value" ends
    value_end = header.index("value") + len("value")
    for row, figure in zip(rows, figures, strict=True):
        text = format_number(figure.value)
        assert row[value_end - len(text) : value_end] == text
    assert "ratio >= 0.40" in rows[1]
    assert "<= 70.0 MiB" in rows[2]
    assert "150,000 trivial target" in rows[0]
    assert "api: FAILED TO RUN: RuntimeError: no answer\n1 of 3" in table  # first line only
    assert lines[-1] == "1 of 3 targets met; missed in: y, memory; 1 benchmark(s) failed to run"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (45_123.4, "45,123"),
        (812.4, "812"),
        (12.34, "12.3"),
        (1.234, "1.23"),
        (0.41, "0.41"),
        (0.0123, "0.012"),
        (0.0, "0.00"),
        (math.inf, "inf"),
    ],
)
def test_numbers_have_about_three_significant_digits(value: float, text: str) -> None:
    assert format_number(value) == text


# -- the memory figures --------------------------------------------------------------------------


def _rss(mib: float) -> bench_memory.Rss:
    return bench_memory.Rss((int(mib * (1 << 20)), int((mib - 1) * (1 << 20))))


def test_memory_targets_are_the_issues() -> None:
    """70 MB a service, 110 MB single-process, under the Go reference's 112 MB (issue 9)."""
    multi = {
        "controller": _rss(60),
        "fortuna": _rss(70.5),
        "virtio": _rss(50),
        "api": _rss(69),
        "supervisor": _rss(23),
    }
    figures = {f.what: f for f in bench_memory.memory_figures(multi, _rss(111))}
    assert figures["controller RSS, idle"].passed is True
    assert figures["fortuna RSS, idle"].passed is False  # the largest reading counts
    assert figures["fortuna RSS, idle"].ratio == pytest.approx(70.5 / 70)
    assert figures["supervisor RSS, idle"].passed is None
    assert figures["four services RSS together"].value == pytest.approx(249.5)
    assert figures["four services RSS together"].limit == 112
    assert figures["--single-process RSS, idle"].passed is False  # 111 > 110
    assert figures["--single-process RSS vs Go reference"].passed is True  # 111 < 112
    smaller = bench_memory.memory_figures(multi, _rss(109))
    assert [f.passed for f in smaller if f.what.startswith("--single")] == [True, True]


def test_rss_sampling_reads_this_process() -> None:
    readings = bench_memory.sample({"me": os.getpid()}, seconds=0.0, interval_s=0.01)
    assert len(readings["me"].samples) == 1
    assert 1 < readings["me"].steady_mib < 4096


# -- python -m bench, with fake benchmarks -------------------------------------------------------


@pytest.fixture
def fake_benches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Two fake benchmarks: one passes, one misses when not quick; records the quick flag."""
    calls: list[bool] = []

    def good(quick: bool) -> list[Figure]:
        calls.append(quick)
        return [FAST, INFO]

    def slow(quick: bool) -> list[Figure]:
        calls.append(quick)
        value = 25_000.0 if quick else 10_000.0
        return [Figure("bench_slow", "w", value, "/s", target=Target(20_000, Direction.AT_LEAST))]

    def broken(quick: bool) -> list[Figure]:
        raise RuntimeError("the server did not start")

    monkeypatch.setattr(
        bench_main, "BENCHES", {"bench_good": good, "bench_slow": slow, "bench_broken": broken}
    )
    return calls


def test_main_exits_1_when_a_target_is_missed_and_0_when_all_are_met(
    fake_benches: list[bool], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    assert bench_main.main(["--only", "good,slow", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "[1/2] bench_good ..." in captured.err
    assert "[2/2] bench_slow ..." in captured.err
    assert "1 of 2 targets met" in captured.out
    assert [f.passed for f in load_report(out).figures] == [True, None, False]
    assert bench_main.main(["--only", "bench_good,slow", "--quick", "--no-json"]) == 0
    assert fake_benches == [False, False, True, True]


def test_a_benchmark_that_raises_fails_the_run_but_not_the_others(
    fake_benches: list[bool], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    assert bench_main.main(["--only", "broken,good", "--json", str(out)]) == 1
    report = load_report(out)
    assert report.errors == (BenchError("bench_broken", "RuntimeError: the server did not start"),)
    assert len(report.figures) == 2
    assert report.options["only"] == ["bench_broken", "bench_good"]
    assert "broken: FAILED TO RUN" in capsys.readouterr().out


def test_compare_adds_a_delta_column(
    fake_benches: list[bool], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.json"
    before = Figure("bench_x", "round trips", 50_000.0, "round trips/s", limit=150_000.0)
    renamed = Figure("bench_good", "old name", 1.0, "/s")
    not_run = Figure("bench_slow", "w", 1.0, "/s")
    save_report(Report(figures=(before, renamed, not_run)), old)
    assert bench_main.main(["--only", "good", "--no-json", "--compare", str(old)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "round trips" in line)
    assert row.endswith("-10.0% worse (was 50,000, ratio 0.33)")
    assert "(was in the old one): good: old name" in out
    assert "slow" not in out  # a benchmark left out with --only is not reported missing


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--only", "nope"], "--only"),
        (["--only", ","], "--only"),
        (["--compare", "/nonexistent/old.json"], "--compare"),
        (["--json", "x.json", "--no-json"], "--no-json"),
        (["--json", "/proc/forbidden/run.json"], "--json"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    fake_benches: list[bool], argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status: int | str | None
    try:
        status = bench_main.main(argv)
    except SystemExit as exit_:
        status = exit_.code  # argparse's own errors
    assert status == 2
    assert named in capsys.readouterr().err
    assert fake_benches == []  # nothing ran


def test_every_benchmark_on_disk_is_registered_and_has_run() -> None:
    assert bench_main.NAMES[-1] == "bench_memory"  # the slowest, whole stacks, last
    on_disk = {p.stem for p in (ROOT / "bench").glob("bench_*.py")}
    assert set(bench_main.NAMES) == on_disk
    assert list(bench_main.BENCHES) == list(bench_main.NAMES)
    for name in bench_main.NAMES:
        module = importlib.import_module(f"bench.{name}")
        assert inspect.signature(module.run).parameters["quick"].default is False


# -- real processes ------------------------------------------------------------------------------


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_an_unknown_option_exits_2_naming_it() -> None:
    done = _run("-m", "bench", "--bogus")
    assert done.returncode == 2
    assert "--bogus" in done.stderr
    assert done.stdout == ""


def test_lokey_bench_execs_python_m_bench_with_every_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Options included, even --help: python -m bench owns them all."""
    calls: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        calls.append(argv)
        raise OSError("not really")

    monkeypatch.setattr(os, "execv", execv)  # the function lokey.cli calls
    assert cli.main(["bench", "--only", "store", "--help"]) == 2  # execv "failed"
    assert calls == [[sys.executable, "-m", "bench", "--only", "store", "--help"]]


def test_a_quick_real_run_writes_a_report_with_figures(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    done = _run("-m", "bench", "--only", "quality", "--quick", "--json", str(out))
    assert done.returncode in (0, 1), done.stderr  # 1 only if this machine misses the target
    report = load_report(out)
    assert [f.bench for f in report.figures] == ["bench_quality"]
    figure = report.figures[0]
    assert figure.value > 0
    assert figure.limit is not None
    assert figure.limit > 0
    assert report.options == {"only": ["bench_quality"], "quick": True}
    assert report.machine["cpus"] == os.cpu_count()
    assert "[1/1] bench_quality ..." in done.stderr
    assert "SP 800-90B RCT + APT" in done.stdout
    assert done.returncode == exit_status(report)

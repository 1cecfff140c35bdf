"""``python -m bench`` (``lokey bench``, ``make bench``): run the benchmarks, print one table.

Each benchmark prints its detailed figures to stderr (with a progress line as it starts); stdout
gets one table with every figure, its ratio to the limit measured in the same run and its
target. The run is saved as JSON (:mod:`bench._report`) to ``--json PATH``, by default to
``$XDG_STATE_HOME/lokey/bench/<UTC time>.json`` (``~/.local/state/lokey/bench``, beside
``lokey up``'s data), so two versions can be compared with ``--compare OLD.json``.

Exit status: 0 every target met, 1 a figure misses its target or a benchmark failed to run,
2 bad options (or an unreadable ``--compare`` file).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench._report import (
    BenchError,
    Figure,
    Report,
    ReportFormatError,
    compare,
    exit_status,
    git_state,
    load_report,
    machine,
    render_table,
    save_report,
    utc_now,
)
from lokey import __version__

EXIT_USAGE = 2
NAMES = (  # the order they run in: quick in-process ones first, whole stacks last
    "bench_emulator",
    "bench_driver",
    "bench_controller",
    "bench_fortuna",
    "bench_fortuna_http",
    "bench_virtio_pipe",
    "bench_virtio_stream",
    "bench_quality",
    "bench_battery",
    "bench_store",
    "bench_api",
    "bench_scale",
    "bench_memory",
)


def _lazy(name: str) -> Callable[[bool], list[Figure]]:
    """``bench.NAME.run``, imported when it runs: ``--help`` and a bad option answer at once,
    and ``--only`` loads only what it runs."""

    def run(quick: bool) -> list[Figure]:
        module = importlib.import_module(f"bench.{name}")
        figures: list[Figure] = module.run(quick)
        return figures

    return run


#: Every benchmark by name: ``run(quick) -> list[Figure]``.
BENCHES: dict[str, Callable[[bool], list[Figure]]] = {name: _lazy(name) for name in NAMES}


def _only(text: str) -> list[str]:
    """``--only store,bench_api``: names with or without the ``bench_`` prefix, comma separated."""
    names = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        full = name if name.startswith("bench_") else f"bench_{name}"
        if full not in BENCHES:
            choices = ", ".join(n.removeprefix("bench_") for n in BENCHES)
            raise argparse.ArgumentTypeError(f"unknown benchmark {name!r} (choose from {choices})")
        if full not in names:
            names.append(full)
    if not names:
        raise argparse.ArgumentTypeError("names no benchmark")
    return names


def default_json_path(env: Mapping[str, str], started: str) -> Path:
    """``$XDG_STATE_HOME/lokey/bench/2026-11-29T074800Z.json`` (no colons: valid everywhere)."""
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "lokey" / "bench" / f"{started.replace(':', '')}.json"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(  # its errors exit 2, EXIT_USAGE
        prog="lokey bench",
        description=(
            "Run LoKey's benchmarks and print one table: every figure, its ratio to the limit "
            "measured in the same run, its target. Exit 0 all targets met, 1 one missed or a "
            "benchmark failed, 2 bad options."
        ),
    )
    parser.add_argument(
        "--only",
        type=_only,
        default=None,
        metavar="NAME[,NAME]",
        help="run only these benchmarks ("
        + ", ".join(n.removeprefix("bench_") for n in BENCHES)
        + "; the bench_ prefix is optional)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter runs (fewer repeats, smaller sizes): noisier figures, for a smoke test",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the results here (default $XDG_STATE_HOME/lokey/bench/<UTC time>.json)",
    )
    parser.add_argument(
        "--no-json", action="store_true", help="write no JSON file (the table is still printed)"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OLD.json",
        help="add a column comparing each figure with the same figure in an earlier run",
    )
    return parser


def run_benches(names: Sequence[str], quick: bool) -> tuple[list[Figure], list[BenchError]]:
    """Each benchmark in turn; its detailed printout goes to stderr, its figures are kept. A
    benchmark that raises is recorded as an error and the others still run."""
    figures: list[Figure] = []
    errors: list[BenchError] = []
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                figures += BENCHES[name](quick)
        except Exception as error:
            traceback.print_exc()
            errors.append(BenchError(name, f"{type(error).__name__}: {error}"))
        took = time.perf_counter() - started
        print(f"[{index}/{len(names)}] {name} done in {took:.1f} s", file=sys.stderr, flush=True)
    return figures, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.json is not None and args.no_json:
        print("lokey bench: --json and --no-json exclude each other", file=sys.stderr)
        return EXIT_USAGE
    old = None
    if args.compare is not None:
        try:
            old = load_report(args.compare)
        except ReportFormatError as error:
            print(f"lokey bench: --compare: {error}", file=sys.stderr)
            return EXIT_USAGE
    names = args.only or list(BENCHES)
    started = utc_now()
    path = None if args.no_json else args.json or default_json_path(os.environ, started)
    if path is not None and not _writable(path):  # say so now, not after minutes of running
        print(f"lokey bench: --json: cannot write {path}", file=sys.stderr)
        return EXIT_USAGE
    clock = time.perf_counter()
    figures, errors = run_benches(names, args.quick)
    report = Report(
        figures=tuple(figures),
        errors=tuple(errors),
        started=started,
        seconds=round(time.perf_counter() - clock, 1),
        lokey_version=__version__,
        git=git_state(),
        machine=machine(),
        options={"only": names, "quick": args.quick},
    )
    deltas, missing = compare(figures, old) if old is not None else (None, [])
    missing = [f for f in missing if f.bench in names]  # gone from a benchmark that ran
    print(render_table(figures, errors, deltas, missing), flush=True)
    if path is not None:
        try:
            save_report(report, path)
        except OSError as error:
            print(f"lokey bench: --json: cannot write {path}: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"results: {path}", file=sys.stderr)
    return exit_status(report)


def _writable(path: Path) -> bool:
    """The file's directory exists (or can be made) and a file can be created in it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    if path.is_dir():
        return False
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


if __name__ == "__main__":
    raise SystemExit(main())

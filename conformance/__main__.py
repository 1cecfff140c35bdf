"""``python -m conformance``: run LoKey's conformance suites and write JUnit XML.

    python -m conformance [--bus URL] [--stack URL] [--allow-destructive]
                          [--recovery-bound SECONDS] [--junitxml PATH] [pytest args...]

Runs pytest on the installed ``conformance`` package (bus semantics, the ATECC608A protocol
against the vectors, the fault campaigns through the chaos API, the NIST regression corpora),
writes JUnit XML to ``--junitxml`` (default ``conformance-results.xml`` in the current
directory) and ends with a summary table per suite file and the recovery time measured per
fault. Any other argument goes to pytest unchanged (``-k``, ``-x``, ``-n 2``, ``-v`` ...). The
exit status is pytest's: 0 all passed, 1 a test failed, 2 interrupted, 4 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn

__all__ = ["DEFAULT_JUNITXML", "main", "pytest_args"]

DEFAULT_JUNITXML: Final = "conformance-results.xml"
PACKAGE_DIR: Final = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description=(
            "Run LoKey's conformance suites (bus semantics, ATECC608A protocol, fault "
            "campaigns, NIST regression) and write JUnit XML. Other arguments go to pytest."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "--bus", help="sim://atecc608a[?options] (default), /dev/i2c-1 on a Pi, i2c://<path>"
    )
    parser.add_argument(
        "--stack",
        metavar="URL",
        help="a running LoKey controller, e.g. http://127.0.0.1:8081 "
        "(default: start one on the emulator)",
    )
    parser.add_argument(
        "--allow-destructive",
        action="store_true",
        help="run the checks that write or lock a real chip",
    )
    parser.add_argument(
        "--recovery-bound",
        metavar="SECONDS",
        help="longest wait for the stack to recover after a fault (default 10)",
    )
    parser.add_argument(
        "--junitxml",
        "--junit-xml",
        dest="junitxml",
        default=DEFAULT_JUNITXML,
        metavar="PATH",
        help=f"JUnit XML report (default {DEFAULT_JUNITXML} in the current directory)",
    )
    return parser


def pytest_args(argv: Sequence[str]) -> list[str]:
    """The pytest command line ``python -m conformance argv`` runs."""
    options, rest = _parser().parse_known_args(list(argv))
    args = [
        str(PACKAGE_DIR),
        "-p",
        "no:cacheprovider",  # the package may live in a read-only site-packages
        f"--junitxml={os.path.abspath(options.junitxml)}",
        "-o",
        "junit_family=xunit1",  # record_property (the recovery times) is not in xunit2's schema
        "-o",
        "junit_suite_name=lokey-conformance",
    ]
    if options.bus is not None:
        args.append(f"--bus={options.bus}")
    if options.stack is not None:
        args.append(f"--stack={options.stack}")
    if options.allow_destructive:
        args.append("--allow-destructive")
    if options.recovery_bound is not None:
        args.append(f"--recovery-bound={options.recovery_bound}")
    return [*args, *rest]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Replace this process with ``python -m pytest`` on the suites (its exit status is ours).

    A fresh interpreter rather than ``pytest.main`` here: this package is already imported, so
    pytest could not rewrite its asserts, and nothing of this process leaks into the run.
    """
    args = pytest_args(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])


if __name__ == "__main__":
    main()

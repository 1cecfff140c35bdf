"""``lokey verify uniqueness``: the duplicate checker, and a short real run under SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lokey.verify import WINDOW, find_duplicates
from tests.service_helpers import ROOT


def test_finds_a_window_repeated_across_two_responses() -> None:
    first = os.urandom(1000)
    second = os.urandom(500) + first[333 : 333 + WINDOW] + os.urandom(77)
    check = find_duplicates([first, second], ["api-fortuna", "fifo"])
    assert check.duplicates == 1
    (duplicate,) = check.examples
    assert duplicate.window == first[333 : 333 + WINDOW]
    assert duplicate.first == (0, 333)  # unaligned in both responses
    assert duplicate.second == (1, 500)
    assert duplicate.paths == ("api-fortuna", "fifo")


@pytest.mark.parametrize("offset", [0, 1, 7, 8, 9, 15, 100])
def test_finds_a_repeat_at_any_offset_within_one_response(offset: int) -> None:
    window = os.urandom(WINDOW)
    data = os.urandom(offset) + window + os.urandom(37) + window + os.urandom(5)
    check = find_duplicates([data])
    assert check.duplicates == 1
    assert check.examples[0].window == window


def test_a_repeat_shorter_than_a_window_is_not_a_duplicate() -> None:
    piece = os.urandom(WINDOW - 1)
    assert find_duplicates([os.urandom(10) + piece, piece + os.urandom(10)]).duplicates == 0


def test_finds_none_in_random_data() -> None:
    sizes = (4096, 32, 17, 65536, 1, 0, 512) * 20
    chunks = [os.urandom(n) for n in sizes]
    check = find_duplicates(chunks)
    assert check.duplicates == 0
    assert check.windows_checked == sum(max(n - WINDOW + 1, 0) for n in sizes)


def test_windows_never_span_two_responses() -> None:
    data = os.urandom(64)
    # the window data[24:40] is only ever split across responses: never served whole
    check = find_duplicates([data[:32], data[32:], data[:30], data[34:]])
    assert check.duplicates == 2  # data[:30] within data[:32]; data[34:] within data[32:]
    assert all(d.window != data[24:40] for d in check.examples)
    assert find_duplicates([data[:32], data[32:], data[20:31], data[33:44]]).duplicates == 0


def test_a_long_repeat_is_one_duplicate() -> None:
    run = os.urandom(1000)
    assert find_duplicates([os.urandom(9) + run, run + os.urandom(3)]).duplicates == 1


@pytest.mark.slow
def test_a_short_run_under_sigkill_serves_nothing_twice(tmp_path: Path) -> None:
    began = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lokey.verify",
            "uniqueness",
            "--duration",
            "8",
            "--kill-every",
            "2",
            "--seed",
            "1",
            "--json",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["duplicates"] == 0
    assert sum(report["kills"].values()) >= 1
    served = [path for path, row in report["paths"].items() if row["bytes"] > 0]
    assert len(served) >= 4, report["paths"]
    assert elapsed < 45, f"{elapsed:.1f} s"

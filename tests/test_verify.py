"""``lokey verify uniqueness``: the duplicate checker, and a short real run under SIGKILL."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lokey.client import ApiError, ApiUnavailableError, NoDataError
from lokey.verify import (
    BUDGET_BURST,
    PATHS,
    WINDOW,
    History,
    Phases,
    Progress,
    _classify,
    find_duplicates,
)
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


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _unavailable(cause: Exception) -> ApiUnavailableError:
    error = ApiUnavailableError("no answer", method="GET", url="http://x")
    error.__cause__ = cause
    return error


_REQUEST = httpx.Request("GET", "http://x/generate")


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        # nothing was served: safe to say no bytes were consumed
        (
            NoDataError("none", status_code=503, method="POST", path="/d", retry_after=1.0),
            "refused",
        ),
        (httpx.HTTPStatusError("", request=_REQUEST, response=httpx.Response(503)), "refused"),
        (_unavailable(httpx.ConnectError("refused")), "refused"),
        (httpx.ConnectError("refused"), "refused"),
        # sent, and the answer broke off: its bytes may be gone without being delivered
        (_unavailable(httpx.ReadError("reset")), "lost"),
        (httpx.RemoteProtocolError("closed mid-body"), "lost"),
        (httpx.ReadTimeout("slow"), "lost"),
        # anything else is an error the report shows
        (ApiError("bad", status_code=500, method="POST", path="/d"), "error"),
        (httpx.HTTPStatusError("", request=_REQUEST, response=httpx.Response(500)), "error"),
    ],
)
def test_a_failed_request_is_refused_lost_or_an_error(error: Exception, outcome: str) -> None:
    assert _classify(error)[0] == outcome


def test_each_path_records_only_its_share_of_the_budget_over_time() -> None:
    clock = _Clock()
    history = History(budget_b_s=1000.0, clock=clock)
    history.record("fifo", bytes(BUDGET_BURST))
    assert not history.over_budget("fifo")  # the burst
    history.record("fifo", bytes(1))
    assert history.over_budget("fifo")
    assert not history.over_budget("api-trng")  # another path's share is its own
    clock.now += 0.002  # two more bytes allowed
    assert not history.over_budget("fifo")
    assert history.responses[0].time == 0.0


def test_the_ring_drainers_alternate_one_period_on_one_off() -> None:
    clock = _Clock()
    phases = Phases(1.0, started=clock.now, clock=clock)
    seen = []
    for _ in range(8):
        seen.append(phases.draining())
        clock.now += 0.5
    assert seen == [True, True, False, False, True, True, False, False]


def test_progress_in_a_log_is_a_line_now_and_then_not_a_flood() -> None:
    log = io.StringIO()  # not a terminal: no carriage returns in CI logs
    progress = Progress(log)
    for second in range(5):
        progress.show(f"{second} s")
    progress.show("checking", force=True)
    progress.done()
    assert log.getvalue() == "0 s\nchecking\n"


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
    served = {path for path, row in report["paths"].items() if row["bytes"] > 0}
    assert served == set(PATHS), report["paths"]  # every path got its share
    assert all(row["error"] == 0 for row in report["paths"].values()), report["paths"]
    assert elapsed < 45, f"{elapsed:.1f} s"

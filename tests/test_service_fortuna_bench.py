"""Smoke test of ``bench/bench_fortuna_http.py``: a real server starts, is seeded, serves both
routes and stops; the ratio is printed (wall-clock figures vary by machine and are not
asserted)."""

from __future__ import annotations

import httpx
import pytest

from bench import bench_fortuna_http
from bench._http import serving


def test_fortuna_http_bench_runs_and_prints_its_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    bench_fortuna_http.main(requests=2, repeats=1)
    out = capsys.readouterr().out
    for line in ("/generate binary", "static 1 MiB", "ratio to static", "in-process"):
        assert line in out


def test_the_bench_routes_answer_exactly_one_mebibyte() -> None:
    with (
        serving(bench_fortuna_http.bench_app()) as base,
        httpx.Client(base_url=base, timeout=30.0) as client,
    ):
        assert client.get(bench_fortuna_http.GENERATE_PATH).status_code == 503  # unseeded
        assert len(client.get(bench_fortuna_http.STATIC_PATH).content) == 1 << 20

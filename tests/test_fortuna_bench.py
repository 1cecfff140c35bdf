"""Smoke test of ``bench/bench_fortuna.py``: the openssl result line parses, the fallback limit
says it is one, and ``main`` prints its figures (wall-clock figures are not asserted)."""

from __future__ import annotations

import pytest

from bench import bench_fortuna

OPENSSL_OUTPUT = """\
version: 3.0.19
The 'numbers' are in 1000s of bytes per second processed.
type          16384 bytes
AES-256-CTR    7675428.86k
"""


def test_openssl_result_line_parses() -> None:
    assert bench_fortuna.parse_openssl_speed(OPENSSL_OUTPUT) == pytest.approx(7_675_428_860)
    assert bench_fortuna.parse_openssl_speed("aes-256-ctr 12.5k\n") == 12_500
    assert bench_fortuna.parse_openssl_speed("no result here") is None


def test_fallback_limit_says_so() -> None:
    limit = bench_fortuna.cryptography_ctr_limit(seconds=0.02)
    assert limit.bytes_per_s > 0
    assert limit.source.startswith("FALLBACK")


def test_main_prints_ratios(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_fortuna, "openssl_limit", lambda: None)
    monkeypatch.setattr(
        bench_fortuna,
        "cryptography_ctr_limit",
        lambda: bench_fortuna.Limit(1e9, "FALLBACK: test"),
    )
    bench_fortuna.main(large=3, small=200, repeats=1)
    out = capsys.readouterr().out
    assert "ratio to limit" in out
    assert "ratio to target" in out
    assert "FALLBACK" in out

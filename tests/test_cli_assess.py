"""``lokey assess``: exit status, the report, JSON, stdin and every input error."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lokey import cli

TEST_PATTERN = bytes.fromhex("ffff0000")  # spec atecc608a §5: Random while unlocked


def _keystream(size: int) -> bytes:
    key = hashlib.sha256(b"test_cli_assess").digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(size)) + encryptor.finalize()


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.bin"
    path.write_bytes(_keystream(10 * 125_000))
    return path


@pytest.fixture
def pattern_file(tmp_path: Path) -> Path:
    path = tmp_path / "pattern.bin"
    path.write_bytes(TEST_PATTERN * 31_250)
    return path


def test_good_data_exits_0_with_a_table_of_every_test(
    good_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["assess", str(good_file)]) == cli.EXIT_PASS
    out = capsys.readouterr().out
    assert "10 sequence(s) of 1,000,000 bits" in out
    assert "alpha = 2^-20" in out
    for name in ("frequency", "linear_complexity", "random_excursions_variant"):
        assert name in out
    assert out.rstrip().endswith("RESULT: PASS")


def test_the_unlocked_chip_test_pattern_exits_1(
    pattern_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["assess", str(pattern_file)]) == cli.EXIT_FAIL
    out = capsys.readouterr().out
    assert "start-up (first 1,024 samples): FAILED" in out
    assert out.rstrip().endswith("RESULT: FAIL")


def test_json_output_is_the_assessment(
    pattern_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["assess", "--json", str(pattern_file)]) == cli.EXIT_FAIL
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert report["health"]["passed"] is False
    assert {t["test"] for t in report["tests"]} >= {"runs", "serial"}


def test_dash_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(TEST_PATTERN * 5_000))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["assess", "-"]) == cli.EXIT_FAIL
    assert "20,000 bytes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing.bin", "No such file or directory"), (".", "Is a directory")],
)
def test_unreadable_input_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    path = tmp_path / target
    assert cli.main(["assess", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert str(path) in err
    assert message in err


def test_too_short_input_exits_2_and_lists_each_tests_minimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"\x5a" * 5)
    assert cli.main(["assess", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "input too short" in err
    assert "needs at least 100 bits, got 40" in err
    assert "overlapping_template" in err
    assert "1,000,000 bits (125,000 bytes)" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--min-entropy", "9", "must be in [0.01, 8]"),
        ("--min-entropy", "1e-30", "must be in [0.01, 8]"),
        ("--min-entropy", "x", "must be a number"),
        ("--sequence-bits", "1", "must be in [1,000, 100,000,000]"),
        ("--sequence-bits", "1e6", "must be an integer"),
        ("--max-bytes", "0", "must be in [1,"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    good_file: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["assess", option, value, str(good_file)])
    assert raised.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert option in err
    assert message in err


def test_input_larger_than_max_bytes_exits_2(
    good_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["assess", "--max-bytes", "1000", str(good_file)]) == cli.EXIT_USAGE
    assert "larger than --max-bytes 1,000" in capsys.readouterr().err


def test_fewer_than_1024_samples_say_start_up_was_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.bin"
    path.write_bytes(_keystream(13))
    cli.main(["assess", str(path)])
    out = capsys.readouterr().out
    assert "start-up (first 1,024 samples): not run" in out
    assert "3 of 15 tests could run" in out


def test_progress_bar_draws_in_place_and_clears() -> None:
    stream = io.StringIO()
    bar = cli._ProgressBar(stream)
    bar.update(15, 30)
    bar.close()
    drawn = stream.getvalue()
    assert "\rassessing [###############...............]  50%" in drawn
    assert drawn.endswith("\r")


def test_the_lokey_console_script_is_installed_and_runs(good_file: Path) -> None:
    script = Path(sys.executable).parent / "lokey"
    done = subprocess.run(
        [str(script), "assess", "--json", str(good_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == cli.EXIT_PASS, done.stderr
    assert json.loads(done.stdout)["passed"] is True


def test_an_internal_error_exits_2_not_1_which_means_the_data_fails(
    good_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "assess", broken)
    assert cli.main(["assess", str(good_file)]) == cli.EXIT_USAGE
    assert "internal error" in capsys.readouterr().err

"""The things a person runs first: the README example, the demo, the bench, the bus URLs.

They run as a user would run them (a real ``python`` process for the demo and the README
snippet), so a broken quick start fails CI instead of a newcomer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_emulator
from conformance.buses import open_bus
from sim.atecc608a import ATECC608A
from sim.i2c_bus import VirtualI2CBus

ROOT = Path(__file__).resolve().parents[1]
PACKETS = json.loads((ROOT.parent / "shared" / "vectors" / "atecc_packets.json").read_text())
RESPONSES = {r["name"]: r["packet_hex"] for r in PACKETS["responses"]}


def _spaced(hex_text: str) -> str:
    return bytes.fromhex(hex_text).hex(" ")


def _run_python(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_example_prints_the_608b_revision_group_and_a_crc_valid_random_group() -> None:
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    lines = _run_python("-c", example).splitlines()
    assert lines[0] == _spaced(RESPONSES["Info revision ATECC608B"])
    random_group = bytes.fromhex(lines[1].replace(" ", ""))
    assert len(random_group) == 35
    assert random_group[0] == 0x23
    pattern = bytes.fromhex(RESPONSES["Random while config unlocked (test pattern)"])
    assert random_group != pattern  # the example locks the config zone first


def test_demo_shows_the_wake_group_revision_and_the_unlocked_test_pattern() -> None:
    output = _run_python("-m", "sim", "--seed", "7").upper()
    assert "04 11 33 43" in output
    assert _spaced(RESPONSES["Info revision ATECC608B"]).upper() in output
    assert _spaced(RESPONSES["Random while config unlocked (test pattern)"]).upper() in output


def test_demo_writes_a_trace_that_loads_back(tmp_path: Path) -> None:
    from sim.i2c_bus import Trace

    path = tmp_path / "demo.jsonl"
    _run_python("-m", "sim", "--trace", str(path))
    records = Trace.read_jsonl(path).records()
    assert records[0].address == 0x00
    assert records[0].outcome == "wake"
    assert any(r.data == bytes.fromhex("03071b00000024cd") for r in records)


def test_bench_round_trip_loop_survives_many_watchdog_periods() -> None:
    bus, clock = bench_emulator.emulator_bus()
    result = bench_emulator.run_round_trips(bus, clock, count=2_000)  # 4 s of virtual time:
    # a NACK (watchdog expiry, busy) would raise, and a non-Random last reply raises too
    assert result.round_trips == 2_000
    assert clock.monotonic() > 3 * 1.3  # three watchdog periods crossed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sim://atecc508a", "unknown emulated device"),
        ("sim://atecc608a?speed=fast", "unknown option"),
        ("sim://atecc608a?seed=abc", "seed must be an integer"),
        ("sim://atecc608a?timing=fast", "unknown timing model"),
        ("sim://atecc608a?lock=half", "unknown lock state"),
        ("sim://atecc608a?revision=508A", "unknown revision"),
        ("/dev/spidev0.0", "cannot open bus"),
        ("http://localhost/", "cannot open bus"),
    ],
)
def test_bad_bus_urls_are_refused_naming_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_bus(url)


def test_sim_url_options_reach_the_emulator() -> None:
    opened = open_bus("sim://atecc608a?lock=locked&timing=instant&seed=5&revision=608A")
    assert opened.kind == "emulator"
    assert isinstance(opened.bus, VirtualI2CBus)
    chip = opened.bus.targets[0x60]
    assert isinstance(chip, ATECC608A)
    state = chip.control.state()
    assert state.config_locked
    assert state.data_locked
    assert chip.settings.timing.name == "instant"
    assert chip.control.config[4:8] == bytes.fromhex("00006002")


def test_quality_benchmarks_run_and_print_their_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import bench_battery, bench_quality

    bench_quality.main(mebibytes=2, repeats=1)  # figures vary by machine: not asserted
    bench_battery.main(repeats=1)
    out = capsys.readouterr().out
    assert "health tests" in out
    assert out.count("ratio to target") == 2
    assert "ms per sequence" in out


def test_readme_quality_example_runs_with_the_cut_offs_it_states() -> None:
    readme = (ROOT / "README.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "sp800_22" in b)
    check = (
        "import random\nraw_bytes = random.Random(7).randbytes(4096)\n"
        + example
        + "\nprint(tracker.rct_cutoff, tracker.apt_window, tracker.apt_cutoff, usable,"
        " result.test)\n"
    )
    assert _run_python("-c", check).split() == ["4", "512", "14", "3072", "runs"]

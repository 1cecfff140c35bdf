"""``lokey doctor``: every check's verdict and advice on the emulator (healthy, unlocked, absent,
faulty), on a missing i2c-dev node and on a replayed recording; the table, JSON and exit codes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from smbus2 import SMBus

from lokey import doctor
from lokey.backends import OpenedBus, open_bus
from lokey.doctor import CHECKS, Report, Status, diagnose, diagnose_bus, main, render
from sim.atecc608a import ATECC608A, Opcode
from sim.atecc608a.faults import RngHealthFailure, SelfTestFailure, StuckOutput

ROOT = Path(__file__).resolve().parents[1]
FAST = "clock=virtual&timing=instant"
LOCKED = f"sim://atecc608a?lock=config-locked&seed=7&{FAST}"
UNLOCKED = f"sim://atecc608a?seed=7&{FAST}"
#: What the doctor may send: nothing that changes EEPROM (spec/atecc608a.md §4 opcodes).
READ_ONLY_OPCODES = {Opcode.INFO, Opcode.READ, Opcode.SELF_TEST, Opcode.RANDOM}


def statuses(report: Report) -> dict[str, Status]:
    return {check.name: check.status for check in report.checks}


def chip_of(opened: OpenedBus) -> ATECC608A:
    assert isinstance(opened.emulator, ATECC608A)
    return opened.emulator


@pytest.fixture
def locked() -> Iterator[OpenedBus]:
    with open_bus(LOCKED) as opened:
        yield opened


# -- the emulator ----------------------------------------------------------------------------


def test_every_check_passes_on_a_locked_emulator_and_nothing_is_written(
    locked: OpenedBus,
) -> None:
    chip = chip_of(locked)
    config, data, otp = chip.control.config, chip.control.data, chip.control.otp
    report = diagnose_bus(locked)
    assert [c.name for c in report.checks] == list(CHECKS)
    assert statuses(report) == dict.fromkeys(CHECKS, Status.PASS)
    assert report.result is Status.PASS
    assert report.exit_code == 0
    assert report.check("revision").summary.startswith("ATECC608")
    samples = report.check("samples")
    assert samples.details["samples"] == 64
    assert samples.details["bytes"] == 2048
    assert samples.details["repeats"] == 0
    seconds = samples.details["seconds"]  # timed on the bus clock: the driver's waits, virtual
    assert isinstance(seconds, float)
    assert seconds > 0
    assert samples.details["bytes_per_second"] == 2048 / seconds
    health = samples.details["health"]
    assert isinstance(health, dict)
    assert health["state"] == "steady"
    # Read-only: the chip's memory is as it was, and only harmless opcodes reached it.
    assert (chip.control.config, chip.control.data, chip.control.otp) == (config, data, otp)
    assert {c.opcode for c in chip.control.commands()} <= READ_ONLY_OPCODES
    assert chip.control.state().power == "sleep"  # left as found


def test_the_default_emulator_is_unlocked_so_the_lock_check_fails_with_provisioning_advice() -> (
    None
):
    """No --bus and no environment: the controller's default, sim://atecc608a (unlocked)."""
    report = diagnose(UNLOCKED)
    lock = report.check("lock")
    assert lock.status is Status.FAIL
    assert "test pattern" in lock.summary
    assert "lokey provision" in lock.advice
    assert "sim://atecc608a?lock=config-locked" in lock.advice  # the emulator's own way out
    assert report.check("samples").status is Status.SKIP
    assert "unlocked" in report.check("samples").summary
    assert report.check("self-test").status is Status.PASS
    assert report.exit_code == 1


def test_main_defaults_to_the_environment_rule_like_the_controller(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--json"], env={}) == 1  # sim://atecc608a, unlocked
    out = json.loads(capsys.readouterr().out)
    assert out["url"] == "sim://atecc608a"
    assert main(["--json"], env={"LOKEY_BUS_URL": LOCKED, "I2C_BUS_NUMBER": "99"}) == 0
    assert json.loads(capsys.readouterr().out)["url"] == LOCKED
    assert main(["--json"], env={"I2C_BUS_NUMBER": "99"}) == 1
    assert json.loads(capsys.readouterr().out)["url"] == "/dev/i2c-99"


def test_no_chip_at_the_address_fails_with_wiring_advice() -> None:
    report = diagnose(f"sim://atecc608a?address=0x50&lock=config-locked&{FAST}")
    address = report.check("address")
    assert address.status is Status.FAIL
    assert "no ACK at 0x60" in address.summary
    for hint in ("SDA to GPIO2 (pin 3)", "SCL to GPIO3 (pin 5)", "3.3 V", "GND", "i2cdetect -y 1"):
        assert hint in address.advice
    assert statuses(report) == {
        "bus": Status.PASS,
        "address": Status.FAIL,
        **dict.fromkeys(CHECKS[2:], Status.SKIP),
    }
    assert report.exit_code == 1


def test_a_chip_at_a_pre_configured_address_is_found_and_named() -> None:
    """A Trust&GO part answers at 0x35: the doctor finds it there (read-only) and says so."""
    with open_bus(f"sim://atecc608a?address=0x35&lock=config-locked&{FAST}") as opened:
        report = diagnose_bus(opened)
        commands = chip_of(opened).control.commands()
        assert chip_of(opened).control.state().power == "sleep"
    address = report.check("address")
    assert address.status is Status.FAIL
    assert "no ACK at 0x60, but an ATECC608 answers at 0x35 (Trust&GO default)" in address.summary
    assert "factory address 0x60" in address.advice
    assert address.details["found"] == ["0x35"]
    assert commands == []  # woken and put back to sleep, never sent a command
    assert report.exit_code == 1


def test_a_failed_self_test_fails_with_defective_chip_advice(locked: OpenedBus) -> None:
    chip_of(locked).control.inject(SelfTestFailure(tests=0x01, persistent=True))
    report = diagnose_bus(locked)
    check = report.check("self-test")
    assert check.status is Status.FAIL
    assert "RNG" in check.summary
    assert "defective" in check.advice
    assert report.check("address").status is Status.WARN  # it woke in Failure state
    assert report.check("samples").status is Status.SKIP
    assert report.exit_code == 1


def test_a_stuck_rng_fails_the_sample_check(locked: OpenedBus) -> None:
    chip_of(locked).control.inject(StuckOutput(block=b"\x00"))
    report = diagnose_bus(locked)
    samples = report.check("samples")
    assert samples.status is Status.FAIL
    assert "all 32 bytes equal" in samples.summary
    assert "power-cycle" in samples.advice
    assert samples.details["rejected"] == {"all_equal": 64}
    assert report.check("self-test").status is Status.PASS  # SelfTest cannot see it
    assert report.exit_code == 1


def test_an_rng_cycling_through_one_block_fails_as_repeats(locked: OpenedBus) -> None:
    chip_of(locked).control.inject(StuckOutput(block=bytes(range(1, 33))))
    samples = diagnose_bus(locked, samples=4).check("samples")
    assert samples.status is Status.FAIL
    assert "sample 1 repeats sample 0 (3 repeat(s)" in samples.summary


def test_the_chips_own_rng_health_failure_fails_the_sample_check(locked: OpenedBus) -> None:
    chip_of(locked).control.inject(RngHealthFailure(after_calls=3))
    samples = diagnose_bus(locked).check("samples")
    assert samples.status is Status.FAIL
    assert samples.summary.startswith("HealthTestError")
    assert "RNG health test failed" in samples.advice
    assert samples.details == {"samples": 64, "read": 3}


def biased_blocks(count: int) -> list[bytes]:
    """Distinct blocks of bytes with at most three bits set: plenty of values for SP 800-90B's
    RCT and APT at H = 8 (none repeats four times in a row), but far too few ones."""
    values = [v for v in range(256) if bin(v).count("1") <= 3]
    rng = random.Random(5)
    out: list[int] = []
    while len(out) < 32 * count:
        value = rng.choice(values)
        if out[-3:] != [value] * 3:
            out.append(value)
    return [bytes(out[i : i + 32]) for i in range(0, len(out), 32)]


def test_unbalanced_samples_fail_the_legacy_monobit(locked: OpenedBus) -> None:
    chip_of(locked).control.script_random(*biased_blocks(64))
    samples = diagnose_bus(locked).check("samples")
    assert samples.status is Status.FAIL
    assert samples.summary.startswith("monobit: 0.3")
    health = samples.details["health"]
    assert isinstance(health, dict)
    assert health["state"] == "steady"  # the 90B tests alone did not catch it


def test_too_few_samples_for_the_start_up_test_warn(locked: OpenedBus) -> None:
    report = diagnose_bus(locked, samples=8)
    samples = report.check("samples")
    assert samples.status is Status.WARN
    assert "--samples 32" in samples.advice
    assert report.result is Status.WARN
    assert report.exit_code == 0  # warnings do not fail


def test_a_fast_i2c_adapter_warns_about_the_wake_pulse(locked: OpenedBus, tmp_path: Path) -> None:
    node = tmp_path / "bus" / "i2c" / "devices" / "i2c-1" / "of_node"
    node.mkdir(parents=True)
    (node / "clock-frequency").write_bytes((400_000).to_bytes(4, "big"))
    as_pi = OpenedBus(locked.bus, "/dev/i2c-1", "i2c-dev", locked.clock)
    bus = diagnose_bus(as_pi, sysfs=tmp_path).check("bus")
    assert bus.status is Status.WARN
    assert "400 kHz" in bus.summary
    assert "dtparam=i2c_arm_baudrate=100000" in bus.advice
    (node / "clock-frequency").write_bytes((100_000).to_bytes(4, "big"))
    bus = diagnose_bus(as_pi, sysfs=tmp_path).check("bus")
    assert (bus.status, bus.summary) == (Status.PASS, "/dev/i2c-1 is open at 100 kHz")


# -- i2c-dev that cannot be opened -----------------------------------------------------------


def test_a_missing_adapter_fails_with_the_dtparam_advice(tmp_path: Path) -> None:
    report = diagnose("/dev/i2c-99", dev=tmp_path)
    bus = report.check("bus")
    assert bus.status is Status.FAIL
    assert bus.summary == "cannot open /dev/i2c-99: No such file or directory (ENOENT)"
    assert "dtparam=i2c_arm=on" in bus.advice
    assert "/boot/firmware/config.txt" in bus.advice
    assert "i2c group" in bus.advice
    assert statuses(report) == {"bus": Status.FAIL, **dict.fromkeys(CHECKS[1:], Status.SKIP)}
    (tmp_path / "i2c-1").touch()
    (tmp_path / "i2c-20").touch()
    summary = diagnose("/dev/i2c-99", dev=tmp_path).check("bus").summary
    assert summary.endswith("; this machine has /dev/i2c-1, /dev/i2c-20")


def test_a_forbidden_adapter_says_how_to_grant_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: SMBus, bus: int | str) -> None:
        raise PermissionError(13, "Permission denied", bus)

    monkeypatch.setattr(SMBus, "open", refuse)
    bus = diagnose("/dev/i2c-1").check("bus")
    assert bus.status is Status.FAIL
    assert "(EACCES)" in bus.summary
    assert "sudo usermod -aG i2c" in bus.advice


# -- record and replay -----------------------------------------------------------------------


def test_a_recorded_doctor_run_replays_to_the_same_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "doctor.jsonl"
    assert main(["--bus", LOCKED, "--record", str(trace), "--json"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    assert main(["--bus", f"replay://{trace}", "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["checks"][0]["summary"].startswith(f"a replay of {trace} (")
    assert replayed["checks"][1:] == recorded["checks"][1:]


def test_a_replay_that_diverges_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "doctor.jsonl"
    assert main(["--bus", LOCKED, "--samples", "8", "--record", str(trace)]) == 0
    capsys.readouterr()
    assert main(["--bus", f"replay://{trace}", "--samples", "9"]) == 2
    assert "diverged at record" in capsys.readouterr().err


def test_a_missing_trace_means_the_doctor_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    # exit 2 like a diverging replay: an unreadable trace says nothing about a chip
    assert main(["--bus", "replay:///nonexistent/trace.jsonl"]) == 2
    assert "cannot read replay trace /nonexistent/trace.jsonl" in capsys.readouterr().err


# -- output and exit codes -------------------------------------------------------------------


def test_the_table_shows_every_check_its_advice_and_the_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--bus", UNLOCKED]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"LoKey doctor: {UNLOCKED}"
    rows = {line.split()[0]: line.split()[1] for line in out[2:] if line[2:3] != " "}
    assert rows == {
        "bus": "PASS",
        "address": "PASS",
        "revision": "PASS",
        "lock": "FAIL",
        "self-test": "PASS",
        "samples": "SKIP",
        "RESULT:": "FAIL",
    }
    assert any(line.strip().startswith("-> run `lokey provision`") for line in out)
    assert out[-1] == "RESULT: FAIL (1 failed)"
    assert render(diagnose(LOCKED)).endswith("RESULT: PASS (all checks passed)")


def test_json_output_parses_with_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bus", LOCKED, "--json", "--samples", "32"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["url"] == LOCKED
    assert (out["result"], out["exit_code"]) == ("pass", 0)
    assert [c["name"] for c in out["checks"]] == list(CHECKS)
    assert all(set(c) == {"name", "status", "summary", "advice", "details"} for c in out["checks"])
    assert out["checks"][5]["details"]["samples"] == 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--samples", "0"], "--samples must be in [1, 1,000,000], got 0"),
        (["--samples", "1000001"], "--samples must be in [1, 1,000,000], got 1000001"),
        (["--samples", "lots"], "--samples must be an integer"),
        (["--colour"], "unrecognized arguments: --colour"),
        (["--bus", "http://chip"], "unknown scheme 'http'"),
        (["--bus", "sim://atecc608a?lock=half"], "unknown lock state 'half'"),
    ],
)
def test_bad_options_cannot_run(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_environment_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], env={"I2C_BUS_NUMBER": "one"}) == 2
    assert "I2C_BUS_NUMBER must be a non-negative integer" in capsys.readouterr().err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--record FILE" in capsys.readouterr().out


def test_an_unwritable_record_file_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--bus", LOCKED, "--record", str(tmp_path / "no" / "such" / "dir.jsonl")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_the_samples_argument_is_checked_in_process(locked: OpenedBus) -> None:
    with pytest.raises(ValueError, match=r"samples must be an integer 1\.\.1000000"):
        diagnose_bus(locked, samples=0)
    with pytest.raises(ValueError, match=r"unknown scheme"):
        diagnose("http://chip")


def test_python_dash_m_lokey_doctor_runs_and_exits_with_the_verdict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lokey.doctor", "--bus", LOCKED, "--samples", "32"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "RESULT: PASS" in done.stdout
    assert doctor.EXIT_FAIL == 1

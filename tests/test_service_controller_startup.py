"""Starting the controller service: settings (spec §6.2), FORCE_CONFIG, ``lokey serve``.

* Settings: the reference's variable names and defaults, LoKey's additions, validation errors
  that name the variable and the rule; the bus URL follows ``bus_url_from_env``.
* FORCE_CONFIG: exactly ``true`` locks an unlocked chip with the factory image's summary CRC
  (0x4353, ``vectors/atecc_config_factory.json``) and logs every step; anything else never
  writes the chip, which then stays unhealthy (the unlocked chip's test pattern is rejected).
* One real process: ``lokey serve controller`` on a free port, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from lokey import cli
from lokey.backends import open_bus, parse_bus_url
from lokey.controller import BorrowedBus
from lokey.hardware.provisioning import RNG_TEMPLATE
from lokey.services import __main__ as services_main
from lokey.services.controller import controller_config, force_config
from lokey.services.settings import (
    CONTROLLER_ENV,
    ControllerSettings,
    SettingsError,
    load_controller_settings,
)
from sim.atecc608a import ATECC608A, ForcedStatus, Opcode
from sim.clock import VirtualClock
from tests.service_helpers import running, serve, service_of, settings, wait_for

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
UNLOCKED_URL = "sim://atecc608a?timing=instant"  # a factory-fresh chip: config zone unlocked


def _factory_summary() -> int:
    vector = json.loads((VECTORS / "atecc_config_factory.json").read_text())
    summary: int = vector["lock_summary_crc"]
    assert f"0x{summary:04X}" == vector["lock_summary_crc_hex"] == "0x4353"
    return summary


def _chip(client: object) -> ATECC608A:
    opened = service_of(client).opened  # type: ignore[arg-type]
    assert opened is not None
    chip = opened.emulator
    assert isinstance(chip, ATECC608A)
    return chip


def _writes_and_locks(chip: ATECC608A) -> list[int]:
    return [r.opcode for r in chip.control.commands() if r.opcode in (Opcode.WRITE, Opcode.LOCK)]


# -- settings --------------------------------------------------------------------------------------


def test_defaults_are_the_references() -> None:
    s = load_controller_settings({})
    assert s.port == 8081
    assert s.bus_url == "sim://atecc608a"  # LoKey: the emulator unless told otherwise
    assert s.recovery_cooldown_s == 30
    assert s.recovery_validation_attempts == 3
    assert s.breaker_cooldown_minutes == 5
    assert s.breaker_open_s == 300
    assert s.log_level == "INFO"
    assert s.provision_at_startup is False
    assert s.fallback is False
    assert s.cors_origin == ""
    assert set(CONTROLLER_ENV) == {
        "PORT",
        "LOKEY_BUS_URL",
        "I2C_BUS_NUMBER",
        "FORCE_CONFIG",
        "CONTROLLER_RECOVERY_COOLDOWN_SECONDS",
        "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS",
        "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES",
        "LOG_LEVEL",
        "LOKEY_CONTROLLER_FALLBACK",
        "LOKEY_CORS_ORIGIN",
    }


def test_settings_map_onto_the_controller_config() -> None:
    config = controller_config(
        load_controller_settings(
            {
                "CONTROLLER_RECOVERY_COOLDOWN_SECONDS": "12",
                "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS": "7",
                "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "0.5",
                "LOKEY_CONTROLLER_FALLBACK": "true",
            }
        )
    )
    assert config.cooldown_s == 12
    assert config.validation_samples == 7
    assert config.validation_count == 3  # spec §6.2: effectively capped at 3
    assert config.breaker_open_s == 30
    assert config.fallback is True


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"I2C_BUS_NUMBER": "3"}, "/dev/i2c-3"),
        ({"LOKEY_BUS_URL": "sim://atecc608a?timing=instant", "I2C_BUS_NUMBER": "1"}, None),
        ({"LOKEY_BUS_URL": "   ", "I2C_BUS_NUMBER": "0"}, "/dev/i2c-0"),  # blank = unset
    ],
)
def test_the_bus_url_follows_bus_url_from_env(env: dict[str, str], url: str | None) -> None:
    assert load_controller_settings(env).bus_url == (url or env["LOKEY_BUS_URL"])


def test_parse_bus_url_says_what_a_url_selects_without_opening_it() -> None:
    sim = parse_bus_url("spy+sim://atecc608a?timing=instant&clock=virtual")
    assert (sim.kind, sim.spy, dict(sim.options)) == (
        "emulator",
        True,
        {"timing": "instant", "clock": "virtual"},
    )
    dev = parse_bus_url("/dev/i2c-1")
    assert (dev.kind, dev.spy, dict(dev.options)) == ("i2c-dev", False, {})
    with pytest.raises(ValueError, match="unknown scheme 'tcp'"):
        parse_bus_url("tcp://chip")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "0"}, "PORT must be >= 1 (got '0')"),
        ({"PORT": "http"}, "PORT input should be a valid integer"),
        ({"PORT": "70000"}, "PORT must be <= 65535"),
        (
            {"CONTROLLER_RECOVERY_COOLDOWN_SECONDS": "0"},
            "CONTROLLER_RECOVERY_COOLDOWN_SECONDS must be > 0",
        ),
        (
            {"CONTROLLER_RECOVERY_COOLDOWN_SECONDS": "inf"},
            "CONTROLLER_RECOVERY_COOLDOWN_SECONDS input should be a finite number",
        ),
        (
            {"CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS": "0"},
            "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS must be > 0",
        ),
        (
            {"CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS": "2.5"},
            "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS input should be a valid integer",
        ),
        (
            {"CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "-5"},
            "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES must be > 0",
        ),
        (
            {"CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "1e300"},
            "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES must be <= 1440",
        ),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of DEBUG, INFO, WARN, WARNING, ERROR"),
        ({"I2C_BUS_NUMBER": "one"}, "I2C_BUS_NUMBER must be a non-negative integer"),
        ({"LOKEY_BUS_URL": "sim://atecc508a"}, "LOKEY_BUS_URL: cannot open bus"),
        ({"LOKEY_BUS_URL": "sim://atecc608a?clock=virtual"}, "asks for clock=virtual"),
        ({"LOKEY_CONTROLLER_FALLBACK": "perhaps"}, "LOKEY_CONTROLLER_FALLBACK input should"),
        ({"LOKEY_CORS_ORIGIN": "a, b"}, "LOKEY_CORS_ORIGIN must be one origin"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable_and_the_rule(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_controller_settings(env)
    assert str(info.value).startswith("invalid settings: ")
    assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_controller_settings({"PORT": "0", "LOG_LEVEL": "loud"})
    assert "PORT" in str(info.value)
    assert "LOG_LEVEL" in str(info.value)


@pytest.mark.parametrize(("raw", "level"), [("warn", "WARNING"), (" Debug ", "DEBUG")])
def test_log_levels_take_the_references_spelling(raw: str, level: str) -> None:
    s = load_controller_settings({"LOG_LEVEL": raw})
    assert s.log_level == level
    assert s.log_level_number == getattr(logging, level)


@pytest.mark.parametrize(("raw", "on"), [("true", True), ("TRUE", False), ("1", False)])
def test_force_config_is_on_only_for_exactly_true(raw: str, on: bool) -> None:
    assert load_controller_settings({"FORCE_CONFIG": raw}).provision_at_startup is on


def test_loading_from_a_mapping_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.setenv("CONTROLLER_RECOVERY_COOLDOWN_SECONDS", "0")
    assert load_controller_settings({}).port == 8081
    monkeypatch.delenv("CONTROLLER_RECOVERY_COOLDOWN_SECONDS")
    assert ControllerSettings().port == 9999  # the direct form reads the environment


def test_serve_refuses_bad_settings_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONTROLLER_RECOVERY_COOLDOWN_SECONDS", "-1")
    assert services_main.main(["controller"]) == services_main.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("lokey serve controller: invalid settings: ")
    assert "CONTROLLER_RECOVERY_COOLDOWN_SECONDS must be > 0" in err


def test_lokey_serve_execs_the_service_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lokey.cli`` never imports ``lokey.services`` (import contract): it execs it."""
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, argv))
        raise OSError(8, "Exec format error")  # execv never returns; failing is the other way

    monkeypatch.setattr(os, "execv", fake_execv)
    assert cli.main(["serve", "controller", "--host", "0.0.0.0", "--port", "9001"]) == 2
    assert cli.main(["serve", "controller"]) == 2
    module = [sys.executable, "-m", "lokey.services", "controller"]
    assert calls == [
        (sys.executable, [*module, "--host", "0.0.0.0", "--port", "9001"]),
        (sys.executable, [*module, "--host", "127.0.0.1"]),
    ]


def test_serve_checks_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "controller", "--port", "0"])
    assert info.value.code == 2
    assert "--port must be in [1, 65,535]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        services_main.main(["controller", "--port", "http"])
    assert info.value.code == 2
    assert "--port must be an integer, got 'http'" in capsys.readouterr().err


# -- FORCE_CONFIG ----------------------------------------------------------------------------------


def test_force_config_true_locks_an_unlocked_chip_with_the_factory_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.INFO),
        running(settings(UNLOCKED_URL, FORCE_CONFIG="true")) as client,
    ):
        chip = _chip(client)
        assert chip.control.state().config_locked
        locks = [r for r in chip.control.commands() if r.opcode == Opcode.LOCK]
        assert [(r.param1, r.param2, r.status) for r in locks] == [(0x00, _factory_summary(), 0)]
        assert _writes_and_locks(chip) == [Opcode.LOCK]  # factory image: nothing to write
        info = client.get("/info").json()
        assert info["provisioning"] == {
            "result": "locked",
            "writes": 0,
            "summary_crc": "0x4353",
            "error": None,
        }
        assert info["device"]["config_locked"] is True
        assert client.get("/generate").status_code == 200
    audit = [r for r in caplog.records if r.name == "lokey.provisioning"]
    assert all(r.levelno == logging.WARNING for r in audit)  # kept at LOG_LEVEL=WARN too
    messages = [r.getMessage() for r in audit]
    assert any(
        "0 config word(s) to write, then lock with summary CRC 0x4353" in m for m in messages
    )
    assert any("locking the config zone (mode 0x00, summary CRC 0x4353)" in m for m in messages)
    assert any("config zone locked with summary CRC 0x4353" in m for m in messages)


def test_force_config_logs_every_write(caplog: pytest.LogCaptureFixture) -> None:
    opened = open_bus(UNLOCKED_URL, clock=VirtualClock())
    chip = opened.emulator
    assert isinstance(chip, ATECC608A)
    chip.control.write_config(16, bytes.fromhex("c0005500"))  # CountMatch changed (word 0x04)
    chip.control.write_config(80, bytes.fromhex("ffffffff"))  # reserved bytes (word 0x14)
    with caplog.at_level(logging.WARNING, logger="lokey.provisioning"):
        outcome = force_config(lambda: BorrowedBus(opened.bus), opened.clock)
    assert outcome.result == "locked"
    assert outcome.writes == 2
    assert chip.control.config[16:84] == RNG_TEMPLATE[16:84]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("FORCE_CONFIG: writing config word 0x04 (bytes 16-19" in m for m in messages) == 1
    assert sum("FORCE_CONFIG: writing config word 0x14 (bytes 80-83" in m for m in messages) == 1
    assert sum(re.search(r"config word 0x(04|14) written", m) is not None for m in messages) == 2
    assert any(f"summary CRC 0x{outcome.summary_crc:04X}" in m for m in messages)


def test_a_refused_lock_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    opened = open_bus(UNLOCKED_URL, clock=VirtualClock())
    chip = opened.emulator
    assert isinstance(chip, ATECC608A)
    chip.control.inject(ForcedStatus(opcode=Opcode.LOCK, status=0x0F))
    with caplog.at_level(logging.ERROR, logger="lokey.provisioning"):
        outcome = force_config(lambda: BorrowedBus(opened.bus), opened.clock)
    assert outcome.result == "failed"
    assert outcome.error is not None
    assert "ExecutionError" in outcome.error or "0x0F" in outcome.error
    assert not chip.control.state().config_locked
    assert "the chip is NOT locked" in caplog.text


def test_force_config_on_a_locked_chip_writes_nothing() -> None:
    with running(settings(FORCE_CONFIG="true")) as client:  # config-locked emulator
        assert _writes_and_locks(_chip(client)) == []
        assert client.get("/info").json()["provisioning"]["result"] == "already_locked"


@pytest.mark.parametrize("raw", [None, "false", "TRUE", "yes"])
def test_without_force_config_an_unlocked_chip_is_never_written_and_never_served(
    raw: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    env = {} if raw is None else {"FORCE_CONFIG": raw}
    with caplog.at_level(logging.INFO), running(settings(UNLOCKED_URL, **env), healthy=False) as c:
        wait_for(lambda: c.get("/info").json()["counters"]["rejected"]["test_pattern"] > 0, "a try")
        health = c.get("/health")
        assert health.status_code == 503
        assert health.json()["details"]["device"] is False
        assert "test_pattern" in health.json()["details"]["reason"]
        generate = c.get("/generate")
        assert generate.status_code == 503
        assert generate.json()["error"] == "Failed to generate random data"
        assert int(generate.headers["retry-after"]) >= 1
        info = c.get("/info").json()
        assert info["provisioning"] is None
        assert info["device"]["config_locked"] is False
        assert info["counters"]["served"]["trng"] == 0
        chip = _chip(c)
    assert _writes_and_locks(chip) == []
    assert not chip.control.state().config_locked
    assert "config zone is unlocked, so the service stays unhealthy" in caplog.text
    if raw in ("TRUE", "yes"):
        assert f"FORCE_CONFIG={raw!r} is not exactly 'true'" in caplog.text


def test_a_missing_i2c_node_starts_unhealthy_and_says_why() -> None:
    with running(settings("/dev/i2c-99"), healthy=False) as client:
        assert client.get("/info").json()["bus"]["kind"] == "i2c-dev"

        def reason() -> str:
            body = client.get("/health").json()
            return str(body.get("details", {}).get("reason"))

        wait_for(lambda: "cannot open I2C bus /dev/i2c-99" in reason(), "the open failure")
        assert client.get("/generate").status_code == 503
        assert client.get("/sim/faults").status_code == 404


def test_fallback_samples_are_labelled_and_health_still_tells_the_truth() -> None:
    the_settings = settings(UNLOCKED_URL, LOKEY_CONTROLLER_FALLBACK="true")
    with running(the_settings, healthy=False) as client:
        body = client.get("/generate?count=2").json()
        assert body["source"] == "fallback"
        assert all(re.fullmatch(r"[0-9a-f]{64}", sample) for sample in body["data"])
        assert client.get("/health").status_code == 503
        assert client.get("/info").json()["counters"]["served"] == {"trng": 0, "fallback": 2}
        assert 'lokey_controller_samples_served_total{source="fallback"} 2.0' in (
            client.get("/metrics").text
        )


# -- one real process ------------------------------------------------------------------------------


def test_lokey_serve_controller_runs_serves_and_stops_cleanly(tmp_path: Path) -> None:
    with serve(
        "controller",
        tmp_path,
        settings_names=CONTROLLER_ENV,
        until_status=200,
        LOKEY_BUS_URL="sim://atecc608a?lock=config-locked&timing=instant",
    ) as served:
        base = served.base
        data = httpx.get(f"{base}/generate?count=3", timeout=5.0).json()["data"]
        assert len(data) == 3
        assert all(re.fullmatch(r"[0-9a-f]{64}", sample) for sample in data)
        assert httpx.get(f"{base}/generate?count=0", timeout=5.0).status_code == 400
        assert served.stop() == 0
    output = served.output()
    assert "Traceback" not in output
    assert "GET /generate?count=0 400" in output  # LOG_LEVEL=WARN: non-200 responses only
    assert "GET /health 200" not in output
    assert "GET /generate?count=3 200" not in output

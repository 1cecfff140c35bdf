"""Starting the Fortuna service: settings (spec §6.3), the seed file (fortuna.md §4), the CLI.

* Settings: the reference's variable names and defaults, LoKey's additions, validation errors
  that name the variable and the rule.
* Seed file: absent on first boot (the service starts unseeded, the direct start-up seed writes
  it), loaded on the next start (seeded before any request, and later seeds go to the pools),
  rewritten periodically and on shutdown, refused when insecure, and exclusive to one service.
* One real process: ``lokey serve fortuna`` on a free port, seeded over HTTP, stopped with
  SIGTERM.
"""

from __future__ import annotations

import os
import random
import re
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from lokey import cli
from lokey.errors import SeedFileError
from lokey.services import __main__ as services_main
from lokey.services.fortuna import FortunaService, create_fortuna_app
from lokey.services.settings import (
    FORTUNA_ENV,
    FortunaSettings,
    SettingsError,
    load_fortuna_settings,
)
from sim.clock import VirtualClock
from tests.service_helpers import TestClient, serve, wait_for

ROOT = Path(__file__).resolve().parents[1]
_RNG = random.Random(8082)


def _seeds(count: int = 2) -> list[str]:
    return [_RNG.randbytes(32).hex() for _ in range(count)]


@contextmanager
def running(
    env: dict[str, str], *, rewrite_s: float = 600.0
) -> Iterator[tuple[TestClient, FortunaService]]:
    app = create_fortuna_app(
        load_fortuna_settings(env), clock=VirtualClock(), rewrite_seed_file_s=rewrite_s
    )
    with TestClient(app) as client:
        service = client.app.state.lokey  # type: ignore[attr-defined]
        assert isinstance(service, FortunaService)
        yield client, service


# -- settings --------------------------------------------------------------------------------------


def test_defaults_are_the_references() -> None:
    s = load_fortuna_settings({})
    assert s.port == 8082
    assert s.amplification_factor == 4
    assert s.max_reseed_interval_hours == 1
    assert s.max_reseed_interval_s == 3600
    assert s.log_level == "INFO"
    assert s.seed_file is None
    assert s.cors_origin == ""
    assert set(FORTUNA_ENV) == {
        "PORT",
        "AMPLIFICATION_FACTOR",
        "FORTUNA_MAX_RESEED_INTERVAL_HOURS",
        "LOG_LEVEL",
        "LOKEY_FORTUNA_SEED_FILE",
        "LOKEY_CORS_ORIGIN",
    }


def test_values_are_read(tmp_path: Path) -> None:
    s = load_fortuna_settings(
        {
            "PORT": "9082",
            "AMPLIFICATION_FACTOR": "8",
            "FORTUNA_MAX_RESEED_INTERVAL_HOURS": "0.25",
            "LOG_LEVEL": "warn",
            "LOKEY_FORTUNA_SEED_FILE": str(tmp_path / "fortuna.seed"),
            "CONTROLLER_URL": "http://controller:8081",  # set by the reference image, unused
        }
    )
    assert (s.port, s.amplification_factor, s.max_reseed_interval_s) == (9082, 8, 900)
    assert s.log_level == "WARNING"
    assert s.seed_file == tmp_path / "fortuna.seed"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "0"}, "PORT must be >= 1 (got '0')"),
        ({"PORT": "http"}, "PORT input should be a valid integer"),
        ({"AMPLIFICATION_FACTOR": "0"}, "AMPLIFICATION_FACTOR must be > 0"),
        ({"AMPLIFICATION_FACTOR": "two"}, "AMPLIFICATION_FACTOR input should be a valid integer"),
        (
            {"FORTUNA_MAX_RESEED_INTERVAL_HOURS": "0"},
            "FORTUNA_MAX_RESEED_INTERVAL_HOURS must be > 0",
        ),
        (
            {"FORTUNA_MAX_RESEED_INTERVAL_HOURS": "-1"},
            "FORTUNA_MAX_RESEED_INTERVAL_HOURS must be > 0",
        ),
        (
            {"FORTUNA_MAX_RESEED_INTERVAL_HOURS": "nan"},
            "FORTUNA_MAX_RESEED_INTERVAL_HOURS input should be a finite number",
        ),
        (
            {"FORTUNA_MAX_RESEED_INTERVAL_HOURS": "1e300"},
            "FORTUNA_MAX_RESEED_INTERVAL_HOURS must be <= 8760",
        ),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of DEBUG, INFO, WARN, WARNING, ERROR"),
        ({"LOKEY_FORTUNA_SEED_FILE": "/nonexistent/dir/fortuna.seed"}, "not an existing directory"),
        ({"LOKEY_FORTUNA_SEED_FILE": "/"}, "LOKEY_FORTUNA_SEED_FILE is a directory"),
        ({"LOKEY_CORS_ORIGIN": "a, b"}, "LOKEY_CORS_ORIGIN must be one origin"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable_and_the_rule(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_fortuna_settings(env)
    assert str(info.value).startswith("invalid settings: ")
    assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_fortuna_settings({"PORT": "0", "FORTUNA_MAX_RESEED_INTERVAL_HOURS": "0"})
    assert "PORT" in str(info.value)
    assert "FORTUNA_MAX_RESEED_INTERVAL_HOURS" in str(info.value)


def test_blank_values_are_unset_and_the_mapping_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "9999")
    monkeypatch.setenv("FORTUNA_MAX_RESEED_INTERVAL_HOURS", "0")
    s = load_fortuna_settings({"LOKEY_FORTUNA_SEED_FILE": "  ", "AMPLIFICATION_FACTOR": ""})
    assert (s.port, s.seed_file, s.amplification_factor) == (8082, None, 4)
    monkeypatch.delenv("FORTUNA_MAX_RESEED_INTERVAL_HOURS")
    assert FortunaSettings().port == 9999  # the direct form reads the environment


# -- the seed file ---------------------------------------------------------------------------------


def test_first_boot_writes_the_seed_file_and_the_next_start_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "fortuna.seed"
    env = {"LOKEY_FORTUNA_SEED_FILE": str(path)}
    with running(env) as (client, _):
        info = client.get("/info").json()
        assert info["seeded"] is False
        assert info["seed_file"]["status"] == "absent"
        assert client.get("/generate").status_code == 503
        body = client.post("/seed", json={"seeds": _seeds(2)}).json()
        assert (body["status"], body["events"]) == ("reseeded", 0)  # the direct start-up seed
        first = path.read_bytes()
        assert len(first) == 64
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() != first  # rewritten at shutdown
    with running(env) as (client, service):
        info = client.get("/info").json()
        assert info["seeded"] is True  # before any request
        assert info["seed_file"]["status"] == "loaded"
        assert info["last_reseeded"] is not None
        assert client.get("/health").status_code == 200
        assert client.get("/generate").status_code == 200
        body = client.post("/seed", json={"seeds": _seeds(2)}).json()
        assert (body["status"], body["events"]) == ("accepted", 2)  # now only pool events
        assert service.direct_reseeds == 0


def test_the_seed_file_is_rewritten_while_running(tmp_path: Path) -> None:
    path = tmp_path / "fortuna.seed"
    with running({"LOKEY_FORTUNA_SEED_FILE": str(path)}, rewrite_s=0.02) as (client, _):
        time.sleep(0.1)  # unseeded: nothing to write, and no error either
        assert not path.exists()
        client.post("/seed", json={"seeds": _seeds(2)})
        first = path.read_bytes()
        wait_for(lambda: path.read_bytes() != first, "a periodic rewrite", timeout_s=10)


def test_an_insecure_seed_file_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "fortuna.seed"
    path.write_bytes(_RNG.randbytes(64))
    path.chmod(0o644)
    with running({"LOKEY_FORTUNA_SEED_FILE": str(path)}) as (client, _):
        info = client.get("/info").json()
        assert info["seeded"] is False
        assert info["seed_file"]["status"] == "rejected"
        assert "group or others" in info["seed_file"]["message"]
        assert client.get("/generate").status_code == 503


def test_two_services_cannot_share_a_seed_file(tmp_path: Path) -> None:
    env = {"LOKEY_FORTUNA_SEED_FILE": str(tmp_path / "fortuna.seed")}
    with running(env) as (first, _):
        with pytest.raises(SeedFileError, match="in use by another Fortuna"), running(env):
            pass
        assert first.get("/info").status_code == 200  # the first service is unaffected


# -- lokey serve fortuna ---------------------------------------------------------------------------


def test_serve_refuses_bad_settings_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FORTUNA_MAX_RESEED_INTERVAL_HOURS", "-1")
    assert services_main.main(["fortuna"]) == services_main.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("lokey serve fortuna: invalid settings: ")
    assert "FORTUNA_MAX_RESEED_INTERVAL_HOURS must be > 0" in err


def test_lokey_serve_fortuna_execs_the_service_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, argv))
        raise OSError(8, "Exec format error")

    monkeypatch.setattr(os, "execv", fake_execv)
    assert cli.main(["serve", "fortuna", "--host", "0.0.0.0", "--port", "9002"]) == 2
    assert cli.main(["serve", "fortuna"]) == 2
    module = [sys.executable, "-m", "lokey.services", "fortuna"]
    assert calls == [
        (sys.executable, [*module, "--host", "0.0.0.0", "--port", "9002"]),
        (sys.executable, [*module, "--host", "127.0.0.1"]),
    ]


def test_serve_fortuna_checks_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "fortuna", "--port", "70000"])
    assert info.value.code == 2
    assert "--port must be in [1, 65,535]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        services_main.main(["fortuna", "--port", "http"])
    assert info.value.code == 2
    assert "--port must be an integer, got 'http'" in capsys.readouterr().err


def test_lokey_serve_fortuna_runs_is_seeded_serves_and_stops_cleanly(tmp_path: Path) -> None:
    seed_file = tmp_path / "fortuna.seed"
    with serve(
        "fortuna",
        tmp_path,
        settings_names=FORTUNA_ENV,
        LOKEY_FORTUNA_SEED_FILE=str(seed_file),
    ) as served:
        base = served.base
        assert served.health.status_code == 503  # unseeded until the first POST /seed
        assert httpx.get(f"{base}/generate", timeout=5.0).status_code == 503
        seeded = httpx.post(f"{base}/seed", json={"seeds": _seeds(2)}, timeout=5.0)
        assert seeded.json()["status"] == "reseeded"
        data = httpx.get(f"{base}/generate?size=64", timeout=5.0).json()["data"]
        assert re.fullmatch(r"[0-9a-f]{128}", data)
        raw = httpx.get(f"{base}/generate?size=1048576&format=binary", timeout=10.0)
        assert len(raw.content) == 1 << 20
        assert httpx.get(f"{base}/health", timeout=5.0).status_code == 200
        assert httpx.get(f"{base}/generate?size=0", timeout=5.0).status_code == 400
        written = seed_file.read_bytes()
        assert served.stop() == 0
    output = served.output()
    assert "Traceback" not in output
    assert "GET /generate?size=0 400" in output  # LOG_LEVEL=WARN: non-200 responses only
    assert "GET /generate?size=64 200" not in output
    assert seed_file.read_bytes() != written  # rewritten on the clean stop

"""Starting the VirtIO service: settings (spec §6.4), the CLI, one real process.

The real process runs ``lokey serve virtio`` on a free port with its FIFO in ``tmp_path``; it is
seeded over HTTP, serves ``/generate`` and a bounded ``/stream`` (chunked), keeps an unbounded
stream open and still stops cleanly on SIGTERM (the open stream ends, exit status 0).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench import bench_virtio_stream
from lokey import cli
from lokey.services import __main__ as services_main
from lokey.services.settings import (
    VIRTIO_ENV,
    SettingsError,
    VirtioSettings,
    load_virtio_settings,
)
from tests.service_helpers import free_port, serve

ROOT = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    s = load_virtio_settings({})
    assert s.port == 8083
    assert s.queue_size == 15_000
    assert s.pipe_path == Path("/var/run/lokey/virtio-rng")
    assert s.pipe_enabled
    assert s.pipe_mode == 0o660
    assert s.pipe_size == 4096
    assert s.log_level == "INFO"
    assert s.cors_origin == ""
    assert set(VIRTIO_ENV) == {
        "PORT",
        "VIRTIO_QUEUE_SIZE",
        "VIRTIO_PIPE_PATH",
        "LOKEY_VIRTIO_PIPE_MODE",
        "LOKEY_VIRTIO_PIPE_SIZE",
        "LOG_LEVEL",
        "LOKEY_CORS_ORIGIN",
    }


def test_blank_pipe_path_disables_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_virtio_settings({"VIRTIO_PIPE_PATH": "  "}).pipe_path is None
    assert load_virtio_settings({"VIRTIO_PIPE_PATH": "/tmp/x"}).pipe_path == Path("/tmp/x")
    for name in VIRTIO_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIRTIO_PIPE_PATH", "")
    assert VirtioSettings().pipe_path is None
    monkeypatch.delenv("VIRTIO_PIPE_PATH")
    assert VirtioSettings().pipe_path == Path("/var/run/lokey/virtio-rng")


@pytest.mark.parametrize(
    ("env", "parsed"),
    [
        ({"LOKEY_VIRTIO_PIPE_MODE": "0640"}, ("pipe_mode", 0o640)),
        ({"LOKEY_VIRTIO_PIPE_MODE": "600"}, ("pipe_mode", 0o600)),
        ({"LOKEY_VIRTIO_PIPE_MODE": "0o666"}, ("pipe_mode", 0o666)),
        ({"VIRTIO_QUEUE_SIZE": "10"}, ("queue_size", 10)),
        ({"VIRTIO_QUEUE_SIZE": "1000000"}, ("queue_size", 1_000_000)),
        ({"LOKEY_VIRTIO_PIPE_SIZE": "65536"}, ("pipe_size", 65536)),
        ({"LOG_LEVEL": "warn"}, ("log_level", "WARNING")),
    ],
)
def test_accepted_values(env: dict[str, str], parsed: tuple[str, object]) -> None:
    name, value = parsed
    assert getattr(load_virtio_settings(env), name) == value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIRTIO_QUEUE_SIZE": "9"}, "VIRTIO_QUEUE_SIZE must be >= 10 (got '9')"),
        ({"VIRTIO_QUEUE_SIZE": "1000001"}, "VIRTIO_QUEUE_SIZE must be <= 1000000"),
        ({"LOKEY_VIRTIO_PIPE_MODE": "0689"}, "LOKEY_VIRTIO_PIPE_MODE must be octal"),
        ({"LOKEY_VIRTIO_PIPE_MODE": "01777"}, "LOKEY_VIRTIO_PIPE_MODE must be octal"),
        ({"LOKEY_VIRTIO_PIPE_SIZE": "100"}, "LOKEY_VIRTIO_PIPE_SIZE must be >= 4096"),
        ({"VIRTIO_PIPE_PATH": "/tmp/a\nb"}, "VIRTIO_PIPE_PATH must be a file path"),
        ({"PORT": "0"}, "PORT must be >= 1"),
    ],
)
def test_refused_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_virtio_settings(env)


def test_a_non_fifo_at_the_pipe_path_stops_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "not-a-fifo"
    plain.write_bytes(b"")
    monkeypatch.setenv("VIRTIO_PIPE_PATH", str(plain))
    monkeypatch.setenv("PORT", str(free_port()))
    assert services_main.main(["virtio"]) == 2


def test_lokey_serve_virtio_execs_the_service_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, argv))
        raise OSError(8, "Exec format error")

    monkeypatch.setattr(os, "execv", fake_execv)
    assert cli.main(["serve", "virtio", "--port", "9003"]) == 2
    assert calls == [
        (
            sys.executable,
            [
                sys.executable,
                "-m",
                "lokey.services",
                "virtio",
                "--host",
                "127.0.0.1",
                "--port",
                "9003",
            ],
        )
    ]


def test_bad_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIRTIO_QUEUE_SIZE", "5")
    assert services_main.main(["virtio"]) == 2
    assert "lokey serve virtio: invalid settings: VIRTIO_QUEUE_SIZE" in capsys.readouterr().err


def test_lokey_serve_virtio_runs_serves_and_stops_cleanly(tmp_path: Path) -> None:
    fifo = tmp_path / "run" / "virtio-rng"
    with serve("virtio", tmp_path, settings_names=VIRTIO_ENV, VIRTIO_PIPE_PATH=str(fifo)) as served:
        base = served.base
        assert served.health.status_code == 200
        assert fifo.is_fifo()
        assert httpx.get(f"{base}/info", timeout=5).json()["pipe"]["state"] == "running"
        assert httpx.get(f"{base}/generate", timeout=5.0).status_code == 503  # empty
        data = os.urandom(65536)
        seeded = httpx.post(f"{base}/seed", json={"seeds": [data.hex()]}, timeout=5.0)
        assert seeded.json()["count"] == 1
        # no reader is attached to the FIFO, so its writer moves at most one pipe buffer
        # (4096 bytes) out of the ring; the rest is for HTTP, each byte once
        got = httpx.get(f"{base}/generate?count=2", timeout=5.0)
        assert got.status_code == 200
        values = bytes.fromhex("".join(got.json()["data"]))
        assert len(values) == 64
        assert values in data
        with httpx.stream("GET", f"{base}/stream?chunk_size=300&max_bytes=1000", timeout=5.0) as r:
            assert r.headers["transfer-encoding"] == "chunked"
            assert r.headers["content-type"] == "application/octet-stream"
            body = r.read()
        assert len(body) == 1000
        assert body in data
        assert data.index(body) >= data.index(values) + 64
        assert httpx.get(f"{base}/stream?chunk_size=0", timeout=5.0).status_code == 400
        # an unbounded stream held open must not block the shutdown
        opened = threading.Event()

        def hold_stream() -> None:
            with httpx.stream("GET", f"{base}/stream", timeout=30.0) as response:
                opened.set()
                for _ in response.iter_raw():
                    pass

        holder = threading.Thread(target=hold_stream, daemon=True)
        holder.start()
        assert opened.wait(10)
        time.sleep(0.2)
        assert served.stop() == 0
        holder.join(5)
        assert not holder.is_alive()
    output = served.output()
    assert "Traceback" not in output
    assert "GET /stream?chunk_size=0 400" in output
    assert "GET /generate?count=2 200" not in output  # LOG_LEVEL=WARN: non-200 only


def test_virtio_stream_bench_runs_and_prints_its_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_virtio_stream.main(requests=1, total=1 << 20)
    out = capsys.readouterr().out
    for line in ("/stream (ring)", "static stream", "ratio to static"):
        assert line in out

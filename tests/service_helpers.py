"""Helpers for the controller service tests: settings, a running app, bounded waits.

The app runs in Starlette's ``TestClient`` (which runs the lifespan, so the bus, the controller
and its worker are really opened and closed). With the wall clock and ``timing=instant`` the
start-up validation takes a few tens of milliseconds: tests poll with :func:`wait_for`, which
gives up after a bounded time instead of sleeping a fixed amount.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lokey.clock import Clock
from lokey.services.controller import ControllerService, create_controller_app
from lokey.services.settings import ControllerSettings, load_controller_settings

with warnings.catch_warnings():
    # Starlette announces a future move of its test client to another HTTP library; the
    # client itself works as documented.
    warnings.filterwarnings("ignore", message=r".*starlette\.testclient.*")
    from fastapi.testclient import TestClient

__all__ = [
    "FAST_RECOVERY",
    "LOCKED_URL",
    "Served",
    "TestClient",
    "free_port",
    "running",
    "serve",
    "service_of",
    "settings",
    "wait_for",
    "wait_healthy",
]

LOCKED_URL = "sim://atecc608a?lock=config-locked&timing=instant"
#: Recovery in well under a second on the wall clock: one validation sample, a 50 ms cooldown,
#: and a breaker that, should a slow machine let it open, stays open for 0.3 s, not 5 min.
FAST_RECOVERY = {
    "CONTROLLER_RECOVERY_COOLDOWN_SECONDS": "0.05",
    "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS": "1",
    "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "0.005",
}


def settings(url: str = LOCKED_URL, **env: str) -> ControllerSettings:
    return load_controller_settings({"LOKEY_BUS_URL": url, **env})


def wait_for(
    predicate: Callable[[], bool], what: str, timeout_s: float = 10.0, interval_s: float = 0.01
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def wait_healthy(client: TestClient, timeout_s: float = 10.0) -> None:
    wait_for(lambda: client.get("/health").status_code == 200, "/health 200", timeout_s)


@contextmanager
def running(
    the_settings: ControllerSettings | None = None,
    *,
    clock: Clock | None = None,
    start_runner: bool = True,
    healthy: bool = True,
) -> Iterator[TestClient]:
    """A started app (lifespan entered); waits for /health 200 unless ``healthy`` is False."""
    app = create_controller_app(the_settings or settings(), clock=clock, start_runner=start_runner)
    with TestClient(app) as client:
        if healthy:
            wait_healthy(client)
        yield client


def service_of(client: TestClient) -> ControllerService:
    service: Any = client.app.state.lokey  # type: ignore[attr-defined]
    assert isinstance(service, ControllerService)
    return service


ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    """A ``lokey serve SERVICE`` child process and where it listens."""

    process: subprocess.Popen[bytes]
    base: str
    log_path: Path
    health: httpx.Response  # the first /health answer (with the awaited status, if any)

    def stop(self) -> int:
        """SIGTERM, as systemd or docker would; the exit status (0 on a clean stop)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def output(self) -> str:
        return self.log_path.read_text()


@contextmanager
def serve(
    service: str,
    tmp_path: Path,
    *,
    settings_names: Iterable[str],
    until_status: int | None = None,
    **env: str,
) -> Iterator[Served]:
    """Run ``lokey serve SERVICE`` as a real process on a free port until /health answers.

    The service's own variables are removed from the inherited environment first, so only
    ``env`` (plus ``LOG_LEVEL=WARN``) configures it; the child is killed if a test fails.
    """
    port = free_port()
    names = set(settings_names)
    child_env = {k: v for k, v in os.environ.items() if k not in names}
    child_env.update(LOG_LEVEL="WARN", PYTHONUNBUFFERED="1", **env)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "lokey.cli", "serve", service, "--port", str(port)],
            cwd=ROOT,
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    health = httpx.get(f"{base}/health", timeout=1.0)
                    if until_status is None or health.status_code == until_status:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{service}: no /health answer within 20 s"
                time.sleep(0.05)
            yield Served(process, base, log_path, health)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

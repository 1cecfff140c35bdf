"""Helpers for the controller service tests: settings, a running app, bounded waits.

The app runs in Starlette's ``TestClient`` (which runs the lifespan, so the bus, the controller
and its worker are really opened and closed). With the wall clock and ``timing=instant`` the
start-up validation takes a few tens of milliseconds: tests poll with :func:`wait_for`, which
gives up after a bounded time instead of sleeping a fixed amount.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
    "TestClient",
    "running",
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

"""A running LoKey controller for the stack suites, and small typed clients for it.

``--stack URL`` names a running controller (``http://127.0.0.1:8081``); without it the suites
start their own with :class:`LocalController`: ``python -m lokey.services controller`` as a real
process on the emulator (``LOCAL_BUS_URL``) with fast recovery (``FAST_RECOVERY``), so a fault
campaign measures seconds, not the five minutes a default circuit breaker stays open.

:class:`StackClient` speaks the controller's ``/health``, ``/info`` and ``/generate``;
:class:`ChaosClient` its chaos API under ``/sim`` (emulator only, see
``lokey.services.chaos``). Both are thin: they return what the service answered and raise
:class:`StackError` only when the answer is not what the API promises.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import httpx

__all__ = [
    "FAST_RECOVERY",
    "LOCAL_BUS_URL",
    "ChaosClient",
    "LocalController",
    "StackClient",
    "StackError",
    "check_stack_url",
]

#: The emulated chip our own controller runs on: provisioned (config locked), no waits.
LOCAL_BUS_URL: Final = "sim://atecc608a?lock=config-locked&timing=instant"
#: Recovery in well under a second: one validation sample, a 50 ms cooldown, and a breaker that
#: stays open 0.3 s instead of 5 min.
FAST_RECOVERY: Final[Mapping[str, str]] = {
    "CONTROLLER_RECOVERY_COOLDOWN_SECONDS": "0.05",
    "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS": "1",
    "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "0.005",
}
#: Variables of an inherited environment that would configure our controller behind our back.
_CONTROLLER_VARIABLES: Final = ("LOKEY_", "CONTROLLER_", "I2C_BUS_NUMBER", "FORCE_CONFIG", "PORT")
START_TIMEOUT_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 15.0


class StackError(RuntimeError):
    """The stack did not answer as the API promises (or could not be started)."""


def check_stack_url(url: str) -> str:
    """``http(s)://host[:port]`` without a path; the URL without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http://host:port of a LoKey controller, got {url!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"give the controller's base URL without a path, got {url!r}")
    return url.rstrip("/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalController:
    """``python -m lokey.services controller`` as a child process, on the emulator."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        bus_url: str = LOCAL_BUS_URL,
        env: Mapping[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> LocalController:
        """Start it on a free port and wait until ``/health`` answers 200.

        Variables that configure a controller are dropped from the inherited environment, so
        only ``LOKEY_BUS_URL``, :data:`FAST_RECOVERY` and ``env`` do. Raises
        :class:`StackError` with the process's output if it exits or stays unhealthy.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(_CONTROLLER_VARIABLES)}
        child_env.update(
            LOKEY_BUS_URL=bus_url, LOG_LEVEL="WARN", PYTHONUNBUFFERED="1", **FAST_RECOVERY
        )
        child_env.update(env or {})
        last: StackError | None = None
        for _ in range(3):  # a free port can be taken between probing and binding it
            port = _free_port()
            log_path = workdir / f"controller-{port}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "lokey.services", "controller", "--port", str(port)],
                    cwd=workdir,
                    env=child_env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            controller = cls(process, f"http://127.0.0.1:{port}", log_path)
            try:
                controller._wait_healthy(timeout_s)
            except StackError as error:
                controller.stop()
                last = error
                continue
            return controller
        assert last is not None
        raise last

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise StackError(
                        f"the controller exited with status {self.process.returncode}:\n"
                        + self.output()
                    )
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise StackError(
                        f"the controller was not healthy within {timeout_s:g} s:\n" + self.output()
                    )
                time.sleep(0.02)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, as a supervisor would; killed after 10 s. The exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        shown = response.text[:200]
        raise StackError(f"{what}: HTTP {response.status_code}, not JSON: {shown!r}") from None
    if not isinstance(body, dict):
        raise StackError(f"{what}: expected a JSON object, got {body!r}")
    return body


class _Client:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = check_stack_url(base_url)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    def _expect(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        what = f"{method} {path}"
        response = self._http.request(method, path, **kwargs)
        if response.status_code != status:
            raise StackError(
                f"{what}: expected HTTP {status}, got {response.status_code}: {response.text[:300]}"
            )
        return _json_object(response, what)


class StackClient(_Client):
    """The controller's public routes: ``/health``, ``/info``, ``/generate``."""

    def health(self) -> httpx.Response:
        return self._http.get("/health")

    def healthy(self) -> bool:
        try:
            return self.health().status_code == 200
        except httpx.TransportError:
            return False

    def info(self) -> dict[str, Any]:
        return self._expect("GET", "/info", 200)

    def generate(self, count: int = 1) -> httpx.Response:
        return self._http.get("/generate", params={"count": count})

    def wait_healthy(self, timeout_s: float, interval_s: float = 0.01) -> float:
        """Seconds until ``/health`` answered 200; StackError after ``timeout_s``."""
        start = time.monotonic()
        while not self.healthy():
            if time.monotonic() - start > timeout_s:
                raise StackError(f"{self.base_url}: not healthy within {timeout_s:g} s")
            time.sleep(interval_s)
        return time.monotonic() - start


class ChaosClient(_Client):
    """The controller's chaos API (``/sim``), served only when it runs on the emulator."""

    def available(self) -> bool:
        """Whether the stack serves the chaos API (False: real hardware, or not LoKey)."""
        try:
            return self._http.get("/sim/faults/kinds").status_code == 200
        except httpx.TransportError:
            return False

    def kinds(self) -> dict[str, dict[str, Any]]:
        """Every injectable fault kind: ``{name: {"target", "class", "summary", "params"}}``."""
        return self._expect("GET", "/sim/faults/kinds", 200)

    def inject(self, kind: str, params: Mapping[str, object] | None = None) -> dict[str, Any]:
        """Install a fault; returns the fault as the service built it (kind, target, params)."""
        body = {"kind": kind, "params": dict(params or {})}
        injected = self._expect("POST", "/sim/faults", 201, json=body).get("injected")
        if not isinstance(injected, dict):
            raise StackError(f"POST /sim/faults: no 'injected' object for {kind}")
        return injected

    def faults(self) -> dict[str, Any]:
        """Installed chip and bus faults and the chip's latched states."""
        return self._expect("GET", "/sim/faults", 200)

    def clear(self) -> dict[str, Any]:
        """Remove every fault (latched chip states stay until :meth:`power_cycle`)."""
        return self._expect("DELETE", "/sim/faults", 200)

    def power_cycle(self) -> dict[str, Any]:
        return self._expect("POST", "/sim/power-cycle", 200)

    def state(self) -> dict[str, Any]:
        """The chip's state snapshot."""
        return self._expect("GET", "/sim/state", 200)

    def trace(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` bus trace records (1..10,000)."""
        records = self._expect("GET", "/sim/trace", 200, params={"limit": limit}).get("records")
        if not isinstance(records, list):
            raise StackError("GET /sim/trace: no 'records' list")
        return records

"""A real ``lokey up`` for tests: free ports, a temporary data directory, bounded waits."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from lokey.services import supervisor
from lokey.services.settings import API_ENV, CONTROLLER_ENV, FORTUNA_ENV, VIRTIO_ENV
from tests.service_helpers import ROOT, free_port, wait_for

SERVICE_VARIABLES = {*CONTROLLER_ENV, *FORTUNA_ENV, *VIRTIO_ENV, *API_ENV, "LOKEY_BUS_URL"}


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(set(ports.values())) < 4:
        ports = {name: free_port() for name in supervisor.SERVICES}
    return ports


@dataclass
class Up:
    """A running ``lokey up`` and where it listens."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    ports: dict[str, int]
    output_path: Path

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        document = json.loads((self.data_dir / "lokey-up.json").read_text())
        return {name: entry["pid"] for name, entry in document["services"].items()}

    def wait_output(self, text: str, timeout_s: float) -> None:
        def seen() -> bool:
            assert self.process.poll() is None, self.output()
            return text in self.output()

        wait_for(seen, repr(text), timeout_s, interval_s=0.05)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@contextmanager
def lokey_up(tmp_path: Path, *options: str, **env: str) -> Iterator[Up]:
    ports = free_ports()
    data_dir = tmp_path / "data"
    output_path = tmp_path / "up.out"
    argv = [sys.executable, "-m", "lokey.cli", "up", "--data-dir", str(data_dir), *options]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=service_env(**env), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        up = Up(process, data_dir, ports, output_path)
        up.wait_output("Ctrl-C stops everything.", timeout_s=45)
        yield up
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            for pid in pids_in(data_dir):
                kill_quietly(pid)


def pids_in(data_dir: Path) -> list[int]:
    try:
        document = json.loads((data_dir / "lokey-up.json").read_text())
    except (OSError, ValueError):
        return []
    return [entry["pid"] for entry in document["services"].values() if entry["pid"]]


def kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def health_codes(up: Up) -> dict[str, int]:
    paths = {"controller": "/health", "fortuna": "/health", "virtio": "/health"}
    return {
        name: httpx.get(up.url(name, paths.get(name, "/api/v1/health")), timeout=5).status_code
        for name in supervisor.SERVICES
    }


def wait_all_healthy(up: Up) -> None:
    """All four at 200 (Fortuna's /health is 503 until the api's first seeding round)."""
    everyone = dict.fromkeys(supervisor.SERVICES, 200)
    wait_for(lambda: health_codes(up) == everyone, "four /health 200", timeout_s=20, interval_s=0.1)


def read_fifo(path: Path, timeout_s: float) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if poller.poll(200):
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                if data:
                    return data
        return b""
    finally:
        os.close(fd)

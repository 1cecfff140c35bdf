"""Resident memory of the running stack: ``lokey up --fast``, then ``lokey up --single-process``.

Each stack is started as a user would (``python -m lokey.cli up --fast``) with a temporary
``--data-dir``, free ports and none of the services' variables from the caller's environment,
so every queue and ring has its default size. Once the summary is printed and all four health
endpoints answer 200 (Fortuna's only after the api has seeded it), the stack idles
:data:`IDLE_S` while its pollers fill the queues; then ``VmRSS`` (``/proc/PID/status``) of every
pid in ``lokey-up.json`` is read every :data:`SAMPLE_INTERVAL_S` for :data:`SAMPLE_S` and the
largest reading is the figure (the conservative "steady" value). The stack is then stopped with
SIGTERM, as Ctrl-C would.

Targets (issue 9; a Pi Zero 2 W has 512 MB): each service at most :data:`SERVICE_TARGET_MIB`
resident when idle; the whole stack in ``--single-process`` mode at most
:data:`SINGLE_PROCESS_TARGET_MIB`, and less than the Go reference's four services together
(:data:`GO_REFERENCE_MIB`). Those are absolute targets: the "limit" of each figure is its
target, so the ratio is value / target. The issue writes MB; they are read as MiB (2^20
bytes), the unit of ``/proc``'s kB, of ``lokey up``'s own memory line and of the Pi's 512 MB.
RSS counts shared library pages in every process that maps them, so four processes pay the
interpreter and its libraries four times: that is the point of ``--single-process``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._http import free_port
from bench._report import Direction, Figure, Target, all_met
from lokey.services.settings import API_ENV, CONTROLLER_ENV, FORTUNA_ENV, VIRTIO_ENV
from lokey.services.supervisor import HEALTH_PATHS, PID_FILE, SERVICES, rss_bytes

NAME = "bench_memory"
SERVICE_TARGET_MIB = 70.0  # issue 9: each service at most 70 MB resident when idle
SINGLE_PROCESS_TARGET_MIB = 110.0  # issue 9: the whole stack in --single-process mode
GO_REFERENCE_MIB = 112.0  # issue 9: the Go reference's four services together, on a Pi
MIB = 1 << 20
IDLE_S = 5.0
SAMPLE_S = 3.0
SAMPLE_INTERVAL_S = 0.5
START_TIMEOUT_S = 90.0  # start-up plus the first Fortuna seeding, on a busy machine
STOP_TIMEOUT_S = 30.0
READY_LINE = "Ctrl-C stops everything."  # the last line of lokey up's summary
# Variables the services read: left out so the stack runs with its defaults (default queues).
SERVICE_VARIABLES = frozenset(
    {*CONTROLLER_ENV, *FORTUNA_ENV, *VIRTIO_ENV, *API_ENV, "LOKEY_BUS_URL", "I2C_BUS_NUMBER"}
)


@dataclass(frozen=True)
class Stack:
    """A running ``lokey up``: its process, data directory, output file and ports."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    output: Path
    ports: Mapping[str, int]

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        document = json.loads((self.data_dir / PID_FILE).read_text())
        services = {
            name: int(entry["pid"])
            for name, entry in document["services"].items()
            if entry["pid"] is not None
        }
        return {**services, "supervisor": int(document["supervisor"])}


@dataclass(frozen=True)
class Rss:
    """The readings of one process over the sampling window, in bytes."""

    samples: tuple[int, ...]

    @property
    def steady_mib(self) -> float:
        return max(self.samples) / MIB

    @property
    def spread_mib(self) -> float:
        return (max(self.samples) - min(self.samples)) / MIB


def _free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(SERVICES):
        ports = {name: free_port() for name in SERVICES}
    return ports


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait(what: str, stack: Stack, ready: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if stack.process.poll() is not None:
            raise RuntimeError(f"lokey up exited ({stack.process.returncode}):\n{stack.log()}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"lokey up: {what} within {timeout_s:g} s:\n{stack.log()}")
        time.sleep(0.1)


def _all_healthy(stack: Stack) -> bool:
    for name in SERVICES:
        url = f"http://127.0.0.1:{stack.ports[name]}{HEALTH_PATHS[name]}"
        try:
            if httpx.get(url, timeout=2.0).status_code != 200:
                return False
        except httpx.TransportError:
            return False
    return True


@contextmanager
def lokey_up(*options: str) -> Iterator[Stack]:
    """``lokey up --fast OPTIONS`` on free ports with a temporary data directory, until every
    health endpoint answers 200; stopped with SIGTERM (then SIGKILL) afterwards."""
    with tempfile.TemporaryDirectory(prefix="lokey-bench-memory-") as tmp:
        data_dir = Path(tmp) / "data"
        output = Path(tmp) / "up.out"
        ports = _free_ports()
        argv = [sys.executable, "-m", "lokey.cli", "up", "--fast", "--data-dir", str(data_dir)]
        for name, port in ports.items():
            argv += [f"--{name}-port", str(port)]
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [*argv, *options], env=_clean_env(), stdout=sink, stderr=subprocess.STDOUT
            )
        stack = Stack(process, data_dir, output, ports)
        try:
            _wait("no summary", stack, lambda: READY_LINE in stack.log(), START_TIMEOUT_S)
            _wait("not all healthy", stack, lambda: _all_healthy(stack), START_TIMEOUT_S)
            yield stack
        finally:
            _stop(stack)


def _stop(stack: Stack) -> None:
    if stack.process.poll() is not None:
        return
    stack.process.send_signal(signal.SIGTERM)  # as Ctrl-C: the supervisor stops its children
    try:
        stack.process.wait(timeout=STOP_TIMEOUT_S)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        children = [pid for pid in stack.pids().values() if pid != stack.process.pid]
    except (OSError, ValueError, KeyError):
        children = []
    stack.process.kill()
    stack.process.wait()
    for pid in children:  # a killed supervisor cannot stop them: never leave a stack running
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def sample(pids: Mapping[str, int], seconds: float, interval_s: float) -> dict[str, Rss]:
    """VmRSS of each pid every ``interval_s`` for ``seconds`` (at least one reading each)."""
    readings: dict[str, list[int]] = {name: [] for name in pids}
    deadline = time.monotonic() + seconds
    while True:
        for name, pid in pids.items():
            size = rss_bytes(pid)
            if size is None:
                raise RuntimeError(f"cannot read VmRSS of {name} (pid {pid}): not on Linux?")
            readings[name].append(size)
        if time.monotonic() >= deadline:
            return {name: Rss(tuple(values)) for name, values in readings.items()}
        time.sleep(interval_s)


def measure_stack(*options: str, idle_s: float, sample_s: float) -> dict[str, Rss]:
    with lokey_up(*options) as stack:
        time.sleep(idle_s)
        pids = stack.pids()
        if "--single-process" in options:
            pids = {"single process": pids["supervisor"]}
        return sample(pids, sample_s, SAMPLE_INTERVAL_S)


def _print(title: str, sizes: Mapping[str, Rss]) -> None:
    print(f"  {title}")
    for name, rss in sizes.items():
        print(
            f"    {name:<15} {rss.steady_mib:>7.1f} MiB"
            f" (max of {len(rss.samples)} readings, spread {rss.spread_mib:.1f} MiB)"
        )


def measure(idle_s: float = IDLE_S, sample_s: float = SAMPLE_S) -> list[Figure]:
    multi = measure_stack(idle_s=idle_s, sample_s=sample_s)
    single = measure_stack("--single-process", idle_s=idle_s, sample_s=sample_s)
    print(
        f"memory: VmRSS of lokey up --fast, default queues, after {idle_s:g} s idle "
        f"(max over {sample_s:g} s)"
    )
    _print("four processes (lokey up --fast)", multi)
    total = sum(multi[name].steady_mib for name in SERVICES)
    print(f"    {'four services':<15} {total:>7.1f} MiB (Go reference: {GO_REFERENCE_MIB:g} MiB)")
    _print("one process (lokey up --fast --single-process)", single)
    return memory_figures(multi, single["single process"])


def memory_figures(multi: Mapping[str, Rss], single: Rss) -> list[Figure]:
    """The figures from the readings: ``multi`` has the four services and the supervisor."""
    total = sum(multi[name].steady_mib for name in SERVICES)
    figures = [
        Figure(
            NAME,
            f"{name} RSS, idle",
            multi[name].steady_mib,
            "MiB",
            limit=SERVICE_TARGET_MIB,
            limit_what="target",
            target=Target(SERVICE_TARGET_MIB, Direction.AT_MOST),
        )
        for name in SERVICES
    ]
    figures += [
        Figure(NAME, "supervisor RSS, idle", multi["supervisor"].steady_mib, "MiB", better="lower"),
        Figure(
            NAME,
            "four services RSS together",
            total,
            "MiB",
            limit=GO_REFERENCE_MIB,
            limit_what="Go reference, 4 services",
            better="lower",
        ),
        Figure(
            NAME,
            "--single-process RSS, idle",
            single.steady_mib,
            "MiB",
            limit=SINGLE_PROCESS_TARGET_MIB,
            limit_what="target",
            target=Target(SINGLE_PROCESS_TARGET_MIB, Direction.AT_MOST),
        ),
        Figure(
            NAME,
            "--single-process RSS vs Go reference",
            single.steady_mib,
            "MiB",
            limit=GO_REFERENCE_MIB,
            limit_what="Go reference, 4 services",
            target=Target(1.0, Direction.AT_MOST, on_ratio=True),
        ),
    ]
    return figures


def main(idle_s: float = IDLE_S, sample_s: float = SAMPLE_S) -> bool:
    return all_met(measure(idle_s, sample_s))


def run(quick: bool = False) -> list[Figure]:
    return measure(idle_s=3.0, sample_s=1.0) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

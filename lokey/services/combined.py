"""``lokey up --single-process``: the four apps in one process, for a 512 MB Raspberry Pi.

Four uvicorn servers on one asyncio loop, on the same ports and with the same environment as
the supervised mode (:mod:`lokey.services.supervisor` decides both), started in the same order
and judged by the same health rules. The apps still talk to each other over HTTP on loopback:
only the Python runtime and the libraries are shared, which is where the memory goes.

Signal handling is installed once, here (each uvicorn server would otherwise replace the
previous one's handler): SIGINT, SIGTERM or SIGHUP stop the servers in reverse order, each with
up to :data:`GRACE_S` for its open connections, then the process exits 0; a second signal forces
the servers down. Nothing is restarted: a server that stops on its own stops the whole process
(exit 1), and the init system (systemd's ``Restart=``) restarts it. All logs go to
``<data-dir>/logs/lokey.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Final

import uvicorn
from fastapi import FastAPI

from lokey.services import apps
from lokey.services.server import server_config
from lokey.services.supervisor import (
    EXIT_CLEAN,
    EXIT_NOT_STARTED,
    HEALTH_PATHS,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    TICK_S,
    Console,
    ServicePlan,
    UpPlan,
    health_reason,
    listening_socket,
    log_tail,
    megabytes,
    probe,
    rss_bytes,
    summary,
    write_pid_file,
)

__all__ = ["EXIT_FAILED", "GRACE_S", "run"]

EXIT_FAILED: Final = 1  # a server stopped on its own after start-up
GRACE_S: Final = 5  # per server, for open connections to finish at shutdown

log = logging.getLogger("lokey.services.combined")


class _AppServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: :func:`run` installs them once for all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _build_apps(plan: UpPlan) -> dict[str, FastAPI]:
    """The four apps from the plan's environment (:data:`apps.StartupError` if it is bad)."""
    settings = {s.name: apps.load_settings(s.name, plan.env) for s in plan.services}
    return {name: apps.create_app(each) for name, each in settings.items()}


def run(plan: UpPlan, console: Console) -> int:
    """Serve the four apps until a signal; the exit status."""
    log_path = plan.data_dir / "logs" / "lokey.log"
    level = plan.env.get("LOG_LEVEL", "WARNING").strip().upper() or "WARNING"
    level = "WARNING" if level == "WARN" else level
    number = logging.getLevelNamesMapping().get(level, logging.WARNING)
    logging.basicConfig(
        filename=log_path, level=number, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(max(number, logging.WARNING))  # one line per request
    apps.limit_heap_retention()
    try:
        built = _build_apps(plan)
    except apps.StartupError as error:
        console.event(f"lokey up: {error}")
        return EXIT_NOT_STARTED
    # every socket is bound before any app starts: uvicorn exits the process on a bind error,
    # which would take the servers already running with it
    sockets: dict[str, socket.socket] = {}
    try:
        for service in plan.services:
            try:
                sockets[service.name] = listening_socket(service.host, service.port)
            except OSError as error:
                console.event(
                    f"lokey up: {service.option} {service.port}: cannot listen on "
                    f"{service.host}: {error.strerror}"
                )
                return EXIT_NOT_STARTED
        console.event(
            f"lokey up: starting 4 services in one process (pid {os.getpid()}) on the "
            f"{plan.bus_label}; data in {plan.data_dir}"
        )
        write_pid_file(plan, dict.fromkeys(built, os.getpid()))
        status = asyncio.run(
            _Stack(
                plan=plan,
                apps=built,
                sockets=sockets,
                console=console,
                log_path=log_path,
                level=level,
            ).serve()
        )
        if status == EXIT_CLEAN:
            console.timestamps = False
            console.event("lokey up: stopped")
        return status
    finally:
        for sock in sockets.values():
            sock.close()


class _Stack:
    def __init__(
        self,
        *,
        plan: UpPlan,
        apps: dict[str, FastAPI],
        sockets: dict[str, socket.socket],
        console: Console,
        log_path: os.PathLike[str],
        level: str,
    ) -> None:
        self.plan = plan
        self.apps = apps
        self.sockets = sockets
        self.console = console
        self.log_path = log_path
        self.level = level.lower()
        self.servers: dict[str, _AppServer] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.signals = 0
        self.stop = asyncio.Event()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.signals += 1
            if self.signals > 1:
                for server in self.servers.values():
                    server.force_exit = True
            loop.call_soon_threadsafe(self.stop.set)

        with _signals(on_signal):
            try:
                return await self._serve()
            finally:
                await self._stop_all()

    async def _serve(self) -> int:
        total = len(self.plan.services)
        for index, service in enumerate(self.plan.services, start=1):
            if self.stop.is_set():
                return EXIT_CLEAN
            # the same limits and timeouts as a service on its own (server.py)
            config = server_config(
                self.apps[service.name], log_level=self.level, timeout_graceful_shutdown=GRACE_S
            )
            server = _AppServer(config)
            self.servers[service.name] = server
            self.tasks[service.name] = asyncio.create_task(
                _serve_one(server, self.sockets[service.name]), name=service.name
            )
            ready = await self._await_ready(service, f"[{index}/{total}]")
            if not ready:
                return EXIT_CLEAN if self.stop.is_set() else EXIT_NOT_STARTED
        self.console.clear()
        own = rss_bytes()
        memory = f"{megabytes(own)} RSS (one process)" if own is not None else "unknown"
        print(summary(self.plan, dict.fromkeys(self.apps, os.getpid()), memory=memory), flush=True)
        self.console.timestamps = True
        stopped = asyncio.create_task(self.stop.wait())
        done, _ = await asyncio.wait(
            [stopped, *self.tasks.values()], return_when=asyncio.FIRST_COMPLETED
        )
        if stopped in done:
            return EXIT_CLEAN
        stopped.cancel()
        ended = next(name for name, task in self.tasks.items() if task in done)
        self.console.event(f"{ended} stopped on its own; stopping everything (see {self.log_path})")
        return EXIT_FAILED

    async def _await_ready(self, service: ServicePlan, step: str) -> bool:
        loop = asyncio.get_running_loop()
        began = loop.time()
        task = self.tasks[service.name]
        last = None
        while not self.stop.is_set():
            if task.done():
                self.console.event(
                    f"{service.name} could not start; the end of {self.log_path}:\n"
                    f"{log_tail(self.plan.data_dir / 'logs' / 'lokey.log')}"
                )
                return False
            answer = await asyncio.to_thread(probe, service.health_url, 1.0)
            elapsed = loop.time() - began
            if answer is not None and service.ready(answer.status):
                self.console.event(
                    f"{step} {service.name:<10} ready   {service.base_url}  ({elapsed:.1f} s)"
                )
                return True
            last = answer if answer is not None else last
            if elapsed >= START_TIMEOUT_S:
                if last is not None:
                    self.console.event(
                        f"{step} {service.name:<10} NOT READY after {START_TIMEOUT_S:g} s: "
                        f"{last.status} {health_reason(last)}; continuing"
                    )
                    return True
                self.console.event(
                    f"{service.name} did not answer {service.health_url} within "
                    f"{START_TIMEOUT_S:g} s (see {self.log_path})"
                )
                return False
            waiting = "starting" if last is None else f"{last.status} {health_reason(last)}"
            self.console.status(
                f"{step} {service.name}: waiting for {HEALTH_PATHS[service.name]} ({waiting}) "
                f"{elapsed:.1f} s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), TICK_S)
        return False

    async def _stop_all(self) -> None:
        """Reverse order; each server gets the rest of :data:`STOP_TIMEOUT_S`, then is forced."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S
        for name in reversed(list(self.tasks)):
            server, task = self.servers[name], self.tasks[name]
            server.should_exit = True
            if task.done():
                continue
            self.console.status(f"stopping {name}")
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
            except TimeoutError:
                server.force_exit = True
                self.console.event(f"forcing {name} down: it did not stop")
                try:
                    await asyncio.wait_for(asyncio.shield(task), 2.0)
                except TimeoutError:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            else:
                self.console.event(f"stopped {name}")
        self.console.clear()


async def _serve_one(server: _AppServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit:  # uvicorn exits when the lifespan fails in some versions
        log.error("uvicorn exited while starting")


@contextlib.contextmanager
def _signals(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """``handler`` for SIGINT, SIGTERM and SIGHUP, restoring the previous ones afterwards.

    ``signal.signal`` rather than the loop's handlers: the VirtIO app chains onto the handler
    it finds at start-up (to end open streams on a stop), as it does under uvicorn alone.
    """
    previous = {
        number: signal.signal(number, handler)
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)

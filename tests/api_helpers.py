"""Helpers for the API service tests: settings, an app in a TestClient, a real peer stack.

Unit-level tests run the API app in Starlette's ``TestClient`` (the lifespan really opens the
store and the HTTP client) with the background jobs off; they call the jobs' steps themselves.
Peers are either real ``lokey serve`` processes (:func:`peer_stack`) or, only to simulate a
failing peer, an ``httpx.MockTransport``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lokey.clock import Clock
from lokey.services.api import ApiService, create_api_app
from lokey.services.settings import (
    CONTROLLER_ENV,
    FORTUNA_ENV,
    VIRTIO_ENV,
    ApiSettings,
    load_api_settings,
)
from tests.service_helpers import FAST_RECOVERY, LOCKED_URL, TestClient, free_port, serve

__all__ = [
    "BACKENDS",
    "PeerStack",
    "api_service",
    "api_settings",
    "dead_address",
    "peer_stack",
    "running_api",
    "settings_for",
    "shared_stack",
]


def dead_address() -> str:
    """A local address nobody listens on (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def api_settings(tmp_path: Path, **env: str) -> ApiSettings:
    """LMDB in ``tmp_path``, peers at refused addresses, 1 s timeouts, unless ``env`` says else."""
    values = {
        "DB_PATH": str(tmp_path / "api.db"),
        "CONTROLLER_ADDR": dead_address(),
        "FORTUNA_ADDR": dead_address(),
        "VIRTIO_ADDR": dead_address(),
        "LOKEY_HTTP_TIMEOUT_S": "1",
        "DB_SYNC": "false",
        **env,
    }
    return load_api_settings(values)


BACKENDS = ("lmdb", "channel")  # the two stores, whose semantics must be identical


def settings_for(tmp_path: Path, backend: str, **env: str) -> ApiSettings:
    """:func:`api_settings` on ``backend`` (``lmdb`` or ``channel``)."""
    if backend == "channel":
        env = {"DB_IMPLEMENTATION": "channel", **env}
    return api_settings(tmp_path, **env)


@contextmanager
def running_api(
    settings: ApiSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    start_background: bool = False,
) -> Iterator[TestClient]:
    app = create_api_app(
        settings, clock=clock, transport=transport, start_background=start_background
    )
    with TestClient(app) as client:
        yield client


def api_service(client: TestClient) -> ApiService:
    service: Any = client.app.state.lokey  # type: ignore[attr-defined]
    assert isinstance(service, ApiService)
    return service


@dataclass(frozen=True)
class PeerStack:
    """Real controller (emulator, instant timing), Fortuna and VirtIO processes."""

    controller: str
    fortuna: str
    virtio: str

    def env(self) -> dict[str, str]:
        return {
            "CONTROLLER_ADDR": self.controller,
            "FORTUNA_ADDR": self.fortuna,
            "VIRTIO_ADDR": self.virtio,
        }


@contextmanager
def peer_stack(tmp_path: Path) -> Iterator[PeerStack]:
    """``lokey serve controller|fortuna|virtio`` as real processes, healthy or serving."""
    with ExitStack() as stack:
        dirs = {name: tmp_path / name for name in ("controller", "fortuna", "virtio")}
        for directory in dirs.values():
            os.makedirs(directory, exist_ok=True)
        controller = stack.enter_context(
            serve(
                "controller",
                dirs["controller"],
                settings_names=CONTROLLER_ENV,
                until_status=200,
                LOKEY_BUS_URL=LOCKED_URL,
                **FAST_RECOVERY,
            )
        )
        fortuna = stack.enter_context(serve("fortuna", dirs["fortuna"], settings_names=FORTUNA_ENV))
        virtio = stack.enter_context(
            serve("virtio", dirs["virtio"], settings_names=VIRTIO_ENV, VIRTIO_PIPE_PATH="")
        )
        yield PeerStack(controller.base, fortuna.base, virtio.base)


@contextmanager
def starting_few_at_once(factory: pytest.TempPathFactory, slots: int = 2) -> Iterator[None]:
    """Start processes holding one of ``slots`` locks shared by all xdist workers: a small
    machine starting a dozen Python processes at once can miss ``serve``'s 20 s start-up
    bound."""
    base = factory.getbasetemp().parent
    while True:
        for slot in range(slots):
            with (base / f"lokey-api-tests-start-{slot}.lock").open("a") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                return
        time.sleep(0.05)


SHARED_STACK = "lokey_api_tests_peer_stack"  # an attribute of pytest.Config, see shared_stack


def shared_stack(config: pytest.Config, factory: pytest.TempPathFactory) -> PeerStack:
    """One :func:`peer_stack` per pytest process, shared by test_api_background.py and
    test_api_integration.py (a stack costs seconds of CPU to start; under xdist every worker
    would otherwise start one per module), stopped when the session ends."""
    existing = getattr(config, SHARED_STACK, None)
    if isinstance(existing, PeerStack):
        return existing
    processes = ExitStack()
    config.add_cleanup(processes.close)
    with starting_few_at_once(factory):
        peers = processes.enter_context(peer_stack(factory.mktemp("peers")))
    setattr(config, SHARED_STACK, peers)
    return peers

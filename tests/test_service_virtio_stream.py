"""``/stream`` driven directly over ASGI: disconnects, waits on an empty ring, shutdown.

The TestClient (and httpx's ASGI transport) buffer a whole response before returning it, so an
unbounded or waiting stream cannot be observed through them. Here the app is called with a
hand-made ``receive`` / ``send`` pair: ``send`` records every chunk and can "disconnect" the
client after N bytes (``receive`` then answers ``http.disconnect``), exactly what uvicorn does
when the socket goes away.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx
from fastapi import FastAPI
from starlette.types import Message

from lokey.services.settings import load_virtio_settings
from lokey.services.virtio import VirtioService, create_virtio_app


@asynccontextmanager
async def started() -> AsyncIterator[tuple[FastAPI, VirtioService]]:
    app = create_virtio_app(load_virtio_settings({"VIRTIO_PIPE_PATH": ""}))
    async with app.router.lifespan_context(app):
        service = app.state.lokey
        assert isinstance(service, VirtioService)
        yield app, service


@dataclass
class Client:
    """One ``GET /stream`` as uvicorn would run it; ``leave_after`` bytes then disconnect."""

    query: str
    leave_after: int | None = None
    status: int | None = None
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False
    left: anyio.Event = field(default_factory=anyio.Event)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def run(self, app: FastAPI) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/stream",
            "raw_path": b"/stream",
            "query_string": self.query.encode(),
            "root_path": "",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8083),
            "state": {},
        }
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.left.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                return
            assert not self.left.is_set(), "a chunk was sent after the client had left"
            if message.get("body"):
                self.chunks.append(message["body"])
            if not message.get("more_body", False):
                self.complete = True
            if self.leave_after is not None and len(self.body) >= self.leave_after:
                self.left.set()

        await app(scope, receive, send)


async def _disconnect_mid_stream_consumes_nothing_more() -> None:
    async with started() as (app, service):
        data = os.urandom(100_000)
        service.ring.push(data)
        client = Client("chunk_size=1000", leave_after=5_000)
        with anyio.fail_after(5):
            await client.run(app)
        assert client.status == 200
        assert not client.complete
        assert client.body == data[:5_000]
        stats = service.ring.snapshot()
        assert stats.consumed == 5_000  # exactly what was sent: nothing taken after leaving
        assert service.ring.available == 95_000
        assert service.requests[("stream", "disconnected")] == 1
        assert service.open_streams == 0


async def _disconnect_while_waiting_on_an_empty_ring_ends_the_stream() -> None:
    async with started() as (app, service):
        client = Client("chunk_size=64")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.run, app)
            await anyio.sleep(0.3)
            assert client.status == 200
            assert client.chunks == []
            client.left.set()
            with anyio.fail_after(2):  # noticed within one wait slice (0.1 s)
                while service.open_streams:
                    await anyio.sleep(0.01)
        service.ring.push(b"x" * 100)
        assert service.ring.available == 100  # the departed stream took nothing


async def _empty_ring_then_seeding_completes_the_stream() -> None:
    async with started() as (app, service):
        client = Client("chunk_size=4096&max_bytes=3000")
        seeds = [os.urandom(1000) for _ in range(4)]
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(client.run, app)
            await anyio.sleep(0.25)
            assert client.status == 200
            assert client.chunks == []
            first = await http.post("/seed", json={"seeds": [seeds[0].hex()]})
            assert first.status_code == 200
            await anyio.sleep(0.25)
            assert client.body == seeds[0]
            assert not client.complete
            rest = await http.post("/seed", json={"seeds": [s.hex() for s in seeds[1:]]})
            assert rest.status_code == 200
            with anyio.fail_after(5):
                while not client.complete:
                    await anyio.sleep(0.01)
        assert client.body == b"".join(seeds)[:3000]
        assert service.ring.available == 1000  # exactly max_bytes were taken
        assert service.requests[("stream", "ok")] == 1


async def _two_streams_never_share_a_byte() -> None:
    async with started() as (app, service):
        data = os.urandom(200_000)
        service.ring.push(data)
        a, b = Client("chunk_size=333&max_bytes=90000"), Client("chunk_size=1000&max_bytes=90000")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(a.run, app)
            tasks.start_soon(b.run, app)
        assert len(a.body) == len(b.body) == 90_000
        # every chunk is a distinct slice of the seeded data; together they cover a prefix
        pieces = sorted(a.chunks + b.chunks, key=data.find)
        assert b"".join(pieces) == data[:180_000]


async def _shutdown_ends_open_streams_cleanly() -> None:
    async with started() as (app, service):
        service.ring.push(os.urandom(500))
        client = Client("chunk_size=100")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.run, app)
            await anyio.sleep(0.2)
            service.stopping.set()  # what SIGTERM does
            with anyio.fail_after(2):
                while not client.complete:
                    await anyio.sleep(0.01)
        assert len(client.body) == 500


# -- the tests (each runs its scenario in a fresh event loop) -------------------------------------


def test_disconnect_mid_stream_consumes_nothing_more() -> None:
    anyio.run(_disconnect_mid_stream_consumes_nothing_more)


def test_disconnect_while_waiting_on_an_empty_ring_ends_the_stream() -> None:
    anyio.run(_disconnect_while_waiting_on_an_empty_ring_ends_the_stream)


def test_empty_ring_then_seeding_completes_the_stream() -> None:
    anyio.run(_empty_ring_then_seeding_completes_the_stream)


def test_two_streams_never_share_a_byte() -> None:
    anyio.run(_two_streams_never_share_a_byte)


def test_shutdown_ends_open_streams_cleanly() -> None:
    anyio.run(_shutdown_ends_open_streams_cleanly)

"""Huge, malformed and slow requests against real uvicorn servers (issue 9).

One child process serves the four apps on real sockets, each with
:func:`lokey.services.server.server_config` (the configuration of ``lokey serve`` and of
``lokey up --single-process``), only with the request-read deadline and the keep-alive timeout
shortened so the tests need not wait 30 s. Raw sockets do the abuse:

* bodies over a service's limit get 413 without the server reading them (declared or chunked,
  also a chunked body that never ends), and the connection is closed;
* garbage request lines, huge headers, invalid Content-Length get 400/431 or a closed
  connection, and the service still answers ``/health`` afterwards;
* slowloris: 50 connections trickling a request a byte at a time (and idle ones) do not delay
  a normal client, and the server closes every one of them after the read deadline;
* 10 MB bodies sent to every route leave the server's RSS within a few MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lokey.services.api.app import MAX_BODY_BYTES as API_LIMIT
from lokey.services.common import DEFAULT_BODY_LIMIT, InFlightLimitMiddleware
from lokey.services.fortuna import MAX_BODY_BYTES as FORTUNA_LIMIT
from lokey.services.server import MAX_HEADER_BYTES
from lokey.services.virtio import MAX_BODY_BYTES as VIRTIO_LIMIT
from tests.service_helpers import FAST_RECOVERY, LOCKED_URL, free_port

ROOT: Final = Path(__file__).resolve().parents[1]
# Shortened, and distinct so each test can tell which deadline closed a connection.
READ_TIMEOUT_S: Final = 3.0  # production: server.REQUEST_READ_TIMEOUT_S (30 s)
KEEP_ALIVE_S: Final = 1  # production: server.KEEP_ALIVE_TIMEOUT_S (5 s)
FIRST_BYTE_S: Final = 1.5  # production: server.FIRST_BYTE_TIMEOUT_S (5 s)
SILENT_CLIENTS: Final = 300  # above any connection limit a server could have counted
SLOW_CLIENTS: Final = 50
TEN_MB: Final = 10 << 20
RSS_GROWTH_LIMIT: Final = 6 << 20

#: The child: the four apps, each on its own uvicorn server configured by server_config.
CHILD: Final = r"""
import asyncio, json, sys

import uvicorn

from lokey.services.api import create_api_app
from lokey.services.controller import create_controller_app
from lokey.services.fortuna import create_fortuna_app
from lokey.services.server import server_config
from lokey.services.settings import (
    load_api_settings, load_controller_settings, load_fortuna_settings, load_virtio_settings,
)
from lokey.services.virtio import create_virtio_app

options = json.loads(sys.argv[1])
ports = options["ports"]
peers = {f"{n.upper()}_ADDR": f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "api"}
api_env = {**peers, "DB_PATH": options["db_path"], "DB_SYNC": "false"}
apps = {
    "controller": create_controller_app(load_controller_settings(options["controller_env"])),
    "fortuna": create_fortuna_app(load_fortuna_settings({})),
    "virtio": create_virtio_app(load_virtio_settings({"VIRTIO_PIPE_PATH": ""})),
    "api": create_api_app(load_api_settings(api_env), start_background=False),
}


async def main():
    servers = [
        uvicorn.Server(
            server_config(
                apps[name],
                host="127.0.0.1",
                port=port,
                log_level="warning",
                read_timeout_s=options["read_timeout_s"],
                keep_alive_timeout_s=options["keep_alive_s"],
                first_byte_timeout_s=options["first_byte_s"],
            )
        )
        for name, port in ports.items()
    ]
    await asyncio.gather(*(server.serve() for server in servers))


asyncio.run(main())
"""


@dataclass(frozen=True)
class Service:
    name: str
    limit: int  # body limit in bytes
    body_path: str  # a POST route that reads its body
    routes: tuple[tuple[str, str], ...]  # every (method, path), for the memory test


SERVICES: Final = (
    Service(
        "controller",
        DEFAULT_BODY_LIMIT,
        "/sim/faults",
        (
            ("GET", "/health"),
            ("GET", "/info"),
            ("GET", "/generate"),
            ("GET", "/metrics"),
            ("POST", "/sim/faults"),
            ("POST", "/sim/power-cycle"),
            ("GET", "/sim/trace"),
        ),
    ),
    Service(
        "fortuna",
        FORTUNA_LIMIT,
        "/seed",
        (
            ("GET", "/health"),
            ("GET", "/generate"),
            ("POST", "/seed"),
            ("POST", "/amplify"),
            ("GET", "/metrics"),
        ),
    ),
    Service(
        "virtio",
        VIRTIO_LIMIT,
        "/seed",
        (
            ("GET", "/health"),
            ("GET", "/generate"),
            ("POST", "/seed"),
            ("PUT", "/config/queue"),
            ("GET", "/metrics"),
        ),
    ),
    Service(
        "api",
        API_LIMIT,
        "/api/v1/data",
        (
            ("GET", "/health"),
            ("POST", "/api/v1/data"),
            ("PUT", "/api/v1/config/queue"),
            ("PUT", "/api/v1/config/consume"),
            ("PUT", "/api/v1/config/virtio"),
            ("GET", "/api/v1/status"),
            ("GET", "/metrics"),
        ),
    ),
)
NAMES: Final = [service.name for service in SERVICES]


@dataclass(frozen=True)
class Stack:
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path

    def port(self, service: Service) -> int:
        return self.ports[service.name]

    def memory(self, field: str) -> int:
        """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of the server, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field}")

    def alive(self) -> None:
        assert self.process.poll() is None, f"the server died:\n{self.log.read_text()}"

    def health(self, service: Service, timeout_s: float = 2.0) -> httpx.Response:
        """A normal client's ``GET /health`` (any status is an answer; it must come)."""
        return httpx.get(f"http://127.0.0.1:{self.port(service)}/health", timeout=timeout_s)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("bad-requests")
    ports = {name: free_port() for name in NAMES}
    options = {
        "ports": ports,
        "db_path": str(tmp / "api.db"),
        "controller_env": {"LOKEY_BUS_URL": LOCKED_URL, **FAST_RECOVERY},
        "read_timeout_s": READ_TIMEOUT_S,
        "keep_alive_s": KEEP_ALIVE_S,
        "first_byte_s": FIRST_BYTE_S,
    }
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(options)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    the_stack = Stack(process, ports, log)
    try:
        deadline = time.monotonic() + 30
        for service in SERVICES:
            while True:
                the_stack.alive()
                try:
                    the_stack.health(service, timeout_s=1.0)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"{service.name} did not start"
                    time.sleep(0.05)
        yield the_stack
        the_stack.alive()  # nothing in this module may take it down
    finally:
        process.kill()
        process.wait()


# -- raw HTTP ----------------------------------------------------------------------------------


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket) -> Answer | None:
    """One HTTP response from ``sock``, or None if the server closed without one."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    except ConnectionResetError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    try:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except ConnectionResetError:
        pass
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``sock`` within ``within_s`` (anything it sends is drained)."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
    return False


def head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def send_until_answered(sock: socket.socket, pieces: Iterator[bytes]) -> tuple[Answer | None, int]:
    """Send ``pieces`` until the server answers or stops reading; (the answer, bytes sent)."""
    sent = 0
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
    return read_answer(sock), sent


def endless_chunks(size: int = 16 << 10) -> Iterator[bytes]:
    piece = chunk(b"7" * size)
    while True:
        yield piece


# -- bodies over the limit ---------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_a_declared_body_over_the_limit_is_413_before_any_of_it_is_sent(
    stack: Stack, service: Service
) -> None:
    with connect(stack.port(service)) as sock:
        sock.sendall(
            head(
                "POST",
                service.body_path,
                "Content-Type: application/json",
                f"Content-Length: {service.limit + 1}",
            )
        )
        answer = read_answer(sock)  # not one body byte was sent
        assert answer is not None
        assert answer.status == 413
        assert json.loads(answer.body)["error"].startswith("Request body too large")
        assert answer.headers.get("connection") == "close"
        assert closed_by_server(sock, within_s=2.0)
    assert stack.health(service).status_code in (200, 503)


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_an_endless_chunked_body_is_413_once_past_the_limit(stack: Stack, service: Service) -> None:
    with connect(stack.port(service)) as sock:
        sock.sendall(
            head(
                "POST",
                service.body_path,
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            )
        )
        answer, sent = send_until_answered(sock, endless_chunks())
        assert answer is not None
        assert answer.status == 413
        assert json.loads(answer.body)["error"].startswith("Request body too large")
        # the server stopped at its limit: what was sent beyond it sat in socket buffers
        assert sent < service.limit + (8 << 20)
        assert closed_by_server(sock, within_s=2.0)
    assert stack.health(service).status_code in (200, 503)


# -- malformed HTTP ------------------------------------------------------------------------------

MALFORMED: Final = {
    "garbage request line": b"\x16\x03\x01\x02\x00 hello there\r\n\r\n",
    "no HTTP version": b"GET /health\r\n\r\n",
    # larger than one read of the server (asyncio reads up to 256 KiB), so h11 sees it
    # incomplete past its limit
    "huge header": head("GET", "/health", "X-Padding: " + "a" * (64 * MAX_HEADER_BYTES)),
    "non-numeric Content-Length": head("POST", "/health", "Content-Length: abc"),
    "negative Content-Length": head("POST", "/health", "Content-Length: -5"),
    "two Content-Lengths": head("POST", "/health", "Content-Length: 1", "Content-Length: 2"),
    "header without colon": head("GET", "/health", "this is not a header"),
}


@pytest.mark.parametrize("what", MALFORMED)
@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_malformed_http_is_400_or_closed_and_the_service_keeps_answering(
    stack: Stack, service: Service, what: str
) -> None:
    with connect(stack.port(service)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(MALFORMED[what])
        answer = read_answer(sock)
        assert answer is None or answer.status in (400, 431), answer
        assert closed_by_server(sock, within_s=2.0)
    stack.alive()
    assert stack.health(service).status_code in (200, 503)


# -- slow clients --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_slowloris_neither_delays_others_nor_keeps_its_connections(
    stack: Stack, service: Service
) -> None:
    """50 clients trickle a request one byte at a time (they would never finish), 5 more
    connect and say nothing: a normal client is answered at once, and the server closes every
    one of them after the read deadline, although the tricklers keep sending."""
    request = head("GET", "/health", "X-Slow: " + "s" * 200)
    slow = [connect(service_port := stack.port(service)) for _ in range(SLOW_CLIENTS)]
    idle = [connect(service_port) for _ in range(5)]
    try:
        opened = time.monotonic()
        for sock in slow:
            sock.sendall(request[:1])
        started = time.monotonic()
        answer = stack.health(service, timeout_s=2.0)
        assert answer.status_code in (200, 503)
        # well before any deadline could have freed the server for it
        assert time.monotonic() - started < 1.0, "a normal client waited behind slow ones"
        open_ = set(slow) | set(idle)
        position = 1
        limit = opened + READ_TIMEOUT_S + 2.0
        while open_ and time.monotonic() < limit:
            position += 1
            for sock in list(open_):
                try:
                    if sock in slow:
                        sock.sendall(request[position : position + 1])
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable and not sock.recv(65536):
                        open_.discard(sock)
                except (BrokenPipeError, ConnectionResetError):
                    open_.discard(sock)
            time.sleep(0.05)
        assert not open_, f"{len(open_)} slow connections still open after the read deadline"
        assert time.monotonic() - opened >= READ_TIMEOUT_S * 0.9  # not closed early
        assert position < len(request)  # the requests were never complete
    finally:
        for sock in slow + idle:
            sock.close()
    assert stack.health(service).status_code in (200, 503)


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    stack: Stack,
) -> None:
    service = SERVICES[0]
    with connect(stack.port(service)) as sock:
        sock.sendall(head("GET", "/health"))
        answer = read_answer(sock)
        assert answer is not None
        assert answer.status == 200
        began = time.monotonic()
        # the keep-alive timer started before the answer was read: only a loose lower bound
        assert closed_by_server(sock, within_s=READ_TIMEOUT_S - 0.5)  # not the read deadline
        assert time.monotonic() - began >= KEEP_ALIVE_S * 0.5


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_silent_connections_neither_lock_others_out_nor_stay_open(
    stack: Stack, service: Service
) -> None:
    """300 connections that never send a byte: a normal client is still answered 200 (they
    are not requests, so no limit counts them), and each is closed after the first-byte
    deadline, long before the read deadline."""
    silent = [connect(stack.port(service)) for _ in range(SILENT_CLIENTS)]
    try:
        opened = time.monotonic()
        answer = stack.health(service, timeout_s=2.0)
        # the service's own health answer (a 503 from the controller is its chip's state), not
        # a server refusing work: that would be text/plain "Service Unavailable" or "busy"
        assert answer.status_code in (200, 503)
        assert answer.headers["content-type"].startswith("application/json"), answer.text
        assert "busy" not in answer.json().get("error", "")
        open_ = set(silent)
        while open_ and time.monotonic() < opened + READ_TIMEOUT_S - 0.3:
            readable, _, _ = select.select(list(open_), [], [], 0.1)
            for sock in readable:
                try:
                    if sock.recv(1) == b"":
                        open_.discard(sock)
                except ConnectionResetError:
                    open_.discard(sock)
        assert not open_, f"{len(open_)} silent connections outlived the first-byte deadline"
        assert time.monotonic() - opened >= FIRST_BYTE_S * 0.5
    finally:
        for sock in silent:
            sock.close()


# -- memory --------------------------------------------------------------------------------------


def _send_body(port: int, method: str, path: str, size: int, *, chunked: bool) -> int:
    """Send ``size`` bytes of body, whatever the server answers meanwhile, until it closes
    the connection; the bytes it took. Its answer, if any, is not a 500."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    piece = b"7" * (64 << 10)
    sent = 0
    with connect(port) as sock:
        sock.sendall(head(method, path, "Content-Type: application/json", framing))
        try:
            for _ in range(size // len(piece)):
                sock.sendall(chunk(piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection (after a 413)
        answer = read_answer(sock)
        assert answer is None or answer.status != 500, answer  # 503: not seeded, no data
    return sent


def test_ten_megabyte_bodies_to_every_route_leave_the_memory_bounded(stack: Stack) -> None:
    def everything(size: int) -> None:
        for service in SERVICES:
            for method, path in service.routes:
                for chunked in (False, True):
                    _send_body(stack.port(service), method, path, size, chunked=chunked)

    everything(256 << 10)  # warm up every route's code path (first imports, caches)
    before = {field: stack.memory(field) for field in ("VmRSS", "VmHWM")}
    everything(TEN_MB)
    stack.alive()
    for field, was in before.items():  # now, and at its peak during the requests
        grown = stack.memory(field) - was
        assert grown < RSS_GROWTH_LIMIT, f"{field} grew by {grown / 2**20:.1f} MiB"
    for service in SERVICES:
        assert stack.health(service).status_code in (200, 503)


# -- requests in flight ----------------------------------------------------------------------------


def test_requests_over_the_in_flight_limit_get_503_with_retry_after_at_once() -> None:
    asyncio.run(_over_the_in_flight_limit())


async def _over_the_in_flight_limit() -> None:
    release = asyncio.Event()
    started = 0

    async def slow(request: Request) -> PlainTextResponse:
        nonlocal started
        started += 1
        await release.wait()
        return PlainTextResponse("done")

    app = InFlightLimitMiddleware(Starlette(routes=[Route("/", slow)]), limit=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lokey") as client:
        held = [asyncio.create_task(client.get("/")) for _ in range(2)]
        while started < 2:
            await asyncio.sleep(0)
        refused = await client.get("/")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]
        assert started == 2  # the refused request never reached the app
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (await client.get("/")).status_code == 200  # the slots were given back
    assert app.in_flight == 0

"""The VirtIO service (port 8083): a byte ring fed by the API, served over HTTP and a named pipe.

spec/service-api.md §4: the reference's paths, query parameters, JSON shapes and error strings,
with LoKey's behaviour where the reference is wrong:

* **Every byte once**: ``/generate``, ``/stream`` and the FIFO writer all consume from one
  :class:`~lokey.virtio.ring.ByteRing`; a byte handed to one consumer is never handed to another.
* ``/generate?count=N`` (1..100, default 1): exactly ``N * 32`` bytes taken in one
  ``take_exact``; **never zero-padded**. When the ring cannot supply them all: **503**
  ``{"error": "Failed to generate random data: queue may be empty"}`` and nothing is consumed.
  One value → ``{"data": hex}``, several → ``{"data": [hex, ...]}`` (the controller's shape).
* ``/stream?chunk_size=C&max_bytes=M``: C 1..65536 (default 1024), M >= 1 (default: no limit);
  anything else is a 400. Chunked ``application/octet-stream``; each chunk is sent as soon as the
  ring has bytes (no 10 ms timer); an empty ring is waited on, off the event loop, in short
  slices so a disconnect or a shutdown is noticed within :data:`WAIT_SLICE_S`. The stream ends
  exactly at M bytes. Bytes are taken from the ring only after the disconnect flag has been
  checked, immediately before they are sent; bytes already sent when the client leaves (in
  the server's and the kernel's socket buffers, possibly several chunks) are lost with the
  connection, never served twice.
  Nothing is taken after the disconnect has been seen.
* ``POST /seed``: the whole body is validated first (JSON, a non-empty ``seeds`` list, every
  entry non-empty hex); a bad entry → 400 naming it (``Invalid seed 2 (not hex)``), and nothing
  from that request is appended. Each seed becomes one ring item.
* ``GET/PUT /config/queue``: the reference's fields and strings; a resize keeps as much data as
  fits (newest first) and keeps the statistics.
* ``/health``: 200 while the service runs and, when the pipe is enabled, its writer runs; else
  503. ``/info``: ``status``, ``pipe_path`` (when enabled), pipe state and counters, ring status.
  ``/metrics``: a per-app Prometheus registry.

Build the app with :func:`create_virtio_app` from a :class:`VirtioSettings`; the ring and the
FIFO writer are created in the lifespan and the writer is stopped when it ends. Open streams
end (cleanly, with the terminating chunk) when the process receives SIGTERM / SIGINT, so a
long-lived consumer never holds up a graceful shutdown.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from lokey.clock import Clock, SystemClock
from lokey.services.common import (
    documented,
    error_response,
    health_documented,
    new_app,
    rfc3339_now,
    strict_int,
)
from lokey.services.settings import MAX_QUEUE_SIZE, MIN_QUEUE_SIZE, VirtioSettings
from lokey.virtio.fifo import FifoFeeder
from lokey.virtio.ring import ByteRing

__all__ = [
    "BODY_ERROR",
    "BODY_TOO_LARGE_ERROR",
    "CHUNK_SIZE_ERROR",
    "COUNT_ERROR",
    "DEFAULT_CHUNK_SIZE",
    "EMPTY_ERROR",
    "MAX_BYTES_ERROR",
    "MAX_CHUNK_SIZE",
    "MAX_COUNT",
    "NO_SEEDS_ERROR",
    "QUEUE_SIZE_ERROR",
    "VALUE_BYTES",
    "WAIT_SLICE_S",
    "VirtioService",
    "create_virtio_app",
]

log = logging.getLogger("lokey.services.virtio")

# spec §4, verbatim (the reference's strings) ...
COUNT_ERROR: Final = "Invalid count parameter (1-100)"
EMPTY_ERROR: Final = "Failed to generate random data: queue may be empty"
BODY_ERROR: Final = "Invalid request body"
NO_SEEDS_ERROR: Final = "No seeds provided"
QUEUE_SIZE_ERROR: Final = f"Queue size must be between {MIN_QUEUE_SIZE} and {MAX_QUEUE_SIZE}"
# ... and LoKey's own (spec §4 "LoKey does instead")
CHUNK_SIZE_ERROR: Final = "Invalid chunk_size parameter (1-65536)"
MAX_BYTES_ERROR: Final = "Invalid max_bytes parameter (a positive integer)"
BODY_TOO_LARGE_ERROR: Final = "Request body too large"

VALUE_BYTES: Final = 32
MAX_COUNT: Final = 100
DEFAULT_CHUNK_SIZE: Final = 1024
MAX_CHUNK_SIZE: Final = 65_536
MAX_MAX_BYTES: Final = 10**18 - 1  # strict_int's 18 digits; "no limit" is the parameter left out
MAX_BODY_BYTES: Final = 4 << 20  # a seeding round from the API is a few KiB
WAIT_SLICE_S: Final = 0.1  # how long one wait on an empty ring may block a worker thread
STOP_TIMEOUT_S: Final = 5.0
# Streams waiting on an empty ring borrow worker threads; they get their own few so /seed,
# PUT /config/queue and /metrics never queue behind them, and their number is capped.
STREAM_WAIT_THREADS: Final = 4
MAX_OPEN_STREAMS: Final = 64
TOO_MANY_STREAMS_ERROR: Final = f"Too many open streams (at most {MAX_OPEN_STREAMS})"
BINARY: Final = "application/octet-stream"
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_ROUTES: Final = ("seed", "generate", "stream", "config")
_OUTCOMES: Final = ("ok", "invalid", "empty", "error", "disconnected")


# -- the running service -------------------------------------------------------------------------


@dataclass
class VirtioService:
    """Everything the lifespan opened; ``app.state.lokey``. Close it with :meth:`close`."""

    settings: VirtioSettings
    clock: Clock
    ring: ByteRing
    feeder: FifoFeeder | None
    registry: CollectorRegistry
    started_at: float
    #: set on SIGTERM / SIGINT (and by :meth:`close`): open streams end at their next chunk
    stopping: threading.Event = field(default_factory=threading.Event)
    requests: Counter[tuple[str, str]] = field(
        default_factory=lambda: Counter(
            {(route, outcome): 0 for route in _ROUTES for outcome in _OUTCOMES}
        )
    )
    bytes_served: Counter[str] = field(
        default_factory=lambda: Counter({"generate": 0, "stream": 0})
    )
    seeded_items: int = 0
    seeded_bytes: int = 0
    open_streams: int = 0
    stream_waits: anyio.CapacityLimiter | None = None  # made in the lifespan (needs the loop)
    closed: bool = False

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): running, the ring has a capacity, the pipe writer (if any) runs."""
        if self.closed or self.stopping.is_set():
            return False, "stopping"
        if self.ring.capacity_items <= 0:
            return False, "the queue has no capacity"
        if self.feeder is not None and not self.feeder.snapshot().running:
            return False, f"the named-pipe writer for {self.settings.pipe_path} is not running"
        return True, "healthy"

    def pipe_view(self) -> dict[str, object] | None:
        if self.feeder is None:
            return None
        stats = self.feeder.snapshot()
        return {
            "path": stats.path,
            "state": "running" if stats.running else "stopped",
            "mode": f"{self.settings.pipe_mode:04o}",  # applied only to a FIFO the service creates
            "pipe_size": stats.pipe_size,
            "bytes_written": stats.bytes_written,
            "reader_connects": stats.reader_connects,
            "stalls": stats.stalls,
            "errors": stats.errors,
            "last_error": stats.last_error,
            "restarts": stats.restarts,
        }

    def queue_view(self) -> dict[str, int]:
        """The reference's ``GET /config/queue`` fields (whole 32-byte items, as the reference
        counted), plus LoKey's exact byte counts (the ring works at byte granularity)."""
        stats = self.ring.snapshot()
        return {
            "queue_size": stats.capacity_items,
            "queue_current": stats.current_items,
            "total_generated": stats.generated_items,
            "consumed_count": stats.consumed_items,
            "queue_dropped": stats.dropped_items,
            "item_size": stats.item_size,
            "queue_bytes": stats.current_bytes,
            "capacity_bytes": stats.capacity_bytes,
            "generated_bytes": stats.generated,
            "consumed_bytes": stats.consumed,
            "dropped_bytes": stats.dropped,
        }

    def close(self) -> None:
        """End open streams and stop the pipe writer.

        The FIFO's keeper descriptor stays open (process-wide, see :mod:`lokey.virtio.fifo`):
        a QEMU reader must never see end-of-file, not even between a shutdown and a restart of
        the app within one process; the kernel closes it when the process exits.
        """
        if self.closed:
            return
        self.closed = True
        self.stopping.set()
        if self.feeder is not None:
            self.feeder.stop(STOP_TIMEOUT_S)


def _open_service(settings: VirtioSettings, clock: Clock | None) -> VirtioService:
    the_clock = clock if clock is not None else SystemClock()
    ring = ByteRing(capacity_items=settings.queue_size)
    feeder: FifoFeeder | None = None
    if settings.pipe_path is not None:
        if settings.pipe_mode & 0o002:
            log.warning(
                "LOKEY_VIRTIO_PIPE_MODE %04o makes %s world-writable",
                settings.pipe_mode,
                settings.pipe_path,
            )
        feeder = FifoFeeder(
            ring, settings.pipe_path, mode=settings.pipe_mode, pipe_size=settings.pipe_size
        )
        feeder.start()  # FifoError (cannot create or open the FIFO): the service cannot start
        log.info("feeding the named pipe %s (mode %04o)", settings.pipe_path, settings.pipe_mode)
    else:
        log.info("named pipe disabled (VIRTIO_PIPE_PATH is empty)")
    registry = CollectorRegistry(auto_describe=False)
    service = VirtioService(
        settings=settings,
        clock=the_clock,
        ring=ring,
        feeder=feeder,
        registry=registry,
        started_at=the_clock.monotonic(),
    )
    registry.register(_VirtioCollector(service))
    return service


@contextmanager
def _stop_streams_on_exit_signals(service: VirtioService) -> Iterator[None]:
    """Chain SIGTERM / SIGINT so open streams end before uvicorn waits for them to finish.

    uvicorn's graceful shutdown waits for in-flight responses and runs the lifespan's shutdown
    only afterwards, so an unbounded ``/stream`` would hold it up forever. Only in the main
    thread (where uvicorn installs its handlers); elsewhere (tests) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(number)
        if not callable(handler):
            continue

        def chained(
            signum: int, frame: FrameType | None, _next: Callable[..., Any] = handler
        ) -> None:
            service.stopping.set()
            _next(signum, frame)

        previous[number] = handler
        signal.signal(number, chained)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# -- metrics ---------------------------------------------------------------------------------------


class _VirtioCollector(Collector):
    """Collected on each scrape from the ring, the pipe writer and the request counters."""

    def __init__(self, service: VirtioService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        stats = service.ring.snapshot()
        healthy, _ = service.health()
        yield GaugeMetricFamily("lokey_virtio_healthy", "1 while /health answers 200", healthy)
        yield GaugeMetricFamily(
            "lokey_virtio_queue_capacity_items", "Ring capacity (items)", stats.capacity_items
        )
        yield GaugeMetricFamily(
            "lokey_virtio_queue_items", "Items in the ring", value=stats.current_items
        )
        yield GaugeMetricFamily(
            "lokey_virtio_queue_bytes", "Bytes in the ring", value=stats.current_bytes
        )
        yield CounterMetricFamily(
            "lokey_virtio_queue_generated_bytes", "Bytes appended to the ring", stats.generated
        )
        yield CounterMetricFamily(
            "lokey_virtio_queue_consumed_bytes", "Bytes taken from the ring", stats.consumed
        )
        yield CounterMetricFamily(
            "lokey_virtio_queue_dropped_bytes",
            "Bytes dropped (oldest first) when full",
            stats.dropped,
        )
        served = CounterMetricFamily(
            "lokey_virtio_served_bytes", "Bytes served over HTTP, by route", labels=["route"]
        )
        for route, count in service.bytes_served.items():
            served.add_metric([route], count)
        yield served
        yield GaugeMetricFamily(
            "lokey_virtio_open_streams", "Open /stream responses", value=service.open_streams
        )
        yield CounterMetricFamily(
            "lokey_virtio_seeded_bytes", "Bytes appended by POST /seed", value=service.seeded_bytes
        )
        if service.feeder is not None:
            pipe = service.feeder.snapshot()
            yield GaugeMetricFamily(
                "lokey_virtio_pipe_running", "1 while the named-pipe writer runs", pipe.running
            )
            yield CounterMetricFamily(
                "lokey_virtio_pipe_bytes_written", "Bytes written to the FIFO", pipe.bytes_written
            )
            yield CounterMetricFamily(
                "lokey_virtio_pipe_reader_connects",
                "Readers that opened the FIFO",
                value=pipe.reader_connects,
            )
            yield CounterMetricFamily(
                "lokey_virtio_pipe_stalls", "Writer waits on an empty ring", value=pipe.stalls
            )
            yield CounterMetricFamily(
                "lokey_virtio_pipe_errors", "Named-pipe writer errors", value=pipe.errors
            )
        requests = CounterMetricFamily(
            "lokey_virtio_requests",
            "Requests to /seed, /generate, /stream and /config/queue by outcome",
            labels=["route", "outcome"],
        )
        for route in _ROUTES:
            for outcome in _OUTCOMES:
                requests.add_metric([route, outcome], service.requests[(route, outcome)])
        yield requests


# -- request parsing -------------------------------------------------------------------------------


class _ClientError(Exception):
    """A client error: 400 (or ``status``) with ``message`` and extra JSON fields."""

    def __init__(self, message: str, *, status: int = 400, seed: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.seed = seed

    def response(self) -> JSONResponse:
        if self.seed is None:
            return error_response(self.status, self.message)
        return error_response(self.status, self.message, seed=self.seed)


async def _json_body(request: Request) -> object:
    """The body as JSON, at most :data:`MAX_BODY_BYTES`; anything else is ``_ClientError``."""
    declared = request.headers.get("content-length", "")
    too_large = _ClientError(f"{BODY_TOO_LARGE_ERROR} (limit {MAX_BODY_BYTES:,} bytes)", status=413)
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise _ClientError(BODY_ERROR) from None


def _parse_seeds(body: object) -> list[bytes]:
    """``{"seeds": [hex, ...]}``, every entry non-empty hex, decoded; else ``_ClientError``."""
    if not isinstance(body, dict):
        raise _ClientError(BODY_ERROR)
    seeds = body.get("seeds")
    if not isinstance(seeds, list):
        raise _ClientError(BODY_ERROR)
    if not seeds:
        raise _ClientError(NO_SEEDS_ERROR)
    material: list[bytes] = []
    for index, text in enumerate(seeds):
        if not isinstance(text, str):
            raise _ClientError(f"Invalid seed {index} (not a string)", seed=index)
        if not text:
            raise _ClientError(f"Invalid seed {index} (empty)", seed=index)
        if len(text) % 2 or not _HEX_DIGITS.issuperset(text):
            raise _ClientError(f"Invalid seed {index} (not hex)", seed=index)
        material.append(bytes.fromhex(text))
    return material


def _one_int(
    request: Request, name: str, upper: int, error: str, default: int | None
) -> int | None:
    """Query parameter ``name`` as 1..``upper`` (Go ``Atoi`` syntax), ``default`` if absent."""
    raw = request.query_params.getlist(name)
    if not raw:
        return default
    value = strict_int(raw[0], 1, upper) if len(raw) == 1 else None
    if value is None:
        raise _ClientError(error)
    return value


# -- routes --------------------------------------------------------------------------------------


def _service(request: Request) -> VirtioService:
    service = getattr(request.app.state, "lokey", None)
    if not isinstance(service, VirtioService):
        raise RuntimeError("the VirtIO service is not running (lifespan not started)")
    return service


def _refused(service: VirtioService, route: str, exc: _ClientError) -> JSONResponse:
    service.requests[(route, "invalid")] += 1
    return exc.response()


async def _health(request: Request) -> JSONResponse:
    service = _service(request)
    healthy, reason = service.health()
    if healthy:
        return JSONResponse({"status": "healthy", "timestamp": rfc3339_now()})
    return JSONResponse(
        {
            "status": "unhealthy",
            "timestamp": rfc3339_now(),
            "details": {
                "queue": service.ring.capacity_items > 0,
                "pipe": None if service.feeder is None else service.feeder.snapshot().running,
                "reason": reason,
            },
        },
        status_code=503,
    )


async def _info(request: Request) -> JSONResponse:
    service = _service(request)
    healthy, _ = service.health()
    body: dict[str, object] = {"status": "running"}  # spec §4: the reference's keys first
    if service.settings.pipe_path is not None:
        body["pipe_path"] = str(service.settings.pipe_path)
    body.update(
        {
            "healthy": healthy,
            "pipe": service.pipe_view(),
            "queue": service.queue_view(),
            "served_bytes": dict(service.bytes_served),
            "open_streams": service.open_streams,
            "uptime_s": round(service.clock.monotonic() - service.started_at, 3),
        }
    )
    return JSONResponse(body)


async def _generate(request: Request) -> Response:
    service = _service(request)
    try:
        count = _one_int(request, "count", MAX_COUNT, COUNT_ERROR, 1)
    except _ClientError as exc:
        return _refused(service, "generate", exc)
    assert count is not None
    data = service.ring.take_exact(count * VALUE_BYTES)  # all or nothing, under the ring's lock
    if data is None:
        service.requests[("generate", "empty")] += 1
        return error_response(503, EMPTY_ERROR, headers={"Retry-After": "1"})
    service.requests[("generate", "ok")] += 1
    service.bytes_served["generate"] += len(data)
    values = [data[i : i + VALUE_BYTES].hex() for i in range(0, len(data), VALUE_BYTES)]
    return JSONResponse({"data": values[0] if count == 1 else values})


class _RingStream(Response):
    """The ``/stream`` body as a raw ASGI response (chunked, one ``send`` per chunk).

    A listener task reads ``receive`` and raises the ``gone`` flag on ``http.disconnect``; the
    sender checks it before every take, so no byte is taken from the ring once the client has
    been seen to leave. Waits on an empty ring run in a worker thread, at most
    :data:`WAIT_SLICE_S` each, so the flag (and a shutdown) is noticed promptly.
    """

    def __init__(self, service: VirtioService, chunk_size: int, max_bytes: int | None) -> None:
        super().__init__(status_code=200, media_type=BINARY)
        self.service = service
        self.chunk_size = chunk_size
        self.max_bytes = max_bytes
        self.sent = 0
        self.gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        service.open_streams += 1
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._listen, receive)
                outcome = await self._send_all(send)
                tasks.cancel_scope.cancel()
        finally:
            service.open_streams -= 1
        service.requests[("stream", outcome)] += 1

    async def _listen(self, receive: Receive) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                return

    async def _send_all(self, send: Send) -> str:
        service = self.service
        ring = service.ring
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", BINARY.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        while True:
            await anyio.lowlevel.checkpoint()  # let the listener see a pending disconnect
            if self.gone:
                return "disconnected"
            if service.stopping.is_set():
                break
            want = self.chunk_size
            if self.max_bytes is not None:
                want = min(want, self.max_bytes - self.sent)
                if want <= 0:
                    break
            data = ring.take(want)  # only what this send carries
            if not data:
                await anyio.to_thread.run_sync(
                    ring.wait_for_data, WAIT_SLICE_S, limiter=service.stream_waits
                )
                continue
            try:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            except OSError:  # the client left during this send: this one chunk is lost
                self.gone = True
                return "disconnected"
            self.sent += len(data)
            service.bytes_served["stream"] += len(data)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return "disconnected"
        return "ok"


async def _stream(request: Request) -> Response:
    service = _service(request)
    try:
        chunk_size = _one_int(
            request, "chunk_size", MAX_CHUNK_SIZE, CHUNK_SIZE_ERROR, DEFAULT_CHUNK_SIZE
        )
        max_bytes = _one_int(request, "max_bytes", MAX_MAX_BYTES, MAX_BYTES_ERROR, None)
    except _ClientError as exc:
        return _refused(service, "stream", exc)
    assert chunk_size is not None
    if service.open_streams >= MAX_OPEN_STREAMS:
        service.requests[("stream", "busy")] += 1
        return error_response(503, TOO_MANY_STREAMS_ERROR, headers={"Retry-After": "1"})
    return _RingStream(service, chunk_size, max_bytes)


async def _seed(request: Request) -> JSONResponse:
    service = _service(request)
    try:
        body = await _json_body(request)
        material = await run_in_threadpool(_parse_seeds, body)
    except _ClientError as exc:
        return _refused(service, "seed", exc)
    dropped = 0
    for seed in material:  # validated as a whole above: nothing is appended on a 400
        dropped += service.ring.push(seed)
    total = sum(map(len, material))
    service.seeded_items += len(material)
    service.seeded_bytes += total
    service.requests[("seed", "ok")] += 1
    return JSONResponse(
        {"status": "seeded", "count": len(material), "bytes": total, "dropped": dropped}
    )


async def _get_queue(request: Request) -> JSONResponse:
    return JSONResponse(_service(request).queue_view())


async def _put_queue(request: Request) -> JSONResponse:
    service = _service(request)
    try:
        body = await _json_body(request)
        size = body.get("queue_size") if isinstance(body, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size == 0:
            raise _ClientError(BODY_ERROR)  # the reference: 0 and missing are the same
        if not MIN_QUEUE_SIZE <= size <= MAX_QUEUE_SIZE:
            raise _ClientError(QUEUE_SIZE_ERROR)
    except _ClientError as exc:
        return _refused(service, "config", exc)
    await run_in_threadpool(service.ring.resize, size)  # copies up to a million items
    service.requests[("config", "ok")] += 1
    log.info("queue resized to %d items", size)
    return JSONResponse(service.queue_view())


async def _metrics(request: Request) -> Response:
    service = _service(request)
    body = await run_in_threadpool(generate_latest, service.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# -- the app -------------------------------------------------------------------------------------


def create_virtio_app(settings: VirtioSettings, *, clock: Clock | None = None) -> FastAPI:
    """The VirtIO service as a FastAPI app; opens nothing until its lifespan starts.

    ``clock``: the monotonic clock for ``uptime_s`` (default the system clock).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(_open_service, settings, clock)
        service.stream_waits = anyio.CapacityLimiter(STREAM_WAIT_THREADS)
        app.state.lokey = service
        try:
            with _stop_streams_on_exit_signals(service):
                yield
        finally:
            await anyio.to_thread.run_sync(service.close)
            del app.state.lokey

    app = new_app(
        title="LoKey VirtIO",
        summary="Random bytes for virtual machines over HTTP and a named pipe (spec §4)",
        lifespan=lifespan,
        cors_origin=settings.cors_origin,
        body_limit=MAX_BODY_BYTES,
    )
    app.add_api_route("/health", _health, methods=["GET"], **_HEALTH_DOC)
    app.add_api_route("/info", _info, methods=["GET"])
    app.add_api_route("/generate", _generate, methods=["GET"], **_GENERATE_DOC)
    app.add_api_route(
        "/stream",
        _stream,
        methods=["GET"],
        response_model=None,
        response_class=Response,
        **_STREAM_DOC,
    )
    app.add_api_route("/seed", _seed, methods=["POST"], **_SEED_DOC)
    app.add_api_route("/config/queue", _get_queue, methods=["GET"])
    app.add_api_route("/config/queue", _put_queue, methods=["PUT"], **_QUEUE_DOC)
    app.add_api_route(
        "/metrics", _metrics, methods=["GET"], response_class=Response, **_METRICS_DOC
    )
    return app


# -- the OpenAPI document: what the handlers above check and answer ------------------------------

_HEALTH_DOC: Final = health_documented("The named-pipe writer is not running")
_VALUE: Final = {"type": "string", "pattern": f"^[0-9a-f]{{{2 * VALUE_BYTES}}}$"}
_GENERATE_DOC: Final = documented(
    ok={
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"data": {"anyOf": [_VALUE, {"type": "array", "items": _VALUE}]}},
                "required": ["data"],
            }
        }
    },
    errors={400: COUNT_ERROR, 503: f"{EMPTY_ERROR} (`Retry-After`)"},
    query=[{"name": "count", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}}],
)
_STREAM_DOC: Final = documented(
    ok={BINARY: {"schema": {"type": "string", "format": "binary"}}},
    errors={400: "Invalid chunk_size or max_bytes", 503: TOO_MANY_STREAMS_ERROR},
    query=[
        {
            "name": "chunk_size",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_CHUNK_SIZE},
        },
        {
            "name": "max_bytes",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_MAX_BYTES},
        },
    ],
)
_SEED_DOC: Final = documented(
    ok={"application/json": {"schema": {"type": "object", "required": ["status", "count"]}}},
    errors={400: "Invalid request (nothing was appended)"},
    body={
        "type": "object",
        "properties": {
            "seeds": {
                "type": "array",
                "items": {"type": "string", "pattern": "^([0-9a-fA-F]{2})+$"},
                "minItems": 1,
            }
        },
        "required": ["seeds"],
    },
)
_QUEUE_DOC: Final = documented(
    ok={"application/json": {"schema": {"type": "object", "required": ["queue_size"]}}},
    errors={400: QUEUE_SIZE_ERROR},
    body={
        "type": "object",
        "properties": {
            "queue_size": {"type": "integer", "minimum": MIN_QUEUE_SIZE, "maximum": MAX_QUEUE_SIZE}
        },
        "required": ["queue_size"],
    },
)
_METRICS_DOC: Final = documented(ok={"text/plain": {"schema": {"type": "string"}}})

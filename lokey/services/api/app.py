"""The API service (port 8080): queues, formats, configuration, status (spec/service-api.md §1).

Build it with :func:`create_api_app` from an :class:`~lokey.services.settings.ApiSettings`.
The lifespan opens the store (``STORE_URL``, else LMDB at ``DB_PATH``, or memory with
``DB_IMPLEMENTATION=channel``), one ``httpx.AsyncClient`` with the timeout, the lease keeper
(:mod:`.leases`) and the background jobs (:mod:`.background`); it closes them in reverse order,
releasing the leases it holds. Store calls always run in worker threads, never on the event
loop. With a shared store the run-time configuration is read back every CONFIG_RELOAD_S, so a
change made through another API instance applies here too.

What LoKey does where the reference is wrong (spec §1.2-§1.8, §8):

* ``POST /api/v1/data`` (and ``GET`` with the same query parameters, for curl): exactly
  ``limit`` values decoded from the queue's byte stream across item boundaries; ``offset``
  counts values and the skipped bytes stay queued; delete-on-read by default, committed before
  the answer leaves; not enough data → **503** with Retry-After, never a short 200. ``consume:
  false`` (a peek) needs ``ALLOW_PEEK=true`` and is marked ``X-LoKey-Consumed: false``.
* Validation errors are 400 ``{"error"}`` naming the field as the client wrote it; malformed JSON
  is the reference's ``Invalid request body``; bodies over 64 KiB get 413.
* ``PUT /api/v1/config/queue`` resizes every back-end; ``/config/virtio`` changes the VirtIO
  ring size only (forwarded with a timeout), switches the seeding source at once and takes an
  optional ``seed_interval_seconds``; configuration is persisted in the store.
* ``/metrics`` computes the sixteen gauges at scrape time, plus LoKey's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Final, Literal, TypeGuard, TypeVar, get_args

import anyio.to_thread
import httpx
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from lokey.clock import Clock, SystemClock
from lokey.errors import NotEnoughDataError, StoreError
from lokey.quality.legacy import apt_window_from_setting
from lokey.services.api.background import (
    Background,
    PollSettings,
    Runtime,
    TrngQuality,
    run_loop,
)
from lokey.services.api.formats import DataFormat, decode
from lokey.services.api.leases import (
    FORTUNA_POLL,
    LeaseKeeper,
    fortuna_seed_lease,
    holder_id,
    trng_poll_lease,
)
from lokey.services.api.peers import STATUS_TIMEOUT_S, PeerError, Peers
from lokey.services.api.security import document_security, security_guards
from lokey.services.api.views import (
    InstanceScrape,
    Scrape,
    ScrapeCollector,
    VirtioLevel,
    breaker_view,
    controller_instance_view,
    database_view,
    fortuna_instance_view,
    health_tests_view,
    queue_view,
    usage_view,
    virtio_view,
)
from lokey.services.common import error_response, new_app, rfc3339_now
from lokey.services.settings import MAX_QUEUE_SIZE, MIN_QUEUE_SIZE, ApiSettings, SeedingSource
from lokey.store import SOURCES, QueueStore, Source, open_store_url

__all__ = [
    "BODY_ERROR",
    "MAX_LIMIT",
    "NO_DATA_ERROR",
    "PEEK_ERROR",
    "VIRTIO_SOURCE_ERROR",
    "ApiService",
    "create_api_app",
]

log = logging.getLogger("lokey.services.api")
T = TypeVar("T")

BODY_ERROR: Final = "Invalid request body"  # spec §0 / §1.2, verbatim
NO_DATA_ERROR: Final = "No data available"  # spec §1.2, verbatim
RETRIEVE_ERROR: Final = "Failed to retrieve data"  # spec §1.2: a store failure
STATUS_ERROR: Final = "Failed to get system status"  # spec §1.6
DB_UNHEALTHY_ERROR: Final = "Database is not healthy"  # spec §1.3
UPDATE_QUEUE_ERROR: Final = "Failed to update queue configuration"  # spec §1.3
VIRTIO_SOURCE_ERROR: Final = (  # spec §1.2: VirtIO is a consumer endpoint
    "VirtIO is a consumer endpoint, not a data source: use source 'trng' or 'fortuna', "
    "or read the named pipe /var/run/lokey/virtio-rng, or GET /stream on the VirtIO service"
)
PEEK_ERROR: Final = (
    "consume=false (reading without consuming) is disabled: the same bytes could be served "
    "twice; the operator can enable it for diagnostics with ALLOW_PEEK=true"
)
MAX_LIMIT: Final = 100_000  # spec §1.2
DATA_PATH: Final = "/api/v1/data"
_NO_STORE: Final = {"Cache-Control": "no-store"}  # data answers must never be replayed
MAX_BODY_BYTES: Final = 64 << 10  # every API body is a few dozen bytes
NO_DATA_RETRY_S: Final = 1
#: With a shared store, how often the run-time configuration another API instance may have
#: changed (PUT /config/consume, /config/virtio) is read back: a second is as quick as an
#: operator notices, and one small read a second is nothing for the store.
CONFIG_RELOAD_S: Final = 1.0
_CONFIG_CONSUME = "consume"
_CONFIG_VIRTIO_SOURCE = "virtio_seeding_source"
_CONFIG_VIRTIO_INTERVAL = "virtio_seed_interval_seconds"
_CONFIG_VIRTIO_SIZE = "virtio_queue_size"


# -- request bodies (their JSON schemas are the OpenAPI document's) ----------------------------

SourceName = Literal["trng", "fortuna", "virtio"]
_DIGITS: Final = re.compile(r"[0-9]+")  # ASCII only (str.isdigit admits other scripts)
_SEEDING_SOURCES: Final[tuple[SeedingSource, ...]] = get_args(SeedingSource)
QueueSize = Annotated[StrictInt, Field(ge=MIN_QUEUE_SIZE, le=MAX_QUEUE_SIZE)]


class DataRequest(BaseModel):
    """``POST /api/v1/data`` (spec §1.2)."""

    model_config = ConfigDict(frozen=True)

    format: DataFormat
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_LIMIT)]
    offset: Annotated[StrictInt, Field(ge=0)] = 0
    source: SourceName
    consume: StrictBool | None = None


def _decimal(value: object) -> object:
    """Query integers as plain ASCII digits (``5.0``, ``1_0``, `` 5``, ``+5`` are refused)."""
    if isinstance(value, str) and _DIGITS.fullmatch(value) is None:
        raise ValueError("must be a non-negative decimal integer (digits only)")
    return value


def _true_false(value: object) -> object:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value == "true"
    return value


class DataQuery(BaseModel):
    """``GET /api/v1/data``: the same fields as query parameters (text, parsed as numbers)."""

    model_config = ConfigDict(frozen=True)

    format: DataFormat
    # the bounds before the validator, or the OpenAPI document shows "ge"/"le" (not JSON
    # Schema) instead of minimum/maximum and so documents no range at all
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), BeforeValidator(_decimal)]
    offset: Annotated[int, Field(ge=0), BeforeValidator(_decimal)] = 0
    source: SourceName
    consume: Annotated[bool | None, BeforeValidator(_true_false)] = None

    def request(self) -> DataRequest:
        return DataRequest(**self.model_dump())


class QueueConfig(BaseModel):
    """``PUT /api/v1/config/queue``: all three required, 10..1,000,000 (spec §1.3)."""

    trng_queue_size: QueueSize
    fortuna_queue_size: QueueSize
    virtio_queue_size: QueueSize


class ConsumeConfig(BaseModel):
    """``PUT /api/v1/config/consume`` (spec §1.4)."""

    consume: StrictBool


class VirtioConfig(BaseModel):
    """``PUT /api/v1/config/virtio`` (spec §1.5, plus LoKey's optional interval)."""

    seeding_source: SeedingSource
    queue_size: QueueSize
    seed_interval_seconds: Annotated[StrictInt, Field(ge=10, le=3600)] | None = None


# -- the service ---------------------------------------------------------------------------------


@dataclass
class ApiService:
    """What the routes share; built by the lifespan."""

    settings: ApiSettings
    store: QueueStore
    peers: Peers
    runtime: Runtime
    quality: TrngQuality
    background: Background
    virtio_size: int  # the last VirtIO ring size configured here (fallback for GET)
    leases: LeaseKeeper
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    bytes_served: Counter[str] = field(default_factory=Counter)
    #: One configuration change at a time: persist-then-apply must not interleave, or the
    #: running values could differ from the saved ones.
    config_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def persist(self, values: dict[str, object]) -> None:
        await anyio.to_thread.run_sync(self.store.update_config, values)

    async def reload_config(self) -> float:
        """Apply the run-time configuration saved in a shared store (another API instance
        may have changed it); the seconds until the next reload.

        Read and applied under the configuration lock: a change made through this instance
        meanwhile must not be overwritten by what the store held a moment before it."""
        async with self.config_lock:
            saved = await anyio.to_thread.run_sync(self.store.config)
            consume = saved.get(_CONFIG_CONSUME)
            if isinstance(consume, bool):
                # the ALLOW_PEEK rule holds here too: without it reads always consume
                self.runtime.consume = consume or not self.settings.allow_peek
            source = saved.get(_CONFIG_VIRTIO_SOURCE)
            if source in _SEEDING_SOURCES:
                self.runtime.virtio_source = next(s for s in _SEEDING_SOURCES if s == source)
            interval = saved.get(_CONFIG_VIRTIO_INTERVAL)
            if _is_int(interval) and interval != self.runtime.virtio_interval_s:
                self.runtime.virtio_interval_s = interval
                self.background.virtio_interval_changed()
            size = saved.get(_CONFIG_VIRTIO_SIZE)
            if _is_int(size):
                self.virtio_size = size
            self.background.seeders_hints(saved)
        return CONFIG_RELOAD_S

    async def virtio_level(self) -> VirtioLevel:
        if self.peers.virtio is None:
            return VirtioLevel()
        try:
            answer = await self.peers.virtio_queue(timeout=STATUS_TIMEOUT_S)
            return VirtioLevel.from_answer(answer)
        except PeerError:
            return VirtioLevel()


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _open_store(settings: ApiSettings) -> QueueStore:
    url = settings.store
    store = open_store_url(url, sync=settings.db_sync)
    # display: a Redis password never reaches the log
    log.info("queue store: %s (shared with other API instances: %s)", url.display, store.shared)
    return store


def _apply_start_config(settings: ApiSettings, store: QueueStore) -> tuple[Runtime, int]:
    """Explicitly set variables win; otherwise the persisted run-time values; else defaults."""
    explicit = settings.explicit
    first_run = not store.config().get("configured")
    sizes: tuple[tuple[Source, str, int], ...] = (
        ("trng", "trng_queue_size", settings.trng_queue_size),
        ("fortuna", "fortuna_queue_size", settings.fortuna_queue_size),
    )
    for queue, name, wanted in sizes:
        if (name in explicit or first_run) and store.stats(queue).capacity != wanted:
            store.resize(queue, wanted)
    saved = store.config()
    consume = saved.get(_CONFIG_CONSUME, True)
    if not isinstance(consume, bool) or (not consume and not settings.allow_peek):
        if consume is False:
            log.warning("the saved consume=false needs ALLOW_PEEK=true; consuming reads apply")
        consume = True
    source: SeedingSource = settings.virtio_seeding_source
    saved_source = saved.get(_CONFIG_VIRTIO_SOURCE)
    if "virtio_seeding_source" not in explicit:
        source = next((s for s in _SEEDING_SOURCES if s == saved_source), source)
    interval = settings.virtio_seed_interval_s
    saved_interval = saved.get(_CONFIG_VIRTIO_INTERVAL)
    if "virtio_seed_interval_s" not in explicit and isinstance(saved_interval, int):
        interval = saved_interval
    size = settings.virtio_queue_size
    saved_size = saved.get(_CONFIG_VIRTIO_SIZE)
    if "virtio_queue_size" not in explicit and isinstance(saved_size, int):
        size = saved_size
    store.update_config(
        {
            _CONFIG_CONSUME: consume,
            _CONFIG_VIRTIO_SOURCE: source,
            _CONFIG_VIRTIO_INTERVAL: interval,
            _CONFIG_VIRTIO_SIZE: size,
            "configured": True,
        }
    )
    return Runtime(consume=consume, virtio_source=source, virtio_interval_s=interval), size


def _poll_settings(settings: ApiSettings) -> PollSettings:
    return PollSettings(
        trng_interval_s=settings.trng_poll_interval_ms / 1000,
        trng_samples=settings.trng_poll_samples,
        fortuna_interval_s=settings.fortuna_poll_interval_ms / 1000,
        fortuna_low_water=settings.fortuna_low_water_bytes,
        fortuna_seed_interval_s=settings.fortuna_seed_interval_s,
        fortuna_seed_samples=settings.fortuna_seed_samples,
        virtio_poll_s=settings.virtio_poll_interval_ms / 1000,
        virtio_seed_bytes=settings.virtio_seed_bytes,
        virtio_trng_reserve=settings.virtio_trng_reserve_bytes,
        apt_window=apt_window_from_setting(settings.trng_apt_window_size),
    )


def _service(request: Request) -> ApiService:
    service: ApiService = request.app.state.lokey
    return service


# -- errors --------------------------------------------------------------------------------------


def _field_name(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body", "query"))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """400 naming each field as the client wrote it; malformed or non-object JSON is the
    reference's ``Invalid request body``."""
    assert isinstance(exc, RequestValidationError)
    headers = _NO_STORE if request.url.path == DATA_PATH else None
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid" or loc == ("body",):
            return error_response(400, BODY_ERROR, headers=headers)
        name = _field_name(loc)
        message = str(error.get("msg", "invalid"))
        problems.append(f"{name}: {message}" if name else message)
    return error_response(400, "; ".join(problems) or BODY_ERROR, headers=headers)


class JsonBodiesMiddleware:
    """Every request body is JSON, whatever its ``Content-Type`` says.

    The reference binds bodies with gin's ``ShouldBindJSON``, which ignores the header, so
    ``curl -d '{...}'`` (sent as ``application/x-www-form-urlencoded``) works; FastAPI would
    refuse it. The header is rewritten before routing; the body is not touched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """The framework's own 400 for a body it cannot even decode (not UTF-8, nested too deep)
    is the reference's ``Invalid request body``; everything else keeps its detail."""
    assert isinstance(exc, StarletteHTTPException)
    message = BODY_ERROR if exc.status_code == 400 else str(exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """A store failure is the server's fault (500, the spec's string), never the client's."""
    log.error("the store failed %s %s: %s", request.method, request.url.path, exc)
    message = (
        UPDATE_QUEUE_ERROR if request.url.path == "/api/v1/config/queue" else DB_UNHEALTHY_ERROR
    )
    return error_response(500, message)


# -- data ----------------------------------------------------------------------------------------


def _render(fmt: DataFormat, data: bytes) -> bytes:
    return json.dumps(decode(fmt, data), separators=(",", ":")).encode()


async def _serve_data(service: ApiService, req: DataRequest) -> Response:
    """Every answer to a data request says ``Cache-Control: no-store``: a cache that replayed
    one would serve the same bytes twice (and ``GET`` consumes, so nothing may prefetch it)."""
    response = await _data_response(service, req)
    response.headers.update(_NO_STORE)
    return response


async def _data_response(service: ApiService, req: DataRequest) -> Response:
    fmt = req.format.value
    if req.source == "virtio":
        service.requests[("virtio", fmt, "invalid")] += 1
        return error_response(400, VIRTIO_SOURCE_ERROR)
    source: Source = req.source
    consume = service.runtime.consume if req.consume is None else req.consume
    if not consume and not service.settings.allow_peek:
        service.requests[(source, fmt, "invalid")] += 1
        return error_response(400, PEEK_ERROR)
    width = req.format.width
    try:
        data = await anyio.to_thread.run_sync(
            lambda: service.store.take(
                source, req.limit * width, skip=req.offset * width, consume=consume
            )
        )
    except NotEnoughDataError:
        service.requests[(source, fmt, "no_data")] += 1
        if source == "fortuna":
            service.background.fortuna_wake.set()
        return error_response(503, NO_DATA_ERROR, headers={"Retry-After": str(NO_DATA_RETRY_S)})
    except StoreError:
        service.requests[(source, fmt, "error")] += 1
        log.exception("the store failed a data request")
        return error_response(500, RETRIEVE_ERROR)
    if source == "fortuna" and consume:
        service.background.fortuna_wake.set()
    service.requests[(source, fmt, "ok")] += 1
    service.bytes_served[source] += len(data)
    headers = {"X-LoKey-Consumed": "true" if consume else "false"}
    if req.format is DataFormat.BINARY:
        headers["Content-Disposition"] = "attachment; filename=random.bin"
        return Response(data, media_type="application/octet-stream", headers=headers)
    body = await run_in_threadpool(_render, req.format, data)
    return Response(body, media_type="application/json", headers=headers)


# -- the app -------------------------------------------------------------------------------------


def create_api_app(
    settings: ApiSettings,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    start_background: bool = True,
) -> FastAPI:
    """The API service as a FastAPI app; opens nothing until its lifespan starts.

    ``clock`` drives the seeding breakers and VirtIO interval (default: the system clock);
    ``transport`` replaces the network under the HTTP client (tests simulating a failing
    peer); ``start_background`` False leaves the polling and seeding steps to the caller
    (``app.state.lokey.background``).
    """
    the_clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await anyio.to_thread.run_sync(_open_store, settings)
        tasks: list[asyncio.Task[None]] = []
        try:
            runtime, virtio_size = await anyio.to_thread.run_sync(
                _apply_start_config, settings, store
            )
            async with httpx.AsyncClient(
                timeout=settings.http_timeout_s, transport=transport
            ) as client:
                peers = Peers(
                    client,
                    controller=settings.controller_addrs,
                    fortuna=settings.fortuna_addrs,
                    virtio=settings.virtio_addr,
                )
                leases = LeaseKeeper(store, holder_id(), settings.lease_s, the_clock)
                background = Background(
                    store=store,
                    peers=peers,
                    clock=the_clock,
                    runtime=runtime,
                    config=_poll_settings(settings),
                    leases=leases,
                )
                service = ApiService(
                    settings,
                    store,
                    peers,
                    runtime,
                    background.quality,
                    background,
                    virtio_size,
                    leases,
                )
                app.state.lokey = service
                if start_background:
                    tasks = _start_jobs(service)
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                    await leases.release()  # another instance takes over now, not in ttl
                    del app.state.lokey
        finally:
            await anyio.to_thread.run_sync(store.close)

    app = new_app(
        title="LoKey API",
        summary="Random data from the ATECC608A TRNG and Fortuna (spec/service-api.md §1)",
        lifespan=lifespan,
        cors_origin=settings.cors_origin,
        body_limit=MAX_BODY_BYTES,
        guards=security_guards(settings, the_clock),
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_middleware(JsonBodiesMiddleware)
    _data_routes(app)
    _config_routes(app)
    _status_routes(app)
    _install_openapi(app)
    document_security(app, settings)
    return app


def _start_jobs(service: ApiService) -> list[asyncio.Task[None]]:
    """One TRNG poll loop per controller (throughput grows with the chips), one Fortuna poll
    loop over every Fortuna, one seeding loop per Fortuna, VirtIO seeding; with a shared
    store also the lease keeper and the configuration reload."""
    background = service.background
    jobs: list[tuple[str, Callable[[], Awaitable[float]], asyncio.Event | None]] = []
    for index, controller in enumerate(background.controllers):
        jobs.append((f"trng poll {controller.url}", partial(background.poll_trng, index), None))
    jobs.append(("fortuna poll", background.poll_fortuna, background.fortuna_wake))
    for index, fortuna in enumerate(background.fortunas):
        seed = partial(background.seed_fortuna, index)
        jobs.append((f"fortuna seeding {fortuna.url}", seed, fortuna.seed_wake))
    jobs.append(("virtio seeding", background.seed_virtio, background.virtio_wake))
    if service.store.shared:
        jobs.append(("config reload", service.reload_config, None))
    tasks = [
        asyncio.create_task(run_loop(name, step, wake), name=name) for name, step, wake in jobs
    ]
    if service.leases.shared:
        tasks.append(asyncio.create_task(service.leases.run(), name="leases"))
    return tasks


_ERROR_SCHEMA: Final = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_CONTENT: Final = {"application/json": {"schema": _ERROR_SCHEMA}}
_DATA_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    200: {
        "description": "Exactly `limit` values (a JSON array) or bytes (`binary`)",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "integer"}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    503: {"description": "Not enough data queued (`Retry-After`)", "content": _ERROR_CONTENT},
}


_BOOLEANS: Final = {"type": "object", "additionalProperties": {"type": "boolean"}}  # by name or URL
_HEALTH_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    200: {
        "description": "Always 200: `degraded` names what is down in `details` (a peer is "
        "false unless every instance of it answers) and `instances` (by base URL)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["ok", "degraded"]},
                        "timestamp": {"type": "string"},
                        "details": _BOOLEANS,
                        "instances": {
                            "type": "object",
                            "properties": {"controller": _BOOLEANS, "fortuna": _BOOLEANS},
                            "required": ["controller", "fortuna"],
                        },
                    },
                    "required": ["status", "timestamp", "details", "instances"],
                }
            }
        },
    },
}

_READY_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    503: {
        "description": "No queue can serve (`Retry-After`)",
        "content": {"application/json": {"schema": {"type": "object", "required": ["ready"]}}},
    },
}


def _install_openapi(app: FastAPI) -> None:
    """The OpenAPI document as the API answers: 400 ``{"error"}`` where FastAPI would
    document its 422, a 413 for large bodies, and the error body's schema."""

    def build() -> dict[str, object]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None:
                    responses["400"] = {
                        "description": "Invalid request; the message names the field",
                        "content": _ERROR_CONTENT,
                    }
                    responses["413"] = {"description": "Body too large", "content": _ERROR_CONTENT}
                # the store failing is answered 500 wherever a route reads it (_store_error)
                responses.setdefault(
                    "500", {"description": "Store failure", "content": _ERROR_CONTENT}
                )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["ErrorBody"] = {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]


def _data_routes(app: FastAPI) -> None:
    @app.post(DATA_PATH, tags=["data"], responses=_DATA_RESPONSES)
    async def post_data(request: Request, body: DataRequest) -> Response:
        """Random values (JSON array) or bytes (``binary``); exactly ``limit`` of them."""
        return await _serve_data(_service(request), body)

    @app.get(DATA_PATH, tags=["data"], responses=_DATA_RESPONSES)
    async def get_data(request: Request, query: Annotated[DataQuery, Query()]) -> Response:
        """The same as ``POST``, with the fields as query parameters (for curl)."""
        repeated = sorted(
            {name for name, _ in request.query_params.multi_items()}
            & {
                name
                for name in DataQuery.model_fields
                if len(request.query_params.getlist(name)) > 1
            }
        )
        if repeated:
            return error_response(400, f"{repeated[0]}: given more than once", headers=_NO_STORE)
        return await _serve_data(_service(request), query.request())


def _config_routes(app: FastAPI) -> None:
    @app.get("/api/v1/config/queue", tags=["config"])
    async def get_queue(request: Request) -> JSONResponse:
        service = _service(request)
        if not await anyio.to_thread.run_sync(service.store.healthy):
            return error_response(500, DB_UNHEALTHY_ERROR)
        stats = {s: await anyio.to_thread.run_sync(service.store.stats, s) for s in SOURCES}
        level = await service.virtio_level()
        return JSONResponse(
            {
                "trng_queue_size": stats["trng"].capacity,
                "fortuna_queue_size": stats["fortuna"].capacity,
                "virtio_queue_size": level.queue_size if level.reachable else service.virtio_size,
            }
        )

    @app.put("/api/v1/config/queue", tags=["config"])
    async def put_queue(request: Request, body: QueueConfig) -> JSONResponse:
        service = _service(request)

        def resize() -> None:
            service.store.resize("trng", body.trng_queue_size)
            service.store.resize("fortuna", body.fortuna_queue_size)
            service.store.update_config({_CONFIG_VIRTIO_SIZE: body.virtio_queue_size})

        async with service.config_lock:
            await anyio.to_thread.run_sync(resize)
            service.virtio_size = body.virtio_queue_size
            forwarded = await _forward_virtio_size(service, body.virtio_queue_size)
        return JSONResponse({**body.model_dump(), "virtio_forwarded": forwarded})

    @app.get("/api/v1/config/consume", tags=["config"])
    async def get_consume(request: Request) -> JSONResponse:
        return JSONResponse({"consume": _service(request).runtime.consume})

    @app.put("/api/v1/config/consume", tags=["config"])
    async def put_consume(request: Request, body: ConsumeConfig) -> JSONResponse:
        service = _service(request)
        if not body.consume and not service.settings.allow_peek:
            return error_response(400, PEEK_ERROR)
        async with service.config_lock:
            await service.persist({_CONFIG_CONSUME: body.consume})
            service.runtime.consume = body.consume
        return JSONResponse({"consume": body.consume})

    async def get_virtio(request: Request) -> JSONResponse:
        service = _service(request)
        level = await service.virtio_level()
        return JSONResponse(
            {
                "seeding_source": service.runtime.virtio_source,
                "queue_size": level.queue_size if level.reachable else service.virtio_size,
                "seed_interval_seconds": service.runtime.virtio_interval_s,
            }
        )

    async def put_virtio(request: Request, body: VirtioConfig) -> JSONResponse:
        service = _service(request)
        async with service.config_lock:
            interval = body.seed_interval_seconds or service.runtime.virtio_interval_s
            await service.persist(
                {
                    _CONFIG_VIRTIO_SOURCE: body.seeding_source,
                    _CONFIG_VIRTIO_INTERVAL: interval,
                    _CONFIG_VIRTIO_SIZE: body.queue_size,
                }
            )
            service.runtime.virtio_source = body.seeding_source
            service.runtime.virtio_interval_s = interval
            service.virtio_size = body.queue_size
            service.background.virtio_interval_changed()
            forwarded = await _forward_virtio_size(service, body.queue_size)
        return JSONResponse(
            {
                "seeding_source": body.seeding_source,
                "queue_size": body.queue_size,
                "seed_interval_seconds": interval,
                "virtio_forwarded": forwarded,
            }
        )

    for path in ("/api/v1/config/virtio", "/config/virtio"):
        app.add_api_route(path, get_virtio, methods=["GET"], tags=["config"])
        app.add_api_route(path, put_virtio, methods=["PUT"], tags=["config"])


async def _forward_virtio_size(service: ApiService, size: int) -> bool:
    if service.peers.virtio is None:
        return False
    try:
        await service.peers.resize_virtio(size)
    except PeerError as exc:
        log.warning("VirtIO ring size not forwarded: %s", exc)
        return False
    return True


def _status_routes(app: FastAPI) -> None:
    @app.get("/api/v1/status", tags=["status"])
    async def status(request: Request) -> JSONResponse:
        service = _service(request)
        store = service.store

        def read() -> dict[str, object]:
            body: dict[str, object] = {s: queue_view(store.stats(s)) for s in SOURCES}
            body["database"] = database_view(store.database())
            body["usage"] = {s: usage_view(store.usage(s)) for s in SOURCES}
            return body

        try:
            body = await anyio.to_thread.run_sync(read)
        except StoreError:
            log.exception("status: the store failed")
            return error_response(500, STATUS_ERROR)
        body["virtio"] = virtio_view(await service.virtio_level())
        quality = service.quality
        body["trng_quality"] = quality.legacy().to_dict()
        body["health_tests"] = health_tests_view(
            quality.health(),
            batches_rejected=quality.batches_rejected,
            last_failure=quality.last_failure,
        )
        body["seeding"] = _seeding_view(service)
        body["instances"] = _instances_view(service)
        body["scale"] = _scale_view(service)
        ordered = ("trng", "fortuna", "virtio", "database", "trng_quality", "health_tests")
        later = ("seeding", "usage", "instances", "scale")
        return JSONResponse({key: body[key] for key in (*ordered, *later)})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(await _health_body(_service(request)))

    app.add_api_route(
        "/api/v1/health", health, methods=["GET"], tags=["status"], responses=_HEALTH_RESPONSES
    )
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)

    @app.get("/api/v1/ready", tags=["status"], responses=_READY_RESPONSES)
    async def ready(request: Request) -> JSONResponse:
        """200 when data can be served from at least one queue, else 503."""
        service = _service(request)

        def read() -> dict[str, bool] | None:
            try:
                return {s: service.store.stats(s).bytes > 0 for s in SOURCES}
            except StoreError:
                return None

        sources = await _bounded(read, None)
        ok = sources is not None and any(sources.values())
        body = {"ready": ok, "database": sources is not None, "sources": sources or {}}
        if ok:
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    async def metrics(request: Request) -> Response:
        service = _service(request)
        store = service.store

        def read() -> tuple[dict[str, object], int]:
            return {s: store.stats(s) for s in SOURCES}, store.database().size_bytes

        queues, size = await anyio.to_thread.run_sync(read)
        background = service.background
        controllers = background.controllers
        scrape = Scrape(
            queues=queues,  # type: ignore[arg-type]
            virtio=await service.virtio_level(),
            database_size=size,
            legacy=service.quality.legacy(),
            health=service.quality.health(),
            batches_rejected=sum(c.quality.batches_rejected for c in controllers),
            requests=Counter(service.requests),
            bytes_served=Counter(service.bytes_served),
            background=Counter(background.counters),
            breakers=background.breakers(),
            health_failures=sum(c.quality.health().failures for c in controllers),
            instances=_instance_scrapes(service),
            leases=service.leases.view(),
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ScrapeCollector(scrape))
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    for path in ("/metrics", "/api/v1/metrics"):
        app.add_api_route(
            path,
            metrics,
            methods=["GET"],
            tags=["status"],
            response_class=Response,
            responses={200: {"description": "Prometheus text", "content": {"text/plain": {}}}},
        )

    async def swagger(request: Request) -> RedirectResponse:
        """Old links to the reference's Swagger UI land on the OpenAPI UI."""
        target = "/openapi.json" if request.url.path.endswith("doc.json") else "/docs"
        return RedirectResponse(target, status_code=307)

    for path in ("/swagger", "/swagger/index.html", "/swagger/doc.json"):
        app.add_api_route(path, swagger, methods=["GET"], include_in_schema=False)


async def _health_body(service: ApiService) -> dict[str, object]:
    """``details.controller``/``fortuna`` are true when every instance answered 200;
    ``instances`` shows each one by base URL."""
    instances, virtio, database = await asyncio.gather(
        service.peers.instance_health(),
        service.peers.healthy("virtio"),
        _bounded(service.store.healthy, False),
    )
    details: dict[str, bool] = {
        "api": True,
        "controller": all(instances["controller"].values()),
        "fortuna": all(instances["fortuna"].values()),
        "virtio": virtio,
        "database": database,
    }
    return {
        "status": "ok" if all(details.values()) else "degraded",
        "timestamp": rfc3339_now(),
        "details": details,
        "instances": instances,
    }


async def _bounded(read: Callable[[], T], fallback: T) -> T:
    """``read()`` in a worker thread, or ``fallback`` after STATUS_TIMEOUT_S (a stalled disk
    must not hold a health probe past Docker's 3 s; the thread finishes on its own)."""
    with anyio.move_on_after(STATUS_TIMEOUT_S):
        return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
    return fallback


def _seeding_view(service: ApiService) -> dict[str, object]:
    """The first Fortuna's breaker and last answer; ``seeded`` only if every Fortuna is, and
    the oldest round's age (null while one was never seeded here). Per instance:
    ``instances.fortuna``."""
    background = service.background
    breakers = background.breakers()
    now = background.clock.monotonic()
    ages = [f.last_seed for f in background.fortunas]
    age = None
    if all(stamp is not None for stamp in ages):
        age = round(now - min(stamp for stamp in ages if stamp is not None), 3)
    return {
        "fortuna": {
            "seeded": all(f.seeded for f in background.fortunas),
            "last_round_age_s": age,
            "last_status": background.fortuna_status,
            "interval_s": service.settings.fortuna_seed_interval_s,
            "samples_per_round": service.settings.fortuna_seed_samples,
            "breaker": breaker_view(breakers["fortuna"]),
        },
        "virtio": {
            "enabled": service.peers.virtio is not None,
            "source": service.runtime.virtio_source,
            "interval_s": service.runtime.virtio_interval_s,
            "seeded_bytes": background.counters["virtio_seed_bytes"],
            "breaker": breaker_view(breakers["virtio"]),
        },
        "counters": dict(sorted(background.counters.items())),
    }


def _instances_view(service: ApiService) -> dict[str, dict[str, object]]:
    background = service.background
    now = background.clock.monotonic()
    return {
        "controller": {c.url: controller_instance_view(c) for c in background.controllers},
        "fortuna": {f.url: fortuna_instance_view(f, now) for f in background.fortunas},
    }


def _scale_view(service: ApiService) -> dict[str, object]:
    """Which store this instance shares and which jobs it runs (the leases it holds)."""
    leases = service.leases
    return {
        "store": service.settings.store.display,
        "shared": leases.shared,
        "instance_id": leases.holder,
        "lease_seconds": leases.ttl_s,
        "leases": leases.view(),
    }


def _instance_scrapes(service: ApiService) -> list[InstanceScrape]:
    """``up`` only for the instances this API instance calls (holds a lease for): another
    API instance runs the rest, and a 0 here would say "down" about what it never asked."""
    background, leases = service.background, service.leases
    out = [
        InstanceScrape(
            peer="controller",
            url=c.url,
            up=c.up if leases.held(trng_poll_lease(c.url)) else None,
            breakers={"poll": c.breaker.snapshot()},
            counters=Counter(c.counters),
        )
        for c in background.controllers
    ]
    out += [
        InstanceScrape(
            peer="fortuna",
            url=f.url,
            up=f.up
            if leases.held(FORTUNA_POLL) or leases.held(fortuna_seed_lease(f.url))
            else None,
            breakers={"poll": f.poll_breaker.snapshot(), "seed": f.seed_breaker.snapshot()},
            counters=Counter(f.counters),
            seeded=f.seeded,
        )
        for f in background.fortunas
    ]
    return out

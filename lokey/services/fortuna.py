"""The Fortuna service (port 8082): ``/seed``, ``/generate``, ``/amplify``, ``/health``, ``/info``.

spec/service-api.md §3: the reference's paths, query parameter, JSON shapes and error strings,
with LoKey's behaviour where the reference is wrong (spec/fortuna.md §9):

* **No output before the first seeding**: ``/generate`` and ``/amplify`` answer **503**
  ``{"error": "Generator not seeded"}`` until the generator has been seeded, never
  AES(0^32, counter) or any other predictable bytes.
* **Whole-request validation**: ``POST /seed`` checks the JSON, that there are seeds, that every
  entry is hex and that every entry passes the seed-quality gate (:func:`lokey.fortuna.check_seed`)
  before anything is pooled, so a rejected request leaves the pools, the reseed count and the
  round-robin position exactly as they were.
* **Round-robin over all 32 pools**: seed material is cut into events of at most 32 bytes
  (``Fortuna.add_seed_material``) and each HTTP source (``/seed`` is source 0, ``/amplify``
  source 1) spreads its events over the pools from its own position, which carries over from one
  request to the next (the reference sent seed i to pool i, so only pools 0-4 ever received
  entropy).
* **Start-up** (design.md, spec/fortuna.md §5): while the generator is unseeded (no seed file,
  or a missing one), the first ``/seed`` with at least 64 bytes of material reseeds the
  generator directly, as a seed-file update would; afterwards entropy enters only as pool
  events and the accumulator's rule decides (P0 >= 64 bytes and >= 100 ms since the last
  reseed). ``/seed`` answers ``"status": "reseeded"`` when a reseed happened and
  ``"status": "accepted"`` when the events were only pooled.
* ``/amplify`` pools its seed like ``/seed`` (only once the generator is seeded: a client's seed
  never becomes the generator's first key) and returns exactly ``size`` bytes.

One :class:`threading.Lock` guards the Fortuna object: two requests never read the same
generator state. All work on it runs in the thread pool, so a 1 MiB request never blocks the
event loop; hex encoding and the JSON body are built there too, outside the lock.

Build the app with :func:`create_fortuna_app` from a :class:`FortunaSettings`; the generator
(and its seed file, if configured) is opened in the lifespan and closed when it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from lokey.clock import Clock, SystemClock
from lokey.errors import NotSeededError, SeedFileError, SeedQualityError
from lokey.fortuna import (
    MAX_REQUEST_BYTES,
    MIN_DIRECT_SEED_BYTES,
    MIN_POOL_SIZE,
    NUM_POOLS,
    Fortuna,
    check_seed,
)
from lokey.services.common import (
    documented,
    error_response,
    health_documented,
    new_app,
    rfc3339_now,
    strict_int,
)
from lokey.services.settings import FortunaSettings

__all__ = [
    "AMPLIFY_ERROR",
    "BODY_ERROR",
    "DEFAULT_SIZE",
    "FORMAT_ERROR",
    "FORMAT_PARAM_ERROR",
    "GATE_ERROR",
    "GENERATE_ERROR",
    "HEX_ERROR",
    "MAX_BODY_BYTES",
    "MAX_SIZE",
    "NOT_SEEDED_ERROR",
    "NO_SEEDS_ERROR",
    "RESEED_ERROR",
    "SEED_FILE_REWRITE_S",
    "SIZE_ERROR",
    "SOURCE_AMPLIFY",
    "SOURCE_SEED",
    "FortunaService",
    "SeedOutcome",
    "Snapshot",
    "create_fortuna_app",
]

log = logging.getLogger("lokey.services.fortuna")

# spec §3, verbatim (the reference's strings) ...
SIZE_ERROR: Final = "Invalid size parameter (1-1048576)"
FORMAT_ERROR: Final = "Invalid request format"
NO_SEEDS_ERROR: Final = "No seeds provided"
HEX_ERROR: Final = "Invalid seed format (not hex)"
GENERATE_ERROR: Final = "Failed to generate data"
AMPLIFY_ERROR: Final = "Failed to amplify data"
RESEED_ERROR: Final = "Failed to reseed generator"
# ... and LoKey's own
NOT_SEEDED_ERROR: Final = "Generator not seeded"
GATE_ERROR: Final = "Seed rejected by the seed-quality check"
FORMAT_PARAM_ERROR: Final = "Invalid format parameter (json, binary)"
BODY_ERROR: Final = "Request body too large"
TOO_MANY_SEEDS_ERROR: Final = "Too many seeds"
# Each seed costs a histogram in the quality gate; the API sends FORTUNA_SEED_SAMPLES (32) per
# round, so 256 leaves room while bounding a request's CPU (55,000 tiny seeds took 1.5 s).
MAX_SEEDS: Final = 256

DEFAULT_SIZE: Final = 128
MAX_SIZE: Final = MAX_REQUEST_BYTES  # 1,048,576 = one internal generator request (fortuna.md §2)
SOURCE_SEED: Final = 0  # POST /seed (the API's TRNG samples)
SOURCE_AMPLIFY: Final = 1  # POST /amplify (any client's seed)
MAX_BODY_BYTES: Final = 1 << 20  # ~512 KiB of seed material per request; the API sends ~2 KiB
SEED_FILE_REWRITE_S: Final = 600.0  # spec/fortuna.md §4: rewrite every 10 minutes, and on close
BINARY: Final = "application/octet-stream"
_HEX: Final = re.compile(r"[0-9a-fA-F]*")
_ROUTES: Final = ("seed", "generate", "amplify")
_OUTCOMES: Final = ("ok", "invalid", "unseeded", "error")
_SOURCES: Final = {SOURCE_SEED: "seed", SOURCE_AMPLIFY: "amplify"}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the running service -------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedOutcome:
    """What one accepted ``/seed`` did to the generator."""

    reseeded: bool
    direct: bool  # the start-up direct reseed (design.md), not the accumulator's rule
    events: int  # pool events added (0 for a direct reseed)


@dataclass(frozen=True)
class Snapshot:
    """The generator's state, read under the service's lock."""

    seeded: bool
    reseed_count: int
    last_reseed: float | None  # any reseed (pool, direct, seed file), on the service's clock
    last_reseed_wall: datetime | None  # the same moment on the wall clock (for RFC 3339)
    pool_sizes: tuple[int, ...]
    bytes_generated: int
    now: float  # the service's clock when the snapshot was taken

    @property
    def since_reseed_s(self) -> float | None:
        return None if self.last_reseed is None else max(0.0, self.now - self.last_reseed)


@dataclass
class FortunaService:
    """Everything the lifespan opened; ``app.state.lokey``. Close it with :meth:`close`.

    Every method that touches :attr:`fortuna` holds :attr:`lock`, so a request's steps (pool,
    reseed, generate) are never interleaved with another's; call them from a worker thread
    (they hash, encrypt and may write the seed file).
    """

    settings: FortunaSettings
    clock: Clock
    fortuna: Fortuna
    registry: CollectorRegistry
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: the last reseed of any kind (``Fortuna.last_reseed`` counts pool reseeds only, not the
    #: seed file at start-up nor the direct start-up seed): on the service's clock, for the
    #: health rule, and on the wall clock, for ``last_reseeded``
    reseeded_at: float | None = None
    reseeded_wall: datetime | None = None
    direct_reseeds: int = 0
    _seen_reseeds: int = 0
    events: Counter[int] = field(default_factory=lambda: Counter(dict.fromkeys(_SOURCES, 0)))
    seeds: Counter[str] = field(default_factory=lambda: Counter({"accepted": 0, "rejected": 0}))
    requests: Counter[tuple[str, str]] = field(
        default_factory=lambda: Counter(
            {(route, outcome): 0 for route in _ROUTES for outcome in _OUTCOMES}
        )
    )
    closed: bool = False

    # -- state changes (hold the lock) --------------------------------------------------------

    def mark_reseeded(self, at: float | None = None) -> None:
        """Record a reseed at clock time ``at`` (default now) and at the wall-clock now."""
        self.reseeded_at = self.clock.monotonic() if at is None else at
        self.reseeded_wall = datetime.now(UTC)

    def _track(self) -> None:
        """Note a pool reseed the last call made (RandomData reseeds when its rule allows)."""
        count = self.fortuna.reseed_count
        if count != self._seen_reseeds:
            self._seen_reseeds = count
            self.mark_reseeded(self.fortuna.last_reseed)

    def _pool(self, source: int, material: Sequence[bytes]) -> int:
        """Every seed as <= 32-byte events, round-robin over all 32 pools (the core keeps each
        source's position, so the next request continues where this one stopped)."""
        added = sum(self.fortuna.add_seed_material(source, seed) for seed in material)
        self.events[source] += added
        return added

    def _apply_reseed_rule(self) -> None:
        """Let the accumulator reseed now if its rule allows (P0 >= 64 B, >= 100 ms): a
        zero-byte RandomData runs exactly that check."""
        with contextlib.suppress(NotSeededError):  # P0 not full yet: still unseeded
            self.fortuna.random_data(0)

    def seed(self, material: Sequence[bytes]) -> SeedOutcome:
        """Use validated seeds (``/seed``): the direct start-up reseed while the generator is
        unseeded and the request carries >= 64 bytes, else pool events and the reseed rule."""
        with self.lock:
            fortuna = self.fortuna
            self.seeds["accepted"] += len(material)
            if not fortuna.seeded and sum(map(len, material)) >= MIN_DIRECT_SEED_BYTES:
                fortuna.seed_directly(b"".join(material))
                self.mark_reseeded()
                self.direct_reseeds += 1
                log.info("generator seeded directly from %d seed(s) (start-up)", len(material))
                return SeedOutcome(reseeded=True, direct=True, events=0)
            before = fortuna.reseed_count
            added = self._pool(SOURCE_SEED, material)
            try:
                self._apply_reseed_rule()
            finally:
                self._track()
            return SeedOutcome(reseeded=fortuna.reseed_count != before, direct=False, events=added)

    def generate(self, size: int) -> bytes:
        """``size`` bytes from the generator (the accumulator reseeds first if due)."""
        with self.lock:
            try:
                return self.fortuna.random_data(size)
            finally:
                self._track()

    def amplify(self, seed: bytes, size: int) -> bytes:
        """Pool a validated seed as source 1, then ``size`` bytes. Unseeded: NotSeededError and
        the seed is not used at all (a client's seed never becomes the first key)."""
        with self.lock:
            if not self.fortuna.seeded:
                raise NotSeededError("PRNG not seeded yet")
            self._pool(SOURCE_AMPLIFY, [seed])
            self.seeds["accepted"] += 1
            try:
                return self.fortuna.random_data(size)
            finally:
                self._track()

    def write_seed_file(self) -> None:
        """spec/fortuna.md §4: rewrite the seed file (nothing to write while unseeded)."""
        with self.lock:
            if self.fortuna.seeded:
                try:
                    self.fortuna.write_seed_file()
                finally:
                    self._track()

    def snapshot(self) -> Snapshot:
        with self.lock:
            fortuna = self.fortuna
            return Snapshot(
                seeded=fortuna.seeded,
                reseed_count=fortuna.reseed_count,
                last_reseed=self.reseeded_at,
                last_reseed_wall=self.reseeded_wall,
                pool_sizes=tuple(fortuna.pool_sizes),
                bytes_generated=fortuna.bytes_generated,
                now=self.clock.monotonic(),
            )

    # -- views ---------------------------------------------------------------------------------

    def health(self, snapshot: Snapshot) -> tuple[bool, str]:
        """(healthy, reason): seeded, and the last reseed within the configured interval."""
        if not snapshot.seeded:
            return False, "not seeded: waiting for the first POST /seed"
        since = snapshot.since_reseed_s
        limit = self.settings.max_reseed_interval_s
        if since is None or since > limit:
            ago = "never reseeded" if since is None else f"last reseed {since:.0f} s ago"
            return False, (
                f"{ago}, longer than FORTUNA_MAX_RESEED_INTERVAL_HOURS "
                f"({self.settings.max_reseed_interval_hours:g} h)"
            )
        return True, "healthy"

    @staticmethod
    def last_reseeded(snapshot: Snapshot) -> str | None:
        """The last reseed as an RFC 3339 wall-clock time (None: never)."""
        wall = snapshot.last_reseed_wall
        return None if wall is None else _rfc3339(wall)

    def seed_file_view(self) -> dict[str, object] | None:
        path = self.settings.seed_file
        if path is None:
            return None
        status = self.fortuna.seed_file_status
        return {
            "path": str(path),
            "status": None if status is None else status.value,
            "message": self.fortuna.seed_file_message,
        }

    def close(self) -> None:
        """Write the seed file a last time (if any, and seeded) and release its lock."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.fortuna.close()
            except SeedFileError as exc:
                log.error("the seed file could not be written at shutdown: %s", exc)


def _open_service(settings: FortunaSettings, clock: Clock | None) -> FortunaService:
    the_clock = clock if clock is not None else SystemClock()
    fortuna = Fortuna(the_clock, seed_file=settings.seed_file)  # SeedFileError: cannot start
    registry = CollectorRegistry(auto_describe=False)
    service = FortunaService(settings=settings, clock=the_clock, fortuna=fortuna, registry=registry)
    if fortuna.seeded:  # the seed file reseeded the generator (UpdateSeedFile, fortuna.md §4)
        service.mark_reseeded()
    registry.register(_FortunaCollector(service))
    if settings.seed_file is not None:
        log.info("%s", fortuna.seed_file_message)
    if fortuna.seeded:
        log.info("Fortuna generator seeded from its seed file")
    else:
        log.warning("Fortuna generator unseeded: /generate answers 503 until the first POST /seed")
    return service


# -- metrics ---------------------------------------------------------------------------------------


class _FortunaCollector(Collector):
    """Reads the generator at scrape time."""

    def __init__(self, service: FortunaService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        snapshot = service.snapshot()
        healthy, _ = service.health(snapshot)
        yield GaugeMetricFamily(
            "lokey_fortuna_seeded", "1 once the generator has been seeded", value=snapshot.seeded
        )
        yield GaugeMetricFamily(
            "lokey_fortuna_healthy",
            "1 when seeded and reseeded within FORTUNA_MAX_RESEED_INTERVAL_HOURS",
            value=healthy,
        )
        yield CounterMetricFamily(
            "lokey_fortuna_reseeds", "Accumulator reseeds", value=snapshot.reseed_count
        )
        yield CounterMetricFamily(
            "lokey_fortuna_direct_reseeds",
            "Start-up reseeds straight from a /seed request (no seed file)",
            value=service.direct_reseeds,
        )
        since = snapshot.since_reseed_s
        if since is not None:
            yield GaugeMetricFamily(
                "lokey_fortuna_seconds_since_reseed", "Seconds since the last reseed", value=since
            )
        yield CounterMetricFamily(
            "lokey_fortuna_bytes_generated",
            "Bytes of generator output",
            value=snapshot.bytes_generated,
        )
        pools = GaugeMetricFamily(
            "lokey_fortuna_pool_bytes",
            "Bytes in each pool since it was last used (with the 2-byte event headers)",
            labels=["pool"],
        )
        for index, size in enumerate(snapshot.pool_sizes):
            pools.add_metric([str(index)], size)
        yield pools
        events = CounterMetricFamily(
            "lokey_fortuna_events", "Pool events added, by source", labels=["source"]
        )
        for source, name in _SOURCES.items():
            events.add_metric([name], service.events[source])
        yield events
        seeds = CounterMetricFamily(
            "lokey_fortuna_seeds",
            "Seeds used, and seeds refused by the quality gate (one per refused request)",
            labels=["outcome"],
        )
        for outcome in ("accepted", "rejected"):
            seeds.add_metric([outcome], service.seeds[outcome])
        yield seeds
        requests = CounterMetricFamily(
            "lokey_fortuna_requests",
            "Requests to /seed, /generate and /amplify by outcome",
            labels=["route", "outcome"],
        )
        for route in _ROUTES:
            for outcome in _OUTCOMES:
                requests.add_metric([route, outcome], service.requests[(route, outcome)])
        yield requests


# -- request parsing -------------------------------------------------------------------------------


class _ClientError(Exception):
    """A client error: 400 (or ``status``) with ``message`` and extra JSON fields."""

    def __init__(
        self, message: str, *, status: int = 400, extra: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.extra = dict(extra or {})

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, **self.extra}, status_code=self.status)


async def _json_body(request: Request) -> object:
    """The body as JSON, at most :data:`MAX_BODY_BYTES`; anything else is ``_ClientError``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _ClientError(f"{BODY_ERROR} (limit {MAX_BODY_BYTES:,} bytes)", status=413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _ClientError(f"{BODY_ERROR} (limit {MAX_BODY_BYTES:,} bytes)", status=413)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):  # bad JSON or UTF-8, huge integers, deep nesting
        raise _ClientError(FORMAT_ERROR) from None


def _hex(text: str) -> bytes:
    """Hex digits (either case, even length, nothing else) as bytes, else ``_ClientError``."""
    if len(text) % 2 or _HEX.fullmatch(text) is None:
        raise _ClientError(HEX_ERROR)
    return bytes.fromhex(text)


def _gate(seed: bytes, index: int | None) -> None:
    """fortuna.md §7 on one seed; the 400 names the seed (``seed 2: ...``) and the rule."""
    try:
        check_seed(seed)
    except SeedQualityError as exc:
        detail = str(exc).removeprefix("seed rejected: ")
        which = "" if index is None else f"seed {index}: "
        extra: dict[str, object] = {"reason": str(exc.reason)}
        if index is not None:
            extra["seed"] = index
        raise _ClientError(f"{GATE_ERROR} ({which}{detail})", extra=extra) from None


def _parse_seeds(body: object) -> list[bytes]:
    """``{"seeds": [hex, ...]}``, every entry decoded and gated; ``_ClientError`` otherwise."""
    if not isinstance(body, dict):
        raise _ClientError(FORMAT_ERROR)
    seeds = body.get("seeds")
    if not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds):
        raise _ClientError(FORMAT_ERROR)
    if not seeds:
        raise _ClientError(NO_SEEDS_ERROR)
    if len(seeds) > MAX_SEEDS:
        raise _ClientError(f"{TOO_MANY_SEEDS_ERROR} (at most {MAX_SEEDS}, got {len(seeds)})")
    material = [_hex(text) for text in seeds]
    for index, seed in enumerate(material):
        _gate(seed, index)
    return material


def _parse_amplify(body: object) -> tuple[bytes, int]:
    """``{"seed": hex, "size": int}``, the seed decoded and gated; ``_ClientError`` otherwise."""
    if not isinstance(body, dict):
        raise _ClientError(FORMAT_ERROR)
    text, size = body.get("seed"), body.get("size")
    if not isinstance(text, str) or not text:  # required (the reference: "" is missing too)
        raise _ClientError(FORMAT_ERROR)
    if not isinstance(size, int) or isinstance(size, bool):
        raise _ClientError(FORMAT_ERROR)
    seed = _hex(text)
    if not 1 <= size <= MAX_SIZE:
        raise _ClientError(SIZE_ERROR)
    _gate(seed, None)
    return seed, size


def _accept_q(header: str) -> tuple[float, float]:
    """(q of application/octet-stream, best q of anything that admits JSON) from Accept."""
    binary = json_q = 0.0
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not math.isfinite(q) or not 0.0 <= q <= 1.0:
                    q = 0.0
        media = media.lower()
        if media == BINARY:
            binary = max(binary, q)
        elif media in ("application/json", "application/*", "*/*"):
            json_q = max(json_q, q)
    return binary, json_q


def _wants_binary(request: Request) -> bool:
    """``format=binary`` (or ``format=json``) decides; else Accept must prefer octet-stream."""
    formats = request.query_params.getlist("format")
    if formats:
        if len(formats) != 1 or formats[0] not in ("json", "binary"):
            raise _ClientError(FORMAT_PARAM_ERROR)
        return formats[0] == "binary"
    binary, json_q = _accept_q(request.headers.get("accept", ""))
    return binary > 0.0 and binary > json_q


def _render(data: bytes, binary: bool) -> Response:
    """Raw bytes, or ``{"data": hex, "size": n}`` built without re-escaping 2 MiB of hex."""
    if binary:
        return Response(data, media_type=BINARY)
    body = b'{"data":"' + data.hex().encode("ascii") + b'","size":%d}' % len(data)
    return Response(body, media_type="application/json")


# -- routes --------------------------------------------------------------------------------------


def _service(request: Request) -> FortunaService:
    service = getattr(request.app.state, "lokey", None)
    if not isinstance(service, FortunaService):
        raise RuntimeError("the Fortuna service is not running (lifespan not started)")
    return service


def _refused(service: FortunaService, route: str, exc: _ClientError) -> JSONResponse:
    service.requests[(route, "invalid")] += 1
    if exc.message.startswith(GATE_ERROR):
        service.seeds["rejected"] += 1
    return exc.response()


async def _produce(
    service: FortunaService, route: str, work: Callable[[], Response], failure: str
) -> Response:
    """Run ``work`` in the thread pool: 503 while unseeded, never a traceback to the client."""
    try:
        response = await run_in_threadpool(work)
    except NotSeededError:
        service.requests[(route, "unseeded")] += 1
        return error_response(503, NOT_SEEDED_ERROR)
    except Exception:
        service.requests[(route, "error")] += 1
        log.exception("%s failed unexpectedly", route)
        return error_response(500, failure)
    service.requests[(route, "ok")] += 1
    return response


async def _health(request: Request) -> JSONResponse:
    service = _service(request)
    snapshot = await run_in_threadpool(service.snapshot)
    healthy, reason = service.health(snapshot)
    if healthy:
        return JSONResponse({"status": "healthy", "timestamp": rfc3339_now()})
    return JSONResponse(
        {
            "status": "unhealthy",
            "timestamp": rfc3339_now(),
            "details": {
                "generator": False,
                "seeded": snapshot.seeded,
                "reason": reason,
                "last_reseeded": service.last_reseeded(snapshot),
            },
        },
        status_code=503,
    )


async def _info(request: Request) -> JSONResponse:
    service = _service(request)
    settings = service.settings
    snapshot = await run_in_threadpool(service.snapshot)
    healthy, _ = service.health(snapshot)
    since = snapshot.since_reseed_s
    return JSONResponse(
        {
            "status": "running",  # spec §3: the reference's three keys first
            "amplification_factor": settings.amplification_factor,
            "last_reseeded": service.last_reseeded(snapshot),
            "seeded": snapshot.seeded,
            "healthy": healthy,
            "reseed_count": snapshot.reseed_count,
            "direct_reseeds": service.direct_reseeds,
            "seconds_since_reseed": None if since is None else round(since, 3),
            "max_reseed_interval_hours": settings.max_reseed_interval_hours,
            "pools": {
                "count": NUM_POOLS,
                "sizes": list(snapshot.pool_sizes),
                "total_bytes": sum(snapshot.pool_sizes),
                "min_pool_size": MIN_POOL_SIZE,
            },
            "bytes_generated": snapshot.bytes_generated,
            "seed_file": service.seed_file_view(),
        }
    )


async def _seed(request: Request) -> JSONResponse:
    service = _service(request)
    try:
        body = await _json_body(request)
        material = await run_in_threadpool(_parse_seeds, body)
    except _ClientError as exc:
        return _refused(service, "seed", exc)
    try:
        outcome = await run_in_threadpool(service.seed, material)
        snapshot = await run_in_threadpool(service.snapshot)
    except Exception:
        service.requests[("seed", "error")] += 1
        log.exception("seeding failed unexpectedly")
        return error_response(500, RESEED_ERROR)
    service.requests[("seed", "ok")] += 1
    return JSONResponse(
        {
            "status": "reseeded" if outcome.reseeded else "accepted",
            "count": len(material),
            "last_reseeded": service.last_reseeded(snapshot),
            "events": outcome.events,
            "reseed_count": snapshot.reseed_count,
        }
    )


async def _generate(request: Request) -> Response:
    service = _service(request)
    raw = request.query_params.getlist("size")
    size = DEFAULT_SIZE if not raw else (strict_int(raw[0], 1, MAX_SIZE) if len(raw) == 1 else None)
    try:
        if size is None:
            raise _ClientError(SIZE_ERROR)
        binary = _wants_binary(request)
    except _ClientError as exc:
        return _refused(service, "generate", exc)
    count = size
    return await _produce(
        service, "generate", lambda: _render(service.generate(count), binary), GENERATE_ERROR
    )


async def _amplify(request: Request) -> Response:
    service = _service(request)
    try:
        binary = _wants_binary(request)
        body = await _json_body(request)
        seed, size = await run_in_threadpool(_parse_amplify, body)
    except _ClientError as exc:
        return _refused(service, "amplify", exc)
    return await _produce(
        service, "amplify", lambda: _render(service.amplify(seed, size), binary), AMPLIFY_ERROR
    )


async def _metrics(request: Request) -> Response:
    service = _service(request)
    body = await run_in_threadpool(generate_latest, service.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _rewrite_seed_file(service: FortunaService, every_s: float) -> None:
    """spec/fortuna.md §4: rewrite the seed file periodically while running."""
    while True:
        await anyio.sleep(every_s)
        try:
            await anyio.to_thread.run_sync(service.write_seed_file)
        except Exception:
            log.exception("rewriting the seed file failed; retrying in %.0f s", every_s)


# -- the app -------------------------------------------------------------------------------------


def create_fortuna_app(
    settings: FortunaSettings,
    *,
    clock: Clock | None = None,
    rewrite_seed_file_s: float = SEED_FILE_REWRITE_S,
) -> FastAPI:
    """The Fortuna service as a FastAPI app; opens nothing until its lifespan starts.

    ``clock``: the monotonic clock for the 100 ms reseed rule and the health interval (default
    the system clock); tests pass a ``VirtualClock``. With a seed file, it is rewritten every
    ``rewrite_seed_file_s`` seconds of real time while the service runs, and on shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(_open_service, settings, clock)
        app.state.lokey = service
        try:
            async with anyio.create_task_group() as tasks:
                if settings.seed_file is not None:
                    tasks.start_soon(_rewrite_seed_file, service, rewrite_seed_file_s)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(service.close)
            del app.state.lokey

    app = new_app(
        title="LoKey Fortuna",
        summary="Fortuna CSPRNG seeded by the TRNG (spec/service-api.md §3)",
        lifespan=lifespan,
        cors_origin=settings.cors_origin,
        body_limit=MAX_BODY_BYTES,
    )
    app.add_api_route("/health", _health, methods=["GET"], **_HEALTH_DOC)
    app.add_api_route("/info", _info, methods=["GET"])
    app.add_api_route(
        "/generate", _generate, methods=["GET"], response_class=Response, **_GENERATE_DOC
    )
    app.add_api_route("/seed", _seed, methods=["POST"], **_SEED_DOC)
    app.add_api_route(
        "/amplify", _amplify, methods=["POST"], response_class=Response, **_AMPLIFY_DOC
    )
    app.add_api_route(
        "/metrics", _metrics, methods=["GET"], response_class=Response, **_METRICS_DOC
    )
    return app


# -- the OpenAPI document: what the handlers above check and answer ------------------------------

_HEALTH_DOC: Final = health_documented("Not seeded, or not reseeded for too long")
_OUTPUT: Final = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "data": {"type": "string", "pattern": "^([0-9a-f]{2})*$"},
                "size": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE},
            },
            "required": ["data", "size"],
        }
    },
    BINARY: {"schema": {"type": "string", "format": "binary"}},
}
_FORMAT_PARAM: Final = {"name": "format", "schema": {"enum": ["json", "binary"]}}
_SIZE: Final = {"type": "integer", "minimum": 1, "maximum": MAX_SIZE}
_HEX_STRING: Final = {"type": "string", "pattern": "^([0-9a-fA-F]{2})+$"}
_GENERATE_DOC: Final = documented(
    ok=_OUTPUT,
    errors={400: SIZE_ERROR, 500: GENERATE_ERROR, 503: NOT_SEEDED_ERROR},
    query=[{"name": "size", "schema": _SIZE}, _FORMAT_PARAM],
)
_SEED_DOC: Final = documented(
    ok={"application/json": {"schema": {"type": "object", "required": ["status", "count"]}}},
    errors={400: "Invalid request (nothing was pooled)", 500: RESEED_ERROR},
    body={
        "type": "object",
        "properties": {
            "seeds": {"type": "array", "items": _HEX_STRING, "minItems": 1, "maxItems": MAX_SEEDS}
        },
        "required": ["seeds"],
    },
)
_AMPLIFY_DOC: Final = documented(
    ok=_OUTPUT,
    errors={400: "Invalid request", 500: AMPLIFY_ERROR, 503: NOT_SEEDED_ERROR},
    query=[_FORMAT_PARAM],
    body={
        "type": "object",
        "properties": {"seed": _HEX_STRING, "size": _SIZE},
        "required": ["seed", "size"],
    },
)
_METRICS_DOC: Final = documented(ok={"text/plain": {"schema": {"type": "string"}}})

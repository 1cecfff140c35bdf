"""The controller service (port 8081): the chip behind ``/health``, ``/info``, ``/generate``.

spec/service-api.md §2: the reference's paths, query parameter, JSON shapes and error strings,
with LoKey's behaviour where the reference is wrong: 32-byte samples (64 hex characters), every
sample checked and health-tested by :class:`lokey.controller.Controller`, and **503 with
Retry-After** (never a 500) while the device is not healthy.

Build the app with :func:`create_controller_app` from a :class:`ControllerSettings`; nothing is
opened until the lifespan starts, and everything is closed when it ends:

* the bus (``open_bus``): on the emulator it is opened **once** and the controller's factory
  hands out :class:`~lokey.controller.BorrowedBus` handles over it, so the chip, its faults and
  the trace outlive every recovery; on ``/dev/i2c-N`` each recovery reopens the device file;
* ``FORCE_CONFIG=true`` only: the datasheet-correct RNG template is written, verified and locked
  with the summary CRC (mode 0x00), one audit line per step on ``lokey.provisioning``; without
  it the service never writes the chip;
* the :class:`~lokey.controller.Controller` and one :class:`~lokey.controller.ControllerRunner`
  thread that drives recovery; requests call ``generate`` in the thread pool, so bus I/O never
  runs on the event loop (the controller's lock serialises it);
* a per-app Prometheus ``CollectorRegistry`` whose collector reads the controller at scrape time;
* on the emulator only, the chaos API (:mod:`lokey.services.chaos`) under ``/sim``.

Status reads (``/info``, ``/metrics``, an unhealthy ``/health``) wait at most
:data:`STATUS_WAIT_S` for the controller's lock (held during a long ``generate``) and fall back
to the last snapshot, so a scrape never hangs behind the chip.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from lokey.backends import BusKind, OpenedBus, open_bus, parse_bus_url
from lokey.clock import Clock, SystemClock
from lokey.controller import (
    ALLOWED_TRANSITIONS,
    BorrowedBus,
    BreakerState,
    ChipDevice,
    ChipInfo,
    Controller,
    ControllerConfig,
    ControllerRunner,
    ControllerStatus,
    DeviceState,
    DeviceUnavailableError,
    RejectReason,
    atecc_factory,
)
from lokey.errors import LokeyError
from lokey.hardware.bus import Bus
from lokey.hardware.commands import Atecc608aDriver
from lokey.hardware.provisioning import field_of, plan, provision
from lokey.hardware.transport import Transport
from lokey.services.chaos import Chaos, chaos_router
from lokey.services.common import (
    documented,
    error_response,
    health_documented,
    new_app,
    rfc3339_now,
    strict_int,
)
from lokey.services.settings import ControllerSettings

__all__ = [
    "COUNT_ERROR",
    "GENERATE_ERROR",
    "STATUS_WAIT_S",
    "ControllerService",
    "ProvisioningOutcome",
    "controller_config",
    "create_controller_app",
    "force_config",
]

log = logging.getLogger("lokey.services.controller")
audit = logging.getLogger("lokey.provisioning")

COUNT_ERROR: Final = "Invalid count parameter (1-100)"  # spec §2, verbatim
GENERATE_ERROR: Final = "Failed to generate random data"  # spec §2, verbatim
MAX_COUNT: Final = 100
STATUS_WAIT_S: Final = 2.0  # longest a status read waits for the controller's lock
_PARTS: Final = {0x02: "ATECC608A", 0x03: "ATECC608B"}  # Info revision byte 3 (atecc608a §6)
_BREAKER_CODES: Final = {  # spec §2.1: Closed(0) / Open(1) / HalfOpen(2)
    BreakerState.CLOSED: 0,
    BreakerState.OPEN: 1,
    BreakerState.HALF_OPEN: 2,
}
_STATE_HINTS: Final = {
    DeviceState.UNKNOWN: "starting: the device has not been opened yet",
    DeviceState.VALIDATING: "validating the device (start-up test and validation samples)",
    DeviceState.RECOVERING: "reopening the device",
    DeviceState.FAILED: "device failed; recovery pending",
    DeviceState.CIRCUIT_OPEN: "circuit breaker open",
    DeviceState.HEALTHY: "healthy",
}
_OUTCOMES: Final = ("ok", "invalid", "unavailable", "error")


# -- settings -> controller ----------------------------------------------------------------------


def controller_config(settings: ControllerSettings) -> ControllerConfig:
    """spec §6.2 onto the state machine: cooldown, validation samples, breaker open time."""
    return ControllerConfig(
        cooldown_s=settings.recovery_cooldown_s,
        validation_samples=settings.recovery_validation_attempts,
        breaker_open_s=settings.breaker_open_s,
        fallback=settings.fallback,
    )


# -- FORCE_CONFIG ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisioningOutcome:
    """What ``FORCE_CONFIG=true`` did at start-up (shown by ``/info``)."""

    result: Literal["locked", "already_locked", "failed"]
    writes: int
    summary_crc: int | None
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        crc = None if self.summary_crc is None else f"0x{self.summary_crc:04X}"
        return {
            "result": self.result,
            "writes": self.writes,
            "summary_crc": crc,
            "error": self.error,
        }


class _AuditedDriver(Atecc608aDriver):
    """The driver, with one audit line before and after every write and the lock."""

    def write_config_word(self, word: int, data: bytes) -> None:
        offset = word * 4
        audit.warning(
            "FORCE_CONFIG: writing config word 0x%02X (bytes %d-%d, %s): %s",
            word,
            offset,
            offset + 3,
            field_of(offset),
            bytes(data).hex(" "),
        )
        super().write_config_word(word, data)
        audit.warning("FORCE_CONFIG: config word 0x%02X written", word)

    def lock_config(self, summary_crc: int | None) -> None:
        crc = "unchecked" if summary_crc is None else f"summary CRC 0x{summary_crc:04X}"
        audit.warning("FORCE_CONFIG: locking the config zone (mode 0x00, %s)", crc)
        super().lock_config(summary_crc)


def force_config(open_bus_once: Callable[[], Bus], clock: Clock) -> ProvisioningOutcome:
    """Write LoKey's RNG template, verify it, lock the config zone with its summary CRC.

    spec/service-api.md §6.2 (``FORCE_CONFIG=true``) done right (atecc608a.md §13): the
    datasheet-correct template of :mod:`lokey.hardware.provisioning`, never the reference's.
    Every step is logged at WARNING on ``lokey.provisioning`` (an irreversible change leaves an
    audit trail whatever ``LOG_LEVEL`` says). Never raises for the chip: a failure is logged and
    returned, and the controller then reports the chip as it finds it.
    """
    try:
        driver = _AuditedDriver(Transport(open_bus_once(), clock))
    except (LokeyError, OSError) as exc:
        audit.error("FORCE_CONFIG: cannot open the bus: %s", exc)
        return ProvisioningOutcome("failed", 0, None, str(exc))
    writes = 0
    summary: int | None = None
    try:
        the_plan = plan(driver.read_config())
        summary = the_plan.summary_crc
        if the_plan.already_locked:
            audit.warning("FORCE_CONFIG: the config zone is already locked; nothing written")
            return ProvisioningOutcome("already_locked", 0, None)
        writes = len(the_plan.writes)
        audit.warning(
            "FORCE_CONFIG=true: provisioning the unlocked chip: %d config word(s) to write, "
            "then lock with summary CRC 0x%04X (mode 0x00)",
            writes,
            summary,
        )
        done = provision(driver)
        audit.warning("FORCE_CONFIG: config zone locked with summary CRC 0x%04X", done.summary_crc)
        return ProvisioningOutcome("locked", len(done.writes), done.summary_crc)
    except LokeyError as exc:
        audit.error("FORCE_CONFIG: provisioning failed, the chip is NOT locked: %s", exc)
        return ProvisioningOutcome("failed", writes, summary, str(exc))
    finally:
        try:
            driver.close()
        except LokeyError as exc:
            log.debug("closing the provisioning driver failed: %s", exc)


# -- the running service -------------------------------------------------------------------------


@dataclass
class _Identity:
    """What the last successful open read from the chip (kept while the device is closed)."""

    info: ChipInfo | None = None


@dataclass
class ControllerService:
    """Everything the lifespan opened; ``app.state.lokey``. Close it with :meth:`close`."""

    settings: ControllerSettings
    url: str
    kind: BusKind
    clock: Clock
    controller: Controller
    registry: CollectorRegistry
    opened: OpenedBus | None = None  # the emulator's one bus (None on i2c-dev)
    runner: ControllerRunner | None = None
    chaos: Chaos | None = None
    provisioning: ProvisioningOutcome | None = None
    identity: _Identity = field(default_factory=_Identity)
    requests: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(_OUTCOMES, 0)))
    _last: ControllerStatus | None = None
    _last_lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, wait_s: float = STATUS_WAIT_S) -> ControllerStatus | None:
        """A fresh snapshot, or the last one if the lock stays busy ``wait_s`` (None: never)."""
        lock = self.controller.lock
        if lock.acquire(timeout=wait_s):
            try:
                snapshot = self.controller.status()
            finally:
                lock.release()
            with self._last_lock:
                self._last = snapshot
            return snapshot
        with self._last_lock:
            return self._last

    def close(self) -> None:
        """Stop the worker, close the controller (and its device), then the bus."""
        if self.runner is not None:
            self.runner.stop()
        self.controller.close()
        if self.opened is not None:
            self.opened.close()


def _open_service(
    settings: ControllerSettings, clock: Clock | None, start_runner: bool
) -> ControllerService:
    url = settings.bus_url
    kind = parse_bus_url(url).kind
    opened: OpenedBus | None = None
    opener: Callable[[], Bus]
    if kind == "emulator":
        opened = open_bus(url, clock=clock)
        the_bus, bus_clock = opened.bus, opened.clock
        opener = lambda: BorrowedBus(the_bus)  # noqa: E731 - reopen = a new handle, same chip
    else:
        bus_clock = clock if clock is not None else SystemClock()
        opener = lambda: open_bus(url, clock=bus_clock).bus  # noqa: E731 - reopen the node
    try:
        log.info("controller on %s bus %s", kind, url)
        provisioning = None
        if settings.provision_at_startup:
            provisioning = force_config(opener, bus_clock)
        else:
            raw = settings.force_config
            if raw and raw != "false":
                log.warning(
                    "FORCE_CONFIG=%r is not exactly 'true': the chip's configuration is not "
                    "written",
                    raw,
                )
        identity = _Identity()
        base = atecc_factory(opener, bus_clock)
        hint = (
            "; on the emulator, sim://atecc608a?lock=config-locked starts with a locked chip"
            if kind == "emulator"
            else ""
        )

        def factory() -> ChipDevice:
            device = base()
            if not device.info.lock.config_locked and identity.info is None:
                log.warning(
                    "the config zone is unlocked, so the service stays unhealthy: lock it with "
                    "`lokey provision --yes` or start once with FORCE_CONFIG=true "
                    "(irreversible on a real chip)%s",
                    hint,
                )
            identity.info = device.info
            return device

        controller = Controller(factory, bus_clock, controller_config(settings))
        registry = CollectorRegistry(auto_describe=False)
        service = ControllerService(
            settings=settings,
            url=url,
            kind=kind,
            clock=bus_clock,
            controller=controller,
            registry=registry,
            opened=opened,
            chaos=Chaos(opened) if opened is not None else None,
            provisioning=provisioning,
            identity=identity,
        )
        registry.register(_ControllerCollector(service))
        if start_runner:
            service.runner = ControllerRunner(controller, bus_clock)
            service.runner.start()
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    return service


# -- JSON views ----------------------------------------------------------------------------------


def _device_view(info: ChipInfo | None) -> dict[str, object] | None:
    if info is None:
        return None
    revision = info.revision
    return {
        "part": _PARTS.get(revision[3], "unknown") if len(revision) == 4 else "unknown",
        "revision": revision.hex(),
        "serial_number": info.serial_number.hex(),
        "config_locked": info.lock.config_locked,
        "data_locked": info.lock.data_locked,
    }


def _transitions(status: ControllerStatus) -> dict[str, int]:
    return {f"{a.value}->{b.value}": n for (a, b), n in sorted(status.transitions.items())}


def _info_view(service: ControllerService, status: ControllerStatus | None) -> dict[str, object]:
    controller = service.controller
    state = controller.state
    view: dict[str, object] = {
        "status": "running",  # spec §2: the reference's only key
        "device": _device_view(service.identity.info),
        "bus": {"kind": service.kind, "url": service.url},
        "state": {"name": state.value, "code": state.code},
        "provisioning": service.provisioning.to_dict() if service.provisioning else None,
        "requests": {outcome: service.requests[outcome] for outcome in _OUTCOMES},
    }
    if status is None:
        view["stale"] = True
        return view
    breaker = status.breaker
    source = status.source
    view["state"] = {
        "name": status.state.value,
        "code": status.state.code,
        "since_s": round(service.clock.monotonic() - status.since, 3),
        "retry_after_s": round(status.retry_after_s, 3),
        "attempt": status.attempt,
        "max_attempts": status.max_attempts,
        "exhausted": status.exhausted,
        "last_error": status.last_error,
    }
    view["breaker"] = {
        "state": breaker.state.value,
        "code": _BREAKER_CODES[breaker.state],
        "consecutive_failures": breaker.consecutive_failures,
        "threshold": breaker.threshold,
        "open_for_s": breaker.open_for_s,
        "retry_after_s": round(breaker.retry_after_s, 3),
        "opened": breaker.opened,
        "rejected": breaker.rejected,
        "trials": breaker.trials,
    }
    view["counters"] = {
        "served": {"trng": status.served, "fallback": status.fallback_served},
        "rejected": {reason.value: source.rejected.get(reason, 0) for reason in RejectReason},
        "health_test_failures": source.health_failures,
        "random_commands": source.read,
        "discarded": source.discarded,
        "device_failures": status.device_failures,
        "recovery_attempts": status.attempts_total,
        "recoveries": status.recoveries,
        "transitions": _transitions(status),
    }
    config = controller.config
    view["config"] = {
        "recovery_cooldown_s": config.cooldown_s,
        "validation_samples": config.validation_count,
        "breaker_threshold": config.breaker_threshold,
        "breaker_open_s": config.breaker_open_s,
        "conditioning": config.conditioning,
        "fallback": config.fallback,
    }
    return view


# -- metrics ---------------------------------------------------------------------------------------


class _ControllerCollector(Collector):
    """Reads the controller at scrape time (spec §1.8's lesson: no stale gauges)."""

    def __init__(self, service: ControllerService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        status = service.status()
        state = status.state if status is not None else service.controller.state
        yield GaugeMetricFamily(
            "lokey_controller_state",
            "Device state code: 0 unknown, 1 healthy, 2 failed, 3 recovering, 4 validating, "
            "5 circuit open",
            value=state.code,
        )
        per_state = GaugeMetricFamily(
            "lokey_controller_device_state", "1 for the current device state", labels=["state"]
        )
        for each in DeviceState:
            per_state.add_metric([each.value], 1.0 if each is state else 0.0)
        yield per_state
        requests = CounterMetricFamily(
            "lokey_controller_generate_requests",
            "GET /generate requests by outcome",
            labels=["outcome"],
        )
        for outcome in _OUTCOMES:
            requests.add_metric([outcome], service.requests[outcome])
        yield requests
        if status is None:
            return
        breaker = status.breaker
        source = status.source
        yield GaugeMetricFamily(
            "lokey_controller_breaker_state",
            "Circuit breaker: 0 closed, 1 open, 2 half-open",
            value=_BREAKER_CODES[breaker.state],
        )
        yield GaugeMetricFamily(
            "lokey_controller_breaker_consecutive_failures",
            "Consecutive device failures counted by the breaker",
            value=breaker.consecutive_failures,
        )
        yield GaugeMetricFamily(
            "lokey_controller_retry_after_seconds",
            "Seconds until the device may serve again (0 when healthy)",
            value=status.retry_after_s,
        )
        served = CounterMetricFamily(
            "lokey_controller_samples_served", "32-byte samples served", labels=["source"]
        )
        served.add_metric(["trng"], status.served)
        served.add_metric(["fallback"], status.fallback_served)
        yield served
        rejected = CounterMetricFamily(
            "lokey_controller_samples_rejected",
            "Random responses refused before release, by reason",
            labels=["reason"],
        )
        for reason in RejectReason:
            rejected.add_metric([reason.value], source.rejected.get(reason, 0))
        yield rejected
        yield CounterMetricFamily(
            "lokey_controller_health_test_failures",
            "SP 800-90B health-test failures",
            value=source.health_failures,
        )
        yield CounterMetricFamily(
            "lokey_controller_random_commands", "Random commands issued", value=source.read
        )
        transitions = CounterMetricFamily(
            "lokey_controller_transitions",
            "Device state transitions",
            labels=["from", "to"],
        )
        counts = status.transitions
        for a, b in sorted(ALLOWED_TRANSITIONS):
            transitions.add_metric([a.value, b.value], counts.get((a, b), 0))
        yield transitions
        yield CounterMetricFamily(
            "lokey_controller_device_failures",
            "Device failures while healthy (the ones the breaker counts)",
            value=status.device_failures,
        )
        yield CounterMetricFamily(
            "lokey_controller_recovery_attempts",
            "Recovery attempts",
            value=status.attempts_total,
        )
        yield CounterMetricFamily(
            "lokey_controller_recoveries",
            "Returns to healthy after a failure",
            value=status.recoveries,
        )
        yield CounterMetricFamily(
            "lokey_controller_breaker_opened", "Times the breaker opened", value=breaker.opened
        )


# -- the app -------------------------------------------------------------------------------------


def _service(request: Request) -> ControllerService:
    service = getattr(request.app.state, "lokey", None)
    if not isinstance(service, ControllerService):
        raise RuntimeError("the controller service is not running (lifespan not started)")
    return service


def _chaos(request: Request) -> Chaos:
    chaos = _service(request).chaos
    if chaos is None:  # never mounted without an emulator; kept as a guard
        raise RuntimeError("the chaos API needs the emulator")
    return chaos


def _retry_after(seconds: float) -> str:
    """Whole seconds, at least 1, rounded up (to the millisecond first, so that 300 s computed
    as 300.00000000000006 by clock arithmetic says 300, not 301)."""
    return str(math.ceil(round(max(1.0, seconds), 3)))


_HEALTH_DOC: Final = health_documented("The device is not healthy (`Retry-After`)")
_GENERATE_DOC: Final = documented(
    ok={
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "data": {
                        "anyOf": [
                            {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            {
                                "type": "array",
                                "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            },
                        ]
                    },
                    "source": {"enum": ["trng", "fallback"]},
                },
                "required": ["data", "source"],
            }
        }
    },
    errors={
        400: COUNT_ERROR,
        500: GENERATE_ERROR,
        503: "The device is not healthy (`Retry-After`)",
    },
    query=[{"name": "count", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}}],
)
_METRICS_DOC: Final = documented(ok={"text/plain": {"schema": {"type": "string"}}})


def create_controller_app(
    settings: ControllerSettings,
    *,
    clock: Clock | None = None,
    start_runner: bool = True,
) -> FastAPI:
    """The controller service as a FastAPI app; opens nothing until its lifespan starts.

    ``clock``: the clock for the bus, the emulator and the controller (default: the emulator's
    wall clock, or the system clock on hardware). ``start_runner`` False leaves the controller
    to the caller (``app.state.lokey.controller.step()``), which is how tests drive a
    ``VirtualClock``: the worker sleeps on the clock, so on virtual time it would spin.
    """
    emulator = parse_bus_url(settings.bus_url).kind == "emulator"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(_open_service, settings, clock, start_runner)
        app.state.lokey = service
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.close)
            del app.state.lokey

    app = new_app(
        title="LoKey controller",
        summary="ATECC608A TRNG samples (spec/service-api.md §2)",
        lifespan=lifespan,
        cors_origin=settings.cors_origin,
    )

    @app.get("/health", **_HEALTH_DOC)
    async def health(request: Request) -> JSONResponse:
        service = _service(request)
        controller = service.controller
        if controller.state is DeviceState.HEALTHY and not controller.closed:
            return JSONResponse({"status": "healthy", "timestamp": rfc3339_now()})
        status = await run_in_threadpool(service.status)
        state = status.state if status is not None else controller.state
        retry = status.retry_after_s if status is not None else 1.0
        reason = status.last_error if status is not None else None
        return JSONResponse(
            {
                "status": "unhealthy",
                "timestamp": rfc3339_now(),
                "details": {
                    "device": False,
                    "state": state.value,
                    "reason": reason or _STATE_HINTS[state],
                    "retry_after_s": round(retry, 3),
                },
            },
            status_code=503,
            headers={"Retry-After": _retry_after(retry)},
        )

    @app.get("/info")
    async def info(request: Request) -> JSONResponse:
        service = _service(request)
        status = await run_in_threadpool(service.status)
        return JSONResponse(_info_view(service, status))

    @app.get("/generate", **_GENERATE_DOC)
    async def generate(request: Request) -> JSONResponse:
        service = _service(request)
        raw = request.query_params.getlist("count")
        count = 1 if not raw else (strict_int(raw[0], 1, MAX_COUNT) if len(raw) == 1 else None)
        if count is None:
            service.requests["invalid"] += 1
            return error_response(400, COUNT_ERROR)
        try:
            samples = await run_in_threadpool(service.controller.generate, count)
        except ValueError as exc:  # the controller's own count check (same message)
            service.requests["invalid"] += 1
            return error_response(400, str(exc))
        except DeviceUnavailableError as exc:
            service.requests["unavailable"] += 1
            return error_response(
                503,
                GENERATE_ERROR,
                headers={"Retry-After": _retry_after(exc.retry_after_s)},
                state=exc.state,
                reason=exc.reason,
                retry_after_s=round(exc.retry_after_s, 3),
            )
        except Exception:
            service.requests["error"] += 1
            log.exception("generate failed unexpectedly")
            return error_response(500, GENERATE_ERROR)
        service.requests["ok"] += 1
        data = [sample.data.hex() for sample in samples]
        source = "fallback" if samples[0].fallback else "trng"
        return JSONResponse({"data": data[0] if count == 1 else data, "source": source})

    @app.get("/metrics", response_class=Response, **_METRICS_DOC)
    async def metrics(request: Request) -> Response:
        service = _service(request)
        body = await run_in_threadpool(generate_latest, service.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    if emulator:
        app.include_router(chaos_router(_chaos))
    return app

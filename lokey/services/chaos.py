"""The chaos API: inject, list and clear emulator faults while the controller runs (``/sim/...``).

design.md, "Fault injection at runtime": on the emulator the controller also serves a small API
so black-box suites can break a running stack; on real hardware these routes do not exist (the
app factory mounts this router only for an emulator URL, so they answer 404 there).

This module never imports :mod:`sim` (import-linter allows that edge only from
``lokey.backends``): faults are built by :func:`lokey.backends.build_fault`, and the chip's
control surface, the bus's fault surface and its trace are used through the small structural
protocols below, checked once when the service opens the emulator.

Routes (bodies are JSON; errors are ``{"error": ...}`` with 400 for anything the client got
wrong, never a 500):

* ``GET /sim/faults``: installed chip and bus faults (kind, params, how often each fired) and the
  chip's latched states.
* ``GET /sim/faults/kinds``: every injectable kind with its parameters, types and defaults.
* ``POST /sim/faults``: ``{"kind": "<name>", "params": {...}}``; 201 with the fault as built.
* ``DELETE /sim/faults``: clear every chip and bus fault (latched chip states stay until a power
  cycle, as on silicon).
* ``POST /sim/power-cycle``: remove and restore the chip's power.
* ``GET /sim/state``: the chip's state snapshot.
* ``GET /sim/trace?limit=N``: the newest N (1..10,000, default 100) bus trace records, in the
  ``sim.i2c_bus`` trace's JSON form.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any, Final, Protocol, cast, runtime_checkable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lokey.backends import OpenedBus, build_fault, describe_fault, fault_kinds
from lokey.services.common import documented, error_response, strict_int

__all__ = [
    "DEFAULT_TRACE_LIMIT",
    "MAX_FAULT_SECONDS",
    "MAX_TRACE_LIMIT",
    "Chaos",
    "ChaosError",
    "chaos_router",
]

DEFAULT_TRACE_LIMIT: Final = 100
MAX_TRACE_LIMIT: Final = 10_000
#: Delays a running service accepts (``ExtraBusy.seconds``, ``Latency.seconds``): a longer one
#: on the wall clock would wedge the controller's worker for minutes per transfer.
MAX_FAULT_SECONDS: Final = 10.0
TRACE_LIMIT_ERROR: Final = f"Invalid limit parameter (1-{MAX_TRACE_LIMIT})"
_BODY_KEYS: Final = frozenset({"kind", "params"})


class ChaosError(ValueError):
    """A chaos request the client got wrong (answered 400 with the message)."""


@runtime_checkable
class ChipFaultHandle(Protocol):
    """``sim.atecc608a.FaultHandle``."""

    @property
    def fault(self) -> object: ...

    @property
    def fired(self) -> int: ...


@runtime_checkable
class ChipControlSurface(Protocol):
    """The part of ``sim.atecc608a.ChipControl`` (``chip.control``) the chaos API uses."""

    def inject(self, fault: object, /) -> object: ...

    def clear_faults(self) -> None: ...

    @property
    def faults(self) -> tuple[object, ...]: ...

    def power_cycle(self) -> None: ...

    def state(self) -> object: ...


@runtime_checkable
class BusFaultHandle(Protocol):
    """``sim.i2c_bus.FaultHandle``."""

    @property
    def fault(self) -> object: ...

    @property
    def fired(self) -> int: ...


@runtime_checkable
class BusFaultsSurface(Protocol):
    """``sim.i2c_bus.BusFaults`` (``bus.faults``)."""

    def inject(self, fault: object, /) -> object: ...

    def clear(self) -> None: ...

    @property
    def handles(self) -> tuple[object, ...]: ...


@runtime_checkable
class TraceRecordLike(Protocol):
    def to_dict(self) -> dict[str, object]: ...


@runtime_checkable
class TraceSurface(Protocol):
    """``sim.i2c_bus.Trace`` (``bus.trace``)."""

    def records(self) -> list[object]: ...

    @property
    def capacity(self) -> int: ...


def _surface(owner: object, attribute: str, protocol: type) -> object:
    value = getattr(owner, attribute, None)
    if not isinstance(value, protocol):
        raise TypeError(
            f"{type(owner).__name__}.{attribute} does not offer the surface the chaos API "
            f"needs ({protocol.__name__}); is the emulator a sim.atecc608a.ATECC608A?"
        )
    return value


def _jsonable(value: object) -> object:
    """Dataclass snapshots as JSON: bytes as hex, enums as their values."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    return str(value)


class Chaos:
    """The emulator's fault surfaces, behind JSON-in / JSON-out methods (thread-safe)."""

    def __init__(self, opened: OpenedBus) -> None:
        if opened.emulator is None:
            raise ValueError(f"the chaos API needs an emulator; {opened.url!r} is {opened.kind}")
        chip = _surface(opened.emulator, "control", ChipControlSurface)
        bus = opened.inner_bus
        self._chip = cast(ChipControlSurface, chip)
        self._bus_faults = cast(BusFaultsSurface, _surface(bus, "faults", BusFaultsSurface))
        self._trace = cast(TraceSurface, _surface(bus, "trace", TraceSurface))
        self._lock = threading.Lock()
        self._chip_handles: list[ChipFaultHandle] = []  # to report how often each fired

    # -- faults ---------------------------------------------------------------------------------
    def inject(self, body: object) -> dict[str, object]:
        """Validate ``{"kind": ..., "params": {...}}``, build the fault and install it."""
        if not isinstance(body, Mapping):
            raise ChaosError('Invalid request body: expected {"kind": "<fault>", "params": {}}')
        unknown = sorted(str(key) for key in body if key not in _BODY_KEYS)
        if unknown:
            raise ChaosError(
                f"Invalid request body: unknown key(s) {', '.join(map(repr, unknown))}; "
                "send kind and params"
            )
        kind = body.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ChaosError(
                "Invalid request body: kind is required, one of: "
                + ", ".join(sorted(fault_kinds()))
            )
        params = body.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ChaosError(f"{kind}: params must be a JSON object, not {params!r}")
        try:
            built = build_fault(kind, params)
        except ValueError as exc:
            raise ChaosError(str(exc)) from None
        described = describe_fault(built.fault)
        seconds = cast(Mapping[str, object], described["params"]).get("seconds")
        if isinstance(seconds, int | float) and seconds > MAX_FAULT_SECONDS:
            raise ChaosError(
                f"{built.kind.name}: parameter 'seconds' must be <= {MAX_FAULT_SECONDS:g} on a "
                f"running service, got {seconds!r}"
            )
        with self._lock:
            if built.kind.target == "chip":
                handle = self._chip.inject(built.fault)
                if isinstance(handle, ChipFaultHandle):
                    self._chip_handles.append(handle)
            else:
                self._bus_faults.inject(built.fault)
        return {"target": built.kind.target, **described}

    def faults(self) -> dict[str, object]:
        with self._lock:
            installed = self._chip.faults
            fired = {id(h.fault): h.fired for h in self._chip_handles}
            # forget handles of faults the chip dropped (used up or latched)
            self._chip_handles = [
                h for h in self._chip_handles if any(h.fault is f for f in installed)
            ]
            chip = [{**describe_fault(fault), "fired": fired.get(id(fault))} for fault in installed]
            bus = [
                {**describe_fault(h.fault), "fired": h.fired}
                for h in self._bus_faults.handles
                if isinstance(h, BusFaultHandle)
            ]
        return {"chip": chip, "bus": bus, "latched": self._latched()}

    def clear(self) -> dict[str, object]:
        with self._lock:
            counts = {"chip": len(self._chip.faults), "bus": len(self._bus_faults.handles)}
            self._chip.clear_faults()
            self._bus_faults.clear()
            self._chip_handles.clear()
        latched = self._latched()
        note = None
        if latched["health_failed"] or latched["failure"]:
            note = (
                "latched chip states persist until what clears them on silicon: "
                "POST /sim/power-cycle (a wake whose self-test passes also clears Failure)"
            )
        return {"cleared": counts, "latched": latched, "note": note}

    def _latched(self) -> dict[str, object]:
        state = self.state()
        return {"health_failed": state.get("health_failed"), "failure": state.get("failure")}

    # -- chip and bus ---------------------------------------------------------------------------
    def power_cycle(self) -> dict[str, object]:
        self._chip.power_cycle()
        return {"status": "power-cycled", "state": self.state()}

    def state(self) -> dict[str, object]:
        snapshot = _jsonable(self._chip.state())
        return cast(dict[str, object], snapshot) if isinstance(snapshot, dict) else {}

    def trace(self, limit: int) -> dict[str, object]:
        kept = self._trace.records()
        records = [r.to_dict() for r in kept[-limit:] if isinstance(r, TraceRecordLike)]
        return {
            "records": records,
            "count": len(records),
            "kept": len(kept),
            "capacity": self._trace.capacity,
        }

    @staticmethod
    def kinds() -> dict[str, object]:
        return {name: kind.to_dict() for name, kind in sorted(fault_kinds().items())}


_TRACE_DOC: Final = documented(
    errors={400: TRACE_LIMIT_ERROR},
    query=[
        {
            "name": "limit",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TRACE_LIMIT},
        }
    ],
)


def _inject_doc() -> dict[str, Any]:
    """``POST /sim/faults``: the kinds are the emulator's (read when the router is built)."""
    return documented(
        ok=None,
        errors={400: "Invalid fault: unknown kind, bad or missing parameters"},
        body={
            "type": "object",
            "properties": {
                "kind": {"enum": sorted(fault_kinds())},
                "params": {"type": "object"},
            },
            "required": ["kind"],
        },
    )


def chaos_router(get_chaos: Callable[[Request], Chaos]) -> APIRouter:
    """The ``/sim`` routes; ``get_chaos`` finds the running service's :class:`Chaos`."""
    router = APIRouter(prefix="/sim", tags=["chaos (emulator only)"])

    @router.get("/faults")
    async def list_faults(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(get_chaos(request).faults))

    @router.get("/faults/kinds")
    async def list_kinds(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(Chaos.kinds))

    @router.post("/faults", status_code=201, **_inject_doc())
    async def inject_fault(request: Request) -> JSONResponse:
        chaos = get_chaos(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # JSONDecodeError and bad UTF-8 are ValueErrors
            return error_response(400, "Invalid request body")
        try:
            injected = await run_in_threadpool(chaos.inject, body)
        except ChaosError as exc:
            return error_response(400, str(exc))
        return JSONResponse({"injected": injected}, status_code=201)

    @router.delete("/faults")
    async def clear_faults(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(get_chaos(request).clear))

    @router.post("/power-cycle")
    async def power_cycle(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(get_chaos(request).power_cycle))

    @router.get("/state")
    async def chip_state(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(get_chaos(request).state))

    @router.get("/trace", **_TRACE_DOC)
    async def bus_trace(request: Request) -> JSONResponse:
        raw = request.query_params.getlist("limit")
        limit: int | None = DEFAULT_TRACE_LIMIT
        if len(raw) > 1:
            limit = None
        elif raw:
            limit = strict_int(raw[0], 1, MAX_TRACE_LIMIT)
        if limit is None:
            return error_response(400, TRACE_LIMIT_ERROR)
        return JSONResponse(await run_in_threadpool(get_chaos(request).trace, limit))

    return router

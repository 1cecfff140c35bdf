"""The API's requests and answers without any I/O, shared by both clients.

A :class:`Call` says what to send and how to read the answer; :meth:`Call.result` turns a
response into a value or one of the client's exceptions. The clients only send (sync or async)
and wait between retries, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from lokey.client._errors import ApiError, ApiUnavailableError, InvalidRequestError, NoDataError
from lokey.client._models import (
    FORMATS,
    Format,
    Health,
    QueueConfig,
    SeedingSource,
    Source,
    Status,
    VirtioConfig,
)

__all__ = [
    "Call",
    "consume_default",
    "data_bytes",
    "data_ints",
    "health",
    "metrics",
    "no_data_wait",
    "queue_config",
    "ready",
    "set_consume_default",
    "set_queue_config",
    "set_virtio_config",
    "status",
    "unavailable",
    "virtio_config",
]

T = TypeVar("T")

NO_DATA: Final = "No data available"  # spec §1.2, verbatim
DEFAULT_RETRY_AFTER_S: Final = 1.0  # when a NoDataError carries no Retry-After
MIN_RETRY_WAIT_S: Final = 0.1  # a Retry-After of 0 must not spin
_DATA: Final = "/api/v1/data"
_INVALID: Final = frozenset({400, 413, 422})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: ``parse`` reads an answer whose status is in ``accept``."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    body: Mapping[str, object] | None = None
    accept: frozenset[int] = frozenset({200})

    def result(self, response: httpx.Response) -> T:
        """The value of ``response``, or the :class:`ApiError` it stands for."""
        if response.status_code not in self.accept:
            raise self._error(response)
        try:
            return self.parse(response)
        except ValueError as exc:  # json.JSONDecodeError and pydantic's ValidationError too
            raise ApiError(
                f"unexpected answer: {_describe(exc)}",
                status_code=response.status_code,
                method=self.method,
                path=self.path,
            ) from exc

    def _error(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        message = _error_message(response)
        # LoKey answers 503; the Go reference answered 404 with the same string (spec §1.2).
        if message == NO_DATA and status in (503, 404):
            return NoDataError(
                message,
                status_code=status,
                method=self.method,
                path=self.path,
                retry_after=_seconds(response.headers.get("Retry-After")),
            )
        kind = InvalidRequestError if status in _INVALID else ApiError
        return kind(message, status_code=status, method=self.method, path=self.path)


def unavailable(
    call: Call[Any], base_url: httpx.URL, exc: httpx.TransportError
) -> ApiUnavailableError:
    """The :class:`ApiUnavailableError` for a request that got no answer."""
    base = str(base_url).rstrip("/")
    detail = str(exc) or "no detail"
    return ApiUnavailableError(
        f"no answer from the LoKey API at {base} ({call.method} {call.path}): "
        f"{type(exc).__name__}: {detail}",
        method=call.method,
        url=base + call.path,
    )


def no_data_wait(error: NoDataError, budget_s: float) -> float | None:
    """How long to sleep before asking again (the server's ``Retry-After``, never past the
    remaining ``budget_s``), or ``None`` to give up and raise ``error``."""
    if budget_s <= 0:
        return None
    wanted = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER_S
    return min(max(wanted, MIN_RETRY_WAIT_S), budget_s)


# -- data ------------------------------------------------------------------------------------


def _data_body(
    fmt: str, limit: int, source: Source, offset: int, consume: bool | None
) -> dict[str, object]:
    body: dict[str, object] = {"format": fmt, "limit": limit, "offset": offset, "source": source}
    if consume is not None:
        body["consume"] = consume
    return body


def data_ints(
    fmt: Format, limit: int, source: Source, offset: int, consume: bool | None
) -> Call[list[int]]:
    name: str = fmt  # any string at run time; refused here, before anything is sent
    if name not in FORMATS:
        hint = "; for raw bytes use random_bytes()" if name == "binary" else ""
        raise ValueError(
            f"unknown integer format {name!r}: expected one of {', '.join(FORMATS)}{hint}"
        )

    def parse(response: httpx.Response) -> list[int]:
        values = response.json()
        if not isinstance(values, list) or not all(type(v) is int for v in values):
            raise ValueError(f"expected a JSON array of integers, got {response.text[:80]!r}")
        if len(values) != limit:
            raise ValueError(f"asked for {limit} values, got {len(values)}")
        return values

    return Call("POST", _DATA, parse, _data_body(fmt, limit, source, offset, consume))


def data_bytes(limit: int, source: Source, offset: int, consume: bool | None) -> Call[bytes]:
    def parse(response: httpx.Response) -> bytes:
        if len(response.content) != limit:
            raise ValueError(f"asked for {limit} bytes, got {len(response.content)}")
        return response.content

    return Call("POST", _DATA, parse, _data_body("binary", limit, source, offset, consume))


# -- status ----------------------------------------------------------------------------------

_STATUS: Final = TypeAdapter(Status)
_HEALTH: Final = TypeAdapter(Health)
_QUEUE: Final = TypeAdapter(QueueConfig)
_VIRTIO: Final = TypeAdapter(VirtioConfig)
_BOOL: Final = TypeAdapter(bool)


def _parse_status(response: httpx.Response) -> Status:
    status = _STATUS.validate_json(response.content, strict=True)
    return dataclasses.replace(status, raw=response.json())


def status() -> Call[Status]:
    return Call("GET", "/api/v1/status", _parse_status)


def health() -> Call[Health]:
    return Call("GET", "/api/v1/health", lambda r: _HEALTH.validate_json(r.content, strict=True))


def ready() -> Call[bool]:
    """200 ready, 503 not (spec §1.7: the API cannot serve from any queue)."""
    return Call("GET", "/api/v1/ready", lambda r: _field(r, "ready"), accept=frozenset({200, 503}))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.text)


# -- configuration ---------------------------------------------------------------------------

_QUEUE_PATH: Final = "/api/v1/config/queue"
_CONSUME_PATH: Final = "/api/v1/config/consume"
_VIRTIO_PATH: Final = "/api/v1/config/virtio"


def _queue(response: httpx.Response) -> QueueConfig:
    return _QUEUE.validate_json(response.content, strict=True)


def _virtio(response: httpx.Response) -> VirtioConfig:
    return _VIRTIO.validate_json(response.content, strict=True)


def queue_config() -> Call[QueueConfig]:
    return Call("GET", _QUEUE_PATH, _queue)


def set_queue_config(trng: int, fortuna: int, virtio: int) -> Call[QueueConfig]:
    body = {"trng_queue_size": trng, "fortuna_queue_size": fortuna, "virtio_queue_size": virtio}
    return Call("PUT", _QUEUE_PATH, _queue, body)


def consume_default() -> Call[bool]:
    return Call("GET", _CONSUME_PATH, lambda r: _field(r, "consume"))


def set_consume_default(consume: bool) -> Call[bool]:
    return Call("PUT", _CONSUME_PATH, lambda r: _field(r, "consume"), {"consume": consume})


def virtio_config() -> Call[VirtioConfig]:
    return Call("GET", _VIRTIO_PATH, _virtio)


def set_virtio_config(
    seeding_source: SeedingSource, queue_size: int, seed_interval_seconds: int | None
) -> Call[VirtioConfig]:
    body: dict[str, object] = {"seeding_source": seeding_source, "queue_size": queue_size}
    if seed_interval_seconds is not None:
        body["seed_interval_seconds"] = seed_interval_seconds
    return Call("PUT", _VIRTIO_PATH, _virtio, body)


# -- helpers ---------------------------------------------------------------------------------


def _field(response: httpx.Response, name: str) -> bool:
    """The boolean ``name`` of a JSON object answer."""
    body = response.json()
    if not isinstance(body, dict) or name not in body:
        raise ValueError(f"expected a JSON object with {name!r}, got {response.text[:80]!r}")
    return _BOOL.validate_python(body[name], strict=True)


def _error_message(response: httpx.Response) -> str:
    """The ``{"error"}`` text (spec §0), else the body's text, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message: str = body["error"]
        return message
    return response.text.strip()[:200] or response.reason_phrase


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` as delay-seconds; ``None`` if absent or not a number (an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:3]
        ]
        more = exc.error_count() - len(problems)
        return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg})"
    return str(exc)

"""HTTP pieces every LoKey service shares (spec/service-api.md §0).

* Errors are ``{"error": "<message>"}``: :func:`install_error_handlers` turns Starlette's 404,
  405 and FastAPI's validation errors into that shape, and anything unexpected into a 500 that
  never echoes internals (the server logs the traceback).
* :class:`OptionsMiddleware`: any ``OPTIONS`` request is answered 204 with no body, and, when an
  origin is configured, every response carries the reference API's CORS headers (§1.1).
* :class:`AccessLogMiddleware`: one line per request on ``lokey.access``; 2xx at INFO, anything
  else at WARNING, so ``LOG_LEVEL=WARN`` logs only the non-200 responses, as in the reference
  (§0). Only method, path, query, status and duration: never a body.
* :class:`BodyLimitMiddleware`: a request body over the limit is refused with 413 before the
  app reads it (declared ``Content-Length``) or as soon as the streamed body passes the limit;
  every service has one (:data:`DEFAULT_BODY_LIMIT` unless it asks for another), and the 413
  closes the connection, so the rest of a huge or endless body is never read.
* :class:`InFlightLimitMiddleware`: at most :data:`MAX_REQUESTS_IN_FLIGHT` requests at once;
  more get 503 with ``Retry-After`` at once. It counts requests, not connections (the server
  closes silent connections within seconds), and with the body limit it bounds the memory that
  requests in flight can hold.
* :func:`documented`: the OpenAPI description of a route whose parameters, body and answers the
  handler checks itself (query parameters, JSON body, every status code it returns), so the
  document says what the service really does (tests/test_schemathesis.py holds it to that).
* :func:`strict_int`: query integers the way Go's ``strconv.Atoi`` reads them (ASCII digits
  with an optional sign, nothing else): ``1.5``, ``""``, ``" 1"``, non-ASCII digits are refused.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lokey import __version__

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

__all__ = [
    "CORS_ALLOW_HEADERS",
    "CORS_ALLOW_METHODS",
    "DEFAULT_BODY_LIMIT",
    "ERROR_SCHEMA",
    "HEALTH_SCHEMA",
    "MAX_REQUESTS_IN_FLIGHT",
    "AccessLogMiddleware",
    "BodyLimitMiddleware",
    "InFlightLimitMiddleware",
    "OptionsMiddleware",
    "documented",
    "error_response",
    "health_documented",
    "install_error_handlers",
    "rfc3339_now",
    "strict_int",
]

access_log = logging.getLogger("lokey.access")

#: The reference API's CORS defaults (spec/service-api.md §1.1).
CORS_ALLOW_METHODS: Final = "GET, POST, PUT, DELETE, OPTIONS"
CORS_ALLOW_HEADERS: Final = "Content-Type, Authorization, Accept"
_DIGITS = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII only; 18 digits cannot overflow anything
#: Body limit of a service that names none (the controller: its chaos API's bodies are a few
#: hundred bytes); high enough for the deeply nested JSON its tests send to get their 400.
DEFAULT_BODY_LIMIT: Final = 1 << 20
#: Requests a service works on at once: far above the stack's own polling, a few /stream
#: readers and a handful of API clients, and with the largest body limit (VirtIO's 4 MiB)
#: at most 512 MiB of bodies in the worst case; a client over it retries after a second.
MAX_REQUESTS_IN_FLIGHT: Final = 128
#: ``{"error": "<message>"}`` (spec §0), the body of every error answer.
ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def error_response(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    """``{"error": message, **extra}`` with ``status``."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def rfc3339_now() -> str:
    """Now, in RFC 3339 (UTC, whole seconds), as the reference's ``time.RFC3339`` timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def strict_int(text: str, lower: int, upper: int) -> int | None:
    """``text`` as an integer in ``lower..upper``, or None if it is anything else."""
    if _DIGITS.fullmatch(text) is None:
        return None
    value = int(text)
    return value if lower <= value <= upper else None


#: The body of every service's ``/health`` (service-api.md §2-§4: status, timestamp, details).
HEALTH_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "status": {"enum": ["healthy", "unhealthy"]},
        "timestamp": {"type": "string"},
        "details": {"type": "object"},
    },
    "required": ["status", "timestamp"],
}


def health_documented(unhealthy: str) -> dict[str, Any]:
    """:func:`documented` for a ``/health`` that answers 503, with the same body, when
    ``unhealthy`` (the description of that case)."""
    content = {"application/json": {"schema": HEALTH_SCHEMA}}
    return documented(ok=content, errors={503: {"description": unhealthy, "content": content}})


def documented(
    *,
    ok: Mapping[str, Any] | None = None,
    errors: Mapping[int, str | Mapping[str, Any]] | None = None,
    query: Sequence[Mapping[str, Any]] = (),
    body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``responses=`` and ``openapi_extra=`` for a route that checks its own input.

    ``ok``: the 200 answer's ``content`` (media type -> ``{"schema": ...}``; default: JSON of
    any shape); ``errors``: every other status the route answers, with a description (the body
    is :data:`ERROR_SCHEMA`) or a whole OpenAPI response object; a 413 is added when there is a
    ``body``; ``query``: the query
    parameters as OpenAPI parameter objects (``in: query`` is filled in); ``body``: the JSON
    request body's schema. Use with ``response_class=Response`` when ``ok`` is not JSON.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        responses[200] = {"description": "Success", "content": dict(ok)}
    answers = dict(errors or {})
    if body is not None:
        answers.setdefault(413, "Request body too large")
    for status, answer in sorted(answers.items()):
        if isinstance(answer, str):
            content = {"application/json": {"schema": ERROR_SCHEMA}}
            responses[status] = {"description": answer, "content": content}
        else:
            responses[status] = dict(answer)
    extra: dict[str, Any] = {}
    if query:
        extra["parameters"] = [{"in": "query", "required": False, **each} for each in query]
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": dict(body)}},
        }
    return {"responses": responses, "openapi_extra": extra or None}


def new_app(
    *,
    title: str,
    summary: str,
    lifespan: Lifespan,
    cors_origin: str,
    body_limit: int = DEFAULT_BODY_LIMIT,
    guards: Sequence[Middleware] = (),
    max_in_flight: int = MAX_REQUESTS_IN_FLIGHT,
) -> FastAPI:
    """A service app with LoKey's common edges: ``{"error"}`` handlers, OPTIONS/CORS, access log
    and a 413 for bodies over ``body_limit``. ``guards`` (authentication, rate limits)
    sit outside the body limit, so a refused client's body is never read. Refusals of both are
    inside the CORS and log layers: they carry the headers and are logged like any answer."""
    app = FastAPI(title=title, summary=summary, version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=body_limit)
    for guard in guards:  # each add wraps the previous: the first guard is the innermost
        app.add_middleware(guard.cls, *guard.args, **guard.kwargs)
    app.add_middleware(InFlightLimitMiddleware, limit=max_in_flight)
    app.add_middleware(OptionsMiddleware, allow_origin=cors_origin)
    app.add_middleware(AccessLogMiddleware)
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error the framework produces gets the ``{"error": ...}`` shape (§0)."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else "invalid")
        return error_response(400, "; ".join(problems) or "Invalid request")

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after sending this, so the server logs the traceback once.
        return error_response(500, "Internal server error")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


class OptionsMiddleware:
    """``OPTIONS`` anywhere → 204, no body; CORS headers on every response when configured.

    ``allow_origin`` empty: no CORS headers at all (the reference controller sends none); ``*``
    or one origin: the reference API's three headers (§1.1).
    """

    def __init__(self, app: ASGIApp, *, allow_origin: str = "") -> None:
        self.app = app
        self._headers: list[tuple[bytes, bytes]] = []
        if allow_origin:
            self._headers = [
                (b"access-control-allow-origin", allow_origin.encode("latin-1")),
                (b"access-control-allow-methods", CORS_ALLOW_METHODS.encode("latin-1")),
                (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode("latin-1")),
            ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": self._headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if not self._headers:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *self._headers]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


class AccessLogMiddleware:
    """One log line per HTTP request: 2xx and 3xx at INFO, everything else at WARNING."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server sends if the app dies before starting a response

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            level = logging.INFO if status < 400 else logging.WARNING
            if access_log.isEnabledFor(level):
                query = scope.get("query_string", b"").decode("latin-1")
                target = scope["path"] + (f"?{query}" if query else "")
                access_log.log(
                    level,
                    "%s %s %d %.1f ms",
                    scope["method"],
                    target,
                    status,
                    (time.perf_counter() - started) * 1000,
                )


class InFlightLimitMiddleware:
    """503 ``{"error": "Server busy ..."}`` with ``Retry-After: 1`` while ``limit`` requests are
    already being answered (a streaming answer counts until it ends)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            busy = error_response(
                503,
                f"Server busy: {self.limit} requests in flight, retry shortly",
                headers={"Retry-After": "1", "Cache-Control": "no-store"},
            )
            await busy(scope, receive, send)
            return
        self.in_flight += 1  # one event loop per app: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BodyLimitMiddleware:
    """413 ``{"error": "Request body too large (limit N bytes)"}`` for bodies over ``limit``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a chunked
    body is counted as it arrives and cut off at the limit (the app then sees a disconnect, and
    the client gets the 413), so a client cannot make the service buffer an unbounded body.
    The 413 says ``Connection: close``: the server then drops the connection instead of reading
    (and discarding) the rest of the body, which may never end.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"Request body too large (limit {self.limit:,} bytes)"})
        encoded = body.encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(encoded)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": encoded})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        received = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise
        if refused and not started:
            await self._refuse(send)

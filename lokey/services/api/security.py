"""API keys and a per-client rate limit for the API service (docs/security.md).

:class:`SecurityMiddleware` sits inside the CORS/OPTIONS and access-log layers (so a 401 or
429 carries the CORS headers and is logged like any answer) and outside the body limit (so an
unauthenticated client is refused before its body is read):

* ``LOKEY_API_KEYS`` set: the data and configuration routes (:func:`protected`) need
  ``Authorization: Bearer <key>``; the token is compared with :func:`hmac.compare_digest`
  against every key. Missing or wrong → 401 ``{"error": "Missing or invalid API key"}`` with
  ``WWW-Authenticate: Bearer``. Health, readiness, status, metrics and the OpenAPI pages stay
  open: probes and scrapers carry no secrets, and none of them serves random bytes or changes
  anything. Keys are never logged (the access log has the method, path, query and status only).
* ``LOKEY_RATE_LIMIT_PER_S`` > 0: a token bucket per client on ``/api/v1/data`` (one token a
  request, ``LOKEY_RATE_LIMIT_BURST`` tokens at most); the client is the API key when keys are
  on, else the peer address. An empty bucket → 429 ``{"error": "Too many requests"}`` with
  ``Retry-After`` (whole seconds, at least 1) and ``Cache-Control: no-store``. At most
  :data:`MAX_BUCKETS` buckets are kept, the least recently used evicted first.
"""

from __future__ import annotations

import hmac
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from lokey.clock import Clock
from lokey.services.common import error_response
from lokey.services.settings import ApiSettings

__all__ = [
    "AUTH_ERROR",
    "MAX_BUCKETS",
    "RATE_ERROR",
    "RateLimiter",
    "SecurityMiddleware",
    "document_security",
    "protected",
    "rate_limited",
    "security_guards",
]

AUTH_ERROR: Final = "Missing or invalid API key"
RATE_ERROR: Final = "Too many requests"
MAX_BUCKETS: Final = 10_000
DATA_PATH: Final = "/api/v1/data"
_CONFIG_PREFIXES: Final = ("/api/v1/config", "/config/")
SCHEME_NAME: Final = "bearerAuth"


def protected(path: str) -> bool:
    """The routes that serve random bytes or change the configuration."""
    path = path.rstrip("/") or "/"
    return path == DATA_PATH or path.startswith(_CONFIG_PREFIXES)


def rate_limited(path: str) -> bool:
    """The routes that serve random bytes."""
    return (path.rstrip("/") or "/") == DATA_PATH


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per client key: ``rate`` tokens a second, ``burst`` at most."""

    def __init__(
        self, rate: float, burst: int, clock: Clock, *, max_buckets: int = MAX_BUCKETS
    ) -> None:
        if rate <= 0 or burst < 1 or max_buckets < 1:
            raise ValueError("a rate limiter needs rate > 0, burst >= 1 and max_buckets >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Take one token for ``client``: 0.0 if granted, else the seconds until one is due."""
        now = self.clock.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = bytes(value).strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class SecurityMiddleware:
    """401 without a valid key on :func:`protected` routes; 429 past the rate limit."""

    def __init__(self, app: ASGIApp, *, keys: tuple[str, ...], limiter: RateLimiter | None) -> None:
        self.app = app
        self._keys = tuple(key.encode("ascii") for key in keys)
        self.limiter = limiter

    def _key_index(self, scope: Scope) -> int | None:
        """Which key the request carries (every key is compared, match or not)."""
        token = _bearer(scope)
        if token is None:
            return None
        found: int | None = None
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(token, key) and found is None:
                found = index
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        client: str | None = None
        if self._keys:
            index = self._key_index(scope)
            if index is None:
                response = error_response(401, AUTH_ERROR, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
            client = f"key:{index}"
        if self.limiter is not None and rate_limited(scope["path"]):
            if client is None:
                peer = scope.get("client")
                client = f"ip:{peer[0]}" if peer else "ip:unknown"
            wait = self.limiter.take(client)
            if wait > 0:
                headers = {
                    "Retry-After": str(max(1, math.ceil(wait))),
                    "Cache-Control": "no-store",
                }
                await error_response(429, RATE_ERROR, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def security_guards(settings: ApiSettings, clock: Clock) -> tuple[Middleware, ...]:
    """The :class:`SecurityMiddleware` for ``new_app(guards=...)`` when keys or a rate limit
    are configured; nothing otherwise."""
    keys = settings.api_key_list
    limiter = None
    if settings.rate_limit_per_s > 0:
        limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock)
    if not keys and limiter is None:
        return ()
    return (Middleware(SecurityMiddleware, keys=keys, limiter=limiter),)


def document_security(app: FastAPI, settings: ApiSettings) -> None:
    """The bearer scheme and the 401/429 answers in the OpenAPI document, as configured.

    Call after the app's own ``openapi`` is installed."""
    _document(app, keys=bool(settings.api_key_list), rate_limit=settings.rate_limit_per_s > 0)


def _document(app: FastAPI, *, keys: bool, rate_limit: bool) -> None:
    if not keys and not rate_limit:
        return
    build: Callable[[], dict[str, object]] = app.openapi
    done = False

    def openapi() -> dict[str, object]:
        nonlocal done
        schema = build()
        if done:
            return schema
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        paths = schema.get("paths", {})
        assert isinstance(paths, dict)
        for path, item in paths.items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                if keys and protected(path):
                    operation["security"] = [{SCHEME_NAME: []}]
                    responses["401"] = {"description": AUTH_ERROR, "content": error}
                if rate_limit and rate_limited(path):
                    responses["429"] = {
                        "description": f"{RATE_ERROR} (`Retry-After`)",
                        "content": error,
                    }
        if keys:
            components = schema.setdefault("components", {})
            assert isinstance(components, dict)
            components.setdefault("securitySchemes", {})[SCHEME_NAME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "One of LOKEY_API_KEYS",
            }
        done = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

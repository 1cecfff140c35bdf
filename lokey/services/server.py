"""Running a service app in the foreground with uvicorn (``lokey serve ...``).

uvicorn shuts down gracefully on SIGTERM / SIGINT (the lifespan closes the bus and the worker)
and then, by design, re-raises the signal so the process dies of it (exit status 143 / 130).
``lokey`` documents its own exit statuses instead: :func:`run` returns 0 after a clean,
signal-initiated shutdown, and 2 when the server could not start (port in use, a lifespan that
failed), the "could not run" status of every ``lokey`` command.

:func:`server_config` is the one uvicorn configuration of every service, here and in
``lokey up --single-process`` (:mod:`lokey.services.combined`); its limits are what keeps bad
clients from holding a small machine (tests/test_bad_requests.py):

* uvicorn's h11 server has no deadline for reading a request: a client that sends its request
  line and headers a byte at a time (slowloris) keeps the connection forever, since every byte
  resets the keep-alive timer. :class:`DeadlineH11Protocol` gives every request
  :data:`REQUEST_READ_TIMEOUT_S` from the moment the server waits for it until its last body
  byte, then closes the connection; a new connection that sends nothing is closed after
  :data:`FIRST_BYTE_TIMEOUT_S`.
* :data:`KEEP_ALIVE_TIMEOUT_S`: an idle keep-alive connection is closed after this long.
* Requests in flight are limited by each app (:class:`~lokey.services.common.
  InFlightLimitMiddleware`), not by uvicorn's ``limit_concurrency``, which counts connections.
* :data:`MAX_HEADER_BYTES`: a request line plus headers still incomplete past this is a 400
  (h11's own limit, named here). Bodies are bounded by each app (:class:`~lokey.services.common.
  BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any, Final

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "EXIT_CLEAN",
    "EXIT_NOT_STARTED",
    "FIRST_BYTE_TIMEOUT_S",
    "KEEP_ALIVE_TIMEOUT_S",
    "MAX_HEADER_BYTES",
    "REQUEST_READ_TIMEOUT_S",
    "DeadlineH11Protocol",
    "run",
    "server_config",
]

EXIT_CLEAN: Final = 0
EXIT_NOT_STARTED: Final = 2
#: The whole request (line, headers, body) must arrive within this: generous for the largest
#: body any service takes (4 MiB on a slow LAN), short enough that 50 trickling connections
#: are gone within half a minute.
REQUEST_READ_TIMEOUT_S: Final = 30.0
#: uvicorn's default, named: an idle connection between two requests.
KEEP_ALIVE_TIMEOUT_S: Final = 5
#: A new connection must send its first byte within this (uvicorn's keep-alive timeout only
#: starts after a first response): connections that say nothing are gone within seconds, so
#: holding many open costs an attacker a constant stream of new ones. Requests, not
#: connections, are what the apps limit (common.InFlightLimitMiddleware): uvicorn's own
#: limit_concurrency counts idle connections too, so a few hundred silent sockets would make
#: every client, health checks included, get 503.
FIRST_BYTE_TIMEOUT_S: Final = 5.0
#: h11's default limit for a request line plus headers still incomplete (larger: 400), named;
#: a head that arrives whole in one read (asyncio reads up to 256 KiB) is parsed as it is.
MAX_HEADER_BYTES: Final = 16 << 10

log = logging.getLogger("lokey.services")


class _Server(uvicorn.Server):
    """uvicorn's server, except that the signal that stopped it is not raised again."""

    stopped_by: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = self._captured_signals
            if captured:
                self.stopped_by = captured[0]
                captured.clear()


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for reading each request.

    The deadline starts when the server waits for a request (connection made, previous
    response done) and is cancelled once the request's last byte has arrived; if it expires,
    the connection is closed (an app still waiting for the body sees a disconnect). Answering
    never counts: a long ``/stream`` or a slow chip is unaffected. A new connection has only
    ``first_byte_timeout_s`` to send anything at all.
    """

    read_timeout_s: float = REQUEST_READ_TIMEOUT_S
    first_byte_timeout_s: float = FIRST_BYTE_TIMEOUT_S
    _read_deadline: asyncio.TimerHandle | None = None
    _first_byte_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._track_read_deadline()
        self._first_byte_deadline = self.loop.call_later(
            self.first_byte_timeout_s, self._silent_expired
        )

    def data_received(self, data: bytes) -> None:
        self._cancel_first_byte_deadline()
        super().data_received(data)
        self._track_read_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_deadline()
        self._cancel_first_byte_deadline()
        super().connection_lost(exc)

    def _cancel_first_byte_deadline(self) -> None:
        if self._first_byte_deadline is not None:
            self._first_byte_deadline.cancel()
            self._first_byte_deadline = None

    def _silent_expired(self) -> None:
        self._first_byte_deadline = None
        if not self.transport.is_closing():
            self.logger.info(
                "closing a connection: nothing sent within %g s", self.first_byte_timeout_s
            )
            self.transport.close()

    def _track_read_deadline(self) -> None:
        reading = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if not reading or self.transport.is_closing():
            self._cancel_read_deadline()
        elif self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_expired)

    def _cancel_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_expired(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.logger.info(
                "closing a connection: no complete request within %g s", self.read_timeout_s
            )
            self.transport.close()


def _protocol(read_timeout_s: float, first_byte_timeout_s: float) -> type[asyncio.Protocol]:
    if (read_timeout_s, first_byte_timeout_s) == (REQUEST_READ_TIMEOUT_S, FIRST_BYTE_TIMEOUT_S):
        return DeadlineH11Protocol
    timeouts = {"read_timeout_s": read_timeout_s, "first_byte_timeout_s": first_byte_timeout_s}
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), timeouts)


def server_config(
    app: FastAPI,
    *,
    log_level: str,
    host: str = "127.0.0.1",
    port: int = 0,
    read_timeout_s: float = REQUEST_READ_TIMEOUT_S,
    keep_alive_timeout_s: int = KEEP_ALIVE_TIMEOUT_S,
    first_byte_timeout_s: float = FIRST_BYTE_TIMEOUT_S,
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of every LoKey service (``options``: more ``uvicorn.Config``
    arguments). Tests shorten the timeouts through the same parameters."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        http=_protocol(read_timeout_s, first_byte_timeout_s),
        ws="none",  # no service speaks WebSocket
        timeout_keep_alive=keep_alive_timeout_s,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        **options,
    )


def run(app: FastAPI, *, host: str, port: int, log_level: str) -> int:
    """Serve ``app`` until SIGTERM / SIGINT; the exit status for ``lokey``.

    Logging must already be configured (uvicorn's own lines go through the root logger);
    access lines come from :class:`lokey.services.common.AccessLogMiddleware`, not uvicorn.
    """
    server = _Server(server_config(app, host=host, port=port, log_level=log_level))
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind or the lifespan fails
        log.error("the service could not start on %s:%d (see the errors above)", host, port)
        return EXIT_NOT_STARTED
    if not server.started:
        return EXIT_NOT_STARTED
    if server.stopped_by is not None:
        log.info("stopped by %s", signal.Signals(server.stopped_by).name)
    return EXIT_CLEAN

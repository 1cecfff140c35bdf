"""Running a service app in the foreground with uvicorn (``lokey serve ...``).

uvicorn shuts down gracefully on SIGTERM / SIGINT (the lifespan closes the bus and the worker)
and then, by design, re-raises the signal so the process dies of it (exit status 143 / 130).
``lokey`` documents its own exit statuses instead: :func:`run` returns 0 after a clean,
signal-initiated shutdown, and 2 when the server could not start (port in use, a lifespan that
failed), the "could not run" status of every ``lokey`` command.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Final

import uvicorn
from fastapi import FastAPI

__all__ = ["EXIT_CLEAN", "EXIT_NOT_STARTED", "run"]

EXIT_CLEAN: Final = 0
EXIT_NOT_STARTED: Final = 2

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


def run(app: FastAPI, *, host: str, port: int, log_level: str) -> int:
    """Serve ``app`` until SIGTERM / SIGINT; the exit status for ``lokey``.

    Logging must already be configured (uvicorn's own lines go through the root logger);
    access lines come from :class:`lokey.services.common.AccessLogMiddleware`, not uvicorn.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    server = _Server(config)
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

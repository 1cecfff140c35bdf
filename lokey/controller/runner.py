"""The background worker that drives a :class:`~lokey.controller.machine.Controller`.

The controller itself has no threads: work happens when someone calls ``step()``. The
controller service runs this worker so that recovery, back-off and validation progress while
requests are served from other threads. It sleeps on the injected clock in slices of at most
``poll_s`` and checks a :class:`threading.Event` between them, so ``stop()`` returns promptly
(within one step plus one slice), and it looks at the controller at least every ``poll_s``
so a failure reported by a request is picked up without delay.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from lokey.clock import Clock

__all__ = ["DEFAULT_POLL_S", "ControllerRunner", "Steppable"]

log = logging.getLogger("lokey.controller.runner")

DEFAULT_POLL_S = 0.05  # at most 50 ms between looks: well under the first 100 ms back-off


class Steppable(Protocol):
    """What the runner drives: :class:`~lokey.controller.machine.Controller` is one."""

    def step(self) -> float:
        """Do the due work; return the seconds until more is due (``math.inf``: none)."""
        ...


class ControllerRunner:
    """Calls ``controller.step()`` on a daemon thread until stopped; never dies of an error."""

    def __init__(
        self,
        controller: Steppable,
        clock: Clock,
        *,
        poll_s: float = DEFAULT_POLL_S,
        name: str = "lokey-controller",
    ) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
        self._controller = controller
        self._clock = clock
        self._poll_s = poll_s
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("the controller runner is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the worker to stop and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("controller runner did not stop within %s s", timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self._controller.step()
            except Exception:  # the controller turns device trouble into states; this is a bug
                log.exception("controller step failed")
                delay = self._poll_s
            if not self._stop.is_set():
                self._clock.sleep(min(delay, self._poll_s))

    def __enter__(self) -> ControllerRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

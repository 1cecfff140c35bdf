"""The background worker that drives a :class:`~lokey.controller.machine.Controller`.

The controller itself has no threads: work happens when someone calls ``step()``. The
controller service runs this worker so that recovery, back-off and validation progress while
requests are served from other threads. It sleeps on the injected clock in slices of at most
``poll_s`` and checks a :class:`threading.Event` between them, so ``stop()`` returns promptly
(within one step plus one slice), and it looks at the controller at least every ``poll_s``
so a failure reported by a request is picked up without delay.

There is never more than one worker. A step can outlast ``stop()``'s timeout (a bus transfer
that hangs); the runner then keeps that worker as its own: ``running`` stays True, ``stop()``
may be called again to wait for it, and ``start()`` refuses until it has ended. Each run also
has its own stop event, so a worker that was told to stop stays stopped whatever a later
``start()`` does.
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
        self._lock = threading.Lock()  # start() and stop() may come from different threads
        self._stop = threading.Event()  # the current run's; a new one for every start()
        self._thread: threading.Thread | None = None  # kept until it has really ended

    @property
    def running(self) -> bool:
        """True while a worker thread is alive, including one that was told to stop but is
        still inside a step (its ``stop()`` timed out)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def stopping(self) -> bool:
        """True while a worker that was told to stop is still alive."""
        return self.running and self._stop.is_set()

    def start(self) -> None:
        """Start the worker; refused while one is alive (also one that is still stopping)."""
        with self._lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                if self._stop.is_set():
                    raise RuntimeError(
                        "the controller runner's previous worker has not stopped yet "
                        "(stop() timed out inside a step); call stop() again to wait for it"
                    )
                raise RuntimeError("the controller runner is already running")
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), name=self._name, daemon=True)
            self._stop, self._thread = stop, thread
            thread.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Ask the worker to stop and wait up to ``timeout`` seconds for it.

        Returns True once no worker is running. On a timeout it returns False, logs a warning
        and keeps the worker: ``running`` stays True until it ends, and ``start()`` refuses.
        """
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("controller runner did not stop within %s s; still waiting on it", timeout)
            return False
        with self._lock:
            if self._thread is thread:
                self._thread = None
        return True

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                delay = self._controller.step()
            except Exception:  # the controller turns device trouble into states; this is a bug
                log.exception("controller step failed")
                delay = self._poll_s
            if not stop.is_set():
                self._clock.sleep(min(delay, self._poll_s))

    def __enter__(self) -> ControllerRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""The one place LoKey reads real time.

Everything that waits or measures (driver delays, the watchdog budget, breaker cool-downs,
Fortuna's 100 ms rule, poll intervals) takes a :class:`Clock`, so tests inject
``sim.clock.VirtualClock`` and never sleep in real time.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Seconds on a monotonic time line, and a way to let time pass."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: :func:`time.monotonic` and :func:`time.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"

"""Errors the controller adds to :mod:`lokey.errors`.

Two of them are device failures (they derive from :class:`~lokey.errors.DeviceError`, so they
count toward the circuit breaker and start recovery like any driver error): a Random response
the controller refused to use, and a failed SP 800-90B health test. The other two are not: a
caller asked while the device cannot serve, and nothing about that says the chip is worse, so
they derive from :class:`~lokey.errors.LokeyError` only and never feed a breaker.
"""

from __future__ import annotations

import enum

from lokey.errors import DeviceError, LokeyError

__all__ = [
    "CircuitOpenError",
    "DeviceUnavailableError",
    "RejectReason",
    "SampleRejectedError",
    "SourceHealthError",
]


class RejectReason(enum.StrEnum):
    """Why a Random response was not used (service-api.md §2, "LoKey does instead")."""

    TEST_PATTERN = "test_pattern"  # FF FF 00 00 x 8: the config zone is unlocked (atecc608a §5)
    ALL_EQUAL = "all_equal"  # every byte the same: a stuck noise source or a stuck bus
    MOSTLY_FF = "mostly_ff"  # over 90 % 0xFF: an error group or a floating SDA read as data
    REPEATED = "repeated"  # 32 bytes seen before (recent history): a stuck or cycling source
    LENGTH = "length"  # not 32 bytes: never expected from a correct driver, refused anyway
    COMMUNICATION = "communication"  # the driver saw a bad count or CRC and raised


class SampleRejectedError(DeviceError):
    """A Random response was refused: the chip (or the bus) is not producing random data.

    The message names the reason only; it never carries the sample's bytes.
    """

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(f"Random sample rejected: {reason.value}")
        self.reason = reason


class SourceHealthError(DeviceError):
    """The SP 800-90B repetition-count or adaptive-proportion test failed on the raw bytes.

    health-tests.md §1.5: a FAILED source is no longer credited until its start-up test is
    re-run, which LoKey does by treating the failure as a device failure (recovery re-opens the
    device and re-runs the start-up test on the new device).
    """


class CircuitOpenError(LokeyError):
    """A circuit breaker refused a call: it is open, or its single half-open trial is taken.

    ``retry_after_s`` is how long until the breaker will admit a trial (0 when a trial is merely
    in flight, whose outcome decides).
    """

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"circuit breaker open; retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class DeviceUnavailableError(LokeyError):
    """``generate`` cannot produce TRNG samples now (not Healthy, or the breaker is open).

    The HTTP layer answers 503 with ``Retry-After`` from ``retry_after_s`` (service-api.md §2).
    ``state`` is the controller's state name; ``reason`` the last failure, if any.
    """

    def __init__(self, state: str, retry_after_s: float, reason: str | None = None) -> None:
        message = f"device not healthy (state: {state}); retry after {retry_after_s:.1f} s"
        if reason:
            message += f"; last failure: {reason}"
        super().__init__(message)
        self.state = state
        self.retry_after_s = retry_after_s
        self.reason = reason

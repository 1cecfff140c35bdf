"""LoKey's exception tree: one small hierarchy, so callers can catch what they can handle.

``OSError`` from a bus becomes a :class:`DeviceError` at exactly one seam (the transport, in a
later issue); everything else LoKey raises on purpose derives from :class:`LokeyError`.
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "ChipCrcError",
    "CommunicationError",
    "DeviceError",
    "DeviceStatusError",
    "EccFaultError",
    "ExecutionError",
    "FifoError",
    "FortunaError",
    "FortunaInputError",
    "HealthTestError",
    "InsufficientDataError",
    "LokeyError",
    "LostCommandError",
    "NoDeviceError",
    "NotApplicableError",
    "NotEnoughDataError",
    "NotSeededError",
    "ParseError",
    "ProvisioningError",
    "QualityError",
    "SeedFileError",
    "SeedQualityError",
    "SelfTestError",
    "StoreClosedError",
    "StoreError",
    "UnsupportedDeviceError",
    "VirtioError",
    "WatchdogError",
]


class LokeyError(Exception):
    """Base of every error LoKey raises on purpose."""


class DeviceError(LokeyError):
    """The chip, or the bus to it, failed; these count toward the circuit breaker."""


class BusError(DeviceError):
    """The bus itself failed (an ``OSError`` from i2c-dev or the virtual bus, chained)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class NoDeviceError(BusError):
    """Nothing acknowledged the chip's address, even after waking and retrying."""


class CommunicationError(DeviceError):
    """A response arrived damaged: wrong count, bad CRC, or bytes that cannot be a response."""


class UnsupportedDeviceError(DeviceError):
    """Something answers at the chip's address, but its Info revision is not an ATECC608.

    ``revision`` holds the four bytes it reported (spec/atecc608a.md §6: byte 2 is the family,
    0x60 for the 608A/608B). Retrying does not help: the wrong part, or a wrong address.
    """

    def __init__(self, message: str, revision: bytes) -> None:
        super().__init__(message)
        self.revision = revision


class DeviceStatusError(DeviceError):
    """The chip answered with an error status byte (spec/atecc608a.md §3).

    The subclasses below name each status; ``lokey.hardware.packets`` maps bytes to them.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ChipCrcError(DeviceStatusError):
    """Status 0xFF: the chip received our command damaged (bad CRC or count); resend."""


class ParseError(DeviceStatusError):
    """Status 0x03: illegal opcode, length or parameters; the command must change."""


class EccFaultError(DeviceStatusError):
    """Status 0x05: computation error during ECC processing; a retry may succeed."""


class SelfTestError(DeviceStatusError):
    """Status 0x07: the chip is in Failure state after a failed self-test."""


class HealthTestError(DeviceStatusError):
    """Status 0x08: the chip's own RNG health test failed (sticky until a power cycle)."""


class ExecutionError(DeviceStatusError):
    """Status 0x0F: received correctly but not executable now (locks, permissions)."""


class WatchdogError(DeviceStatusError):
    """Status 0xEE: too little watchdog time left; idle, wake and retry."""


class LostCommandError(DeviceStatusError):
    """Status 0x11 where a result was due: the command was lost and the chip re-woken."""


class ProvisioningError(LokeyError):
    """Provisioning stopped before locking: the config did not come out as planned."""


class QualityError(LokeyError):
    """A randomness test cannot give a verdict on the data it was given."""


class InsufficientDataError(QualityError, ValueError):
    """Fewer bits than a test needs; ``needed`` says how many it does."""

    def __init__(self, test: str, needed: int, given: int) -> None:
        super().__init__(f"{test} needs at least {needed:,} bits, got {given:,}")
        self.test = test
        self.needed = needed
        self.given = given


class NotApplicableError(QualityError):
    """The data is long enough but the test's own applicability rule excludes it.

    Example: SP 800-22 random excursions needs at least 500 cycles (§2.14.7).
    """

    def __init__(self, test: str, reason: str) -> None:
        super().__init__(f"{test} does not apply: {reason}")
        self.test = test
        self.reason = reason


class FortunaError(LokeyError):
    """The Fortuna generator or accumulator refused a request (spec/fortuna.md)."""


class NotSeededError(FortunaError):
    """Output was asked for before the first reseed (fortuna.md §2, §3 step 2, §5).

    Fortuna never returns AES(0^32, counter): until a seed-file update, a direct start-up seed
    or a pool reseed has happened, every request fails with this error.
    """


class FortunaInputError(FortunaError, ValueError):
    """An argument is outside what fortuna.md allows: a negative length, an internal request
    over 2^20 bytes (§2), an event source, pool or length out of range (§3), a short direct
    seed (§5).
    """


class SeedFileError(FortunaError):
    """The seed file (fortuna.md §4) cannot be used: locked by another user, its directory
    missing or unwritable, or an explicit write failed (the ``OSError`` is chained).
    """


class SeedQualityError(FortunaError, ValueError):
    """A seed sample failed the seed-quality gate (fortuna.md §7).

    ``reason`` names the rule that failed first (``too_short``, ``all_equal``, ``mostly_ff``,
    ``low_entropy``); the message gives the measured figure, never the sample's bytes.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message if message is not None else f"seed rejected: {reason}")
        self.reason = reason


class VirtioError(LokeyError):
    """The VirtIO side (byte ring or named pipe, service-api.md §4) cannot do what was asked."""


class FifoError(VirtioError):
    """The named pipe cannot be set up: a non-FIFO file at its path, its directory cannot be
    created, or the FIFO cannot be opened (the ``OSError``, if any, is chained).
    """


class StoreError(LokeyError):
    """The API's queue store (LMDB or in-memory, service-api.md §5) cannot do what was asked."""


class StoreClosedError(StoreError):
    """The store was closed (the service is shutting down); nothing was read or consumed."""


class NotEnoughDataError(StoreError):
    """A queue holds fewer bytes than a request needs; nothing was read, consumed or counted.

    ``available`` is the queue's whole unconsumed length in bytes; ``requested`` is the
    request's skip plus its length.
    """

    def __init__(self, source: str, requested: int, available: int) -> None:
        super().__init__(
            f"the {source} queue holds {available} bytes; the request needs {requested}"
        )
        self.source = source
        self.requested = requested
        self.available = available

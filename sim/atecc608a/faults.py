"""Chip faults: declarative, frozen descriptions of what goes wrong inside the ATECC608A.

Each fault names a row of the spec's failure table (§14). Faults on the wires (NACK storms, bit
flips in transit, a stuck or held-low bus) belong to :mod:`sim.i2c_bus.faults`; the ones here are
the chip's own. For per-command faults ``count`` limits how many commands a fault affects
(``None``: until cleared) and ``opcode`` restricts it to one command; ``WakeIgnored`` counts wake
pulses instead. The two latching faults (``RngHealthFailure``, ``SelfTestFailure``) take neither:
they fire once and the chip state they cause lasts until what clears it on silicon. Inject with
``chip.control.inject(fault)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sim.atecc608a.constants import Status

__all__ = [
    "BrownOut",
    "ChipFault",
    "CorruptResponseCrc",
    "ExtraBusy",
    "ForcedStatus",
    "LostCommand",
    "RngHealthFailure",
    "SelfTestFailure",
    "StuckOutput",
    "WakeIgnored",
    "WrongCount",
]

# §3: the status codes a test may force (the ones a real chip can answer on its own).
_FORCIBLE = frozenset(
    {
        Status.PARSE_ERROR,
        Status.ECC_FAULT,
        Status.SELFTEST_ERROR,
        Status.HEALTH_TEST_ERROR,
        Status.EXECUTION_ERROR,
        Status.WATCHDOG_ABOUT_TO_EXPIRE,
        Status.COMM_ERROR,
        Status.MISCOMPARE,
    }
)


def _check_count(count: int | None) -> None:
    if count is not None and count < 1:
        raise ValueError(f"count must be a positive number of commands or None, got {count!r}")


def _check_opcode(opcode: int | None) -> None:
    if opcode is not None and not 0 <= opcode <= 0xFF:
        raise ValueError(f"opcode must be a byte (0..255) or None, got {opcode!r}")


def _refuse(fault: ChipFault, *fields: str) -> None:
    """Faults that are not per-command events take no ``count`` / ``opcode``."""
    for name in fields:
        if getattr(fault, name) is not None:
            raise ValueError(
                f"{type(fault).__name__} takes no {name} (got {getattr(fault, name)!r})"
            )


@dataclass(frozen=True)
class ChipFault:
    """Base of every chip fault: which commands it touches.

    ``name`` is the stable identifier the command log (and later the chaos API) reports, in the
    same style as the bus faults' names.
    """

    name: ClassVar[str] = "fault"
    count: int | None = 1
    opcode: int | None = None

    def __post_init__(self) -> None:
        _check_count(self.count)
        _check_opcode(self.opcode)

    def matches(self, opcode: int | None) -> bool:
        """Whether the fault applies to ``opcode`` (None: an event that has no opcode)."""
        return self.opcode is None or self.opcode == opcode


@dataclass(frozen=True)
class ForcedStatus(ChipFault):
    """Answer the next commands with a status group instead of executing them."""

    name: ClassVar[str] = "forced_status"
    status: int = Status.EXECUTION_ERROR

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.status not in _FORCIBLE:
            allowed = ", ".join(f"0x{s:02X}" for s in sorted(_FORCIBLE))
            raise ValueError(
                f"status 0x{self.status:02X} cannot be forced; choose one of {allowed}"
            )


@dataclass(frozen=True)
class CorruptResponseCrc(ChipFault):
    """The chip computes a wrong CRC for the next responses (a re-read returns the same bytes)."""

    name: ClassVar[str] = "corrupt_response_crc"


@dataclass(frozen=True)
class WrongCount(ChipFault):
    """The count byte of the next responses is wrong; the CRC matches the bytes as sent.

    ``value`` None adds one to the true count. A host that reads a fixed length and checks the
    CRC over it sees a valid CRC and must check the count; one that reads as many bytes as the
    count says gets an extra 0xFF and a failing CRC.
    """

    name: ClassVar[str] = "wrong_count"
    value: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.value is not None and not 0 <= self.value <= 0xFF:
            raise ValueError(f"value must be a byte, got {self.value!r}")


@dataclass(frozen=True)
class StuckOutput(ChipFault):
    """The RNG is stuck: Random and Nonce return ``block`` repeated, with a valid CRC.

    ``block`` b"\\xff" (the default), b"\\x00", or any 1..32-byte repeating block. While the config
    zone is unlocked the test pattern still wins (§5), and scripted output is used up first.
    """

    name: ClassVar[str] = "stuck_output"
    count: int | None = None
    block: bytes = b"\xff"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= len(self.block) <= 32:
            raise ValueError(f"block must be 1..32 bytes, got {len(self.block)}")

    def output(self) -> bytes:
        return (self.block * (32 // len(self.block) + 1))[:32]


@dataclass(frozen=True)
class RngHealthFailure(ChipFault):
    """The RNG health test latches after ``after_calls`` more good RNG commands (§5, #285).

    Once latched, Random and Nonce(random) answer 0x08 until a power cycle (or, with
    ``clear_on_sleep``, until the next sleep): decision 16.
    """

    name: ClassVar[str] = "rng_health_failure"
    count: int | None = None
    after_calls: int = 0
    clear_on_sleep: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _refuse(self, "count", "opcode")
        if self.after_calls < 0:
            raise ValueError(f"after_calls must be >= 0, got {self.after_calls!r}")


@dataclass(frozen=True)
class SelfTestFailure(ChipFault):
    """The self-test engines in ``tests`` (SelfTest bitmap) fail; the chip enters Failure state.

    With ``persistent`` False the failure is a transient one: injected into an awake or idle chip
    it is latched at once; injected into a sleeping chip, the self-test of its next wake fails
    (wake group ``04 07 40 C2``). The wake from sleep after that re-runs the failed tests, they
    pass, and the Failure state clears (§10.2). With ``persistent`` True the hardware stays
    broken until the fault is cleared.
    """

    name: ClassVar[str] = "self_test_failure"
    count: int | None = None
    tests: int = 0x01
    persistent: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _refuse(self, "count", "opcode")
        if not self.tests or self.tests & ~0x3B:
            raise ValueError(
                f"tests must be a non-empty SelfTest bitmap within 0x3B, got 0x{self.tests:02X}"
            )


@dataclass(frozen=True)
class BrownOut(ChipFault):
    """Power dips while the next command executes: no response, the chip is asleep, all
    volatile state (and the persistent latch) is lost, the command has no effect."""

    name: ClassVar[str] = "brown_out"


@dataclass(frozen=True)
class LostCommand(ChipFault):
    """The command is lost and the chip re-woken before the read: ``04 11 33 43`` comes back.

    The chip went through a reset: SRAM (TempKey, SHA context) is lost and the watchdog restarts
    with the new wake.

    Reproduces cryptoauthlib #246/#272 (every call fails with ATCA_WAKE_SUCCESS); with
    ``count=None`` it is the failure table's "always wake response".
    """

    name: ClassVar[str] = "lost_command"


@dataclass(frozen=True)
class ExtraBusy(ChipFault):
    """The next commands keep the chip busy ``seconds`` longer than the timing model says."""

    name: ClassVar[str] = "extra_busy"
    seconds: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {self.seconds!r}")


@dataclass(frozen=True)
class WakeIgnored(ChipFault):
    """Wake pulses are too short to count (bus clock above ~100 kHz, §1.3): the chip sleeps on.

    ``count`` here counts wake pulses, not commands.
    """

    name: ClassVar[str] = "wake_ignored"
    count: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _refuse(self, "opcode")

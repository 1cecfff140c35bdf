"""Faults that live on the wires, injected into :class:`sim.i2c_bus.VirtualI2CBus`.

A fault is a frozen, declarative description with its own seed, so the exact fault sequence of a
failing run can be rebuilt from its repr. Run-time state (how many messages a fault has seen, how
often it fired, its random generators) lives in the :class:`FaultHandle` that
:meth:`BusFaults.inject` returns, so one fault value can be installed on several buses, or twice,
without the installations influencing each other.

Which messages a fault sees (its "matching" messages, the ones its schedule counts):

* ``address=None`` matches every address; otherwise only messages to that 7-bit address.
* :class:`Nack` sees every message to a matching address other than 0x00 (the wake pulse is never
  acknowledged anyway, so counting it would only eat a scheduled NACK silently).
* :class:`TruncatedRead`, :class:`BitFlip` and :class:`CorruptByte` see only reads that a target
  acknowledged and in which they can change something.
* :class:`StuckBus`, :class:`SdaLow` and :class:`Latency` have no schedule: they act on every
  matching message (``SdaLow``: every transfer) while installed.

Per message the bus applies them in this order: ``SdaLow`` (fails the whole transfer before
anything reaches a target), ``Latency``, ``StuckBus`` (a stuck message is seen by no other fault),
``Nack``, then the target, then the read faults in installation order.
"""

from __future__ import annotations

import errno as _errno
import math
import random
import threading
from dataclasses import dataclass
from typing import ClassVar, Final

__all__ = [
    "BitFlip",
    "BusFaults",
    "CorruptByte",
    "Fault",
    "FaultHandle",
    "Latency",
    "Nack",
    "ReadFault",
    "Schedule",
    "SdaLow",
    "StuckBus",
    "TruncatedRead",
]

#: Errors a host sees when SDA is held low, per spec/atecc608a.md §15 ("SDA held low / bus stuck").
SDA_LOW_ERRNOS: Final = frozenset({_errno.EIO, _errno.ETIMEDOUT, _errno.EAGAIN})

#: Highest 7-bit I2C address (I2C-bus specification UM10204, §3.1.10).
_MAX_7BIT_ADDRESS: Final = 0x7F


def _check_address(value: object, *, allow_general_call: bool) -> None:
    if value is None:
        return
    low = 0x00 if allow_general_call else 0x01
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= _MAX_7BIT_ADDRESS
    ):
        what = "0x00..0x7F" if allow_general_call else "0x01..0x7F (0x00 is never acknowledged)"
        raise ValueError(f"address must be None or a 7-bit address {what}, not {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


def _check_seed(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"seed must be an integer, not {value!r}")


def _check_schedule(value: object) -> None:
    if not isinstance(value, Schedule):
        raise ValueError(f"schedule must be a Schedule, not {value!r}")


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a scheduled fault fires, counted over the messages it matches.

    Exactly one of ``next_n`` (the next N matching messages, then never again), ``every_nth``
    (matching messages number N, 2N, 3N …) or ``probability`` (each matching message
    independently, drawn from ``random.Random(seed)``, so the same seed replays the same run).
    """

    next_n: int | None = None
    every_nth: int | None = None
    probability: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        chosen = [
            name
            for name, value in (
                ("next_n", self.next_n),
                ("every_nth", self.every_nth),
                ("probability", self.probability),
            )
            if value is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "a Schedule needs exactly one of next_n, every_nth, probability; "
                f"got {', '.join(chosen) if chosen else 'none'}"
            )
        if self.next_n is not None:
            _check_int("next_n", self.next_n, 1)
        if self.every_nth is not None:
            _check_int("every_nth", self.every_nth, 1)
        if self.probability is not None:
            p = self.probability
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
                raise ValueError(f"probability must be a number in [0, 1], not {p!r}")
        _check_seed(self.seed)

    @classmethod
    def first(cls, n: int = 1) -> Schedule:
        """Fire on the next ``n`` matching messages, then stop."""
        return cls(next_n=n)

    @classmethod
    def every(cls, n: int) -> Schedule:
        """Fire on every ``n``-th matching message."""
        return cls(every_nth=n)

    @classmethod
    def chance(cls, probability: float, seed: int = 0) -> Schedule:
        """Fire on each matching message with ``probability``, reproducibly for one ``seed``."""
        return cls(probability=probability, seed=seed)


@dataclass(frozen=True, slots=True)
class Fault:
    """Base of every bus fault; ``name`` is the short stable tag used in the trace."""

    name: ClassVar[str] = "fault"


@dataclass(frozen=True, slots=True)
class Nack(Fault):
    """The address byte is not acknowledged; the message never reaches the target.

    Models a device that misses its address (noise, a glitch on SCL). The host sees the bus's
    NACK errno, exactly as for a busy or sleeping chip, and the transfer stops there.
    """

    name: ClassVar[str] = "nack"
    address: int | None
    schedule: Schedule

    def __post_init__(self) -> None:
        _check_address(self.address, allow_general_call=False)
        _check_schedule(self.schedule)


@dataclass(frozen=True, slots=True)
class ReadFault(Fault):
    """A fault that alters the bytes of an acknowledged read after the target produced them."""

    def _applies_to(self, length: int) -> bool:
        """Whether a read of ``length`` bytes gives this fault something to change."""
        return length > 0

    def _mutate(self, data: bytes, rng: random.Random) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class BitFlip(ReadFault):
    """Flip ``bits`` distinct random bits in the bytes a read returns.

    The target's read pointer advanced normally, so re-reading (word address 0x00 on the
    ATECC608A) yields the clean bytes: the case a driver's CRC check and re-read path exist for.
    ``seed`` chooses the bit positions.
    """

    name: ClassVar[str] = "bit_flip"
    address: int | None
    schedule: Schedule
    bits: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        _check_address(self.address, allow_general_call=False)
        _check_schedule(self.schedule)
        _check_int("bits", self.bits, 1)
        _check_seed(self.seed)

    def _mutate(self, data: bytes, rng: random.Random) -> bytes:
        out = bytearray(data)
        for bit in rng.sample(range(len(out) * 8), min(self.bits, len(out) * 8)):
            out[bit >> 3] ^= 1 << (bit & 7)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class CorruptByte(ReadFault):
    """Replace one random byte of a read with ``value``, or with a random different byte.

    A random replacement always differs from the original so that every firing really corrupts;
    an explicit ``value`` is written as given. ``seed`` chooses the position (and the value).
    """

    name: ClassVar[str] = "corrupt_byte"
    address: int | None
    schedule: Schedule
    value: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_address(self.address, allow_general_call=False)
        _check_schedule(self.schedule)
        if self.value is not None and (
            isinstance(self.value, bool)
            or not isinstance(self.value, int)
            or not 0 <= self.value <= 0xFF
        ):
            raise ValueError(f"value must be None or a byte 0..255, not {self.value!r}")
        _check_seed(self.seed)

    def _mutate(self, data: bytes, rng: random.Random) -> bytes:
        out = bytearray(data)
        position = rng.randrange(len(out))
        if self.value is None:
            out[position] = (out[position] + rng.randrange(1, 256)) & 0xFF
        else:
            out[position] = self.value
        return bytes(out)


@dataclass(frozen=True, slots=True)
class TruncatedRead(ReadFault):
    """Only the first ``after`` bytes of a read arrive; the rest come back 0xFF.

    This is the "partial / short read" of spec/atecc608a.md §14: the device stopped driving SDA,
    which the pull-up reads as 0xFF. The target was still read in full, so its pointer moved past
    the lost bytes ("the pointer continues"). ``after=0`` loses the whole read.
    """

    name: ClassVar[str] = "truncated_read"
    address: int | None
    schedule: Schedule
    after: int

    def __post_init__(self) -> None:
        _check_address(self.address, allow_general_call=False)
        _check_schedule(self.schedule)
        _check_int("after", self.after, 0)

    def _applies_to(self, length: int) -> bool:
        return length > self.after

    def _mutate(self, data: bytes, rng: random.Random) -> bytes:
        return data[: self.after] + b"\xff" * (len(data) - self.after)


@dataclass(frozen=True, slots=True)
class StuckBus(Fault):
    """Floating SDA: every address is ACKed, writes vanish, every byte read is 0xFF.

    Matching messages never reach a target (not even wake pulses), so the host sees count bytes
    of 0xFF and CRC failures - the case a driver must reject rather than trust. Always on while
    installed; ``address=None`` sticks the whole bus.
    """

    name: ClassVar[str] = "stuck_bus"
    address: int | None = None

    def __post_init__(self) -> None:
        _check_address(self.address, allow_general_call=True)


@dataclass(frozen=True, slots=True)
class SdaLow(Fault):
    """SDA held low: every transfer fails with ``errno`` before anything reaches a target.

    ``errno`` is EIO, ETIMEDOUT or EAGAIN, the codes Linux adapters report for a bus they
    cannot recover (spec/atecc608a.md §15).
    """

    name: ClassVar[str] = "sda_low"
    errno: int = _errno.EIO

    def __post_init__(self) -> None:
        if self.errno not in SDA_LOW_ERRNOS:
            names = ", ".join(sorted(_errno.errorcode[code] for code in SDA_LOW_ERRNOS))
            raise ValueError(f"errno must be one of {names}, not {self.errno!r}")


@dataclass(frozen=True, slots=True)
class Latency(Fault):
    """Each matching message first waits ``seconds`` on the bus clock (a slow or busy bus)."""

    name: ClassVar[str] = "latency"
    seconds: float
    address: int | None = None

    def __post_init__(self) -> None:
        s = self.seconds
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or s < 0:
            raise ValueError(f"seconds must be a finite number >= 0, not {s!r}")
        _check_address(self.address, allow_general_call=True)


class FaultHandle:
    """One installation of a fault: its run-time state and the way to remove it again."""

    __slots__ = (
        "_address",
        "_data_rng",
        "_fault",
        "_fired",
        "_installed",
        "_schedule",
        "_schedule_rng",
        "_seen",
    )

    def __init__(self, fault: Fault) -> None:
        self._fault = fault
        self._fired = 0
        self._seen = 0
        self._installed = True
        self._address: int | None = getattr(fault, "address", None)
        self._schedule: Schedule | None = getattr(fault, "schedule", None)
        # Two streams, so that whether a fault fires never depends on how many random numbers
        # its payload consumed, and vice versa.
        self._schedule_rng = random.Random(self._schedule.seed if self._schedule else 0)
        self._data_rng = random.Random(getattr(fault, "seed", 0))

    @property
    def fault(self) -> Fault:
        """The installed fault."""
        return self._fault

    @property
    def fired(self) -> int:
        """How many messages (for ``SdaLow``: transfers) this installation has affected."""
        return self._fired

    @property
    def installed(self) -> bool:
        """False once removed or cleared; a removed handle never fires again."""
        return self._installed

    def __repr__(self) -> str:
        state = "installed" if self._installed else "removed"
        return f"<FaultHandle {self._fault!r} fired={self._fired} {state}>"

    def _matches(self, address: int) -> bool:
        wanted = self._address
        return wanted is None or wanted == address

    def _hit(self) -> None:
        self._fired += 1

    def _due(self) -> bool:
        """Count one matching message against the schedule; True (and counted) if it fires."""
        schedule = self._schedule
        assert schedule is not None, "only scheduled faults are counted"
        self._seen += 1
        if schedule.next_n is not None:
            fire = self._seen <= schedule.next_n
        elif schedule.every_nth is not None:
            fire = self._seen % schedule.every_nth == 0
        else:
            assert schedule.probability is not None
            fire = self._schedule_rng.random() < schedule.probability
        if fire:
            self._fired += 1
        return fire

    def _applies_to(self, length: int) -> bool:
        fault = self._fault
        return isinstance(fault, ReadFault) and fault._applies_to(length)

    def _mutate(self, data: bytes) -> bytes:
        fault = self._fault
        assert isinstance(fault, ReadFault)
        return fault._mutate(data, self._data_rng)


@dataclass(frozen=True, slots=True)
class _Plan:
    """The installed faults sorted by where they act, rebuilt on every change.

    The bus reads one attribute per transfer and gets a consistent view, without taking a lock
    that a fault change from another thread would have to wait for.
    """

    sda_low: FaultHandle | None
    latency: tuple[FaultHandle, ...]
    stuck: tuple[FaultHandle, ...]
    nack: tuple[FaultHandle, ...]
    reads: tuple[FaultHandle, ...]


class BusFaults:
    """The fault-injection control surface of one bus (``bus.faults``).

    Changes take effect at the next transfer; a transfer in progress keeps the faults it started
    with.
    """

    __slots__ = ("_handles", "_lock", "_plan")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: list[FaultHandle] = []
        #: ``None`` when nothing is installed: the bus's fast path tests exactly this.
        self._plan: _Plan | None = None

    def inject(self, fault: Fault) -> FaultHandle:
        """Install ``fault``; the returned handle counts its firings and removes it."""
        if not isinstance(fault, Fault) or type(fault) in (Fault, ReadFault):
            raise TypeError(f"not a bus fault: {fault!r}")
        handle = FaultHandle(fault)
        with self._lock:
            self._handles.append(handle)
            self._rebuild()
        return handle

    def remove(self, handle: FaultHandle) -> None:
        """Uninstall one fault; removing a handle that is not installed is a ValueError."""
        with self._lock:
            if handle not in self._handles:
                raise ValueError(f"fault handle is not installed on this bus: {handle!r}")
            self._handles.remove(handle)
            handle._installed = False
            self._rebuild()

    def clear(self) -> None:
        """Uninstall every fault."""
        with self._lock:
            for handle in self._handles:
                handle._installed = False
            self._handles.clear()
            self._rebuild()

    @property
    def active(self) -> tuple[Fault, ...]:
        """The installed faults, in installation order."""
        with self._lock:
            return tuple(handle.fault for handle in self._handles)

    @property
    def handles(self) -> tuple[FaultHandle, ...]:
        """The installed handles, in installation order (for listing ``fired`` counts)."""
        with self._lock:
            return tuple(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def __repr__(self) -> str:
        return f"BusFaults({list(self.active)!r})"

    def _rebuild(self) -> None:
        handles = self._handles
        if not handles:
            self._plan = None
            return

        def of(*kinds: type[Fault]) -> tuple[FaultHandle, ...]:
            return tuple(h for h in handles if isinstance(h.fault, kinds))

        sda_low = of(SdaLow)
        self._plan = _Plan(
            sda_low=sda_low[0] if sda_low else None,
            latency=of(Latency),
            stuck=of(StuckBus),
            nack=of(Nack),
            reads=of(ReadFault),
        )

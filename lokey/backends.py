"""One setting picks the bus: ``open_bus(url)`` builds the emulator or opens Linux i2c-dev.

Callers never branch on the backend (the design's "Backend by config", in the manner of
pySerial's URL handlers): the driver above gets an object with the smbus2 ``i2c_rdwr`` surface
and a clock, and is byte for byte the same code on the emulator and on a Raspberry Pi.

URL grammar::

    bus-url  = [ "spy+" ] target
    target   = "sim://atecc608a" [ "?" option *( "&" option ) ]
             | "/dev/i2c-" N                      ; N = 0, 1, 2 …
             | "i2c://" absolute-path             ; i2c:///dev/i2c-1, i2c:///tmp/stand-in
             | "replay://" path                   ; a trace file, absolute or relative
    option   = "timing="   ( "typical" | "maximum" | "instant" )       ; default typical
             | "seed="     integer                                     ; reproducible RNG
             | "lock="     ( "unlocked" | "config-locked" | "locked" ) ; default unlocked
             | "revision=" ( "608A" | "608B" )                         ; default: emulator's
             | "address="  ( "0x" hex | decimal )                      ; 0x01..0x7F, default 0x60
             | "clock="    ( "wall" | "virtual" )                      ; default wall

``sim://`` runs on the wall clock unless told otherwise, so a service on the emulator behaves
like one on hardware; ``clock=virtual`` (or a ``clock=`` argument) gives tests time that moves
only when someone sleeps. ``spy+`` wraps any bus in a :class:`SpyBus` that records every
message and writes the recording as JSON lines in the ``sim.i2c_bus`` trace format, so
``spy+/dev/i2c-1`` on a Pi produces a trace that loads next to the emulator's own.

``replay://<path>`` plays such a trace back (:class:`ReplayBus`): the chip's side of every
message comes from the file, each host message must be the next recorded one (a write byte for
byte), and the first difference raises :class:`ReplayMismatchError`. A recorded session thus
becomes a test of the driver code that produced it, with no chip and no real waiting: the
replay's clock is virtual and follows the recorded timestamps (see :class:`ReplayBus`). The
path is taken verbatim after ``replay://`` (percent-escapes decoded, as ``i2c://`` does) and a
relative path is resolved against the working directory when the bus is opened.

This is the only ``lokey`` module that imports :mod:`sim`, and only inside the functions that
build an emulator, serialise or load a trace, or build an emulator fault for the controller's
chaos API (:func:`fault_kinds`, :func:`build_fault`) (an import-linter contract allows exactly
this edge), so importing it on a Pi costs nothing and a hardware-only deployment could drop the
emulator.

Errors: a URL that cannot work raises :class:`ValueError` naming the problem and the choices,
before anything is opened. An i2c-dev node that cannot be opened raises
:class:`lokey.errors.BusError` (with the errno, chained to the ``OSError``) saying which path
failed and what usually fixes it on a Pi; ``OSError`` from transfers is left to the driver's
transport, the one seam where bus errors become lokey errors. A trace that cannot be read or
parsed raises :class:`ReplayError`; a replay that diverges from its trace raises a
:class:`ReplayError` subclass from ``i2c_rdwr`` (never an ``OSError``, so no driver retry
can swallow it).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import math
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType, UnionType
from typing import (
    Final,
    Literal,
    Protocol,
    Self,
    TypeAlias,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    runtime_checkable,
)
from urllib.parse import parse_qsl, unquote, urlsplit

from smbus2 import SMBus, i2c_msg

from lokey.clock import Clock, SystemClock
from lokey.errors import BusError, LokeyError
from lokey.hardware.bus import Bus

__all__ = [
    "DEFAULT_BUS_URL",
    "DEFAULT_SPY_CAPACITY",
    "ENV_BUS_URL",
    "ENV_I2C_BUS_NUMBER",
    "NACK_ERRNOS",
    "SIM_OPTIONS",
    "BuiltFault",
    "BusKind",
    "BusRecorder",
    "BusUrl",
    "FaultKind",
    "FaultParam",
    "FaultTarget",
    "OpenedBus",
    "ReplayBus",
    "ReplayClock",
    "ReplayError",
    "ReplayExhaustedError",
    "ReplayIncompleteError",
    "ReplayMismatchError",
    "SpyBus",
    "SpyRecord",
    "build_fault",
    "bus_url_from_env",
    "describe_fault",
    "fault_kinds",
    "open_bus",
    "parse_bus_url",
    "read_trace",
    "validate_bus_url",
]

#: The emulator is the default on every machine (design: "Backend by config").
DEFAULT_BUS_URL: Final = "sim://atecc608a"
#: Environment variable holding a full bus URL; wins over :data:`ENV_I2C_BUS_NUMBER`.
ENV_BUS_URL: Final = "LOKEY_BUS_URL"
#: The Go reference's variable (spec/service-api.md §6): N selects ``/dev/i2c-N``.
ENV_I2C_BUS_NUMBER: Final = "I2C_BUS_NUMBER"
#: Errnos that mean "address not acknowledged" (spec/atecc608a.md §15): EREMOTEIO from
#: i2c-bcm2835 on a Pi, ENXIO from adapters that follow the kernel's fault-codes document. EIO
#: and ETIMEDOUT also mean a stuck bus on some adapters, so the spy records them as errors.
NACK_ERRNOS: Final = frozenset({errno.EREMOTEIO, errno.ENXIO})
#: Records a spy keeps by default: the virtual bus trace's capacity, for the same reason (a few
#: seconds of a chip polled flat out, a few MB, safe to leave on).
DEFAULT_SPY_CAPACITY: Final = 65_536

BusKind: TypeAlias = Literal["emulator", "i2c-dev", "replay"]
Direction: TypeAlias = Literal["w", "r"]
_Bad: TypeAlias = Callable[[str], ValueError]  # builds the error for one URL from a problem

_EMULATED_DEVICES: Final = ("atecc608a",)
#: Every ``sim://`` option and its values (None: free-form, checked by its own parser). Kept in
#: lokey so a URL can be validated without importing the emulator; tests pin these lists to
#: the emulator's own (TimingModel.named, LockState, REVISIONS).
SIM_OPTIONS: Final[Mapping[str, tuple[str, ...] | None]] = MappingProxyType(
    {
        "timing": ("typical", "maximum", "instant"),
        "seed": None,
        "lock": ("unlocked", "config-locked", "locked"),
        "revision": ("608A", "608B"),
        "address": None,
        "clock": ("wall", "virtual"),
    }
)
_OPTION_NOUNS: Final = {
    "timing": "timing model",
    "lock": "lock state",
    "revision": "revision",
    "clock": "clock",
}
_ATECC_ADDRESS: Final = 0x60  # spec §1.1
_WAKE_ADDRESS: Final = 0x00  # spec §1.3: the wake pulse's address, acknowledged by nobody
_I2C_M_RD: Final = 0x0001
_BARE_DEVICE = re.compile(r"/dev/i2c-[0-9]+")  # ASCII only: \d matches any Unicode digit
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SPY_PREFIX: Final = "spy+"
_REPLAY_PREFIX: Final = "replay://"
_URL_FORMS: Final = (
    "use sim://atecc608a[?options], /dev/i2c-N, i2c:///dev/i2c-N, i2c://<absolute path> or "
    "replay://<trace file>, optionally prefixed with spy+"
)


# -- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedBus:
    """An open bus and everything a caller needs to drive it; close it (or use ``with``).

    ``clock`` is the clock the driver must sleep on with this bus: on the emulator the chip
    reads it too, so a virtual clock only works if everybody shares it. ``emulator`` is the
    emulated chip (a ``sim.atecc608a.ATECC608A``; typed loosely so lokey does not depend on
    sim's types: narrow it with ``isinstance`` in tests), None on hardware. ``trace`` is the
    spy's recorder when the URL began with ``spy+``.
    """

    bus: Bus
    url: str
    kind: BusKind
    clock: Clock
    emulator: object | None = None
    trace: BusRecorder | None = None

    @property
    def spy(self) -> bool:
        """Whether a :class:`SpyBus` records this bus (the URL began with ``spy+``)."""
        return self.trace is not None

    @property
    def inner_bus(self) -> Bus:
        """The bus under the spy (the virtual bus, the ``SMBus`` or the replay); ``bus`` itself
        without one."""
        return self.bus.inner if isinstance(self.bus, SpyBus) else self.bus

    @property
    def replay(self) -> ReplayBus | None:
        """The :class:`ReplayBus` of a ``replay://`` URL (under the spy, if any); else None."""
        inner = self.inner_bus
        return inner if isinstance(inner, ReplayBus) else None

    def close(self) -> None:
        self.bus.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the spy -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpyRecord:
    """One message as the host saw it; the fields of ``sim.i2c_bus.TraceRecord`` minus faults.

    A spy sits above the adapter, so it knows what the host sent and got back and how the
    ``i2c_rdwr`` call ended, never which injected fault (if any) touched the wire.
    """

    time: float
    transfer: int
    index: int
    address: int
    direction: Direction
    data: bytes
    outcome: str


class BusRecorder:
    """The bounded recording of a :class:`SpyBus`, writable as sim trace JSON lines.

    Outcomes: ``"ack"`` for every message of a transfer that succeeded. A failed transfer gives
    each of its messages the transfer's outcome, because Linux reports one errno per
    ``I2C_RDWR`` and never which message failed: ``"nack"`` for an errno in ``nack_errnos``
    (``"wake"`` for a write to address 0x00, as the sim trace calls the wake pulse), otherwise
    ``"error:<ERRNO name>"`` (``"error:<exception class>"`` for a non-OS error). Write data is
    what the host meant to send; read data is what it received, empty when the transfer failed.
    For single-message transfers, all the ATECC608A protocol uses, the recording equals the
    virtual bus's own trace message for message.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_SPY_CAPACITY,
        *,
        nack_errnos: Collection[int] = NACK_ERRNOS,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"recorder capacity must be a non-negative integer, not {capacity!r}")
        self._records: deque[SpyRecord] = deque(maxlen=capacity)
        self._nack_errnos = frozenset(nack_errnos)
        self._lock = threading.Lock()
        self._transfers = 0

    @property
    def capacity(self) -> int:
        maxlen = self._records.maxlen
        assert maxlen is not None  # always built with a bound
        return maxlen

    @property
    def transfers(self) -> int:
        """How many ``i2c_rdwr`` calls were recorded (they number the records from 0)."""
        return self._transfers

    def records(self) -> list[SpyRecord]:
        """The kept records, oldest first."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record; transfer numbers keep counting."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"BusRecorder({len(self._records)} records, capacity={self.capacity})"

    def to_jsonl(self) -> str:
        """The records as JSON lines, byte for byte the format of ``sim.i2c_bus.Trace``.

        Serialised by sim's own ``TraceRecord`` so the two formats cannot drift apart; sim ships
        in the same distribution, and is imported only here, when a recording is written.
        """
        from sim.i2c_bus.trace import TraceRecord  # noqa: PLC0415 - no sim import at module load

        records = self.records()
        return "".join(
            TraceRecord(
                r.time, r.transfer, r.index, r.address, r.direction, r.data, r.outcome, ()
            ).to_json()
            + "\n"
            for r in records
        )

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Store the recording (mode 0600: it holds every random byte the chip returned, some
        perhaps served to clients); ``sim.i2c_bus.Trace.read_jsonl(path)`` loads it back."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(self.to_jsonl())

    def _record(
        self,
        time: float,
        msgs: Sequence[i2c_msg],
        sent: Sequence[bytes],
        failure: BaseException | None,
    ) -> None:
        with self._lock:
            transfer = self._transfers
            self._transfers = transfer + 1
            for index, (msg, written) in enumerate(zip(msgs, sent, strict=True)):
                address: int = msg.addr
                is_read = bool(msg.flags & _I2C_M_RD)
                data = written
                if is_read:
                    data = _message_bytes(msg) if failure is None else b""
                self._records.append(
                    SpyRecord(
                        time=time,
                        transfer=transfer,
                        index=index,
                        address=address,
                        direction="r" if is_read else "w",
                        data=data,
                        outcome=self._outcome(address, is_read, failure),
                    )
                )

    def _outcome(self, address: int, is_read: bool, failure: BaseException | None) -> str:
        if failure is None:
            return "ack"
        code = failure.errno if isinstance(failure, OSError) else None
        if code in self._nack_errnos:
            return "wake" if address == _WAKE_ADDRESS and not is_read else "nack"
        if code is not None:
            return f"error:{errno.errorcode.get(code, str(code))}"
        return f"error:{type(failure).__name__}"


def _message_bytes(msg: i2c_msg) -> bytes:
    """A message's buffer, without dereferencing a NULL one (the bus rejects that with EFAULT)."""
    length: int = msg.len
    if not length or not msg.buf:
        return b""
    return ctypes.string_at(msg.buf, length)


class SpyBus:
    """Wraps any bus and records every message of every ``i2c_rdwr`` call in a :class:`BusRecorder`.

    Transparent: the same messages reach the inner bus, read buffers are filled in place, and
    whatever the inner bus raises is re-raised unchanged after it is recorded. Each record's
    time is the clock's reading when the call began (the transfer's START).
    """

    def __init__(self, inner: Bus, clock: Clock, recorder: BusRecorder | None = None) -> None:
        self.inner = inner
        self.clock = clock
        self.recorder = BusRecorder() if recorder is None else recorder

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        started = self.clock.monotonic()
        sent = [b"" if msg.flags & _I2C_M_RD else _message_bytes(msg) for msg in i2c_msgs]
        try:
            self.inner.i2c_rdwr(*i2c_msgs)
        except Exception as failure:
            self.recorder._record(started, i2c_msgs, sent, failure)
            raise
        self.recorder._record(started, i2c_msgs, sent, None)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SpyBus({self.inner!r}, {self.recorder!r})"


# -- replay --------------------------------------------------------------------------------------


class ReplayError(LokeyError):
    """A trace cannot be replayed: unreadable, malformed, or the host left the recorded path.

    Deliberately not a :class:`~lokey.errors.DeviceError` nor an ``OSError``: the transport
    retries those, and a replay that diverged must stop the test at once, not be retried.
    """


class ReplayMismatchError(ReplayError):
    """The host sent something other than the next recorded message.

    ``index`` is the record's position in the trace (0-based: line ``index + 1`` of a trace
    file without blank lines), ``transfer`` its recorded ``i2c_rdwr`` number; ``expected`` and
    ``got`` describe the two messages (direction, address, bytes in hex).
    """

    def __init__(self, message: str, *, index: int, transfer: int, expected: str, got: str) -> None:
        super().__init__(message)
        self.index = index
        self.transfer = transfer
        self.expected = expected
        self.got = got


class ReplayExhaustedError(ReplayError):
    """The host started a transfer after the last recorded one."""


class ReplayIncompleteError(ReplayError):
    """:meth:`ReplayBus.finish` found recorded messages the host never asked for."""


_NACK_OUTCOMES: Final = frozenset({"nack", "wake"})
_KNOWN_OUTCOMES: Final = _NACK_OUTCOMES | {"ack"}
_ERROR_OUTCOME = re.compile(r"error:([A-Za-z_][A-Za-z0-9_]*)")


def read_trace(path: str | os.PathLike[str]) -> list[SpyRecord]:
    """Load a JSON-lines trace (a spy's or the virtual bus's) as records a replay can play.

    Parsed by sim's own ``Trace.read_jsonl``, so the two sides of the format cannot drift; the
    ``faults`` a virtual-bus trace names are dropped (the data already shows their effect).
    Raises :class:`ReplayError` for a file that cannot be read, a malformed line, an outcome
    the trace format does not define, or a trace without records.
    """
    from sim.i2c_bus.trace import Trace  # noqa: PLC0415 - no sim import at module load

    shown = os.fspath(path)
    try:
        trace = Trace.read_jsonl(Path(path))
    except OSError as exc:
        raise ReplayError(f"cannot read replay trace {shown}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ReplayError(f"replay trace {shown} is not a bus trace: {exc}") from exc
    records = [
        SpyRecord(r.time, r.transfer, r.index, r.address, r.direction, r.data, r.outcome)
        for r in trace.records()
    ]
    if not records:
        raise ReplayError(f"replay trace {shown} holds no messages")
    for number, record in enumerate(records):
        outcome = record.outcome
        if outcome not in _KNOWN_OUTCOMES and _ERROR_OUTCOME.fullmatch(outcome) is None:
            raise ReplayError(
                f"replay trace {shown}, record {number}: unknown outcome {outcome!r} "
                "(the trace format has ack, nack, wake, error:<ERRNO>)"
            )
    return records


@runtime_checkable
class _Advancing(Protocol):
    """A clock that can be moved forward (``sim.clock.VirtualClock``)."""

    def advance(self, seconds: float) -> float: ...


class ReplayClock:
    """Virtual time for a replay: sleeping returns at once, and the trace sets the pace.

    A :class:`ReplayBus` on this clock tells it when each recorded transfer started. At a
    transfer's start the clock is moved forward to it if it is behind; after a transfer the
    clock reads at least the next transfer's recorded start, while ``sleep`` still adds to
    the time the host has spent itself. So a host that reads the clock just before a
    transfer (the transport's watchdog budget, the start of a wake) sees the time the
    recording saw, including time the host spent without sleeping (a slow Pi, a paused
    caller), and a host that sleeps as it did when recording lands exactly on the recorded
    timestamps instead of counting its sleeps twice.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._floor = self._now  # the next recorded transfer's start, once known
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return max(self._now, self._floor)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds

    def _reach(self, when: float) -> None:
        """A recorded transfer starts at ``when``."""
        with self._lock:
            self._now = max(self._now, when)

    def _expect(self, when: float | None) -> None:
        """The next recorded transfer starts at ``when`` (None: no more transfers)."""
        with self._lock:
            self._floor = self._now if when is None else when

    def __repr__(self) -> str:
        return f"ReplayClock(now={self.monotonic()!r})"


@dataclass(frozen=True)
class _Transfer:
    first: int  # the trace index of its first record
    records: tuple[SpyRecord, ...]


def _group(records: Sequence[SpyRecord]) -> tuple[_Transfer, ...]:
    """Consecutive records with the same transfer number are one recorded ``i2c_rdwr`` call."""
    groups: list[_Transfer] = []
    start = 0
    for end in range(1, len(records) + 1):
        if end == len(records) or records[end].transfer != records[start].transfer:
            groups.append(_Transfer(start, tuple(records[start:end])))
            start = end
    return tuple(groups)


def _show_record(record: SpyRecord) -> str:
    if record.direction == "w":
        return f"a write to 0x{record.address:02x} of [{record.data.hex(' ')}]"
    if record.outcome == "ack":
        return f"a {len(record.data)}-byte read from 0x{record.address:02x}"
    return f"a read from 0x{record.address:02x}"


def _show_message(msg: i2c_msg) -> str:
    address: int = msg.addr
    if msg.flags & _I2C_M_RD:
        return f"a {msg.len}-byte read from 0x{address:02x}"
    return f"a write to 0x{address:02x} of [{_message_bytes(msg).hex(' ')}]"


def _difference(record: SpyRecord, msg: i2c_msg) -> str | None:
    """Why ``msg`` is not the recorded message (None if it is): the detail after the hex."""
    is_read = bool(msg.flags & _I2C_M_RD)
    address: int = msg.addr
    if is_read != (record.direction == "r"):
        return "a read where the trace has a write" if is_read else "a write instead of a read"
    if address != record.address:
        return f"address 0x{address:02x} instead of 0x{record.address:02x}"
    if is_read:
        if record.outcome == "ack" and msg.len != len(record.data):
            return f"{msg.len} bytes instead of {len(record.data)}"
        return None
    data = _message_bytes(msg)
    if data == record.data:
        return None
    first = next(
        (i for i, (a, b) in enumerate(zip(data, record.data, strict=False)) if a != b),
        min(len(data), len(record.data)),
    )
    if len(data) != len(record.data) and first == min(len(data), len(record.data)):
        return f"{len(data)} bytes instead of {len(record.data)}"
    return f"first difference at byte {first}"


class ReplayBus:
    """Plays the chip's side of a recorded trace; the host must repeat its side exactly.

    Every ``i2c_rdwr`` call must be the next recorded transfer, message for message: a write
    with the recorded address and bytes, a read from the recorded address of the recorded
    length (it gets the recorded bytes). A recorded NACK (``nack``, and ``wake`` for the
    general-call wake pulse) raises ``OSError(nack_errno)`` (EREMOTEIO, i2c-bcm2835's), a
    recorded ``error:<ERRNO>`` raises ``OSError`` with that errno, after the messages before it
    took effect. The first difference raises :class:`ReplayMismatchError` naming the record;
    so does every later transfer (the replay cannot know what the chip would have answered),
    which keeps the first difference the one reported even when the driver's clean-up tries
    to talk to the chip while the error propagates. A transfer after the last record raises
    :class:`ReplayExhaustedError` (again on every later call); :meth:`finish` checks that the
    host asked for everything.

    Time: nothing is waited for. By default the replay runs on its own :class:`ReplayClock`
    (``clock``, which the driver must share), starting at the first recorded timestamp and
    following the recording, so time-driven decisions of the driver (the watchdog budget,
    giving up on a chip that never answers) come out as they did when the trace was recorded,
    on a Pi too. Another clock that can be advanced (``sim.clock.VirtualClock``) is moved
    forward to each transfer's recorded start only; any other clock is left alone, as is
    every clock with ``follow_time`` False. Recorded times are shifted so that the first
    record starts at the clock's reading when the replay is built.
    """

    def __init__(
        self,
        records: Iterable[SpyRecord],
        clock: Clock | None = None,
        *,
        source: str = "the trace",
        nack_errno: int = errno.EREMOTEIO,
        follow_time: bool = True,
    ) -> None:
        self._records = tuple(records)
        if not self._records:
            raise ReplayError(f"replay of {source}: no records to replay")
        self._transfers = _group(self._records)
        self._clock: Clock = ReplayClock(self._records[0].time) if clock is None else clock
        self._source = source
        self._nack_errno = nack_errno
        self._follow = follow_time
        self._offset = self._clock.monotonic() - self._records[0].time
        self._next = 0  # the next transfer to replay
        self._failure: ReplayError | None = None
        self._closed = False
        self._lock = threading.Lock()

    # -- smbus2 surface -------------------------------------------------------------------------

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "the replay bus is closed")
            if self._failure is not None:
                raise self._failure
            if not i2c_msgs:
                raise OSError(errno.EINVAL, "an i2c_rdwr call without messages")
            if self._next >= len(self._transfers):
                self._failure = ReplayExhaustedError(
                    f"replay of {self._source} is over: all {len(self._records)} recorded "
                    f"messages were replayed, and the host started another transfer with "
                    f"{_show_message(i2c_msgs[0])}"
                )
                raise self._failure
            transfer = self._transfers[self._next]
            self._arrive(transfer)
            self._check(transfer, i2c_msgs)
            self._next += 1
            self._leave()
            for record, msg in zip(transfer.records, i2c_msgs, strict=False):
                if record.outcome != "ack":
                    raise self._recorded_failure(record)
                if record.direction == "r" and record.data:
                    ctypes.memmove(msg.buf, record.data, len(record.data))

    def close(self) -> None:
        """Release the bus; later transfers fail with EBADF like a closed file descriptor."""
        with self._lock:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- progress ---------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        return self._source

    @property
    def records(self) -> tuple[SpyRecord, ...]:
        """Everything the trace holds, in order."""
        return self._records

    @property
    def position(self) -> int:
        """How many records the host has gone through (the next record's index)."""
        with self._lock:
            return self._position()

    @property
    def remaining(self) -> int:
        """Records not replayed yet."""
        return len(self._records) - self.position

    @property
    def finished(self) -> bool:
        """Whether every recorded message was replayed."""
        return self.remaining == 0

    @property
    def closed(self) -> bool:
        return self._closed

    def finish(self) -> None:
        """Raise the replay's failure, or :class:`ReplayIncompleteError` if records remain."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            position = self._position()
            if position < len(self._records):
                record = self._records[position]
                raise ReplayIncompleteError(
                    f"replay of {self._source} stopped early: {len(self._records) - position} of "
                    f"{len(self._records)} recorded messages were never asked for, the first at "
                    f"record {position} (transfer {record.transfer}): {_show_record(record)}"
                )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<ReplayBus{state} {self._source}: {self._position()}/{len(self._records)} records>"

    @property
    def clock(self) -> Clock:
        """The clock the replay follows (the driver must sleep on it)."""
        return self._clock

    # -- time -------------------------------------------------------------------------------------

    def _arrive(self, transfer: _Transfer) -> None:
        if not self._follow:
            return
        start = transfer.records[0].time + self._offset
        clock = self._clock
        if isinstance(clock, ReplayClock):
            clock._reach(start)
        elif isinstance(clock, _Advancing):
            lag = start - clock.monotonic()
            if lag > 0:
                clock.advance(lag)

    def _leave(self) -> None:
        if self._follow and isinstance(self._clock, ReplayClock):
            following = None
            if self._next < len(self._transfers):
                following = self._transfers[self._next].records[0].time + self._offset
            self._clock._expect(following)

    # -- matching ---------------------------------------------------------------------------------

    def _position(self) -> int:
        if self._next >= len(self._transfers):
            return len(self._records)
        return self._transfers[self._next].first

    def _check(self, transfer: _Transfer, msgs: Sequence[i2c_msg]) -> None:
        """Raise (and remember) a mismatch unless ``msgs`` are the recorded transfer."""
        records = transfer.records
        for number, (record, msg) in enumerate(zip(records, msgs, strict=False)):
            detail = _difference(record, msg)
            if detail is not None:
                self._mismatch(transfer, number, _show_record(record), _show_message(msg), detail)
        failed = any(record.outcome != "ack" for record in records)
        # A virtual-bus trace stops recording a failed transfer at the failing message, so a
        # host may have sent more; otherwise the counts must agree.
        if len(msgs) < len(records) or (len(msgs) > len(records) and not failed):
            number = min(len(msgs), len(records))
            expected = _show_record(records[number]) if number < len(records) else "the end of it"
            got = _show_message(msgs[number]) if number < len(msgs) else "the end of it"
            self._mismatch(
                transfer,
                number,
                expected,
                got,
                f"the recorded transfer has {len(records)} message(s), the host's {len(msgs)}",
            )

    def _mismatch(
        self, transfer: _Transfer, number: int, expected: str, got: str, detail: str
    ) -> None:
        index = transfer.first + number
        xfer = transfer.records[0].transfer
        self._failure = ReplayMismatchError(
            f"replay of {self._source} diverged at record {index} (transfer {xfer}, message "
            f"{number}): the trace has {expected}, the host sent {got} ({detail})",
            index=index,
            transfer=xfer,
            expected=expected,
            got=got,
        )
        raise self._failure

    def _recorded_failure(self, record: SpyRecord) -> Exception:
        if record.outcome in _NACK_OUTCOMES:
            what = "wake pulse" if record.outcome == "wake" else "no ACK"
            return OSError(
                self._nack_errno, f"{what} from I2C address 0x{record.address:02x} (replayed)"
            )
        match = _ERROR_OUTCOME.fullmatch(record.outcome)
        assert match is not None  # read_trace and the spy produce nothing else
        code = getattr(errno, match.group(1), None)
        if isinstance(code, int):
            return OSError(code, f"{os.strerror(code)} (replayed)")
        return ReplayError(
            f"replay of {self._source}: the recorded transfer {record.transfer} failed with "
            f"{match.group(1)}, which is not an OSError a replay can reproduce"
        )


# -- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EmulatorTarget:
    timing: str = "typical"
    seed: int | None = None
    lock: str = "unlocked"
    revision: str | None = None  # None: the emulator's own default personality
    address: int = _ATECC_ADDRESS
    clock: str | None = None  # None: the URL does not choose


@dataclass(frozen=True)
class _I2cDevTarget:
    path: str


@dataclass(frozen=True)
class _ReplayTarget:
    path: str


@dataclass(frozen=True)
class _ParsedUrl:
    target: _EmulatorTarget | _I2cDevTarget | _ReplayTarget
    spy: bool
    options: frozenset[str]  # the sim options the URL itself set


def _parse(url: str) -> _ParsedUrl:
    if not isinstance(url, str):
        raise TypeError(f"a bus URL is a str, not {type(url).__name__}")

    def bad(problem: str) -> ValueError:
        return ValueError(f"cannot open bus {url!r}: {problem}")

    rest = url
    spy = rest[: len(_SPY_PREFIX)].lower() == _SPY_PREFIX
    if spy:
        rest = rest[len(_SPY_PREFIX) :]
        if not rest:
            raise bad(f"spy+ needs a bus URL after it; {_URL_FORMS}")
        if rest[: len(_SPY_PREFIX)].lower() == _SPY_PREFIX:
            raise bad("spy+ can be given only once")
    if not rest:
        raise bad(f"the URL is empty; {_URL_FORMS}")
    if rest[: len(_REPLAY_PREFIX)].lower() == _REPLAY_PREFIX:
        return _ParsedUrl(_replay_target(rest[len(_REPLAY_PREFIX) :], bad), spy, frozenset())
    if rest.startswith("/"):
        if _BARE_DEVICE.fullmatch(rest) is None:
            raise bad(
                "a bare path must be an I2C adapter node /dev/i2c-N; "
                f"write i2c://{rest} to open another i2c-dev node"
            )
        return _ParsedUrl(_I2cDevTarget(rest), spy, frozenset())
    parts = urlsplit(rest)
    if parts.fragment:
        raise bad(f"unexpected fragment '#{parts.fragment}'")
    if parts.scheme == "sim":
        device = parts.netloc.lower()
        if device not in _EMULATED_DEVICES:
            raise bad(
                f"unknown emulated device {parts.netloc!r}; "
                f"choose one of: {', '.join(_EMULATED_DEVICES)}"
            )
        if parts.path not in ("", "/"):
            raise bad(f"unexpected path {parts.path!r} after sim://{device}")
        options = _query(parts.query, bad)
        return _ParsedUrl(_emulator_target(options, bad), spy, frozenset(options))
    if parts.scheme == "i2c":
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise bad(
                "an i2c URL needs an absolute path after i2c:// "
                "(three slashes for /dev: i2c:///dev/i2c-1)"
            )
        if parts.query:
            raise bad(f"i2c-dev URLs take no options (got {parts.query!r})")
        return _ParsedUrl(_I2cDevTarget(path), spy, frozenset())
    if parts.scheme == "replay":
        raise bad("write replay://<path of a trace file>, e.g. replay://session.jsonl")
    scheme = f"unknown scheme {parts.scheme!r}" if parts.scheme else "not a bus URL"
    raise bad(f"{scheme}; {_URL_FORMS}")


def _replay_target(raw: str, bad: _Bad) -> _ReplayTarget:
    """Everything after ``replay://`` is the path (percent-escapes decoded); no options."""
    if "?" in raw:
        raise bad(
            f"replay URLs take no options (got {raw.partition('?')[2]!r}); "
            "write %3F for a '?' in the file name"
        )
    if "#" in raw:
        raise bad(f"unexpected fragment '#{raw.partition('#')[2]}'; write %23 for a '#'")
    path = unquote(raw)
    if not path:
        raise bad("replay:// needs the path of a trace file, e.g. replay://session.jsonl")
    if "\x00" in path:
        raise bad("the trace path contains a NUL byte")
    return _ReplayTarget(path)


def _query(query: str, bad: _Bad) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise bad(f"malformed options {query!r}; write name=value pairs joined by &") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in SIM_OPTIONS:
            raise bad(
                f"unknown option {name!r} for sim://atecc608a; "
                f"choose from: {', '.join(sorted(SIM_OPTIONS))}"
            )
        if name in options:
            raise bad(f"option {name!r} is given twice")
        options[name] = value
    return options


def _emulator_target(options: Mapping[str, str], bad: _Bad) -> _EmulatorTarget:
    """Check every option's value and build the target (defaults for options not given)."""
    checked: dict[str, str] = {}
    for name in ("timing", "lock", "revision", "clock"):
        if name in options:
            checked[name] = _choice(name, options[name], bad)
    seed: int | None = None
    if "seed" in options:
        raw = options["seed"]
        if _INTEGER.fullmatch(raw) is None:
            raise bad(f"seed must be an integer, got {raw!r}")
        seed = int(raw)
    address = _ATECC_ADDRESS
    if "address" in options:
        address = _address(options["address"], bad)
    return _EmulatorTarget(
        timing=checked.get("timing", "typical"),
        seed=seed,
        lock=checked.get("lock", "unlocked"),
        revision=checked.get("revision"),
        address=address,
        clock=checked.get("clock"),
    )


def _choice(name: str, value: str, bad: _Bad) -> str:
    choices = SIM_OPTIONS[name]
    assert choices is not None
    for choice in choices:
        # Revisions are printed in upper case (608A); accept any case like the emulator does.
        if value == choice or (name == "revision" and value.upper() == choice):
            return choice
    raise bad(f"unknown {_OPTION_NOUNS[name]} {value!r}; choose one of: {', '.join(choices)}")


def _address(raw: str, bad: _Bad) -> int:
    try:
        value = int(raw, 0)
    except ValueError:
        value = -1
    if not 0x01 <= value <= 0x7F:
        raise bad(f"address must be a 7-bit I2C address 0x01..0x7f (like 0x60 or 96), got {raw!r}")
    return value


def validate_bus_url(url: str) -> str:
    """Check a URL without opening anything (for settings at start-up); return it unchanged.

    Raises the :class:`ValueError` that :func:`open_bus` would raise for it.
    """
    _parse(url)
    return url


@dataclass(frozen=True)
class BusUrl:
    """What a bus URL selects, decided without opening anything.

    ``options`` are the ``sim://`` options the URL itself sets, as written (empty for i2c-dev);
    a service uses them to refuse combinations that make no sense for it (a virtual clock).
    """

    url: str
    kind: BusKind
    spy: bool
    options: Mapping[str, str]


def parse_bus_url(url: str) -> BusUrl:
    """Check ``url`` like :func:`validate_bus_url` and say what it selects."""
    parsed = _parse(url)
    if isinstance(parsed.target, _I2cDevTarget):
        return BusUrl(url, "i2c-dev", parsed.spy, MappingProxyType({}))
    if isinstance(parsed.target, _ReplayTarget):
        return BusUrl(url, "replay", parsed.spy, MappingProxyType({}))
    query = urlsplit(url[len(_SPY_PREFIX) :] if parsed.spy else url).query
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    return BusUrl(url, "emulator", parsed.spy, MappingProxyType(options))


# -- opening -------------------------------------------------------------------------------------


def open_bus(
    url: str,
    *,
    clock: Clock | None = None,
    defaults: Mapping[str, str] | None = None,
) -> OpenedBus:
    """Open the bus ``url`` names (grammar in the module docstring).

    ``clock``: the clock to build the emulator and the spy on (and to return). On ``sim://`` it
    replaces the default wall clock; a URL that also sets ``clock=`` is refused as ambiguous.
    On i2c-dev it is returned as given and must run in real time (the chip does). On
    ``replay://`` it replaces the :class:`ReplayClock` the replay otherwise builds (starting at
    the trace's first timestamp); see :class:`ReplayBus` for how a clock follows the recording.

    ``defaults``: ``sim://`` option values for URLs that do not set them, e.g. a test harness's
    ``{"clock": "virtual"}``; checked like URL options, ignored by i2c-dev URLs (which have
    none). Precedence for the clock: URL ``clock=``, then ``clock``, then ``defaults``, then
    the wall clock.
    """
    parsed = _parse(url)
    target = parsed.target
    if isinstance(target, _EmulatorTarget):
        bus, used_clock, chip = _open_emulator(url, parsed, target, clock, defaults)
        kind: BusKind = "emulator"
    elif isinstance(target, _ReplayTarget):
        if defaults:
            _check_defaults(url, defaults)
        bus, used_clock = _open_replay(target.path, clock)
        chip, kind = None, "replay"
    else:
        if defaults:
            _check_defaults(url, defaults)
        used_clock = SystemClock() if clock is None else clock
        bus, chip = _open_i2c_dev(target.path), None
        kind = "i2c-dev"
    recorder: BusRecorder | None = None
    if parsed.spy:
        spy = SpyBus(bus, used_clock)
        bus, recorder = spy, spy.recorder
    return OpenedBus(bus=bus, url=url, kind=kind, clock=used_clock, emulator=chip, trace=recorder)


def _check_defaults(url: str, defaults: Mapping[str, str]) -> _EmulatorTarget:
    def bad(problem: str) -> ValueError:
        return ValueError(f"cannot open bus {url!r}: default {problem}")

    for name in defaults:
        if name not in SIM_OPTIONS:
            raise bad(
                f"option {name!r} is not a sim:// option; "
                f"choose from: {', '.join(sorted(SIM_OPTIONS))}"
            )
    return _emulator_target(defaults, bad)


def _open_emulator(
    url: str,
    parsed: _ParsedUrl,
    target: _EmulatorTarget,
    clock: Clock | None,
    defaults: Mapping[str, str] | None,
) -> tuple[Bus, Clock, object]:
    # The one allowed edge lokey -> sim, taken only when an emulator is asked for.
    from sim.atecc608a import ATECC608A  # noqa: PLC0415
    from sim.clock import VirtualClock  # noqa: PLC0415
    from sim.i2c_bus import VirtualI2CBus  # noqa: PLC0415

    if defaults:
        fallback = _check_defaults(url, defaults)
        given = parsed.options
        target = _EmulatorTarget(
            timing=target.timing if "timing" in given else fallback.timing,
            seed=target.seed if "seed" in given else fallback.seed,
            lock=target.lock if "lock" in given else fallback.lock,
            revision=target.revision if "revision" in given else fallback.revision,
            address=target.address if "address" in given else fallback.address,
            clock=target.clock if "clock" in given else None,
        )
        default_clock = fallback.clock
    else:
        default_clock = None
    if target.clock is not None and clock is not None:
        raise ValueError(
            f"cannot open bus {url!r}: the URL chooses clock={target.clock} and a clock "
            "argument was given too; give one of them"
        )
    used: Clock
    if clock is not None:
        used = clock
    else:
        name = target.clock or default_clock or "wall"
        used = VirtualClock() if name == "virtual" else SystemClock()
    chip = ATECC608A(
        clock=used,
        timing=target.timing,
        seed=target.seed,
        lock=target.lock,
        revision=target.revision,
    )
    bus = VirtualI2CBus(used)
    bus.attach(target.address, chip)
    return bus, used, chip


def _open_replay(path: str, clock: Clock | None) -> tuple[ReplayBus, Clock]:
    bus = ReplayBus(read_trace(path), clock, source=path)
    return bus, bus.clock


def _open_i2c_dev(path: str) -> SMBus:
    smbus = SMBus()
    try:
        smbus.open(path)
    except OSError as exc:
        opened = smbus.fd is not None  # os.open worked; the I2C_FUNCS probe did not
        smbus.close()  # smbus2 leaves the descriptor open when the probe fails
        raise BusError(_open_failure(path, exc, opened=opened), exc.errno) from exc
    return smbus


def _open_failure(path: str, exc: OSError, *, opened: bool) -> str:
    code = exc.errno
    name = errno.errorcode.get(code, "?") if code is not None else "?"
    head = f"cannot open I2C bus {path}: {exc.strerror or exc} ({name})"
    if opened:
        return (
            f"{path} opened but is not an I2C adapter: the I2C_FUNCS ioctl failed with "
            f"{exc.strerror or exc} ({name}); give the /dev/i2c-N node of an adapter"
        )
    if code == errno.ENOENT:
        return (
            f"{head}. On a Raspberry Pi enable I2C (dtparam=i2c_arm=on in config.txt, or "
            "raspi-config: Interface Options > I2C), reboot, check that `ls /dev/i2c-*` lists "
            "the adapter and that the i2c-dev module is loaded (modprobe i2c-dev); "
            "LOKEY_BUS_URL or I2C_BUS_NUMBER selects the node"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"{head}. The node is normally crw-rw---- root:i2c: add the service user to the "
            "i2c group (sudo usermod -aG i2c <user>, then log in again) or fix the udev rule "
            "for the node's permissions"
        )
    return head


# -- configuration from the environment -----------------------------------------------------------


def bus_url_from_env(env: Mapping[str, str]) -> str:
    """The bus URL a service should open, from its environment.

    Precedence: ``LOKEY_BUS_URL`` (any URL :func:`open_bus` accepts, checked here), then the
    Go reference's ``I2C_BUS_NUMBER`` (a non-negative integer N, giving ``/dev/i2c-N``), then
    :data:`DEFAULT_BUS_URL` (the emulator, on every machine; unlike the reference, which
    defaults to bus 1). A variable that is set but empty or blank counts as unset, as
    ``VAR=`` lines in compose files and unit files mean.
    """
    url = env.get(ENV_BUS_URL, "").strip()
    if url:
        try:
            return validate_bus_url(url)
        except ValueError as exc:
            raise ValueError(f"{ENV_BUS_URL}: {exc}") from None
    number = env.get(ENV_I2C_BUS_NUMBER, "").strip()
    if number:
        if re.fullmatch(r"\+?[0-9]+", number) is None:
            raise ValueError(
                f"{ENV_I2C_BUS_NUMBER} must be a non-negative integer (the N of /dev/i2c-N), "
                f"got {env[ENV_I2C_BUS_NUMBER]!r}"
            )
        return f"/dev/i2c-{int(number)}"
    return DEFAULT_BUS_URL


# -- fault injection: what the controller's chaos API builds (emulator only) ----------------------

FaultTarget: TypeAlias = Literal["chip", "bus"]

#: Integer parameters that also accept a name: the chip's opcodes and status codes (spec §3, §4)
#: and the errno a held-low bus reports. Names match case-insensitively, underscores optional.
_NAMED_INT_PARAMETERS: Final = ("opcode", "status", "errno")
_INT_LITERAL = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[0-9]+)")


@dataclass(frozen=True)
class FaultParam:
    """One parameter of a fault kind, as the chaos API documents it.

    ``type`` is a JSON description ("integer", "integer or name", "number", "boolean",
    "hex string", "schedule"), with " or null" when null is allowed. ``default`` is JSON-ready
    (bytes as hex, enums as integers) and meaningless when ``required``.
    """

    name: str
    type: str
    required: bool
    default: object = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.type, "required": self.required}
        if not self.required:
            out["default"] = self.default
        return out


@dataclass(frozen=True)
class FaultKind:
    """One injectable fault class of the emulator: where it acts and what it takes."""

    name: str  # the fault's stable ``name`` ("forced_status", "nack", ...)
    target: FaultTarget  # "chip": sim.atecc608a.faults; "bus": sim.i2c_bus.faults
    class_name: str
    summary: str
    params: tuple[FaultParam, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "class": self.class_name,
            "summary": self.summary,
            "params": {param.name: param.to_dict() for param in self.params},
        }


@dataclass(frozen=True)
class BuiltFault:
    """A fault built from a description: inject ``fault`` into the chip or the bus (``kind``)."""

    kind: FaultKind
    fault: object


@dataclass(frozen=True)
class _FaultClass:
    kind: FaultKind
    cls: type
    hints: Mapping[str, object]


def fault_kinds() -> Mapping[str, FaultKind]:
    """Every chip fault of ``sim.atecc608a.faults`` and bus fault of ``sim.i2c_bus.faults``.

    Keyed by the fault's ``name``. Imports the emulator (the one allowed edge); call it only on
    the emulator path.
    """
    return MappingProxyType({name: spec.kind for name, spec in _fault_classes().items()})


def build_fault(kind: str, params: Mapping[str, object] | None = None) -> BuiltFault:
    """Build the fault ``kind`` (its ``name`` or class name) from JSON-style ``params``.

    JSON types map onto the fault's fields: integers (also ``"0x1B"`` strings, and names for
    ``opcode`` / ``status`` / ``errno``, e.g. ``"Random"``, ``"EXECUTION_ERROR"``, ``"EIO"``),
    numbers, booleans, hex strings for bytes, null where the field allows None, and an object
    for a bus fault's ``schedule`` (exactly one of ``next_n``, ``every_nth``, ``probability``,
    plus ``seed``). Raises :class:`ValueError` naming the kind and the parameter for an
    unknown kind, an unknown or missing parameter, a wrong type, or a value the fault's own
    checks refuse; never anything else for any JSON input.
    """
    classes = _fault_classes()
    spec = classes.get(kind) if isinstance(kind, str) else None
    if spec is None and isinstance(kind, str):
        spec = next((s for s in classes.values() if s.kind.class_name == kind), None)
    if spec is None:
        choices = ", ".join(sorted(classes))
        raise ValueError(f"unknown fault kind {kind!r}; choose one of: {choices}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{spec.kind.name}: params must be a JSON object, not {params!r}")
    fault = _construct(spec.cls, spec.hints, params, spec.kind.name)
    return BuiltFault(spec.kind, fault)


def describe_fault(fault: object) -> dict[str, object]:
    """``{"kind": name, "params": {...}}`` of a fault; ``build_fault`` accepts it back."""
    if not is_dataclass(fault) or isinstance(fault, type):
        raise TypeError(f"not a fault: {fault!r}")
    name = getattr(type(fault), "name", type(fault).__name__)
    params = {f.name: _jsonable(getattr(fault, f.name)) for f in fields(fault)}
    return {"kind": name, "params": params}


@functools.cache
def _fault_classes() -> dict[str, _FaultClass]:
    # The one allowed edge lokey -> sim, taken only on the emulator path.
    from sim.atecc608a import faults as chip_faults  # noqa: PLC0415
    from sim.i2c_bus import faults as bus_faults  # noqa: PLC0415

    found: dict[str, _FaultClass] = {}
    sources: tuple[tuple[FaultTarget, object, tuple[type, ...]], ...] = (
        ("chip", chip_faults, (chip_faults.ChipFault,)),
        ("bus", bus_faults, (bus_faults.Fault, bus_faults.ReadFault)),
    )
    for target, module, bases in sources:
        for attribute in getattr(module, "__all__", ()):
            cls = getattr(module, attribute)
            if not isinstance(cls, type) or cls in bases or not issubclass(cls, bases[0]):
                continue
            if not is_dataclass(cls):  # pragma: no cover - every sim fault is a dataclass
                continue
            hints = get_type_hints(cls)
            name: str = cls.name  # type: ignore[attr-defined]  # every fault class sets it
            params = tuple(_describe_param(f, hints[f.name]) for f in fields(cls))
            summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
            kind = FaultKind(name, target, cls.__name__, summary, params)
            found[name] = _FaultClass(kind, cls, MappingProxyType(hints))
    return found


def _describe_param(f: Field[object], hint: object) -> FaultParam:
    nullable, base = _split_optional(hint)
    if base is int:
        text = "integer or name" if f.name in _NAMED_INT_PARAMETERS else "integer"
    elif base is float:
        text = "number"
    elif base is bool:
        text = "boolean"
    elif base is bytes:
        text = "hex string"
    elif isinstance(base, type) and is_dataclass(base):
        inner = ", ".join(g.name for g in fields(base))
        text = f"{base.__name__.lower()} {{{inner}}}"
    else:  # pragma: no cover - a new field type in sim: teach _coerce about it
        raise AssertionError(f"unsupported fault parameter type {hint!r}")
    if nullable:
        text += " or null"
    required = f.default is MISSING and f.default_factory is MISSING
    default = None if f.default is MISSING else _jsonable(f.default)
    return FaultParam(f.name, text, required, default)


def _split_optional(hint: object) -> tuple[bool, object]:
    if get_origin(hint) in (Union, UnionType):
        args = get_args(hint)
        others = [a for a in args if a is not type(None)]
        if len(others) != 1:  # pragma: no cover - sim's faults use X | None only
            raise AssertionError(f"unsupported fault parameter type {hint!r}")
        return len(others) < len(args), others[0]
    return False, hint


def _construct(
    cls: type, hints: Mapping[str, object], params: Mapping[str, object], where: str
) -> object:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(str(key) for key in params if key not in known)
    if unknown:
        raise ValueError(
            f"{where}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"{cls.__name__} takes: {', '.join(known) or 'nothing'}"
        )
    missing = [
        name
        for name, f in known.items()
        if f.default is MISSING and f.default_factory is MISSING and name not in params
    ]
    if missing:
        raise ValueError(f"{where}: missing parameter(s) {', '.join(map(repr, missing))}")
    values = {
        name: _coerce(f"{where}: parameter {name!r}", name, hints[name], value)
        for name, value in params.items()
    }
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _coerce(where: str, name: str, hint: object, value: object) -> object:
    nullable, base = _split_optional(hint)
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{where} must not be null")
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {value!r}")
        return value
    if base is int:
        return _coerce_int(where, name, value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, not {value!r}")
        return float(value)
    if base is bytes:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a hex string, not {value!r}")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{where} must be a hex string, not {value!r}") from None
    if isinstance(base, type) and is_dataclass(base):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a JSON object, not {value!r}")
        return _construct(base, get_type_hints(base), value, where)
    raise AssertionError(f"unsupported fault parameter type {hint!r}")  # pragma: no cover


def _coerce_int(where: str, name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INT_LITERAL.fullmatch(text):
            return int(text) if text.lstrip("+-").isdigit() else int(text, 0)
        named = _named_ints().get(name)
        if named is not None:
            values, shown = named
            key = text.upper().replace("_", "").replace("-", "")
            if key in values:
                return values[key]
            raise ValueError(f"{where}: unknown name {value!r}; use an integer or {shown}")
    kind = "an integer or a name" if name in _NAMED_INT_PARAMETERS else "an integer"
    raise ValueError(f"{where} must be {kind}, not {value!r}")


@functools.cache
def _named_ints() -> dict[str, tuple[dict[str, int], str]]:
    """Per named parameter: normalised name -> value, and how to list the names in an error."""
    from sim.atecc608a import Opcode, Status  # noqa: PLC0415

    def table(pairs: Sequence[tuple[str, int]]) -> dict[str, int]:
        return {n.upper().replace("_", ""): v for n, v in pairs}

    return {
        "opcode": (
            table([(m.name, int(m)) for m in Opcode]),
            "one of " + ", ".join(m.name for m in Opcode),
        ),
        "status": (
            table([(m.name, int(m)) for m in Status]),
            "one of " + ", ".join(m.name for m in Status),
        ),
        "errno": (
            table([(n, code) for code, n in errno.errorcode.items()]),
            "an errno name such as EIO",
        ),
    }


def _jsonable(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum members become plain integers
    if isinstance(value, float):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    return repr(value)

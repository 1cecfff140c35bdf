"""A virtual I2C adapter with the smbus2 ``i2c_rdwr`` surface and Linux i2c-dev failure modes.

The driver in :mod:`lokey.hardware` must run byte-for-byte unchanged on this bus and on
``smbus2.SMBus('/dev/i2c-1')``, so the bus reproduces what user space observes on a Raspberry Pi:
which ``OSError`` an unacknowledged address raises, that a transfer stops at the first NACK, that
nobody acknowledges address 0x00 (the wake pulse), and that devices see one STOP per transfer.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Final, NoReturn, Self

from sim.clock import Clock, WallClock
from sim.i2c_bus.faults import BusFaults, FaultHandle, Latency, SdaLow, _Plan
from sim.i2c_bus.target import I2CTarget
from sim.i2c_bus.trace import DEFAULT_TRACE_CAPACITY, Direction, RawRecord, Trace

if TYPE_CHECKING:
    from smbus2 import i2c_msg

__all__ = [
    "I2C_M_RD",
    "I2C_RDWR_IOCTL_MAX_MSGS",
    "I2C_RDWR_MAX_MSG_LEN",
    "WAKE_ADDRESS",
    "VirtualI2CBus",
]

#: Read flag of a message (Linux include/uapi/linux/i2c.h ``I2C_M_RD``; smbus2 uses the same).
I2C_M_RD: Final = 0x0001
#: Most messages per ``I2C_RDWR`` ioctl (Linux include/uapi/linux/i2c-dev.h).
I2C_RDWR_IOCTL_MAX_MSGS: Final = 42
#: Longest message i2c-dev accepts (Linux drivers/i2c/i2c-dev.c, ``i2cdev_ioctl_rdwr``).
I2C_RDWR_MAX_MSG_LEN: Final = 8192
#: A write to this address is the ATECC608A wake pulse; no device ever acknowledges it
#: (spec/atecc608a.md §1.3; I2C-bus specification UM10204 reserves it for the general call).
WAKE_ADDRESS: Final = 0x00
#: Highest 7-bit address (I2C-bus specification UM10204, §3.1.10).
MAX_7BIT_ADDRESS: Final = 0x7F

_NO_FAULTS: Final[tuple[str, ...]] = ()

_memmove = ctypes.memmove
_string_at = ctypes.string_at


def _oserror(code: int, detail: str) -> OSError:
    return OSError(code, f"{os.strerror(code)} ({detail})")


class VirtualI2CBus:
    """An I2C adapter whose devices are Python objects (see :class:`sim.i2c_bus.I2CTarget`).

    ``nack_errno`` is the adapter's "personality": EREMOTEIO (121) is what i2c-bcm2835 on a
    Raspberry Pi reports for an unacknowledged address; ENXIO, EIO or ETIMEDOUT match other
    adapters, so a driver can be checked against all of them. ``trace`` keeps the last 65,536
    messages (``True``), a given number of them, or nothing (``False`` or 0).

    One ``i2c_rdwr`` call is one START … STOP transfer with repeated starts between messages; a
    lock serialises transfers like the kernel's adapter lock does.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        nack_errno: int = errno.EREMOTEIO,
        trace: bool | int = True,
    ) -> None:
        if isinstance(nack_errno, bool) or nack_errno not in errno.errorcode:
            raise ValueError(
                f"nack_errno must be an errno code (e.g. errno.ENXIO), not {nack_errno!r}"
            )
        if isinstance(trace, bool):
            capacity = DEFAULT_TRACE_CAPACITY if trace else 0
        elif isinstance(trace, int) and trace >= 0:
            capacity = trace
        else:
            raise ValueError(f"trace must be True, False or a capacity >= 0, not {trace!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must provide monotonic() and sleep(), not {clock!r}")
        self._clock: Clock = WallClock() if clock is None else clock
        self._nack_errno = nack_errno
        self._lock = threading.Lock()
        self._wiring_lock = threading.Lock()
        self._closed = False
        self._targets: dict[int, I2CTarget] = {}
        # (attached_at, target) in attachment order; replaced, never mutated, so a transfer can
        # take a snapshot with one attribute read.
        self._routes: tuple[tuple[int, I2CTarget], ...] = ()
        self._faults = BusFaults()
        self._trace = Trace(capacity)
        self._record: Callable[[RawRecord], None] | None = self._trace._sink() if capacity else None
        self._transfers = 0

    # -- wiring ---------------------------------------------------------------------------------

    def attach(self, address: int, target: I2CTarget) -> None:
        """Connect ``target`` at the 7-bit ``address`` (0x01..0x7F)."""
        if isinstance(address, bool) or not isinstance(address, int):
            raise ValueError(f"I2C address must be an int, not {address!r}")
        if not 0x01 <= address <= MAX_7BIT_ADDRESS:
            raise ValueError(
                f"I2C address 0x{address:02x} is outside 0x01..0x7F "
                "(0x00 is the wake pulse / general call; 7-bit addresses end at 0x7F)"
            )
        if not isinstance(target, I2CTarget):
            raise TypeError(f"{target!r} does not implement the I2CTarget protocol")
        with self._wiring_lock:
            if address in self._targets:
                raise ValueError(
                    f"I2C address 0x{address:02x} already has a target: {self._targets[address]!r}"
                )
            for at, existing in self._targets.items():
                if existing is target:
                    raise ValueError(f"{target!r} is already attached at 0x{at:02x}")
            self._targets[address] = target
            self._routes = tuple(self._targets.items())

    def detach(self, address: int) -> I2CTarget:
        """Disconnect and return the target attached at ``address``; KeyError if there is none."""
        with self._wiring_lock:
            if address not in self._targets:
                shown = f"0x{address:02x}" if isinstance(address, int) else repr(address)
                raise KeyError(f"no target attached at I2C address {shown}")
            target = self._targets.pop(address)
            self._routes = tuple(self._targets.items())
        return target

    @property
    def targets(self) -> Mapping[int, I2CTarget]:
        """Attached targets by the address they were attached at (read-only, live)."""
        return MappingProxyType(self._targets)

    # -- smbus2 surface -------------------------------------------------------------------------

    def i2c_rdwr(self, *msgs: i2c_msg) -> None:
        """Run one transfer: the messages in order, repeated starts between them, then STOP.

        Read messages are filled in place. The first unacknowledged address raises
        ``OSError(nack_errno)``; messages before it have taken effect, later ones reach nobody.
        Every target addressed in the transfer (acknowledging or not) sees exactly one STOP.
        """
        with self._lock:
            if self._closed:
                raise _oserror(errno.EBADF, "the virtual I2C bus is closed")
            count = len(msgs)
            if count == 0 or count > I2C_RDWR_IOCTL_MAX_MSGS:
                raise _oserror(
                    errno.EINVAL,
                    f"{count} messages in one transfer; "
                    f"i2c-dev accepts 1..{I2C_RDWR_IOCTL_MAX_MSGS}",
                )
            for msg in msgs:
                if msg.len > I2C_RDWR_MAX_MSG_LEN:
                    raise _oserror(
                        errno.EINVAL,
                        f"a {msg.len}-byte message to address 0x{msg.addr:02x}; "
                        f"i2c-dev accepts at most {I2C_RDWR_MAX_MSG_LEN} bytes",
                    )
                if msg.len and not msg.buf:
                    # i2c-dev's copy_from_user/copy_to_user fail on a NULL buffer; here ctypes
                    # would dereference it and take the interpreter down.
                    raise _oserror(
                        errno.EFAULT, f"a {msg.len}-byte message to 0x{msg.addr:02x} has no buffer"
                    )
            xfer = self._transfers
            self._transfers = xfer + 1
            plan = self._faults._plan
            # Keyed by id(): identity, not equality, decides who was addressed (two equal-looking
            # emulators are still two chips), and targets need not be hashable.
            addressed: dict[int, I2CTarget] = {}
            try:
                if plan is None:
                    self._run(msgs, xfer, addressed)
                else:
                    self._run_with_faults(msgs, xfer, addressed, plan)
            finally:
                if addressed:
                    _send_stop(addressed.values())

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

    # -- inspection and control -----------------------------------------------------------------

    @property
    def trace(self) -> Trace:
        """Every message on the bus (empty and inert when tracing is disabled)."""
        return self._trace

    @property
    def faults(self) -> BusFaults:
        """Inject, list and clear bus-level faults."""
        return self._faults

    @property
    def clock(self) -> Clock:
        """The clock that timestamps the trace and on which injected latency passes."""
        return self._clock

    @property
    def nack_errno(self) -> int:
        """The errno raised for an unacknowledged address."""
        return self._nack_errno

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def transfers(self) -> int:
        """How many transfers reached the bus (EINVAL/EBADF rejections do not count)."""
        return self._transfers

    def __repr__(self) -> str:
        wired = ", ".join(f"0x{a:02x}: {t!r}" for a, t in self._routes)
        state = " closed" if self._closed else ""
        return f"<VirtualI2CBus{state} {{{wired}}} nack_errno={errno.errorcode[self._nack_errno]}>"

    # -- the transfer engine --------------------------------------------------------------------

    def _nack(self, address: int) -> OSError:
        return _oserror(self._nack_errno, f"no ACK from I2C address 0x{address:02x}")

    def _wake_nack(self) -> OSError:
        return _oserror(self._nack_errno, "wake pulse: nobody acknowledges address 0x00")

    def _run(self, msgs: tuple[i2c_msg, ...], xfer: int, addressed: dict[int, I2CTarget]) -> None:
        """The path without faults; the emulator benchmark lives on it, so keep it lean."""
        record = self._record
        now = self._clock.monotonic
        routes = self._routes
        for index, msg in enumerate(msgs):
            address: int = msg.addr
            length: int = msg.len
            if msg.flags & I2C_M_RD:
                target = _route(routes, address) if address else None
                if target is None:
                    if record is not None:
                        record((now(), xfer, index, address, "r", b"", "nack", _NO_FAULTS))
                    raise self._nack(address)
                addressed[id(target)] = target
                data = target.i2c_read(length)
                if data is None:
                    if record is not None:
                        record((now(), xfer, index, address, "r", b"", "nack", _NO_FAULTS))
                    raise self._nack(address)
                if type(data) is not bytes:
                    data = bytes(data)
                if len(data) != length:
                    raise _short_read(target, address, length, data)
                if length:
                    _memmove(msg.buf, data, length)
                if record is not None:
                    record((now(), xfer, index, address, "r", data, "ack", _NO_FAULTS))
            else:
                data = _string_at(msg.buf, length) if length else b""
                if address == WAKE_ADDRESS:
                    for _, woken in routes:
                        woken.wake_pulse()
                    if record is not None:
                        record((now(), xfer, index, address, "w", data, "wake", _NO_FAULTS))
                    raise self._wake_nack()
                target = _route(routes, address)
                if target is not None:
                    addressed[id(target)] = target
                    acked = target.i2c_write(data)
                else:
                    acked = False
                if record is not None:
                    outcome = "ack" if acked else "nack"
                    record((now(), xfer, index, address, "w", data, outcome, _NO_FAULTS))
                if not acked:
                    raise self._nack(address)

    def _run_with_faults(
        self,
        msgs: tuple[i2c_msg, ...],
        xfer: int,
        addressed: dict[int, I2CTarget],
        plan: _Plan,
    ) -> None:
        """The same transfer as :meth:`_run`, with the installed faults applied in their order.

        Order per message (documented in :mod:`sim.i2c_bus.faults`): latency, stuck bus, NACK,
        the target, then the read faults.
        """
        if plan.sda_low is not None:
            self._fail_sda_low(msgs[0], xfer, plan.sda_low)
        record = self._record
        now = self._clock.monotonic
        routes = self._routes
        for index, msg in enumerate(msgs):
            address: int = msg.addr
            length: int = msg.len
            is_read = bool(msg.flags & I2C_M_RD)
            touched: list[str] = []
            if plan.latency:
                self._apply_latency(plan, address, touched)
            if plan.stuck and _any_fire(plan.stuck, address, touched, scheduled=False):
                # Floating SDA as spec/atecc608a.md §14 models it: the address looks acknowledged,
                # data reads as the pull-up's 0xFF, and no device sees anything.
                if is_read:
                    data = b"\xff" * length
                    if length:
                        _memmove(msg.buf, data, length)
                else:
                    data = _string_at(msg.buf, length) if length else b""
                if record is not None:
                    direction: Direction = "r" if is_read else "w"
                    record((now(), xfer, index, address, direction, data, "ack", tuple(touched)))
                continue
            if (
                address != WAKE_ADDRESS
                and plan.nack
                and _any_fire(plan.nack, address, touched, scheduled=True)
            ):
                if record is not None:
                    if is_read:
                        record((now(), xfer, index, address, "r", b"", "nack", tuple(touched)))
                    else:
                        sent = _string_at(msg.buf, length) if length else b""
                        record((now(), xfer, index, address, "w", sent, "nack", tuple(touched)))
                raise self._nack(address)
            if is_read:
                self._faulted_read(
                    msg,
                    xfer=xfer,
                    index=index,
                    routes=routes,
                    addressed=addressed,
                    plan=plan,
                    touched=touched,
                )
            else:
                self._faulted_write(
                    msg, xfer=xfer, index=index, routes=routes, addressed=addressed, touched=touched
                )

    def _fail_sda_low(self, first: i2c_msg, xfer: int, handle: FaultHandle) -> NoReturn:
        fault = handle.fault
        assert isinstance(fault, SdaLow)
        handle._hit()
        address: int = first.addr
        if self._record is not None:
            is_read = bool(first.flags & I2C_M_RD)
            data = b"" if is_read or not first.len else _string_at(first.buf, first.len)
            self._record(
                (
                    self._clock.monotonic(),
                    xfer,
                    0,
                    address,
                    "r" if is_read else "w",
                    data,
                    f"error:{errno.errorcode[fault.errno]}",
                    (fault.name,),
                )
            )
        raise _oserror(fault.errno, f"SDA held low; transfer to address 0x{address:02x} failed")

    def _apply_latency(self, plan: _Plan, address: int, touched: list[str]) -> None:
        for handle in plan.latency:
            if handle._matches(address):
                fault = handle.fault
                assert isinstance(fault, Latency)
                handle._hit()
                touched.append(fault.name)
                self._clock.sleep(fault.seconds)

    def _faulted_read(
        self,
        msg: i2c_msg,
        *,
        xfer: int,
        index: int,
        routes: tuple[tuple[int, I2CTarget], ...],
        addressed: dict[int, I2CTarget],
        plan: _Plan,
        touched: list[str],
    ) -> None:
        record = self._record
        address: int = msg.addr
        length: int = msg.len
        target = _route(routes, address) if address else None
        if target is not None:
            addressed[id(target)] = target
        answer = None if target is None else target.i2c_read(length)
        if target is None or answer is None:
            if record is not None:
                t = self._clock.monotonic()
                record((t, xfer, index, address, "r", b"", "nack", tuple(touched)))
            raise self._nack(address)
        data = answer if type(answer) is bytes else bytes(answer)
        if len(data) != length:
            raise _short_read(target, address, length, data)
        for handle in plan.reads:
            if handle._matches(address) and handle._applies_to(length) and handle._due():
                data = handle._mutate(data)
                touched.append(handle.fault.name)
        if length:
            _memmove(msg.buf, data, length)
        if record is not None:
            t = self._clock.monotonic()
            record((t, xfer, index, address, "r", data, "ack", tuple(touched)))

    def _faulted_write(
        self,
        msg: i2c_msg,
        *,
        xfer: int,
        index: int,
        routes: tuple[tuple[int, I2CTarget], ...],
        addressed: dict[int, I2CTarget],
        touched: list[str],
    ) -> None:
        record = self._record
        address: int = msg.addr
        length: int = msg.len
        data = _string_at(msg.buf, length) if length else b""
        if address == WAKE_ADDRESS:
            for _, woken in routes:
                woken.wake_pulse()
            if record is not None:
                t = self._clock.monotonic()
                record((t, xfer, index, address, "w", data, "wake", tuple(touched)))
            raise self._wake_nack()
        target = _route(routes, address)
        if target is not None:
            addressed[id(target)] = target
            acked = target.i2c_write(data)
        else:
            acked = False
        if record is not None:
            outcome = "ack" if acked else "nack"
            t = self._clock.monotonic()
            record((t, xfer, index, address, "w", data, outcome, tuple(touched)))
        if not acked:
            raise self._nack(address)


def _any_fire(
    handles: tuple[FaultHandle, ...], address: int, touched: list[str], *, scheduled: bool
) -> bool:
    """Offer the message to every matching fault (each counts it); True if any of them fired.

    Every matching fault sees the message even after another one fired, so each schedule counts
    the same messages whatever else is installed.
    """
    fired = False
    for handle in handles:
        if handle._matches(address):
            if scheduled and not handle._due():
                continue
            if not scheduled:
                handle._hit()
            touched.append(handle.fault.name)
            fired = True
    return fired


def _route(routes: tuple[tuple[int, I2CTarget], ...], address: int) -> I2CTarget | None:
    """The first target (in attachment order) that answers at ``address`` right now."""
    for attached_at, target in routes:
        if target.bus_address(attached_at) == address:
            return target
    return None


def _send_stop(addressed: Iterable[I2CTarget]) -> None:
    """STOP to each addressed target, even if one of them misbehaves and raises."""
    failure: Exception | None = None
    for target in addressed:
        try:
            target.i2c_stop()
        except Exception as exc:
            if failure is None:
                failure = exc
    if failure is not None:
        raise failure


def _short_read(target: I2CTarget, address: int, length: int, data: bytes) -> ValueError:
    return ValueError(
        f"target {target!r} at 0x{address:02x} returned {len(data)} bytes for a {length}-byte "
        "read; I2CTarget.i2c_read must return exactly the requested length"
    )

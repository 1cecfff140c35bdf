"""The ATECC608A I2C protocol: wake, send, poll, check, idle (spec/atecc608a.md §1, §14, §15).

This is the one seam where ``OSError`` from the bus becomes a :class:`lokey.errors.DeviceError`
(always ``raise ... from``, with the errno kept on the exception). Everything above it sees
checked payloads or typed errors, never raw bus bytes.

What the transport guarantees, and why:

* **Wake** (§1.3): a write to address 0x00 is the wake pulse; nobody acknowledges it, so its
  ``OSError`` is swallowed. After tWHI (1.5 ms) the 4-byte wake group must read ``04 11 33 43``;
  ``04 07 40 C2`` means the chip is in self-test Failure state. NACKs are retried with a new pulse,
  up to 20 times as cryptoauthlib does (§1.9).
* **Command execution starts at STOP** (§1.6, decision 5), so the command write is its own
  ``i2c_rdwr`` transfer. The chip NACKs while busy (§1.4); the transport waits the command's
  typical time, then polls with a bounded number of reads spread up to the datasheet maximum.
* **Every response is checked** for count and CRC (never the Go reference's "read and hope",
  §17.3). A damaged response is re-read once through word address 0x00 (the chip keeps it, §1.5);
  a chip-side CRC error (0xFF) is resent once; "watchdog about to expire" (0xEE) idles, wakes and
  resends once (§3, §14).
* **The watchdog never bites** (§1.7: 0.7 s minimum). The transport knows when it woke the chip;
  before each command, if the time since then plus the command's maximum would pass a budget
  below 0.7 s, it idles and wakes first. Idle keeps TempKey, the RNG state and a SHA context in
  progress (§1.8), so multi-command operations survive the refresh. This is exactly what the Go
  reference's provisioning lacked (§17.7).
* **Idle after every operation** (cryptoauthlib style, §1.9): one :meth:`Transport.session` is one
  operation; it ends with idle on success and with sleep after an error (sleep resets the chip's
  volatile state and lets a transient self-test failure clear at the next wake, §10.2).
* **One lock per operation**: the controller calls from a worker thread; a session holds a
  reentrant lock so multi-command operations are never interleaved.
"""

from __future__ import annotations

import errno as _errno
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from smbus2 import i2c_msg

from lokey.clock import Clock
from lokey.errors import (
    BusError,
    ChipCrcError,
    CommunicationError,
    NoDeviceError,
    SelfTestError,
    WatchdogError,
)
from lokey.hardware.bus import Bus
from lokey.hardware.packets import (
    MAX_GROUP,
    STATUS_GROUP_LENGTH,
    Opcode,
    Status,
    WordAddress,
    command_group,
    raise_for_status,
    response_payload,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMING",
    "NACK_ERRNOS",
    "RETRYABLE_ERRNOS",
    "CommandTiming",
    "Transport",
    "TransportTiming",
]

#: §1.1: the factory 7-bit address (config byte 16 = 0xC0).
DEFAULT_ADDRESS: Final = 0x60
#: §1.3 / §15: the wake pulse is a write to the general-call address, which nobody ACKs.
_WAKE_PULSE_ADDRESS: Final = 0x00
#: §1.3: the group a healthy chip answers after wake, and the one after a failed self-test
#: (decision 2: the CRC-correct ``04 07 40 C2``, not cryptoauthlib's ``04 07 C4 40``).
_WAKE_GROUP: Final = bytes.fromhex("04113343")
_SELFTEST_WAKE_GROUP: Final = bytes.fromhex("040740c2")
_OVERHEAD: Final = 3  # §2.2: count byte + two CRC bytes around every payload

#: §15: the errnos an unacknowledged address produces that unambiguously mean "no ACK":
#: EREMOTEIO on the Raspberry Pi (i2c-bcm2835), ENXIO on other adapters.
NACK_ERRNOS: Final = frozenset({_errno.EREMOTEIO, _errno.ENXIO})
#: §15: every errno worth another attempt: the NACKs above, plus EIO / ETIMEDOUT (some adapters
#: report a NACK that way) and EAGAIN (arbitration lost, a glitch). Anything else (EBADF, EINVAL,
#: EFAULT ...) is a host-side problem that retrying cannot fix.
RETRYABLE_ERRNOS: Final = NACK_ERRNOS | {_errno.EIO, _errno.ETIMEDOUT, _errno.EAGAIN}


def _ms(milliseconds: float) -> float:
    """Milliseconds to seconds, rounded like the literal (``_ms(23) == 0.023``)."""
    return milliseconds / 1000


@dataclass(frozen=True)
class CommandTiming:
    """How long one opcode keeps the chip busy: when to start polling and when to give up."""

    typical_s: float
    max_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.typical_s <= self.max_s:
            raise ValueError(
                f"CommandTiming needs 0 <= typical_s <= max_s, got {self.typical_s!r} / "
                f"{self.max_s!r}"
            )


# Per-opcode busy times. ``max_s``: cryptoauthlib's maximum execution time at clock divider M0
# (spec §4, "608 M0" column; ChipMode 0 is the factory setting, §12). ``typical_s``: the first
# poll; spec §4 "busy-time model" / decision 13 (Random 2 ms, Info/Read/SHA 0.5 ms, Write 8 ms,
# Lock 10 ms). Nonce, UpdateExtra, Counter and SelfTest have no published typical [I]: Nonce runs
# the RNG like Random (2 ms), UpdateExtra writes EEPROM like Write (8 ms), Counter 5 ms and
# SelfTest 30 ms are well below their maxima. GenKey, Sign, Verify and ECDH have no published
# typical either [I]: their first poll is at half the M0 maximum (the emulator's typical model
# keeps them busy up to their maximum, decision 13). A typical that is too short only costs a few
# NACKed polls; one that is too long only costs latency, never correctness.
_COMMAND_TIMINGS: Final[Mapping[int, CommandTiming]] = MappingProxyType(
    {
        Opcode.READ: CommandTiming(_ms(0.5), _ms(5)),
        Opcode.WRITE: CommandTiming(_ms(8), _ms(45)),
        Opcode.NONCE: CommandTiming(_ms(2), _ms(20)),
        Opcode.LOCK: CommandTiming(_ms(10), _ms(35)),
        Opcode.RANDOM: CommandTiming(_ms(2), _ms(23)),
        Opcode.UPDATE_EXTRA: CommandTiming(_ms(8), _ms(10)),
        Opcode.COUNTER: CommandTiming(_ms(5), _ms(25)),
        Opcode.INFO: CommandTiming(_ms(0.5), _ms(5)),
        Opcode.GENKEY: CommandTiming(_ms(57.5), _ms(115)),
        Opcode.SIGN: CommandTiming(_ms(57.5), _ms(115)),
        Opcode.ECDH: CommandTiming(_ms(37.5), _ms(75)),
        Opcode.VERIFY: CommandTiming(_ms(52.5), _ms(105)),
        Opcode.SHA: CommandTiming(_ms(0.5), _ms(36)),
        Opcode.SELF_TEST: CommandTiming(_ms(30), _ms(250)),
    }
)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TransportTiming.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class TransportTiming:
    """Every delay and retry bound of the transport; the clock that waits them is injected.

    * ``wake_delay_s``: tWHI, §1.3 (cryptoauthlib and the Linux kernel wait 1.5 ms).
    * ``wake_retries``: wake pulses before giving up, §1.9 (cryptoauthlib: 20).
    * ``read_attempts``: response reads per command, spread from the typical time to the
      maximum (§1.4 polling; 20 keeps the number of NACKed transfers per command bounded).
    * ``send_attempts``: command writes before giving up when the chip NACKs them, each after a
      fresh wake [I] (a NACKed command write means the chip was asleep or idle, §1.4); without
      the wake check the larger of this and ``wake_retries``.
    * ``poll_slack_s``: how far past the datasheet maximum the last poll lands, one cryptoauthlib
      poll interval (2 ms, §1.4), so a chip that needs exactly its maximum is still read.
    * ``watchdog_budget_s``: the longest the transport lets a wake last before it idles and wakes
      again, below the 0.7 s minimum watchdog (§1.7) with 0.1 s to spare for host latency.
    * ``commands``: per-opcode :class:`CommandTiming` (§4, see ``_COMMAND_TIMINGS``). A chip
      configured for clock divider M1/M2 (ChipMode, §11) needs that column's maxima here.
    """

    wake_delay_s: float = _ms(1.5)
    wake_retries: int = 20
    read_attempts: int = 20
    send_attempts: int = 3
    poll_slack_s: float = _ms(2)
    watchdog_budget_s: float = 0.6
    commands: Mapping[int, CommandTiming] = field(default_factory=lambda: _COMMAND_TIMINGS)

    def __post_init__(self) -> None:
        for name in ("wake_delay_s", "poll_slack_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"TransportTiming.{name} must be a number >= 0, got {value!r}")
        budget = self.watchdog_budget_s
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
            raise ValueError(f"TransportTiming.watchdog_budget_s must be > 0, got {budget!r}")
        for name in ("wake_retries", "read_attempts", "send_attempts"):
            _positive_int(name, getattr(self, name))
        for opcode, timing in self.commands.items():
            if not isinstance(timing, CommandTiming):
                raise ValueError(
                    f"TransportTiming.commands[0x{opcode:02X}] must be a CommandTiming, "
                    f"got {timing!r}"
                )
        object.__setattr__(self, "commands", MappingProxyType(dict(self.commands)))

    def command(self, opcode: int) -> CommandTiming:
        """The timing of ``opcode``; ValueError for an opcode the table does not know."""
        try:
            return self.commands[opcode]
        except KeyError:
            raise ValueError(
                f"no timing for opcode 0x{opcode:02X}; pass typical_s and max_s explicitly"
            ) from None


#: The datasheet defaults; a module constant so it can be a default argument.
DEFAULT_TIMING: Final = TransportTiming()


def _describe(exc: OSError) -> str:
    code = exc.errno
    name = _errno.errorcode.get(code, str(code)) if code is not None else "no errno"
    return f"{exc.strerror or exc} ({name})"


def _os_error(exc: OSError, what: str) -> BusError:
    """The lokey error for an ``OSError``: a NACK errno means nobody answered the address."""
    kind = NoDeviceError if exc.errno in NACK_ERRNOS else BusError
    return kind(f"{what}: {_describe(exc)}", errno=exc.errno)


def _retryable(exc: OSError) -> bool:
    return exc.errno in RETRYABLE_ERRNOS


@dataclass(frozen=True)
class _Request:
    """One validated command: the exact bus write and how to treat its answer."""

    write: bytes  # word address 0x03 + the command group
    payload_length: int
    timing: CommandTiming
    name: str
    idempotent: bool
    status_only: bool
    allow_failure_state: bool


def _payload(raw: bytes, request: _Request) -> bytes:
    """Check a response (count, CRC, status) and return the payload the request expects."""
    payload = response_payload(raw, request.payload_length, command=request.name)
    if request.payload_length == STATUS_GROUP_LENGTH - _OVERHEAD:
        status = payload[0]
        if request.status_only and status != Status.SUCCESS:
            raise_for_status(status, command=request.name)
            raise CommunicationError(f"{request.name}: unexpected status 0x{status:02X}")
        if status in (Status.COMM_ERROR, Status.WATCHDOG_ABOUT_TO_EXPIRE):
            raise_for_status(status, command=request.name)  # never a one-byte result (§3)
    return payload


class Transport:
    """The ATECC608A's I2C protocol over a :class:`~lokey.hardware.bus.Bus`, timed by a ``Clock``.

    ``check_wake`` False skips reading the wake group (Adafruit style, §1.3); a chip that did not
    wake is then noticed when it NACKs the command write, and woken again.
    """

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        *,
        address: int = DEFAULT_ADDRESS,
        timing: TransportTiming = DEFAULT_TIMING,
        check_wake: bool = True,
    ) -> None:
        if isinstance(address, bool) or not isinstance(address, int) or not 0x01 <= address <= 0x7F:
            raise ValueError(f"address must be a 7-bit I2C address 0x01..0x7F, got {address!r}")
        if not isinstance(timing, TransportTiming):
            raise ValueError(f"timing must be a TransportTiming, got {timing!r}")
        self._bus = bus
        self._clock = clock
        self._address = address
        self._timing = timing
        self._check_wake = bool(check_wake)
        self._lock = threading.RLock()
        self._depth = 0  # nesting of sessions held by the owning thread
        self._awake = False  # True between a checked wake and the next idle/sleep/error
        self._woke_at = 0.0  # clock time of the pulse that woke the chip (watchdog start)
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("awake" if self._awake else "idle/asleep")
        return f"<Transport 0x{self._address:02x} {state}>"

    # -- properties -------------------------------------------------------------------------------

    @property
    def address(self) -> int:
        return self._address

    @property
    def timing(self) -> TransportTiming:
        return self._timing

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def awake(self) -> bool:
        """Whether the transport believes the chip is awake (it woke it and has not idled it)."""
        return self._awake

    @property
    def closed(self) -> bool:
        return self._closed

    # -- operations -------------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[None]:
        """One operation: commands inside share a wake; idle at the end, sleep after an error.

        Reentrant: only the outermost session of a thread idles. The lock is held throughout,
        so another thread's operation waits rather than interleaving its commands. After an
        error the chip is put to sleep only if it is known to be awake; one that stopped
        answering is left alone, and the next operation's wake sorts it out.
        """
        with self._lock:
            self._ensure_open()
            self._depth += 1
            failed = True
            try:
                yield
                failed = False
            finally:
                self._depth -= 1
                if self._depth == 0 and not self._closed and self._awake:
                    # Only an awake chip is told anything: a write to a sleeping chip's own
                    # address wakes it (decision 3), which is the opposite of what we want.
                    if failed:
                        self._sleep_quietly()
                    else:
                        self._idle_quietly()

    def wake(self) -> None:
        """Make sure the chip is awake: pulse, wait tWHI, check the wake group (§1.3).

        A no-op when the transport already holds the chip awake (a pulse would change nothing
        on the chip, §1.3, and the idle-and-wake that restarts the watchdog happens on its own
        before any command that needs it).

        Raises :class:`SelfTestError` for the Failure-state wake group (the chip is then put
        back to sleep, so a transient failure can clear at the next wake, §10.2),
        :class:`NoDeviceError` if nothing ever answers, :class:`BusError` for other bus errors
        and :class:`CommunicationError` if the chip answers only garbage.
        """
        with self._lock:
            self._ensure_open()
            if not self._awake:
                self._wake()

    def execute(
        self,
        opcode: int,
        param1: int = 0,
        param2: int = 0,
        data: bytes = b"",
        *,
        payload_length: int,
        typical_s: float | None = None,
        max_s: float | None = None,
        command: str | None = None,
        idempotent: bool = True,
        allow_failure_state: bool = False,
    ) -> bytes:
        """Send one command and return its checked response payload (``payload_length`` bytes).

        Timing defaults to :attr:`TransportTiming.commands` for the opcode. ``idempotent`` says
        whether the command may be sent again after its response arrived damaged twice (the chip
        executed it; resending Random or a Read is harmless, resending a Lock or a counter
        increment is not). A chip-side CRC error (0xFF) and a watchdog refusal (0xEE) are always
        resent once: the chip did not execute those.

        A one-byte payload is returned as is (SelfTest's failure bitmap), except that 0xFF and
        0xEE, which no command returns as a result, raise; see :meth:`execute_status` for
        commands whose one byte is a status.

        ``allow_failure_state`` lets the command run on a chip whose wake group says it is in
        self-test Failure state (§10.2: SelfTest and config Reads still work there); otherwise
        that wake raises :class:`SelfTestError`.
        """
        request = self._request(
            opcode,
            param1,
            param2,
            data,
            payload_length=payload_length,
            typical_s=typical_s,
            max_s=max_s,
            command=command,
            idempotent=idempotent,
            status_only=False,
            allow_failure_state=allow_failure_state,
        )
        with self.session():
            return self._exchange(request)

    def execute_status(
        self,
        opcode: int,
        param1: int = 0,
        param2: int = 0,
        data: bytes = b"",
        *,
        typical_s: float | None = None,
        max_s: float | None = None,
        command: str | None = None,
        idempotent: bool = True,
    ) -> None:
        """Send a command whose only output is a status byte (Write, Lock, SHA start/update ...).

        Status 0x00 returns; any other status raises its typed error (§3), and a status the
        spec does not name raises :class:`CommunicationError`.
        """
        request = self._request(
            opcode,
            param1,
            param2,
            data,
            payload_length=1,
            typical_s=typical_s,
            max_s=max_s,
            command=command,
            idempotent=idempotent,
            status_only=True,
            allow_failure_state=False,
        )
        with self.session():
            self._exchange(request)

    def idle(self) -> None:
        """Put an awake chip into idle (word address 0x02); a no-op if it is not awake."""
        with self._lock:
            self._ensure_open()
            if not self._awake:
                return
            self._awake = False
            try:
                self._write(bytes((WordAddress.IDLE,)))
            except OSError as exc:
                raise _os_error(exc, "idle") from exc

    def sleep(self) -> None:
        """Put the chip to sleep (word address 0x01), waking it first if needed.

        An idle or sleeping chip NACKs its address, so the transport wakes it to be sure the
        sleep command arrives; sleep loses all volatile state (§1.8).
        """
        with self._lock:
            self._ensure_open()
            if not self._awake:
                self._wake()
            self._awake = False
            try:
                self._write(bytes((WordAddress.SLEEP,)))
            except OSError as exc:
                raise _os_error(exc, "sleep") from exc

    def close(self) -> None:
        """Put the chip to sleep and close the bus. Idempotent; never raises for the chip.

        A chip that is already asleep, idle, busy or gone NACKs, and that is fine here: one
        quiet wake pulse, the sleep command, its NACK swallowed, then the bus is closed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if not self._awake:
                    self._pulse()
                    self._clock.sleep(self._timing.wake_delay_s)
                self._sleep_quietly()
            finally:
                self._awake = False
                try:
                    self._bus.close()
                except OSError as exc:
                    raise _os_error(exc, "closing the bus") from exc

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the command exchange ---------------------------------------------------------------------

    def _request(
        self,
        opcode: int,
        param1: int,
        param2: int,
        data: bytes,
        *,
        payload_length: int,
        typical_s: float | None,
        max_s: float | None,
        command: str | None,
        idempotent: bool,
        status_only: bool,
        allow_failure_state: bool,
    ) -> _Request:
        """Validate everything before the bus is touched (ValueError naming the argument)."""
        for arg, value, top in (("opcode", opcode, 0xFF), ("param1", param1, 0xFF)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"{arg} must be a byte 0..255, got {value!r}")
        if isinstance(param2, bool) or not isinstance(param2, int) or not 0 <= param2 <= 0xFFFF:
            raise ValueError(f"param2 must be 16 bits 0..0xFFFF, got {param2!r}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        if 7 + len(data) > MAX_GROUP:
            raise ValueError(f"data holds at most {MAX_GROUP - 7} bytes (§1.6), got {len(data)}")
        if (
            isinstance(payload_length, bool)
            or not isinstance(payload_length, int)
            or not 1 <= payload_length <= MAX_GROUP - _OVERHEAD
        ):
            raise ValueError(
                f"payload_length must be 1..{MAX_GROUP - _OVERHEAD}, got {payload_length!r}"
            )
        if typical_s is None or max_s is None:
            default = self._timing.command(opcode)
            typical_s = default.typical_s if typical_s is None else typical_s
            max_s = default.max_s if max_s is None else max_s
        if command is None:
            try:
                command = Opcode(opcode).name.replace("_", " ").title().replace(" ", "")
            except ValueError:
                command = f"opcode 0x{opcode:02X}"
        group = command_group(opcode, param1, param2, bytes(data))
        return _Request(
            write=bytes((WordAddress.COMMAND,)) + group,
            payload_length=payload_length,
            timing=CommandTiming(typical_s, max_s),
            name=command,
            idempotent=idempotent,
            status_only=status_only,
            allow_failure_state=allow_failure_state,
        )

    def _exchange(self, request: _Request) -> bytes:
        """Wake if needed, send, poll, check; the bounded resend rules of §14. Lock held."""
        name, timing = request.name, request.timing
        send_failures = 0
        # Without the wake check, a NACKed command write is how a missed wake shows up, so it
        # gets the wake's retry budget (§1.9).
        send_limit = self._timing.send_attempts
        if not self._check_wake:
            send_limit = max(send_limit, self._timing.wake_retries)
        crc_resent = watchdog_resent = damage_resent = False
        while True:
            self._ready_for(timing.max_s, allow_failure_state=request.allow_failure_state)
            try:
                self._write(request.write)  # its own transfer: execution starts at STOP (§1.6)
            except OSError as exc:
                if not _retryable(exc):
                    raise _os_error(exc, f"{name}: sending the command") from exc
                # §1.4: the chip NACKs writes only while asleep, idle, waking or busy; it is not
                # where we thought. Wake it again and resend (the write never arrived).
                self._awake = False
                send_failures += 1
                if send_failures >= send_limit:
                    what = f"{name}: the chip did not accept the command in {send_failures} tries"
                    raise _os_error(exc, what) from exc
                continue
            raw = self._await_response(request.payload_length + _OVERHEAD, timing, name)
            try:
                return self._checked(raw, request)
            except ChipCrcError:
                # §3: the chip received our bytes damaged and did not execute them: resend once.
                if crc_resent:
                    raise
                crc_resent = True
            except WatchdogError:
                # §1.7 / §14: not executed; idle (stops the watchdog), wake, resend once.
                if watchdog_resent:
                    raise
                watchdog_resent = True
                self._idle_quietly()
            except CommunicationError:
                # Damaged twice (read and re-read): the chip's own buffer is wrong, or the wire
                # is. Only a command that may run twice is sent again.
                if not request.idempotent or damage_resent:
                    raise
                damage_resent = True

    def _checked(self, raw: bytes, request: _Request) -> bytes:
        """The payload of ``raw``; if it is damaged, the payload of one re-read (§1.5)."""
        try:
            return _payload(raw, request)
        except CommunicationError as damaged:
            try:
                again = self._reread(len(raw))
            except OSError:
                raise damaged from None
            return _payload(again, request)

    def _await_response(self, length: int, timing: CommandTiming, name: str) -> bytes:
        """Wait the typical time, then poll: at most ``read_attempts`` reads up to the maximum.

        The chip NACKs while busy (§1.4); one ``length``-byte read takes the whole group (§15:
        i2c_rdwr has no 32-byte limit), plus 0xFF past its end if it is a short status group.
        """
        attempts = self._timing.read_attempts
        deadline = timing.max_s + self._timing.poll_slack_s
        step = max(deadline - timing.typical_s, 0.0) / max(attempts - 1, 1)
        self._clock.sleep(timing.typical_s)
        last: OSError | None = None
        for attempt in range(attempts):
            if attempt:
                self._clock.sleep(step)
            try:
                return self._read(length)
            except OSError as exc:
                if not _retryable(exc):
                    raise _os_error(exc, f"{name}: reading the response") from exc
                last = exc
        assert last is not None
        # The chip accepted the command, then never answered within its maximum: it reset
        # (brown-out), fell asleep, or vanished. Not resent: it may have executed.
        self._awake = False
        raise BusError(
            f"{name}: no response within {deadline * 1000:.1f} ms ({attempts} reads, last: "
            f"{_describe(last)}); the chip reset, slept or left the bus",
            errno=last.errno,
        ) from last

    # -- wake, idle, sleep ------------------------------------------------------------------------

    def _ready_for(self, max_s: float, *, allow_failure_state: bool = False) -> None:
        """Make sure the chip is awake with enough watchdog time left for a ``max_s`` command."""
        if self._awake:
            elapsed = self._clock.monotonic() - self._woke_at
            if elapsed + max_s <= self._timing.watchdog_budget_s:
                return
            self._idle_quietly()  # §1.7: only idle or sleep restarts the watchdog
        self._wake(allow_failure_state=allow_failure_state)

    def _wake(self, *, allow_failure_state: bool = False) -> None:
        """Pulse, wait tWHI, check the wake group; bounded retries (§1.3, §1.9). Lock held."""
        timing = self._timing
        clock = self._clock
        last_error: OSError | None = None
        garbage: bytes | None = None
        first_pulse: float | None = None
        for _ in range(timing.wake_retries):
            if first_pulse is None:
                # The watchdog runs from the pulse that woke the chip; with a pulse the chip
                # missed, counting from the first one overestimates, which is the safe side.
                first_pulse = clock.monotonic()
            self._pulse()
            clock.sleep(timing.wake_delay_s)
            if not self._check_wake:
                self._awake, self._woke_at = True, first_pulse
                return
            try:
                group = self._read(len(_WAKE_GROUP))
            except OSError as exc:
                if not _retryable(exc):
                    raise _os_error(exc, "wake: reading the wake group") from exc
                last_error, garbage = exc, None  # asleep, still waking, or absent: pulse again
                # An awake chip holding a partial command NACKs every read and ignores pulses
                # (§1.4, §14): word address 0x00 discards the partial group. Harmless otherwise:
                # asleep, the write to our address is itself a wake (decision 3).
                self._reset_quietly()
                continue
            if group == _WAKE_GROUP or (allow_failure_state and group == _SELFTEST_WAKE_GROUP):
                self._awake, self._woke_at = True, first_pulse
                return
            if group == _SELFTEST_WAKE_GROUP:
                self._awake = True
                self._sleep_quietly()  # the next wake from sleep re-runs the self-test
                raise SelfTestError(
                    Status.SELFTEST_ERROR,
                    "wake: status 0x07, the chip is in self-test Failure state (§10.2)",
                )
            # Not a wake group: the chip was already awake with another response in its buffer
            # (a wake pulse does not touch an awake chip, §1.3), or the read was damaged. Idle
            # puts an awake chip back to where a pulse wakes it afresh.
            garbage, last_error = group, None
            self._awake = True
            self._idle_quietly()
            first_pulse = None
        if garbage is not None:
            raise CommunicationError(
                f"wake: no valid wake group in {timing.wake_retries} tries "
                f"(last read {garbage.hex(' ')}, expected {_WAKE_GROUP.hex(' ')})"
            )
        assert last_error is not None
        what = f"wake: no answer at 0x{self._address:02x} after {timing.wake_retries} tries"
        raise _os_error(last_error, what) from last_error

    def _idle_quietly(self) -> None:
        """Idle an awake chip; a NACK only means it was not awake after all."""
        if self._awake:
            self._awake = False
            with suppress(OSError):
                self._write(bytes((WordAddress.IDLE,)))

    def _reset_quietly(self) -> None:
        """Send word address 0x00 (reset the I/O pointer and any partial input), ignoring NACKs."""
        with suppress(OSError):
            self._write(bytes((WordAddress.RESET,)))

    def _sleep_quietly(self) -> None:
        """Send sleep, ignoring a NACK (the chip may be asleep, idle or busy already)."""
        self._awake = False
        with suppress(OSError):
            self._write(bytes((WordAddress.SLEEP,)))

    def _ensure_open(self) -> None:
        if self._closed:
            raise BusError("the transport is closed", errno=_errno.EBADF)

    # -- bus primitives (OSError passes through; callers map it) ----------------------------------

    def _pulse(self) -> None:
        """§1.3 / §15: ``i2c_msg.write(0x00, [0x00])``; never acknowledged, so never an error."""
        with suppress(OSError):
            self._bus.i2c_rdwr(i2c_msg.write(_WAKE_PULSE_ADDRESS, [0x00]))

    def _write(self, data: bytes) -> None:
        self._bus.i2c_rdwr(i2c_msg.write(self._address, data))

    def _read(self, length: int) -> bytes:
        msg = i2c_msg.read(self._address, length)
        self._bus.i2c_rdwr(msg)
        return bytes(msg)

    def _reread(self, length: int) -> bytes:
        """§1.5 / §15: word address 0x00 rewinds the output buffer; read again, one transfer."""
        reset = i2c_msg.write(self._address, [WordAddress.RESET])
        msg = i2c_msg.read(self._address, length)
        self._bus.i2c_rdwr(reset, msg)
        return bytes(msg)

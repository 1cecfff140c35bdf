"""The ATECC608A as an I2C target: power states, the I/O buffer, timing, watchdog, faults.

Time is evaluated lazily: every bus event reads the injected clock and first applies whatever
happened since the last one (a busy window ending, the watchdog putting the chip to sleep), so the
emulator needs no threads and a :class:`sim.clock.VirtualClock` makes a 1.3 s watchdog instant.
Command semantics live in :mod:`sim.atecc608a.engine`; the typed test surface in
:mod:`sim.atecc608a.control`.
"""

from __future__ import annotations

import enum
import hashlib
import os
import random
import threading
from collections import deque
from dataclasses import dataclass

from sim.atecc608a.constants import (
    FACTORY_CONFIG,
    MAX_COUNT,
    MIN_COUNT,
    REVISIONS,
    Status,
    WordAddress,
)
from sim.atecc608a.control import ChipControl, CommandRecord, LockState, apply_lock_state
from sim.atecc608a.crc import crc16
from sim.atecc608a.engine import Command, Engine
from sim.atecc608a.faults import (
    BrownOut,
    ChipFault,
    CorruptResponseCrc,
    ExtraBusy,
    ForcedStatus,
    LostCommand,
    RngHealthFailure,
    StuckOutput,
    WakeIgnored,
    WrongCount,
)
from sim.atecc608a.memory import Memory
from sim.atecc608a.timing import CLOCK_DIVIDERS, TimingModel
from sim.clock import Clock, WallClock

__all__ = ["ATECC608A", "ChipSettings", "Power"]

_MIN_COMMAND = 7  # §2.1: count, opcode, param1, param2 (2), CRC (2)
_WATCHDOG_LONG_FACTOR = 10  # §1.7: ChipMode bit 2 selects ~13 s instead of ~1.3 s
_CHIPMODE_LONG_WATCHDOG = 0x04
_CHIPOPTIONS_POWER_ON_SELFTEST = 0x0001
_LOG_CAPACITY = 4096


class Power(enum.Enum):
    SLEEP = "sleep"
    IDLE = "idle"
    AWAKE = "awake"


@dataclass(frozen=True)
class ChipSettings:
    """What the chip was built with; never changes after construction."""

    timing: TimingModel
    config: bytes
    seed: int | None


def group(payload: bytes) -> bytes:
    """Frame a response payload: ``[count][payload][crc lo][crc hi]`` (§2.2)."""
    body = bytes((len(payload) + 3,)) + payload
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


_WAKE_GROUP = group(bytes((Status.AFTER_WAKE,)))  # 04 11 33 43
_SELFTEST_WAKE_GROUP = group(bytes((Status.SELFTEST_ERROR,)))  # 04 07 40 C2 (decision 2)


class _InstalledFault:
    """An injected fault and its run-time state (remaining uses, how often it fired).

    ``remaining`` 0 means spent: a counted fault used up, or a latching fault that has latched
    (the chip state it caused outlives it).
    """

    __slots__ = ("calls_left", "fault", "fired", "remaining")

    def __init__(self, fault: ChipFault) -> None:
        self.fault = fault
        self.remaining = fault.count
        self.fired = 0
        self.calls_left = fault.after_calls if isinstance(fault, RngHealthFailure) else 0


class ATECC608A:
    """A byte-accurate ATECC608A on the virtual I2C bus (``bus.attach(0x60, chip)``).

    With no arguments: a factory-fresh, unlocked chip (the §12 image, an ATECC608B personality),
    the wall clock and typical timing. ``lock`` overrides the lock bytes of the image; ``seed``
    (any int) makes the RNG stream reproducible. ``control`` is the typed surface for tests.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        timing: TimingModel | str | None = None,
        config: bytes | None = None,
        serial: bytes | None = None,
        revision: str | bytes | None = None,
        seed: int | None = None,
        lock: LockState | str | None = None,
    ) -> None:
        if isinstance(timing, str):
            timing = TimingModel.named(timing)
        image = bytearray(FACTORY_CONFIG if config is None else config)
        if len(image) != 128:
            raise ValueError(f"config image must be 128 bytes, got {len(image)}")
        if serial is not None:
            if len(serial) != 9:
                raise ValueError(f"serial number must be 9 bytes, got {len(serial)}")
            image[0:4], image[8:13] = serial[:4], serial[4:]
        if revision is not None:
            image[4:8] = _revision_bytes(revision)
        if lock is not None:
            apply_lock_state(image, LockState.parse(lock))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.settings = ChipSettings(
            timing=timing or TimingModel.typical(), config=bytes(image), seed=seed
        )
        self._clock: Clock = clock or WallClock()
        self._lock = threading.RLock()
        self._memory = Memory(config=image)
        self._engine = Engine(self._memory, self._noise, self._health_trips)
        # Seeded runs draw from SHA-256 in counter mode over a digest of the seed (any int).
        self._seed_material = (
            None if seed is None else hashlib.sha256(b"sim.atecc608a:%d" % seed).digest()
        )
        self._seed_counter = 0
        self._jitter = random.Random(seed)
        self._scripted: deque[bytes] = deque()
        self._faults: list[_InstalledFault] = []
        self._log: deque[CommandRecord] = deque(maxlen=_LOG_CAPACITY)
        self._commands_executed = 0
        self._home_address = self._memory.configured_address()
        self._moved_to: int | None = None
        # Power and I/O state.
        self._power = Power.SLEEP
        self._wake_at = 0.0
        self._ready_at = 0.0
        self._busy_until = 0.0
        self._watchdog_s = self.settings.timing.watchdog_s
        self._input = bytearray()
        self._exec_pending = False
        self._output = b""
        self._pointer = 0
        self.control = ChipControl(self)

    def __repr__(self) -> str:
        return (
            f"ATECC608A(timing={self.settings.timing.name!r}, power={self._power.value!r}, "
            f"locked={self._memory.config_locked}/{self._memory.data_locked})"
        )

    # --- I2CTarget ------------------------------------------------------------------------------
    def bus_address(self, attached_at: int) -> int:
        with self._lock:
            self._advance(self._clock.monotonic())  # an expired watchdog may have moved us
            return attached_at if self._moved_to is None else self._moved_to

    def wake_pulse(self) -> None:
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now)
            self._wake(now)

    def i2c_write(self, data: bytes) -> bool:
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now)
            if self._power is not Power.AWAKE:
                if self._power is Power.SLEEP:
                    self._wake(now)  # decision 3: our own address wakes a sleeping chip (NACKed)
                return False
            if now < self._ready_at or now < self._busy_until:
                return False  # waking (decision 4) or busy (§1.4): NACK
            if not data or self._exec_pending:
                return True  # a probe, or bytes after a complete group: ignored (§1.6)
            word = data[0]
            if word == WordAddress.COMMAND:
                self._pointer = 0
                self._receive(data[1:])
            elif word == WordAddress.RESET:
                self._input.clear()
                self._pointer = 0
            elif word == WordAddress.IDLE:
                self._enter_idle()
            elif word == WordAddress.SLEEP:
                self._enter_sleep()
            # decision 1: word addresses 0x04-0xFF are acknowledged and ignored
            return True

    def i2c_read(self, length: int) -> bytes | None:
        with self._lock:
            now = self._clock.monotonic()
            self._advance(now)
            if (
                self._power is not Power.AWAKE
                or now < self._ready_at
                or now < self._busy_until
                or self._exec_pending  # decision 5: execution starts only at STOP
                or self._input  # §1.4: a partial command is waiting for more bytes
            ):
                return None
            start = self._pointer
            chunk = self._output[start : start + length]
            self._pointer = start + len(chunk)  # §1.5: the counter does not wrap
            if len(chunk) < length:
                chunk += b"\xff" * (length - len(chunk))  # past the end SDA floats high
            return chunk

    def i2c_stop(self) -> None:
        with self._lock:
            if self._exec_pending:
                now = self._clock.monotonic()
                self._advance(now)
                if self._exec_pending:
                    self._start_command(now)

    # --- time -------------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        """Apply what the passage of time did since the last event: the watchdog (§1.7)."""
        if self._power is Power.AWAKE and now >= self._wake_at + self._watchdog_s:
            self._enter_sleep()

    def _wake(self, now: float) -> None:
        if self._power is Power.AWAKE:
            return  # a wake while awake or waking changes nothing, not even the watchdog
        if self._take(WakeIgnored, None) is not None:
            return  # the pulse was too short to count
        from_sleep = self._power is Power.SLEEP
        timing = self.settings.timing
        self._power = Power.AWAKE
        self._wake_at = now
        self._ready_at = now + timing.wake_delay_s
        self._busy_until = 0.0
        long_watchdog = self._memory.chip_mode & _CHIPMODE_LONG_WATCHDOG
        self._watchdog_s = timing.watchdog_s * (_WATCHDOG_LONG_FACTOR if long_watchdog else 1)
        if from_sleep:
            power_on_test = bool(self._memory.chip_options & _CHIPOPTIONS_POWER_ON_SELFTEST)
            self._engine.wake_self_test(power_on_test)
        self._input.clear()
        self._exec_pending = False
        self._output = _SELFTEST_WAKE_GROUP if self._engine.failure else _WAKE_GROUP
        self._pointer = 0

    def _flush_io(self) -> None:
        self._input.clear()
        self._exec_pending = False
        self._output = b""
        self._pointer = 0
        self._busy_until = 0.0

    def _enter_idle(self) -> None:
        """Idle (§1.8): I/O flushed; TempKey, RNG and SHA state kept; watchdog stopped."""
        self._power = Power.IDLE
        self._flush_io()

    def _enter_sleep(self) -> None:
        """Sleep or watchdog expiry (§1.8): all volatile state is lost; a new address applies."""
        self._power = Power.SLEEP
        self._flush_io()
        self._engine.lose_volatile()
        if self._engine.health_clears_on_sleep:
            self._engine.health_latched = False  # decision 16's option
            self._engine.health_clears_on_sleep = False
        configured = self._memory.configured_address()
        self._moved_to = None if configured == self._home_address else configured

    def _power_loss(self) -> None:
        self._enter_sleep()
        self._engine.power_loss()

    # --- command input ------------------------------------------------------------------------
    def _receive(self, payload: bytes) -> None:
        """Append to the input FIFO; a group may arrive over several writes (§1.6)."""
        buffer = self._input
        buffer += payload
        if not buffer:
            return
        count = buffer[0]
        if count < MIN_COUNT or count > MAX_COUNT:
            del buffer[1:]  # decision 6: the count itself is wrong; answer 0xFF at STOP
            self._exec_pending = True
        elif len(buffer) >= count:
            del buffer[count:]  # bytes past the count are ignored
            self._exec_pending = True

    def _start_command(self, now: float) -> None:
        packet = bytes(self._input)
        self._input.clear()
        self._exec_pending = False
        self._pointer = 0
        timing = self.settings.timing
        count = packet[0]
        if (
            count < MIN_COUNT
            or count > MAX_COUNT
            or crc16(packet[:-2]) != packet[-2] | packet[-1] << 8
        ):
            # §3: CRC and count errors take precedence over everything else.
            self._respond(now, None, bytes((Status.COMM_ERROR,)), timing.parse_s, ())
            return
        if count < _MIN_COMMAND:
            self._respond(now, None, bytes((Status.PARSE_ERROR,)), timing.parse_s, ())
            return
        command = Command(packet[1], packet[2], packet[3] | packet[4] << 8, packet[5:-2])
        opcode = command.opcode
        divider = CLOCK_DIVIDERS.get(self._memory.chip_mode & 0xF8, 0)
        busy = timing.busy_s(opcode, divider)
        if timing.jitter:
            busy = self._jitter.uniform(busy, max(busy, timing.exec_max_s(opcode, divider)))

        forced = self._take(ForcedStatus, opcode)
        if isinstance(forced, ForcedStatus):
            busy, applied = self._extra_busy(opcode, busy, (forced,))
            self._respond(now, command, bytes((forced.status,)), busy, applied)
            return
        if not self._engine.supports(opcode):
            self._respond(now, command, bytes((Status.PARSE_ERROR,)), timing.parse_s, ())
            return
        if now - self._wake_at + timing.exec_max_s(opcode, divider) > self._watchdog_s:
            # decision 8: not enough watchdog time left to finish; nothing executes
            payload = bytes((Status.WATCHDOG_ABOUT_TO_EXPIRE,))
            self._respond(now, command, payload, timing.parse_s, ())
            return
        brown_out = self._take(BrownOut, opcode)
        if brown_out is not None:
            self._log_command(now, command, None, (brown_out,))
            self._power_loss()
            return
        lost = self._take(LostCommand, opcode)
        if lost is not None:
            # The chip reset before executing and was woken again before the host's read: the
            # command is gone with the SRAM, and the buffer holds a fresh wake group (§3).
            self._log_command(now, command, None, (lost,))
            self._enter_sleep()
            self._wake(now)
            return
        payload = self._engine.execute(command)
        self._commands_executed += 1
        if payload == bytes((Status.PARSE_ERROR,)):
            self._respond(now, command, payload, timing.parse_s, ())
            return
        busy, applied = self._extra_busy(opcode, busy, ())
        self._respond(now, command, payload, busy, applied)

    def _extra_busy(
        self, opcode: int, busy: float, applied: tuple[ChipFault, ...]
    ) -> tuple[float, tuple[ChipFault, ...]]:
        """Add an injected ExtraBusy to a command that runs for its full busy time."""
        extra = self._take(ExtraBusy, opcode)
        if isinstance(extra, ExtraBusy):
            return busy + extra.seconds, (*applied, extra)
        return busy, applied

    def _respond(
        self,
        now: float,
        command: Command | None,
        payload: bytes,
        busy_s: float,
        applied: tuple[ChipFault, ...],
    ) -> None:
        """Place the response group in the I/O buffer, available once the chip stops being busy."""
        opcode = command.opcode if command else None
        response = group(payload)
        wrong = self._take(WrongCount, opcode)
        if isinstance(wrong, WrongCount):
            count = (response[0] + 1) & 0xFF if wrong.value is None else wrong.value
            body = bytes((count,)) + payload
            crc = crc16(body)  # consistent with the wrong count: only a count check sees it
            response = body + bytes((crc & 0xFF, crc >> 8))
            applied = (*applied, wrong)
        corrupt = self._take(CorruptResponseCrc, opcode)
        if corrupt is not None:
            response = response[:-2] + bytes((response[-2] ^ 0xFF, response[-1]))
            applied = (*applied, corrupt)
        self._output = response
        self._pointer = 0
        self._busy_until = now + busy_s
        self._log_command(now, command, response, applied)

    def _log_command(
        self,
        now: float,
        command: Command | None,
        response: bytes | None,
        applied: tuple[ChipFault, ...],
    ) -> None:
        status = response[1] if response is not None and response[0] == 4 else None
        self._log.append(
            CommandRecord(
                t=now,
                opcode=command.opcode if command else None,
                param1=command.param1 if command else None,
                param2=command.param2 if command else None,
                data_length=len(command.data) if command else 0,
                status=status,
                response_length=len(response) if response is not None else 0,
                faults=tuple(f.name for f in applied),
            )
        )

    # --- faults and the noise source ------------------------------------------------------------
    def _take(self, kind: type[ChipFault], opcode: int | None) -> ChipFault | None:
        """The first installed fault of ``kind`` matching ``opcode``, consuming one use.

        ``opcode`` None (a wake pulse, a group that failed its CRC) matches only faults that are
        not restricted to an opcode.
        """
        for installed in self._faults:
            fault = installed.fault
            if type(fault) is kind and fault.matches(opcode):
                installed.fired += 1
                if installed.remaining is not None:
                    installed.remaining -= 1
                    if installed.remaining == 0:
                        self._faults.remove(installed)
                return fault
        return None

    def _retire(self, installed: _InstalledFault) -> None:
        """A latching fault has latched: it is spent, the state it caused stays."""
        installed.fired += 1
        installed.remaining = 0
        if installed in self._faults:
            self._faults.remove(installed)

    def _health_trips(self) -> bool | None:
        """Count one RNG use against every installed RngHealthFailure (§5, decision 16).

        Returns the tripping fault's ``clear_on_sleep`` when one fires now, else None.
        """
        tripped: RngHealthFailure | None = None
        for installed in tuple(self._faults):
            fault = installed.fault
            if not isinstance(fault, RngHealthFailure):
                continue
            if installed.calls_left == 0:
                self._retire(installed)
                tripped = tripped or fault
            else:
                installed.calls_left -= 1
        return None if tripped is None else tripped.clear_on_sleep

    def _noise(self, opcode: int) -> bytes:
        """32 bytes from the noise source: scripted output, a stuck RNG, or the DRBG."""
        if self._scripted:
            return self._scripted.popleft()
        stuck = self._take(StuckOutput, opcode)
        if isinstance(stuck, StuckOutput):
            return stuck.output()
        if self._seed_material is None:
            return os.urandom(32)
        self._seed_counter += 1
        counter = self._seed_counter.to_bytes(8, "little")
        return hashlib.sha256(self._seed_material + counter).digest()


def _revision_bytes(revision: str | bytes) -> bytes:
    if isinstance(revision, bytes):
        if len(revision) != 4:
            raise ValueError(f"revision must be 4 bytes, got {len(revision)}")
        return revision
    try:
        return REVISIONS[revision.upper()]
    except KeyError:
        raise ValueError(
            f"unknown revision {revision!r}; choose one of {', '.join(REVISIONS)} or 4 raw bytes"
        ) from None

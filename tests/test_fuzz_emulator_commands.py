"""Fuzzing the emulator's command parser over the bus (spec/atecc608a.md §1.2-§1.8, §2, §3, §18).

Everything goes through :class:`sim.i2c_bus.VirtualI2CBus` as a Linux host would send it: word
address 0x03 command groups (whole, split over several writes, with extra bytes, damaged), 0x01
sleep, 0x02 idle, 0x00 reset, reserved word addresses, reads of any length, repeated-start
transfers, writes while asleep or idle, and time passing on the injected virtual clock.

Contract pinned here:

* the only exception a transfer raises is the bus's NACK: ``OSError`` with the adapter's errno
  (EREMOTEIO, decision 31), never anything else;
* whatever the chip answers is a well-formed group: count = its length, CRC-16 of §2.3 checked
  with the *driver's* independent CRC (``lokey.hardware.crc``, pinned to ``vectors/crc16.json``),
  a status from §3's table or a 4/32/64-byte data payload; bytes past it read as 0xFF (§1.5);
* garbage never writes: a command the chip rejects (bad count or CRC, a count below 7, an unknown
  opcode, a wrong data length, any non-zero status) leaves the config, OTP and data zones, the
  counters and the volatile state (TempKey, SHA context, latch) exactly as they were;
* afterwards the chip still answers a valid Info(revision) exactly as the vector says.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from smbus2 import i2c_msg

from lokey.hardware.crc import crc16_bytes
from sim.atecc608a import LockState, Opcode, Status
from tests.atecc_helpers import (
    T_WHI_S,
    Rig,
    command,
    make_rig,
    packet,
    packets,
    response,
    status,
    wake_group,
)

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

INFO = command("Info revision")
INFO_REPLY = response("Info revision ATECC608B")  # the factory image's revision (§6, §12)
SPEC_STATUSES = frozenset(entry["status"] for entry in packets()["status_packets"])
DATA_COUNTS = frozenset({3 + 4, 3 + 32, 3 + 64})  # §2.2: 4, 32 or 64 data bytes
IMPLEMENTED = (0x02, 0x12, 0x16, 0x17, 0x1B, 0x20, 0x24, 0x30, 0x40, 0x41, 0x43, 0x45, 0x47, 0x77)
LOCKS = st.sampled_from(list(LockState))

# --- the bus contract -----------------------------------------------------------------------------


def transfer(rig: Rig, *msgs: i2c_msg) -> bool:
    """One ``i2c_rdwr``; False on a NACK. Any other exception propagates and fails the test."""
    try:
        rig.bus.i2c_rdwr(*msgs)
    except OSError as exc:
        nack = exc
    else:
        return True
    assert nack.errno == errno.EREMOTEIO == rig.bus.nack_errno, f"not a NACK: {nack!r}"
    assert type(nack) is OSError, f"not the bus's OSError: {nack!r}"
    return False


def write(rig: Rig, data: bytes) -> bool:
    return transfer(rig, i2c_msg.write(rig.address, data))


def read(rig: Rig, length: int) -> bytes | None:
    msg = i2c_msg.read(rig.address, length)
    return bytes(msg) if transfer(rig, msg) else None


def well_formed(group: bytes) -> bool:
    """Count = length, CRC valid (driver's CRC), a §3 status or a 4/32/64-byte payload."""
    if len(group) < 4 or group[0] != len(group) or crc16_bytes(group[:-2]) != group[-2:]:
        return False
    return group[1] in SPEC_STATUSES if group[0] == 4 else group[0] in DATA_COUNTS


def check_read(data: bytes) -> bytes:
    """A read from the start of the buffer: a well-formed group, then only 0xFF (§1.5)."""
    count = data[0]
    assert well_formed(data[:count]), f"malformed answer {data.hex()}"
    assert data[count:] == b"\xff" * (len(data) - count), f"bytes after the group: {data.hex()}"
    return data[:count]


def persistent(rig: Rig) -> tuple[Any, ...]:
    """The EEPROM: what no rejected command may change (§1.8 'kept' row)."""
    control = rig.chip.control
    state = control.state()
    return control.config, control.otp, control.data, state.counters


def volatile(rig: Rig) -> tuple[Any, ...]:
    """SRAM state a rejected command must not touch either."""
    state = rig.chip.control.state()
    return state.tempkey_valid, state.sha_in_progress, state.latch, state.failure


def answer(rig: Rig, length: int = 100) -> bytes:
    """The response to the command just sent (instant timing: ready at once)."""
    data = read(rig, length)
    assert data is not None, "the chip NACKed the read of a response"
    return check_read(data)


def info_round_trip(rig: Rig) -> None:
    """From any state: let busy end, idle, wake, discard partial input, Info, check exactly."""
    for _ in range(2):
        rig.clock.advance(0.3)  # past any busy window (SelfTest's 250 ms maximum, §4)
        write(rig, b"\x02")  # idle an awake chip; a sleeping one wakes on its address (dec. 3)
        rig.wake_pulse()
        rig.clock.advance(T_WHI_S)
        assert write(rig, b"\x00"), "an awake chip NACKed the reset word address"
        assert write(rig, b"\x03" + INFO), "an awake chip NACKed Info"
        for _ in range(40):  # polling on the virtual clock (typical Info: 0.5 ms)
            data = read(rig, 7)
            if data is not None:
                break
            rig.clock.advance(0.25e-3)
        assert data is not None, "no answer to Info"
        group = check_read(data)
        if group == status(Status.WATCHDOG_ABOUT_TO_EXPIRE):
            continue  # §1.7: idle and wake restart the watchdog; try once more
        assert group == INFO_REPLY, f"Info answered {data.hex()}"
        write(rig, b"\x02")
        return
    raise AssertionError("Info never answered")


def fresh(lock: LockState, timing: str = "instant") -> Rig:
    rig = make_rig(timing=timing, lock=lock)
    assert rig.wake() == wake_group()
    return rig


# --- garbage with an exact answer (§1.6, §3, decisions 6, 7, 12, 32) ----------------------------


def _with_crc(body: bytes) -> bytes:
    return body + crc16_bytes(body)


def _flip(group: bytes, index: int, bit: int) -> bytes:
    """One bit flipped anywhere after the count byte: the CRC no longer matches."""
    damaged = bytearray(group)
    damaged[1 + index % (len(group) - 1)] ^= 1 << bit
    return bytes(damaged)


opcodes = st.integers(0, 255)
params = st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF))
well_formed_packets = st.builds(
    lambda op, p, data: packet(op, p[0], p[1], data),
    st.one_of(st.sampled_from(IMPLEMENTED), opcodes),
    params,
    st.binary(max_size=70),
)
bad_count = st.builds(  # decision 6: count outside 4..155 -> 04 FF 01 42, whatever follows
    lambda count, rest: bytes((count,)) + rest,
    st.one_of(st.integers(0, 3), st.integers(156, 255)),
    st.binary(max_size=170),
)
bad_crc = st.builds(_flip, well_formed_packets, st.integers(0, 200), st.integers(0, 7))
short_count = st.builds(  # count 4..6 with a valid CRC: a group too short for a command
    lambda body: _with_crc(bytes((len(body) + 2,)) + body[1:]),
    st.binary(min_size=2, max_size=4),
)
unknown_opcode = st.builds(
    lambda op, p, data: packet(op, p[0], p[1], data),
    opcodes.filter(lambda op: op not in IMPLEMENTED),
    params,
    st.binary(max_size=70),
)

GARBAGE_EXPECTED = {
    "bad_count": status(Status.COMM_ERROR),
    "bad_crc": status(Status.COMM_ERROR),
    "short_count": status(Status.PARSE_ERROR),
    "unknown_opcode": status(Status.PARSE_ERROR),
}
garbage = st.one_of(
    st.tuples(st.just("bad_count"), bad_count),
    st.tuples(st.just("bad_crc"), bad_crc),
    st.tuples(st.just("short_count"), short_count),
    st.tuples(st.just("unknown_opcode"), unknown_opcode),
)


@settings(FUZZ, max_examples=300)
@given(case=garbage, lock=LOCKS, split=st.integers(0, 200))
@example(case=("bad_count", b"\x00"), lock=LockState.UNLOCKED, split=0)
@example(case=("bad_count", b"\xff" * 40), lock=LockState.UNLOCKED, split=0)  # floating SDA
@example(case=("short_count", _with_crc(b"\x04\x30")), lock=LockState.UNLOCKED, split=0)
@example(case=("unknown_opcode", packet(0x01)), lock=LockState.LOCKED, split=0)  # Pause
@example(case=("unknown_opcode", packet(0x46, 0x00)), lock=LockState.LOCKED, split=3)  # PrivWrite
def test_garbage_gets_its_exact_status_and_changes_nothing(
    case: tuple[str, bytes], lock: LockState, split: int
) -> None:
    kind, group = case
    rig = fresh(lock)
    before, sram = persistent(rig), volatile(rig)
    executed = rig.chip.control.state().commands_executed
    # Whole, or split over two 0x03 writes (§1.6: the input is a FIFO), as two transfers.
    cut = 1 + split % len(group) if 4 <= group[0] <= 155 else len(group)
    assert write(rig, b"\x03" + group[:cut])
    if cut < len(group):
        assert read(rig, 4) is None  # §1.4: a partial command: no data available
        assert write(rig, b"\x03" + group[cut:])
    assert answer(rig) == GARBAGE_EXPECTED[kind]
    assert persistent(rig) == before
    assert volatile(rig) == sram
    if kind != "unknown_opcode":
        assert rig.chip.control.state().commands_executed == executed  # never reached the engine
    info_round_trip(rig)


@settings(FUZZ, max_examples=150)
@given(
    group=st.one_of(well_formed_packets, bad_count, bad_crc),
    cut=st.integers(1, 154),
    lock=LOCKS,
)
def test_a_partial_command_waits_and_a_reset_discards_it(
    group: bytes, cut: int, lock: LockState
) -> None:
    """§1.4 / §1.6: fewer bytes than the count: reads NACK; word address 0x00 drops the input."""
    if not 4 <= group[0] <= 155 or cut >= min(group[0], len(group)):
        group, cut = INFO, min(cut, len(INFO) - 1)
    rig = fresh(lock)
    before, sram = persistent(rig), volatile(rig)
    assert write(rig, b"\x03" + group[:cut])
    assert rig.chip.control.state().pending_input == group[:cut]
    assert read(rig, 7) is None
    assert write(rig, b"\x00")
    assert rig.chip.control.state().pending_input == b""
    assert answer(rig) == wake_group()  # nothing ran: the buffer still holds the wake group
    assert persistent(rig) == before
    assert volatile(rig) == sram
    info_round_trip(rig)


@settings(FUZZ, max_examples=100)
@given(tail=st.binary(min_size=1, max_size=60), lock=LOCKS)
def test_bytes_past_the_count_are_ignored(tail: bytes, lock: LockState) -> None:
    rig = fresh(lock)
    assert write(rig, b"\x03" + INFO + tail)
    assert answer(rig) == INFO_REPLY


# --- a wrong data length for every implemented opcode (decision 7: 04 03 83 42) -------------------

# opcode -> (param1, param2, the data lengths §4-§10 allow) for parameter sets that are valid.
_NONE = frozenset({0})
VALID_PARAMS: dict[int, list[tuple[int, int, frozenset[int]]]] = {
    Opcode.INFO: [(0x00, 0, _NONE), (0x01, 3, _NONE), (0x02, 0, _NONE)]
    + [(0x04, p2, _NONE) for p2 in (0, 2, 3)],
    Opcode.RANDOM: [(0x00, 0, _NONE), (0x01, 0, _NONE)],
    Opcode.READ: [(0x00, 0x15, _NONE), (0x80, 1 << 3, _NONE), (0x01, 0, _NONE), (0x82, 0, _NONE)],
    Opcode.WRITE: [
        (0x00, 5, frozenset({4})),
        (0x80, 1 << 3, frozenset({32})),
        (0x40, 5, frozenset({36})),
        (0xC0, 3 << 3, frozenset({64})),
        (0x82, 0, frozenset({32})),
    ],
    Opcode.LOCK: [(0x80, 0, _NONE), (0x00, 0x4353, _NONE), (0x81, 0, _NONE), (0x0E, 0, _NONE)],
    Opcode.UPDATE_EXTRA: [(0x00, 0, _NONE), (0x01, 0x10, _NONE)],
    Opcode.COUNTER: [(0x00, 0, _NONE), (0x01, 1, _NONE)],
    Opcode.SHA: [
        (0x00, 0, _NONE),
        *((0x01, n, frozenset({n})) for n in (1, 20, 64)),
        *((mode, n, frozenset({n})) for mode in (0x02, 0x42, 0xC2) for n in (0, 3, 64)),
    ],
    Opcode.NONCE: [
        (0x00, 0, frozenset({20})),
        (0x01, 0x8000, frozenset({20})),
        (0x03, 0, frozenset({32})),
        (0x23, 0, frozenset({64})),
        (0x43, 0, frozenset({32})),
    ],
    Opcode.SELF_TEST: [(0x3B, 0, _NONE), (0x01, 0, _NONE), (0x00, 0, _NONE)],
    Opcode.GENKEY: [(0x04, 0, _NONE), (0x00, 1, _NONE)],
    Opcode.SIGN: [(0x80, 0, _NONE), (0xA0, 2, _NONE), (0x00, 0, _NONE)],
    Opcode.VERIFY: [(0x02, 4, frozenset({128})), (0x22, 4, frozenset({128}))],
    Opcode.ECDH: [(mode, 1, frozenset({64})) for mode in (0x00, 0x04, 0x08, 0x0C)],
}
wrong_lengths = st.sampled_from(
    [(op, p1, p2, allowed) for op, sets in VALID_PARAMS.items() for p1, p2, allowed in sets]
).flatmap(
    lambda entry: st.tuples(
        st.just(entry),
        st.one_of(st.integers(0, 70), st.integers(0, 148)).filter(lambda n: n not in entry[3]),
    )
)


def test_the_parameter_table_covers_every_implemented_opcode() -> None:
    assert set(VALID_PARAMS) == set(IMPLEMENTED)


@settings(FUZZ, max_examples=300)
@given(case=wrong_lengths, lock=LOCKS, fill=st.integers(0, 255), sha_started=st.booleans())
@example(case=((Opcode.WRITE, 0x00, 5, frozenset({4})), 5), lock=LockState.UNLOCKED, fill=0,
         sha_started=False)  # fmt: skip
@example(case=((Opcode.NONCE, 0x03, 0, frozenset({32})), 20), lock=LockState.LOCKED, fill=7,
         sha_started=True)  # fmt: skip
def test_a_wrong_data_length_is_a_parse_error_and_changes_nothing(
    case: tuple[tuple[int, int, int, frozenset[int]], int],
    lock: LockState,
    fill: int,
    sha_started: bool,
) -> None:
    (opcode, param1, param2, _allowed), length = case
    rig = fresh(lock)
    if sha_started:
        assert write(rig, b"\x03" + packet(Opcode.SHA, 0x00, 0))
        assert answer(rig) == status(Status.SUCCESS)
    before, sram = persistent(rig), volatile(rig)
    assert write(rig, b"\x03" + packet(opcode, param1, param2, bytes((fill,)) * length))
    assert answer(rig) == status(Status.PARSE_ERROR)
    assert persistent(rig) == before
    assert volatile(rig) == sram
    info_round_trip(rig)


# --- reads with no new response pending (§1.5) ----------------------------------------------------


@settings(FUZZ, max_examples=150)
@given(
    steps=st.lists(st.one_of(st.integers(0, 80), st.just("reset")), max_size=12),
    after_info=st.booleans(),
    lock=LOCKS,
)
def test_reads_without_a_pending_response_replay_the_group_then_ff(
    steps: list[int | str], after_info: bool, lock: LockState
) -> None:
    """The buffer is read as one stream: the group (wake or last response), then 0xFF for ever;
    word address 0x00 rewinds it. No read ever runs a command or changes anything."""
    rig = fresh(lock)  # the wake group has been read once
    group, position = wake_group(), len(wake_group())
    if after_info:
        assert write(rig, b"\x03" + INFO)  # a new command rewinds the buffer (§1.5)
        group, position = INFO_REPLY, 0
    before, log = persistent(rig), len(rig.chip.control.commands())
    for step in steps:
        if step == "reset":
            assert write(rig, b"\x00")
            position = 0
            continue
        assert isinstance(step, int)
        stream = group + b"\xff" * (position + step)
        assert read(rig, step) == stream[position : position + step]
        position += step
    assert persistent(rig) == before
    assert len(rig.chip.control.commands()) == log


# --- writes and reads while asleep or idle (§1.4, decision 3) -------------------------------------


@settings(FUZZ, max_examples=150)
@given(
    data=st.one_of(st.binary(max_size=40), st.builds(lambda g: b"\x03" + g, well_formed_packets)),
    idle=st.booleans(),
    lock=LOCKS,
    length=st.integers(0, 70),
)
def test_nothing_written_to_a_sleeping_or_idle_chip_executes(
    data: bytes, idle: bool, lock: LockState, length: int
) -> None:
    rig = fresh(lock)
    assert write(rig, b"\x02" if idle else b"\x01")
    before, log = persistent(rig), len(rig.chip.control.commands())
    assert read(rig, length) is None
    assert not write(rig, data)  # NACK: asleep or idle
    state = rig.chip.control.state()
    # Decision 3: our own address wakes a sleeping chip (it NACKed; now waking); idle stays idle.
    assert state.power == ("idle" if idle else "awake")
    assert state.pending_input == b""
    assert len(rig.chip.control.commands()) == log
    assert persistent(rig) == before
    if not idle:
        assert read(rig, 4) == wake_group()  # instant timing: ready at once, nothing ran
    info_round_trip(rig)


# --- the state machine: valid and garbage commands mixed with power and time ---------------------


def _defuse(group: bytes) -> bytes:
    """Keep the chip at 0x60: a Write of config word 4 (I2C_Address, ChipMode; §1.1) goes to
    word 5 instead. Everything else an unlocked chip accepts is fair game."""
    if len(group) == 11 and group[:5] == bytes((11, Opcode.WRITE, 0x00, 0x04, 0x00)):
        return packet(Opcode.WRITE, 0x00, 5, group[5:9])
    return group


VECTOR_COMMANDS = [bytes.fromhex(e["packet_hex"]) for e in packets()["commands"]]
machine_groups = st.one_of(
    st.sampled_from(VECTOR_COMMANDS),
    well_formed_packets,
    bad_count,
    bad_crc,
    short_count,
    st.binary(max_size=170),
    st.binary(max_size=160).map(_with_crc),
    st.builds(lambda g, n: g[:n], well_formed_packets, st.integers(0, 80)),  # truncated
    st.builds(lambda g, tail: g + tail, well_formed_packets, st.binary(max_size=20)),
).map(_defuse)
messages = st.one_of(
    st.builds(lambda g: ("w", b"\x03" + g), machine_groups),
    st.builds(lambda d: ("w", d), st.binary(max_size=12)),  # any word address, 0x04-0xFF too
    st.builds(lambda d: ("w", d), st.sampled_from([b"\x00", b"\x01", b"\x02", b""])),
    st.builds(lambda n: ("r", n), st.integers(0, 80)),
    st.just(("wake", 0)),
)


class CommandFuzz(RuleBasedStateMachine):
    """Valid and garbage transfers, wake/sleep/idle/reset and time, on one chip.

    The EEPROM (and SRAM) baseline moves only when the chip's own log shows a command that
    succeeded (status 0x00 or a data answer); any other transfer must leave it exactly as it was.
    """

    rig: Rig

    @initialize(lock=LOCKS, timing=st.sampled_from(["instant", "typical"]))
    def build(self, lock: LockState, timing: str) -> None:
        self.rig = make_rig(timing=timing, lock=lock)

    def _guarded(self, action: Any, *, may_sleep: bool = False) -> None:
        """Run ``action`` and hold the chip to the 'garbage never writes' rule.

        ``may_sleep``: the transfer holds a sleep word address, which loses SRAM (§1.8).
        """
        rig = self.rig
        rig.chip.control.state()  # apply the watchdog first: its sleep is not the command's doing
        eeprom, sram = persistent(rig), volatile(rig)
        log = len(rig.chip.control.commands())
        action()
        new = rig.chip.control.commands()[log:]
        for record in new:
            assert record.response_length in (4, *DATA_COUNTS), record
            assert record.status is None or record.status in SPEC_STATUSES, record
        if any(r.response_length and r.status in (None, Status.SUCCESS) for r in new):
            return  # a command that succeeded may change what it is for
        assert persistent(rig) == eeprom, f"EEPROM changed by a rejected command: {new}"
        if not may_sleep:
            assert volatile(rig) == sram, f"SRAM changed by a rejected command: {new}"

    def _prepare(self, how: str) -> None:
        """Reach a chip that listens (most sends), or leave it as it is (asleep, busy ...)."""
        rig = self.rig
        if how == "fresh":  # as a driver does: let busy end, idle, wake (restarts the watchdog)
            rig.clock.advance(0.3)
            write(rig, b"\x02")
        if how in ("fresh", "wake"):
            rig.wake_pulse()
            rig.clock.advance(T_WHI_S)

    @rule(
        group=machine_groups,
        split=st.integers(0, 200),
        read_after=st.booleans(),
        how=st.sampled_from(["fresh", "fresh", "wake", "as_is"]),
    )
    def send(self, group: bytes, split: int, read_after: bool, how: str) -> None:
        self._prepare(how)
        rig = self.rig
        cut = split % (len(group) + 1)
        first = i2c_msg.write(rig.address, b"\x03" + group[:cut])
        msgs = [first]
        if read_after:
            msgs.append(i2c_msg.read(rig.address, 7))  # decision 5: NACKed (runs at STOP)

        def act() -> None:
            transfer(rig, *msgs)
            if cut < len(group):
                write(rig, b"\x03" + group[cut:])

        self._guarded(act)

    @rule(
        msgs=st.lists(messages, min_size=1, max_size=4),
        how=st.sampled_from(["fresh", "wake", "as_is"]),
    )
    def raw_transfer(self, msgs: list[tuple[str, Any]], how: str) -> None:
        self._prepare(how)
        rig = self.rig
        built = []
        for kind, value in msgs:
            if kind == "w":
                built.append(i2c_msg.write(rig.address, value))
            elif kind == "r":
                built.append(i2c_msg.read(rig.address, value))
            else:
                built.append(i2c_msg.write(0x00, [0x00]))  # the wake pulse (§15)
        sleeps = any(kind == "w" and value[:1] == b"\x01" for kind, value in msgs)
        self._guarded(lambda: transfer(rig, *built), may_sleep=sleeps)

    @rule(length=st.integers(0, 80))
    def read(self, length: int) -> None:
        rig = self.rig
        state = rig.chip.control.state()
        data = read(rig, length)
        if data is None:
            return
        expected = state.output[state.read_pointer : state.read_pointer + length]
        assert data == expected + b"\xff" * (length - len(expected))  # §1.5
        if state.read_pointer == 0 and length >= len(state.output):
            assert check_read(data) == state.output

    @rule()
    def wake(self) -> None:
        self.rig.wake_pulse()

    @rule(word=st.sampled_from([0x00, 0x01, 0x02]))
    def control_word(self, word: int) -> None:
        rig = self.rig
        self._guarded(lambda: write(rig, bytes((word,))), may_sleep=word == 0x01)

    @rule(microseconds=st.integers(0, 3000))
    def small_step(self, microseconds: int) -> None:
        self.rig.clock.advance(microseconds / 1e6)

    @rule(milliseconds=st.integers(20, 1500))
    def large_step(self, milliseconds: int) -> None:
        self.rig.clock.advance(milliseconds / 1e3)

    @rule()
    def info_still_answers(self) -> None:
        info_round_trip(self.rig)

    @invariant()
    def the_buffer_holds_a_well_formed_group(self) -> None:
        state = self.rig.chip.control.state()
        if state.power in ("sleep", "idle"):
            assert state.output == b""
        else:
            assert well_formed(state.output), f"output buffer {state.output.hex()}"
            assert 0 <= state.read_pointer <= len(state.output)

    @invariant()
    def partial_input_is_a_prefix_of_a_plausible_group(self) -> None:
        pending = self.rig.chip.control.state().pending_input
        if pending:
            assert 4 <= pending[0] <= 155, pending.hex()
            assert len(pending) < pending[0], pending.hex()

    def teardown(self) -> None:
        if hasattr(self, "rig"):
            info_round_trip(self.rig)


CommandFuzz.TestCase.settings = settings(FUZZ, max_examples=200, stateful_step_count=50)
TestCommandFuzz = CommandFuzz.TestCase


@pytest.mark.parametrize("lock", list(LockState), ids=[s.value for s in LockState])
def test_info_round_trip_works_from_every_power_state(lock: LockState) -> None:
    """The helper the properties lean on, from asleep, idle, awake, busy and partial input."""
    rig = make_rig(timing="typical", lock=lock)
    info_round_trip(rig)  # asleep
    info_round_trip(rig)  # idle
    rig.wake()
    assert write(rig, b"\x03" + INFO[:3])  # partial input
    info_round_trip(rig)
    rig.wake()
    assert write(rig, b"\x03" + packet(Opcode.SELF_TEST, 0x3B))  # busy
    info_round_trip(rig)

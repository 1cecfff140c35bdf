"""Property-based tests: fuzzed command input, a power-state machine, and the counter encoding.

Settings stay modest (deadline off, 100-200 examples) so the file runs in a few seconds.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sim.atecc608a import Opcode, Status, crc16, crc16_wire
from sim.atecc608a.constants import COUNTER_MAX
from sim.atecc608a.memory import decode_counter, encode_counter
from tests.atecc_helpers import (
    POLL_STEP_S,
    T_WHI_S,
    Rig,
    command,
    factory,
    frame,
    make_rig,
    packet,
    packets,
    response,
    status,
    wake_group,
)

STATUS_GROUPS = frozenset(bytes.fromhex(s["packet_hex"]) for s in packets()["status_packets"])
DATA_COUNTS = frozenset({0x07, 0x23, 0x43})  # §2.2: 4, 32 or 64 data bytes
READ_LIMIT = 180

# --- fuzzed command input (§1.6, §2, §3) --------------------------------------------------------


def _with_crc(body: bytes) -> bytes:
    return body + crc16_wire(body)


def _well_formed(opcode: int, param1: int, param2: int, data: bytes) -> bytes:
    return packet(opcode, param1, param2, data)


_OPCODES = st.one_of(st.sampled_from([int(op) for op in Opcode]), st.integers(0, 255))
COMMAND_BYTES = st.one_of(
    st.binary(max_size=170),  # anything at all
    st.binary(max_size=160).map(_with_crc),  # a CRC-valid tail, so the parser is reached
    st.builds(  # a well-formed group: count, CRC and a (mostly) real opcode
        _well_formed,
        _OPCODES,
        st.integers(0, 255),
        st.one_of(st.integers(0, 0x20), st.integers(0, 0xFFFF)),
        st.binary(max_size=70),
    ),
)


def _expected(data: bytes) -> bytes | str:
    """What §1.6 / §3 / decisions 6-7 say the chip answers: exact bytes, "nack" or "any"."""
    if not data:
        return wake_group()  # no command arrived: the buffer still holds the wake group
    count = data[0]
    if not 4 <= count <= 155:
        return status(Status.COMM_ERROR)
    if len(data) < count:
        return "nack"  # a partial group waits for more bytes
    group = data[:count]
    if crc16(group[:-2]) != group[-2] | group[-1] << 8:
        return status(Status.COMM_ERROR)
    if count < 7:
        return status(Status.PARSE_ERROR)
    return "any"


def _read_answer(rig: Rig) -> bytes | None:
    for _ in range(int(0.3 / POLL_STEP_S)):  # the longest typical busy time is 30 ms (SelfTest)
        data = rig.try_read(READ_LIMIT)
        if data is not None:
            return data
        rig.clock.advance(POLL_STEP_S)
    return None


@settings(max_examples=200, deadline=None)
@given(COMMAND_BYTES)
def test_any_command_bytes_give_one_defined_group_or_a_nack(data: bytes) -> None:
    rig = make_rig()
    rig.wake()
    assert rig.write(b"\x03" + data)  # never raises: only EREMOTEIO would be a NACK here
    answer = _read_answer(rig)
    expected = _expected(data)
    if expected == "nack":
        assert answer is None
        return
    assert answer is not None
    count = answer[0]
    group, tail = answer[:count], answer[count:]
    assert tail == b"\xff" * len(tail)
    if isinstance(expected, bytes):
        assert group == expected
    elif count == 4:
        assert group in STATUS_GROUPS
    else:
        assert count in DATA_COUNTS
        assert group == frame(group[1:-2])


@settings(max_examples=100, deadline=None)
@given(word=st.integers(0x04, 0xFF), payload=st.binary(max_size=40), split=st.integers(0, 7))
def test_word_addresses_above_command_never_change_anything(
    word: int, payload: bytes, split: int
) -> None:
    # Decision 1, for any reserved word address and any bytes after it.
    rig = make_rig()
    rig.wake()
    rig.send(command("Info revision"))
    head = rig.poll(split)
    before = rig.chip.control.state()
    assert rig.write(bytes((word,)) + payload)
    after = rig.chip.control.state()
    assert after == before
    assert head + rig.read(7 - split) == response("Info revision ATECC608B")


# --- the power-state machine (§1.3-§1.8, decisions 3, 4, 8) ---------------------------------------

INFO = command("Info revision")
INFO_REPLY = response("Info revision ATECC608B")
EE_REPLY = status(Status.WATCHDOG_ABOUT_TO_EXPIRE)


class PowerStates(RuleBasedStateMachine):
    """A model of what the host should see, checked against the chip after every step.

    The model's arithmetic mirrors the chip's (the same float expressions on the same clock), so
    boundaries land on the same side; the numbers themselves are pinned to the spec elsewhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rig = make_rig()
        timing = self.rig.chip.settings.timing
        self.wake_delay = timing.wake_delay_s
        self.watchdog = timing.watchdog_s
        self.info_busy = timing.busy_s(Opcode.INFO)
        self.info_max = timing.exec_max_s(Opcode.INFO)
        self.parse_busy = timing.parse_s
        self.power = "asleep"  # asleep | idle | awake (waking and busy are times within awake)
        self.wake_at = 0.0
        self.ready_at = 0.0
        self.busy_until = 0.0
        self.output = b""
        self.pointer = 0

    # --- the model ----------------------------------------------------------------------------
    def _now(self) -> float:
        return self.rig.clock.monotonic()

    def _settle(self) -> None:
        """The watchdog (§1.7): awake for its period, then asleep, whatever was going on."""
        if self.power == "awake" and self._now() >= self.wake_at + self.watchdog:
            self._enter("asleep")

    def _enter(self, power: str) -> None:
        self.power = power
        self.output = b""
        self.pointer = 0

    def _wake(self) -> None:
        if self.power == "awake":
            return  # a wake pulse to an awake or waking chip changes nothing
        now = self._now()
        self.power = "awake"
        self.wake_at = now
        self.ready_at = now + self.wake_delay
        self.busy_until = 0.0
        self.output = wake_group()
        self.pointer = 0

    def _ready(self) -> bool:
        now = self._now()
        return self.power == "awake" and now >= self.ready_at and now >= self.busy_until

    def _expected_power(self) -> str:
        if self.power == "asleep":
            return "sleep"
        if self.power == "idle":
            return "idle"
        now = self._now()
        if now < self.ready_at:
            return "waking"
        return "busy" if now < self.busy_until else "awake"

    def _write(self, data: bytes) -> bool:
        self._settle()
        ready = self._ready()
        acked = self.rig.write(data)
        assert acked == ready, f"write {data[:1].hex()} acked={acked}, model ready={ready}"
        if self.power == "asleep":
            self._wake()  # decision 3: a write to our address wakes a sleeping (not idle) chip
        return acked

    # --- rules --------------------------------------------------------------------------------
    @rule()
    def wake_pulse(self) -> None:
        self.rig.wake_pulse()
        self._settle()
        self._wake()

    @rule()
    def idle(self) -> None:
        if self._write(b"\x02"):
            self._enter("idle")

    @rule()
    def sleep(self) -> None:
        if self._write(b"\x01"):
            self._enter("asleep")

    @rule()
    def reset_pointer(self) -> None:
        if self._write(b"\x00"):
            self.pointer = 0

    @rule()
    def send_info(self) -> None:
        if self._write(b"\x03" + INFO):
            now = self._now()
            if now - self.wake_at + self.info_max > self.watchdog:  # decision 8
                self.output, self.busy_until = EE_REPLY, now + self.parse_busy
            else:
                self.output, self.busy_until = INFO_REPLY, now + self.info_busy
            self.pointer = 0

    @rule(length=st.integers(0, 12))
    def read(self, length: int) -> None:
        self._settle()
        ready = self._ready()
        data = self.rig.try_read(length)
        assert (data is not None) == ready, f"read acked={data is not None}, model ready={ready}"
        if data is None:
            return
        expected = self.output[self.pointer : self.pointer + length]
        assert data == expected + b"\xff" * (length - len(expected))
        if self.pointer == 0 and length >= len(self.output):
            assert data[: data[0]] == frame(data[1 : data[0] - 2])  # a whole group CRC-checks
        self.pointer += len(expected)

    @rule(microseconds=st.integers(0, 3000))
    def small_step(self, microseconds: int) -> None:
        self.rig.clock.advance(microseconds / 1e6)

    @rule(milliseconds=st.integers(50, 2000))
    def large_step(self, milliseconds: int) -> None:
        self.rig.clock.advance(milliseconds / 1e3)

    @rule(microseconds=st.integers(-6000, 500))
    def step_to_the_watchdog(self, microseconds: int) -> None:
        """Land near the watchdog's end: inside the last command's budget, or just past it."""
        target = self.wake_at + self.watchdog + microseconds / 1e6
        if target > self._now():
            self.rig.clock.advance(target - self._now())

    # --- invariants ---------------------------------------------------------------------------
    @invariant()
    def chip_is_in_the_modelled_power_state(self) -> None:
        self._settle()
        assert self.rig.chip.control.state().power == self._expected_power()

    @invariant()
    def reads_are_acknowledged_exactly_when_the_model_is_ready(self) -> None:
        self._settle()
        assert self.rig.ready() == self._ready()

    @invariant()
    def the_watchdog_never_lets_the_chip_stay_awake_longer_than_its_period(self) -> None:
        self._settle()
        state = self.rig.chip.control.state()
        if state.power in ("waking", "busy", "awake"):
            assert state.watchdog_remaining_s is not None
            assert 0 < state.watchdog_remaining_s <= self.watchdog + 1e-9  # float rounding
            assert self._now() - self.wake_at < self.watchdog


PowerStates.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestPowerStates = PowerStates.TestCase


def test_the_state_machine_model_starts_where_the_spec_says() -> None:
    machine = PowerStates()
    assert (machine.wake_delay, machine.watchdog) == (800e-6, 1.3)  # decision 4, §1.7
    assert machine.wake_delay < T_WHI_S


# --- the counter encoding (§8, decision 28) -----------------------------------------------------


def _spec_encoding(value: int) -> bytes:
    """§8 written out: lin_a, lin_b, bin_a, bin_b as big-endian 16-bit words."""
    lin_a = 0xFFFF >> (value % 32)
    lin_b = 0xFFFF if value < 16 else 0xFFFF >> ((value - 16) % 32)
    bin_a = value // 32
    bin_b = 0 if value < 16 else (value - 16) // 32
    return b"".join(word.to_bytes(2, "big") for word in (lin_a, lin_b, bin_a, bin_b))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(0, 100), st.integers(0, COUNTER_MAX)))
def test_counter_encoding_follows_section_8_and_decodes_back(value: int) -> None:
    assert encode_counter(value) == _spec_encoding(value)
    assert decode_counter(encode_counter(value)) == value


def test_counter_value_0_is_the_factory_encoding() -> None:
    decoded = factory()["decoded"]
    assert encode_counter(0) == bytes.fromhex(decoded["counter0_hex"])
    assert decode_counter(bytes.fromhex(decoded["counter1_hex"])) == 0


@pytest.mark.parametrize("bad", [-1, 2_097_152])
def test_counter_values_outside_0_to_2097151_cannot_be_encoded(bad: int) -> None:
    assert COUNTER_MAX == 2_097_151  # §8
    with pytest.raises(ValueError, match="counter value"):
        encode_counter(bad)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_non_canonical_counter_fields_decode_to_a_value_or_zero(field: bytes) -> None:
    value = decode_counter(field)
    assert value == 0 or encode_counter(value) == field

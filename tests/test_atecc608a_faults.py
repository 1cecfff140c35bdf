"""Chip faults (spec §14, decisions 2, 10, 16) and the typed control surface ``chip.control``."""

from __future__ import annotations

from typing import Any

import pytest

from sim.atecc608a import (
    ATECC608A,
    BrownOut,
    CorruptResponseCrc,
    ExtraBusy,
    ForcedStatus,
    LockState,
    LostCommand,
    RngHealthFailure,
    SelfTestFailure,
    Status,
    StuckOutput,
    WakeIgnored,
    WrongCount,
    crc16_wire,
)
from sim.atecc608a.memory import encode_counter
from tests.atecc_helpers import (
    T_WHI_S,
    Op,
    Rig,
    command,
    factory_image,
    frame,
    make_rig,
    packet,
    packets,
    response,
    status,
    wake_group,
    with_bad_crc,
)

OK = Status.SUCCESS
SELFTEST = Status.SELFTEST_ERROR
HEALTH = Status.HEALTH_TEST_ERROR
PATTERN = "Random while config unlocked"
WORD_0x15 = "Read config word 0x15"
INFO_608B = "Info revision ATECC608B"
NUMIN = bytes(20)
FAILURE_WAKE = bytes.fromhex(packets()["selftest_failure_wake_response_hex"])


def _is_random_group(reply: bytes) -> bool:
    return len(reply) == 35 and reply == frame(reply[1:-2])


# --- ForcedStatus -------------------------------------------------------------------------------


def test_forced_status_answers_instead_of_executing(rig: Rig) -> None:
    rig.chip.control.inject(ForcedStatus(status=Status.EXECUTION_ERROR, opcode=Op.LOCK))
    assert rig.run(command("Info revision")) == response(INFO_608B)  # other opcodes untouched
    assert rig.run(command("Lock config, no summary")) == status(Status.EXECUTION_ERROR)
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")
    assert rig.run(command("Lock config, no summary")) == status(OK)  # count=1: used up


def test_forced_status_with_a_count_affects_that_many_commands(rig: Rig) -> None:
    handle = rig.chip.control.inject(ForcedStatus(status=Status.ECC_FAULT, count=2))
    assert rig.run(command("Random")) == status(Status.ECC_FAULT)
    assert handle.active
    assert rig.run(command("Info revision")) == status(Status.ECC_FAULT)
    assert (handle.fired, handle.active) == (2, False)
    assert rig.run(command("Random")) == response(PATTERN)
    assert rig.chip.control.faults == ()


@pytest.mark.parametrize("code", [Status.SUCCESS, Status.AFTER_WAKE, 0x42])
def test_forced_status_refuses_statuses_a_chip_cannot_answer_on_its_own(code: int) -> None:
    with pytest.raises(ValueError, match="cannot be forced"):
        ForcedStatus(status=code)


def test_fault_count_and_opcode_are_validated() -> None:
    with pytest.raises(ValueError, match="count"):
        ForcedStatus(count=0)
    with pytest.raises(ValueError, match="opcode"):
        ForcedStatus(opcode=0x100)


# --- response corruption ------------------------------------------------------------------------


def test_corrupt_response_crc_fails_the_crc_and_a_re_read_returns_the_same_bytes(rig: Rig) -> None:
    rig.chip.control.inject(CorruptResponseCrc())
    rig.wake()
    rig.send(command("Info revision"))
    reply = rig.poll(7)
    good = response(INFO_608B)
    assert reply[:-2] == good[:-2]
    assert crc16_wire(reply[:-2]) != reply[-2:]
    rig.reset_pointer()
    assert rig.read(7) == reply
    rig.send(command("Info revision"))
    assert rig.poll(7) == good  # count=1: only one response was corrupted


def test_opcode_restricted_fault_does_not_fire_on_a_group_that_failed_its_crc(rig: Rig) -> None:
    rig.chip.control.inject(CorruptResponseCrc(opcode=Op.INFO))
    assert rig.run(with_bad_crc(command("Random"))) == status(Status.COMM_ERROR)
    assert rig.run(command("Random")) == response(PATTERN)
    reply = rig.run(command("Info revision"))
    assert reply != response(INFO_608B)
    assert reply[:-2] == response(INFO_608B)[:-2]


def test_wrong_count_is_off_by_one_with_a_consistent_crc(rig: Rig) -> None:
    rig.chip.control.inject(WrongCount(count=2))
    good = response(INFO_608B)
    reply = rig.run(command("Info revision"), read_len=7)
    assert reply[0] == good[0] + 1
    assert reply[1:5] == good[1:5]
    assert crc16_wire(reply[:5]) == reply[5:]
    bad_status = rig.run(command("Lock data+OTP"), read_len=4)
    assert bad_status[:2] == bytes((5, Status.EXECUTION_ERROR))
    assert crc16_wire(bad_status[:2]) == bad_status[2:]


def test_wrong_count_with_a_value_uses_that_count(rig: Rig) -> None:
    rig.chip.control.inject(WrongCount(value=0x04))
    reply = rig.run(command("Random"), read_len=35)
    assert reply[0] == 0x04
    assert reply[1:33] == response(PATTERN)[1:33]
    assert crc16_wire(bytes((0x04,)) + reply[1:33]) == reply[33:35]


# --- the noise source ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", [b"\xff", b"\x00", b"\xab\xcd\xef"])
def test_stuck_output_repeats_its_block_with_a_valid_crc(locked_rig: Rig, block: bytes) -> None:
    locked_rig.chip.control.inject(StuckOutput(block=block))
    expected = frame((block * 32)[:32])
    assert locked_rig.run(command("Random")) == expected
    assert locked_rig.run(command("Random")) == expected
    assert locked_rig.run(packet(Op.NONCE, 0x00, 0, NUMIN)) == expected


def test_stuck_output_restricted_to_nonce_leaves_random_alone(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(StuckOutput(opcode=Op.NONCE))
    stuck = frame(b"\xff" * 32)
    assert locked_rig.run(command("Random")) != stuck
    assert locked_rig.run(packet(Op.NONCE, 0x00, 0, NUMIN)) == stuck


def test_stuck_output_block_size_is_validated() -> None:
    with pytest.raises(ValueError, match="block"):
        StuckOutput(block=b"")
    with pytest.raises(ValueError, match="block"):
        StuckOutput(block=bytes(33))


def test_script_random_feeds_the_next_rng_commands_of_a_locked_chip() -> None:
    first, second = bytes(range(32)), bytes(range(32, 64))
    rig = make_rig()
    rig.chip.control.script_random(first, second)
    assert rig.run(command("Random")) == response(PATTERN)  # unlocked: the pattern wins (§5)
    assert rig.run(command("Lock config, no summary")) == status(OK)
    assert rig.run(command("Random")) == frame(first)
    assert rig.run(packet(Op.NONCE, 0x00, 0, NUMIN)) == frame(second)
    assert _is_random_group(rig.run(command("Random")))


def test_script_random_needs_32_byte_blocks(rig: Rig) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        rig.chip.control.script_random(bytes(31))


def _random_stream(chip_seed: int | None, n: int = 3) -> list[bytes]:
    rig = make_rig(lock=LockState.LOCKED, seed=chip_seed)
    return [rig.run(command("Random")) for _ in range(n)]


def test_chips_with_the_same_seed_give_the_same_random_stream() -> None:
    stream = _random_stream(1234)
    assert stream == _random_stream(1234)
    assert len(set(stream)) == len(stream)
    assert all(_is_random_group(r) for r in stream)


def test_chips_with_different_seeds_give_different_streams() -> None:
    assert _random_stream(1) != _random_stream(2)
    assert set(_random_stream(1)).isdisjoint(_random_stream(2))


def test_unseeded_chips_give_different_streams() -> None:
    assert set(_random_stream(None)).isdisjoint(_random_stream(None))


def test_seeded_nonce_output_is_reproducible() -> None:
    def nonce(seed: int) -> bytes:
        return make_rig(lock=LockState.LOCKED, seed=seed).run(packet(Op.NONCE, 0, 0, NUMIN))

    assert nonce(7) == nonce(7) != nonce(8)


# --- RNG health failure (§5, decision 16) -------------------------------------------------------


def test_health_failure_after_n_calls_is_sticky(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(RngHealthFailure(after_calls=2))
    assert _is_random_group(locked_rig.run(command("Random")))
    assert _is_random_group(locked_rig.run(command("Random")))
    for _ in range(3):
        assert locked_rig.run(command("Random")) == status(HEALTH)
    assert locked_rig.run(packet(Op.NONCE, 0x00, 0, NUMIN)) == status(HEALTH)
    assert locked_rig.run(command("Nonce pass-through")) == status(OK)  # needs no RNG
    assert locked_rig.run(command("Info revision")) == response(INFO_608B)
    assert locked_rig.chip.control.state().health_failed


def test_health_failure_survives_idle_sleep_and_watchdog(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(RngHealthFailure())
    assert locked_rig.run(command("Random")) == status(HEALTH)
    locked_rig.wake()
    locked_rig.sleep()
    assert locked_rig.run(command("Random"), idle=False) == status(HEALTH)
    locked_rig.clock.advance(1.3)
    assert locked_rig.run(command("Random")) == status(HEALTH)


def test_health_failure_is_cleared_by_a_power_cycle(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(RngHealthFailure())
    assert locked_rig.run(command("Random")) == status(HEALTH)
    locked_rig.chip.control.power_cycle()
    assert not locked_rig.chip.control.state().health_failed
    assert _is_random_group(locked_rig.run(command("Random")))
    assert _is_random_group(locked_rig.run(command("Random")))


def test_health_failure_with_clear_on_sleep_is_cleared_by_sleep(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(RngHealthFailure(clear_on_sleep=True))
    assert locked_rig.run(command("Random")) == status(HEALTH)
    locked_rig.wake()
    locked_rig.idle()
    assert locked_rig.run(command("Random")) == status(HEALTH)  # idle is not sleep
    locked_rig.wake()
    locked_rig.sleep()
    assert _is_random_group(locked_rig.run(command("Random")))


def test_clearing_the_fault_does_not_clear_a_latched_health_failure(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(RngHealthFailure())
    assert locked_rig.run(command("Random")) == status(HEALTH)
    locked_rig.chip.control.clear_faults()
    assert locked_rig.run(command("Random")) == status(HEALTH)
    locked_rig.chip.control.power_cycle()
    assert _is_random_group(locked_rig.run(command("Random")))


def test_removing_a_health_fault_before_it_fires_prevents_it(locked_rig: Rig) -> None:
    handle = locked_rig.chip.control.inject(RngHealthFailure(after_calls=1))
    locked_rig.chip.control.remove(handle)
    for _ in range(3):
        assert _is_random_group(locked_rig.run(command("Random")))


# --- self-test Failure state (§10.2, §14, decisions 2 and 10) ------------------------------------


def test_failure_state_allows_only_config_read_and_self_test(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    for name in ("Random", "Info revision", "SHA start", "Nonce pass-through", "UpdateExtra"):
        assert rig.run(command(name)) == status(SELFTEST), name
    assert rig.run(packet(Op.READ, 0x01, 0)) == status(SELFTEST)  # OTP is not the config zone
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")
    assert rig.run(command("Read config block 0")) == frame(rig.chip.control.config[:32])
    assert rig.run(command("SelfTest read failure register")) == frame(b"\x01")


def test_failure_state_wake_group_is_the_crc_correct_selftest_group(rig: Rig) -> None:
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    reply = rig.wake()
    assert reply == FAILURE_WAKE == status(SELFTEST)
    assert reply != bytes.fromhex(packets()["non_crc_valid_library_constant_hex"])


def test_failure_state_is_kept_across_idle(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.inject(SelfTestFailure(tests=0x20))
    rig.idle()
    rig.clock.advance(5.0)
    assert rig.wake() == FAILURE_WAKE
    assert rig.run(command("Random")) == status(SELFTEST)
    assert rig.chip.control.state().failure == 0x20


def test_transient_failure_is_cleared_at_the_next_wake_from_sleep(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    assert rig.run(command("Random")) == status(SELFTEST)
    rig.wake()
    rig.sleep()
    assert rig.wake() == wake_group()
    assert rig.run(command("Random")) == response(PATTERN)


def test_transient_failure_injected_while_asleep_fails_the_next_wake_only(rig: Rig) -> None:
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    assert rig.wake() == FAILURE_WAKE
    assert rig.run(command("Random")) == status(SELFTEST)
    rig.wake()
    rig.sleep()
    assert rig.wake() == wake_group()


def test_transient_failure_is_cleared_at_the_wake_after_a_watchdog_expiry(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.inject(SelfTestFailure(tests=0x08))
    rig.clock.advance(1.3)
    assert rig.wake() == wake_group()


def test_persistent_failure_persists_across_sleep_until_the_fault_is_cleared(rig: Rig) -> None:
    rig.chip.control.inject(SelfTestFailure(tests=0x11, persistent=True))
    for _ in range(2):
        assert rig.wake() == FAILURE_WAKE
        rig.sleep()
    assert rig.run(command("SelfTest all")) == frame(b"\x11")  # the bitmap of failed tests
    assert rig.run(command("SelfTest read failure register")) == frame(b"\x11")
    rig.chip.control.clear_faults()
    assert rig.wake() == FAILURE_WAKE  # latched until the tests run again
    rig.sleep()
    assert rig.wake() == wake_group()
    assert rig.run(command("SelfTest all")) == status(OK)


def test_self_test_failure_bitmap_is_validated() -> None:
    with pytest.raises(ValueError, match="tests"):
        SelfTestFailure(tests=0)
    with pytest.raises(ValueError, match="tests"):
        SelfTestFailure(tests=0x40)


# --- power faults -------------------------------------------------------------------------------


def test_brown_out_gives_no_response_leaves_the_chip_asleep_and_loses_the_latch(rig: Rig) -> None:
    assert rig.run(packet(Op.INFO, 0x04, 0x0003)) == status(OK)
    rig.chip.control.inject(BrownOut(opcode=Op.LOCK))
    rig.wake()
    rig.send(command("Lock config, no summary"))
    rig.clock.advance(0.1)
    assert rig.try_read(4) is None
    assert rig.chip.control.state().power == "sleep"
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")  # no effect
    assert rig.run(command("Info latch read")) == frame(bytes(4))


def test_brown_out_clears_a_health_failure(locked_rig: Rig) -> None:
    locked_rig.chip.control.inject(RngHealthFailure())
    assert locked_rig.run(command("Random")) == status(HEALTH)
    locked_rig.chip.control.inject(BrownOut())
    locked_rig.wake()
    locked_rig.send(command("Info revision"))
    assert _is_random_group(locked_rig.run(command("Random")))


def test_lost_command_returns_the_wake_group_and_does_not_execute(rig: Rig) -> None:
    rig.chip.control.inject(LostCommand(opcode=Op.LOCK))
    assert rig.run(command("Lock config, no summary")) == wake_group()
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")
    assert rig.run(command("Lock config, no summary")) == status(OK)


def test_lost_command_loses_tempkey_and_restarts_the_watchdog(rig: Rig) -> None:
    # The chip reset and was woken again before the read: SRAM is gone, the watchdog is new.
    rig.wake()
    rig.send(command("Nonce pass-through"))
    assert rig.response() == status(OK)
    assert rig.chip.control.state().tempkey_valid
    rig.clock.advance(1.0)  # most of the 1.3 s watchdog spent
    rig.chip.control.inject(LostCommand(opcode=Op.INFO))
    rig.send(command("Info State"))
    assert rig.poll(4) == wake_group()
    state = rig.chip.control.state()
    assert not state.tempkey_valid
    assert state.watchdog_remaining_s is not None
    assert state.watchdog_remaining_s > 1.2


def test_always_wake_response(rig: Rig) -> None:
    # §14 "always wake response": with count=None every command comes back as 04 11 33 43.
    rig.chip.control.inject(LostCommand(count=None))
    for name in ("Info revision", "Random", "Lock config, no summary"):
        assert rig.run(command(name)) == wake_group()
    rig.chip.control.clear_faults()
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")


def test_extra_busy_extends_the_busy_window(rig: Rig) -> None:
    rig.chip.control.inject(ExtraBusy(seconds=0.05, opcode=Op.RANDOM))
    rig.wake()
    rig.send(command("Random"))
    rig.clock.advance(0.002 + 0.05 - 1e-5)  # typical Random is 2 ms (decision 13)
    assert rig.try_read(1) is None
    rig.clock.advance(2e-5)
    assert rig.read(35) == response(PATTERN)


def test_extra_busy_seconds_are_validated() -> None:
    with pytest.raises(ValueError, match="seconds"):
        ExtraBusy(seconds=-1.0)


def test_wake_ignored_leaves_the_chip_asleep_for_that_many_pulses(rig: Rig) -> None:
    rig.chip.control.inject(WakeIgnored(count=2))
    rig.wake_pulse()
    rig.clock.advance(T_WHI_S)
    assert rig.try_read(4) is None
    assert not rig.write(b"\x02")  # a kernel-style wake is ignored too
    rig.clock.advance(T_WHI_S)
    assert rig.try_read(4) is None
    assert rig.wake() == wake_group()


def test_wake_ignored_until_removed(rig: Rig) -> None:
    handle = rig.chip.control.inject(WakeIgnored())
    for _ in range(5):
        rig.wake_pulse()
        rig.clock.advance(T_WHI_S)
        assert rig.try_read(4) is None
    assert handle.fired == 5
    rig.chip.control.remove(handle)
    assert rig.wake() == wake_group()


# --- the control surface ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lock", "name"),
    [
        ("unlocked", "Read word 0x15, fresh chip"),
        ("config-locked", "Read word 0x15, config locked"),
        ("locked", "Read word 0x15, both locked"),
    ],
)
def test_lock_presets_set_the_lock_bytes(lock: str, name: str) -> None:
    rig = make_rig()
    rig.chip.control.set_lock_state(lock)
    state = rig.chip.control.state()
    assert (state.config_locked, state.data_locked) == (lock != "unlocked", lock == "locked")
    assert rig.run(command(WORD_0x15)) == response(name)


def test_lock_preset_loads_the_counters_from_the_config() -> None:
    from sim.atecc608a.memory import encode_counter

    rig = make_rig()
    rig.chip.control.write_config(60, encode_counter(77))
    rig.chip.control.set_lock_state(LockState.CONFIG_LOCKED)
    assert rig.chip.control.state().counters == (0, 77)
    assert rig.run(packet(Op.COUNTER, 0, 1)) == frame((77).to_bytes(4, "little"))


def test_unknown_lock_preset_is_refused(rig: Rig) -> None:
    with pytest.raises(ValueError, match="unknown lock state"):
        rig.chip.control.set_lock_state("half-locked")


@pytest.mark.parametrize(("offset", "length"), [(-1, 1), (127, 2), (0, 129)])
def test_write_config_refuses_bytes_outside_the_zone(rig: Rig, offset: int, length: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        rig.chip.control.write_config(offset, bytes(length))


@pytest.mark.parametrize("address", [0x00, 0x80, -1])
def test_set_i2c_address_refuses_addresses_outside_7_bits(rig: Rig, address: int) -> None:
    with pytest.raises(ValueError, match="7-bit"):
        rig.chip.control.set_i2c_address(address)


def test_inject_refuses_objects_that_are_not_chip_faults(rig: Rig) -> None:
    with pytest.raises(TypeError, match="fault"):
        rig.chip.control.inject("forced_status")  # type: ignore[arg-type]


def test_power_cycle_puts_the_chip_to_sleep(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.power_cycle()
    assert rig.chip.control.state().power == "sleep"
    assert rig.try_read(4) is None


def test_state_reports_each_power_state(rig: Rig) -> None:
    control = rig.chip.control
    assert control.state().power == "sleep"
    rig.wake_pulse()
    assert control.state().power == "waking"
    rig.clock.advance(T_WHI_S)
    assert control.state().power == "awake"
    rig.send(command("Random"))
    assert control.state().power == "busy"
    rig.clock.advance(0.01)
    assert control.state().power == "awake"
    rig.idle()
    assert control.state().power == "idle"


def test_state_reports_the_io_buffer(rig: Rig) -> None:
    rig.wake()
    partial = command("Random")[:3]
    rig.send(partial)
    state = rig.chip.control.state()
    assert state.pending_input == partial
    assert state.output == wake_group()
    assert state.read_pointer == 0  # §1.5: the first write after reads rewinds it


def test_command_log_records_what_came_in_and_the_shape_of_what_went_out(rig: Rig) -> None:
    rig.chip.control.inject(ForcedStatus(status=Status.ECC_FAULT, opcode=Op.INFO))
    rig.run(command("Random"))
    rig.run(command("Info revision"))
    rig.run(with_bad_crc(command("Random")))
    random_, info, bad = rig.chip.control.commands()
    assert (random_.opcode, random_.param1, random_.status, random_.response_length) == (
        Op.RANDOM,
        0,
        None,
        35,
    )
    assert (info.opcode, info.status, info.faults) == (
        Op.INFO,
        Status.ECC_FAULT,
        ("forced_status",),
    )
    assert (bad.opcode, bad.status, bad.response_length) == (None, Status.COMM_ERROR, 4)
    assert rig.chip.control.state().commands_executed == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"config": bytes(127)}, "128 bytes"),
        ({"serial": bytes(8)}, "9 bytes"),
        ({"revision": "508X"}, "unknown revision"),
        ({"revision": bytes(3)}, "4 bytes"),
        ({"timing": "fast"}, "unknown timing model"),
    ],
)
def test_constructor_options_are_validated(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ATECC608A(**options)  # type: ignore[arg-type]


# --- latching faults, seeds and images ------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        lambda: RngHealthFailure(count=1),
        lambda: RngHealthFailure(opcode=Op.NONCE),
        lambda: SelfTestFailure(count=2),
        lambda: SelfTestFailure(opcode=Op.RANDOM),
        lambda: WakeIgnored(opcode=Op.INFO),
    ],
)
def test_faults_that_are_not_per_command_refuse_count_or_opcode(fault: Any) -> None:
    with pytest.raises(ValueError, match="takes no"):
        fault()


def test_a_tripped_health_fault_is_spent_and_a_power_cycle_recovers(locked_rig: Rig) -> None:
    handle = locked_rig.chip.control.inject(RngHealthFailure(after_calls=1))
    assert _is_random_group(locked_rig.run(command("Random")))
    assert locked_rig.run(command("Random")) == status(HEALTH)
    assert (handle.fired, handle.active) == (1, False)
    assert locked_rig.chip.control.faults == ()
    locked_rig.chip.control.power_cycle()
    assert _is_random_group(locked_rig.run(command("Random")))


def test_two_health_faults_count_independently(locked_rig: Rig) -> None:
    control = locked_rig.chip.control
    control.inject(RngHealthFailure(after_calls=3))
    early = control.inject(RngHealthFailure(after_calls=1))
    control.remove(early)
    for _ in range(3):
        assert _is_random_group(locked_rig.run(command("Random")))
    assert locked_rig.run(command("Random")) == status(HEALTH)


def test_a_transient_self_test_failure_is_spent_once_latched(rig: Rig) -> None:
    rig.wake()
    handle = rig.chip.control.inject(SelfTestFailure(tests=0x01))
    assert (handle.fired, handle.active) == (1, False)
    assert rig.chip.control.faults == ()
    assert rig.chip.control.state().failure == 0x01


def test_extra_busy_is_kept_for_a_command_that_runs_its_full_time(rig: Rig) -> None:
    handle = rig.chip.control.inject(ExtraBusy(seconds=0.5, opcode=Op.RANDOM))
    rig.wake()
    rig.send(packet(Op.RANDOM, 0x05))  # parse error: answered after parsing only
    rig.clock.advance(0.001)
    assert rig.ready()
    assert rig.response() == status(Status.PARSE_ERROR)
    assert (handle.fired, handle.active) == (0, True)


@pytest.mark.parametrize("seed", [2**127, -(2**200), 0])
def test_any_integer_seed_gives_a_reproducible_stream(seed: int) -> None:
    streams = []
    for _ in range(2):
        rig = make_rig(seed=seed, lock=LockState.CONFIG_LOCKED)
        streams.append([rig.run(command("Random")) for _ in range(2)])
    assert streams[0] == streams[1]
    assert all(_is_random_group(reply) for reply in streams[0])


def test_a_seed_that_is_not_an_integer_is_refused() -> None:
    with pytest.raises(TypeError, match="seed"):
        ATECC608A(seed="7")  # type: ignore[arg-type]


def test_a_locked_config_image_stays_locked_and_starts_its_counters() -> None:
    image = bytearray(factory_image())
    image[86:88] = b"\x00\x00"  # §7.4: LockValue and LockConfig locked
    image[52:60] = encode_counter(5)  # §8: Counter0 starts at 5
    rig = make_rig(config=bytes(image))
    state = rig.chip.control.state()
    assert (state.config_locked, state.data_locked) == (True, True)
    assert rig.run(command("Counter read 0")) == frame((5).to_bytes(4, "little"))
    assert rig.chip.settings.config == bytes(image)


def test_a_lock_preset_at_construction_is_part_of_the_settings() -> None:
    chip = ATECC608A(lock=LockState.CONFIG_LOCKED)
    assert chip.settings.config[86:88] == bytes((0x55, 0x00))
    assert chip.control.config == chip.settings.config

"""Power states, wake, watchdog, busy time and the I/O buffer, as a host sees them on the bus.

Spec §1.2-§1.8 and §18 decisions 1, 3, 4, 5, 9, 13 and 33. Times are virtual; a margin of a few
microseconds either side of each specified instant keeps the tests about the spec, not about
floating-point rounding.
"""

from __future__ import annotations

import ctypes
import errno

import pytest
from smbus2 import i2c_msg

from sim.atecc608a import FACTORY_CONFIG, ExtraBusy, Status
from tests.atecc_helpers import (
    ADDRESS,
    T_WHI_S,
    Op,
    Rig,
    command,
    factory,
    make_rig,
    packet,
    response,
    status,
    wake_group,
)

EPS = 2e-6  # two microseconds
WATCHDOG_S = 1.3  # §1.7 typical
INFO_608B = "Info revision ATECC608B"
TEMPKEY_FROM_INPUT = bytes((0x10, 0x80, 0, 0))  # decision 18: SourceFlag, TempKey.Valid


def _info_state(rig: Rig) -> bytes:
    reply = rig.run(command("Info State"))
    assert reply[0] == 7
    return reply[1:5]


def _load_tempkey(rig: Rig) -> None:
    assert rig.run(command("Nonce pass-through")) == status(Status.SUCCESS)
    assert _info_state(rig) == TEMPKEY_FROM_INPUT


# --- asleep and waking (§1.3, §1.4, decisions 3 and 4) --------------------------------------------


def test_a_new_chip_is_asleep_and_nacks_reads(rig: Rig) -> None:
    assert rig.try_read(4) is None
    assert rig.chip.control.state().power == "sleep"


def test_wake_pulse_is_not_acknowledged_and_wakes_a_sleeping_chip(rig: Rig) -> None:
    with pytest.raises(OSError, match="wake pulse") as info:
        rig.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
    assert info.value.errno == errno.EREMOTEIO
    rig.clock.advance(T_WHI_S)
    assert rig.read(4) == wake_group()


def test_write_to_own_address_while_asleep_is_nacked_and_wakes_the_chip(rig: Rig) -> None:
    # Decision 3 (Linux kernel style wake): the write is not taken, but the chip wakes.
    assert not rig.write(b"\x03" + command("Info revision"))
    rig.clock.advance(T_WHI_S)
    assert rig.read(4) == wake_group()
    assert rig.chip.control.commands() == []


def test_write_to_own_address_while_idle_is_nacked_and_does_not_wake(rig: Rig) -> None:
    # Decision 3 limits the kernel-style wake to a sleeping chip: an idle chip keeps its SRAM.
    rig.wake()
    rig.send(command("Nonce pass-through"))
    assert rig.response() == status(Status.SUCCESS)
    rig.idle()
    assert not rig.write(b"\x02")
    rig.clock.advance(WATCHDOG_S + 0.1)
    state = rig.chip.control.state()
    assert state.power == "idle"
    assert state.tempkey_valid


def test_wake_pulse_wakes_an_idle_chip(rig: Rig) -> None:
    rig.wake()
    rig.idle()
    assert rig.try_read(4) is None
    assert rig.chip.control.state().power == "idle"
    assert rig.wake() == wake_group()


@pytest.mark.parametrize(
    ("timing", "ready_s"),
    [("typical", 800e-6), ("maximum", 1500e-6)],  # decision 4; design.md "Emulator timing"
)
def test_reads_and_writes_within_the_wake_delay_are_nacked(timing: str, ready_s: float) -> None:
    rig = make_rig(timing=timing)
    rig.wake_pulse()
    rig.clock.advance(ready_s - EPS)
    assert rig.try_read(4) is None
    assert not rig.write(b"\x00")
    assert rig.chip.control.state().power == "waking"
    rig.clock.advance(2 * EPS)
    assert rig.read(4) == wake_group()


def test_instant_model_is_ready_at_the_wake_pulse() -> None:
    rig = make_rig(timing="instant")
    rig.wake_pulse()
    assert rig.read(4) == wake_group()


def test_a_1_ms_wake_wait_is_enough_with_the_default_timing(rig: Rig) -> None:
    # Decision 4: Adafruit's driver sleeps 1 ms after its wake pulse and then sends idle.
    rig.wake_pulse()
    rig.clock.advance(1e-3)
    assert rig.write(b"\x02")


def test_wake_pulse_while_waking_does_not_restart_the_wake_delay(rig: Rig) -> None:
    rig.wake_pulse()
    rig.clock.advance(500e-6)
    rig.wake_pulse()
    rig.clock.advance(300e-6 + EPS)
    assert rig.read(4) == wake_group()


def test_wake_pulse_while_awake_changes_nothing(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Info revision"))
    first = rig.poll(3)
    rig.wake_pulse()
    rig.clock.advance(T_WHI_S)
    assert first + rig.read(4) == response(INFO_608B)


def test_wake_while_awake_does_not_restart_the_watchdog(rig: Rig) -> None:
    # §1.3 / §1.7: only idle or sleep followed by a wake restarts it.
    rig.wake_pulse()
    rig.clock.advance(1.0)
    rig.wake_pulse()
    rig.clock.advance(WATCHDOG_S - 1.0 - EPS)
    assert rig.ready()
    rig.clock.advance(2 * EPS)
    assert not rig.ready()
    assert rig.chip.control.state().power == "sleep"


# --- the watchdog (§1.7) --------------------------------------------------------------------------


def test_watchdog_puts_the_chip_to_sleep_1_3_s_after_wake_and_volatile_state_is_lost(
    rig: Rig,
) -> None:
    rig.wake()
    assert rig.run(command("Nonce pass-through"), idle=False) == status(Status.SUCCESS)
    remaining = rig.chip.control.state().watchdog_remaining_s
    assert remaining is not None
    rig.clock.advance(remaining - EPS)
    assert rig.ready()
    rig.clock.advance(2 * EPS)
    assert not rig.ready()
    assert not rig.write(b"\x00")  # NACKed: this write wakes it again (decision 3) ...
    rig.clock.advance(T_WHI_S)
    assert rig.read(4) == wake_group()  # ... to a fresh wake with no TempKey
    assert _info_state(rig) == bytes(4)


def test_watchdog_runs_from_the_wake_pulse(rig: Rig) -> None:
    rig.wake()
    state = rig.chip.control.state()
    assert state.watchdog_remaining_s == pytest.approx(WATCHDOG_S - T_WHI_S)


def test_watchdog_expiry_during_a_command_puts_the_chip_to_sleep(rig: Rig) -> None:
    # §1.7: "the device enters sleep regardless of I/O or a command in progress".
    rig.chip.control.inject(ExtraBusy(seconds=0.5, opcode=Op.INFO))
    rig.wake_pulse()
    rig.clock.advance(1.0)
    rig.send(command("Info revision"))
    rig.clock.advance(0.3)
    assert rig.chip.control.state().power == "sleep"
    rig.clock.advance(0.5)
    assert rig.wake() == wake_group()  # the response was lost with the I/O buffer


def test_chipmode_bit_2_selects_a_13_s_watchdog(rig: Rig) -> None:
    word4 = rig.config()[16:20]
    chip_mode = bytes((word4[3] | 0x04,))
    assert rig.run(packet(Op.WRITE, 0, 4, word4[:3] + chip_mode)) == status(Status.SUCCESS)
    rig.wake()
    rig.sleep()  # ChipMode is read at the next wake
    rig.wake_pulse()
    woke = rig.clock.monotonic()
    rig.clock.advance(5.0)
    # Long past 1.3 s, the chip is still awake and has budget for a command (decision 8).
    rig.send(command("Info revision"))
    assert rig.response() == response(INFO_608B)
    rig.clock.advance(woke + 13.0 - EPS - rig.clock.monotonic())
    assert rig.ready()
    rig.clock.advance(2 * EPS)
    assert not rig.ready()
    assert rig.chip.control.state().power == "sleep"


def test_idle_stops_the_watchdog(rig: Rig) -> None:
    rig.wake()
    _load_tempkey(rig)  # ends with idle
    rig.clock.advance(60.0)
    assert rig.chip.control.state().power == "idle"
    assert _info_state(rig) == TEMPKEY_FROM_INPUT  # no sleep happened while idle


# --- what idle and sleep keep (§1.8, decision 9) --------------------------------------------------


def test_idle_keeps_tempkey(rig: Rig) -> None:
    _load_tempkey(rig)
    rig.wake()
    rig.idle()
    assert _info_state(rig) == TEMPKEY_FROM_INPUT


def test_sleep_loses_tempkey(rig: Rig) -> None:
    _load_tempkey(rig)
    rig.wake()
    rig.sleep()
    assert _info_state(rig) == bytes(4)


def test_idle_keeps_rng_state_and_sleep_loses_it(rig: Rig) -> None:
    rig.run(command("Random"))
    assert _info_state(rig)[1] & 0x03 == 0x03  # EEPROM_RNG, SRAM_RNG (decision 18)
    rig.wake()
    rig.sleep()
    assert _info_state(rig)[1] & 0x03 == 0x00


def test_sha_context_is_kept_across_idle(rig: Rig) -> None:
    assert rig.run(command("SHA start")) == status(Status.SUCCESS)  # transact idles after it
    rig.clock.advance(10.0)
    assert rig.run(command("SHA end, message abc")) == response("SHA end(abc)")


def test_sha_context_is_lost_on_sleep(rig: Rig) -> None:
    assert rig.run(command("SHA start")) == status(Status.SUCCESS)
    rig.wake()
    rig.sleep()
    assert rig.run(command("SHA end, message abc")) == status(Status.EXECUTION_ERROR)


def test_sha_context_is_lost_on_watchdog_expiry(rig: Rig) -> None:
    assert rig.run(command("SHA start"), idle=False) == status(Status.SUCCESS)
    rig.clock.advance(WATCHDOG_S)
    assert rig.run(command("SHA end, message abc")) == status(Status.EXECUTION_ERROR)


@pytest.mark.parametrize("word", [b"\x02", b"\x01"], ids=["idle", "sleep"])
def test_idle_and_sleep_flush_the_io_buffer(rig: Rig, word: bytes) -> None:
    rig.wake()
    rig.send(command("Info revision"))
    rig.poll(0)
    assert rig.write(word)
    assert rig.try_read(7) is None
    assert rig.wake() == wake_group()
    assert rig.read(3) == b"\xff" * 3


# --- busy time (§1.4, decision 13) ----------------------------------------------------------------

BUSY_CASES = [
    # decision 13, the "typical" column
    ("typical", "Random", 2.0),
    ("typical", "Info revision", 0.5),
    ("typical", "Read config word 0x15", 0.5),
    ("typical", "Write config word 4", 8.0),
    ("typical", "Lock config, no summary", 10.0),
    ("typical", "SHA start", 0.5),
    # §4, the 608 M0 maximum column
    ("maximum", "Random", 23.0),
    ("maximum", "Info revision", 5.0),
    ("maximum", "Read config word 0x15", 5.0),
    ("maximum", "Write config word 4", 45.0),
    ("maximum", "Lock config, no summary", 35.0),
    ("maximum", "SHA start", 36.0),
    ("maximum", "SelfTest all", 250.0),
    ("maximum", "Nonce pass-through", 20.0),
    ("maximum", "Counter read 0", 25.0),
    ("maximum", "UpdateExtra", 10.0),
]


@pytest.mark.parametrize(("timing", "name", "busy_ms"), BUSY_CASES)
def test_busy_chip_nacks_reads_and_writes_for_the_modelled_time(
    timing: str, name: str, busy_ms: float
) -> None:
    rig = make_rig(
        timing=timing, lock="config-locked" if name.startswith("Counter") else "unlocked"
    )
    rig.wake_pulse()
    rig.clock.advance(T_WHI_S + EPS)
    rig.send(command(name))
    rig.clock.advance(busy_ms / 1000 - EPS)
    assert rig.try_read(4) is None
    assert not rig.write(b"\x00")
    assert rig.chip.control.state().power == "busy"
    rig.clock.advance(2 * EPS)
    reply = rig.read(1)
    assert reply[0] in (0x04, 0x07, 0x23)


def test_instant_model_has_no_busy_time() -> None:
    rig = make_rig(timing="instant")
    rig.wake_pulse()
    rig.send(command("Random"))
    assert rig.read(35) == response("Random while config unlocked")


# --- the read pointer (§1.5) ----------------------------------------------------------------------


def test_response_can_be_read_in_two_transfers(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Info revision"))
    head = rig.poll(1)
    assert head + rig.read(head[0] - 1) == response(INFO_608B)


def test_response_can_be_read_one_byte_at_a_time(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Random"))
    expected = response("Random while config unlocked")
    assert b"".join(rig.poll(1) for _ in expected) == expected


def test_reading_past_the_end_returns_ff_and_never_wraps(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Info revision"))
    assert rig.poll(10) == response(INFO_608B) + b"\xff" * 3
    assert rig.read(40) == b"\xff" * 40
    assert rig.read(1) == b"\xff"


def test_reset_word_address_rewinds_the_pointer_to_re_read_the_group(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Info revision"))
    first = rig.poll(7)
    rig.reset_pointer()
    assert rig.read(7) == first == response(INFO_608B)


def test_reset_and_read_may_share_one_transfer(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Info revision"))
    rig.poll(5)
    for _ in range(2):
        msg = i2c_msg.read(ADDRESS, 7)
        rig.bus.i2c_rdwr(i2c_msg.write(ADDRESS, [0x00]), msg)
        assert ctypes.string_at(msg.buf, msg.len) == response(INFO_608B)


def test_wake_group_is_in_the_buffer_until_a_command_replaces_it(rig: Rig) -> None:
    rig.wake()
    rig.reset_pointer()
    assert rig.read(4) == wake_group()
    rig.send(command("Info revision"))
    assert rig.poll(7) == response(INFO_608B)


def test_a_new_command_replaces_the_response_and_restarts_the_pointer(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Random"))
    rig.poll(10)
    rig.send(command("SHA start"))
    assert rig.poll(4) == status(Status.SUCCESS)


# --- command input (§1.6, decisions 1 and 5) ------------------------------------------------------


def test_command_split_over_several_transfers_executes_once(rig: Rig) -> None:
    group = command("Info revision")
    rig.wake()
    for part in (group[:2], group[2:5], group[5:]):
        assert rig.write(b"\x03" + part)
    assert rig.response() == response(INFO_608B)
    assert len(rig.chip.control.commands()) == 1


def test_partial_command_nacks_reads_until_the_reset_word_address(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Random")[:4])
    rig.clock.advance(0.1)
    assert rig.try_read(4) is None
    assert rig.try_read(0) is None
    rig.reset_pointer()  # discards the partial group; the buffer still holds the wake group
    assert rig.read(4) == wake_group()
    assert rig.chip.control.commands() == []


def test_partial_command_waits_until_the_watchdog(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Random")[:4])
    rig.clock.advance(WATCHDOG_S)
    assert rig.chip.control.state().power == "sleep"
    assert rig.wake() == wake_group()


def test_bytes_after_the_count_are_ignored(rig: Rig) -> None:
    rig.wake()
    rig.send(command("Info revision") + command("Random"))
    assert rig.response() == response(INFO_608B)


def test_bytes_after_a_complete_group_in_the_same_transfer_are_ignored(rig: Rig) -> None:
    rig.wake()
    rig.bus.i2c_rdwr(
        i2c_msg.write(ADDRESS, b"\x03" + command("Info revision")),
        i2c_msg.write(ADDRESS, b"\x03" + command("Random")),
    )
    assert rig.response() == response(INFO_608B)


def test_command_write_and_repeated_start_read_in_one_transfer_nacks_the_read(rig: Rig) -> None:
    # Decision 5: execution starts only at the STOP.
    rig.wake()
    with pytest.raises(OSError, match="0x60") as info:
        rig.bus.i2c_rdwr(
            i2c_msg.write(ADDRESS, b"\x03" + command("Info revision")), i2c_msg.read(ADDRESS, 7)
        )
    assert info.value.errno == errno.EREMOTEIO
    assert rig.response() == response(INFO_608B)


@pytest.mark.parametrize("word", [0x04, 0x10, 0x7F, 0x80, 0xFF])
def test_word_address_above_command_is_acknowledged_and_ignored(rig: Rig, word: int) -> None:
    # Decision 1: no state change, the response buffer and the read pointer untouched.
    rig.wake()
    rig.send(command("Info revision"))
    head = rig.poll(3)
    before = rig.chip.control.state()
    assert rig.write(bytes((word,)) + command("Random"))
    after = rig.chip.control.state()
    assert (after.output, after.read_pointer, after.pending_input) == (
        before.output,
        before.read_pointer,
        before.pending_input,
    )
    assert head + rig.read(4) == response(INFO_608B)
    assert len(rig.chip.control.commands()) == 1


def test_word_address_above_command_leaves_a_partial_command_waiting(rig: Rig) -> None:
    group = command("Info revision")
    rig.wake()
    rig.send(group[:3])
    assert rig.write(b"\x55" + group[3:])
    assert rig.try_read(1) is None
    rig.send(group[3:])
    assert rig.response() == response(INFO_608B)


# --- the I2C address (§1.1, §1.8) -----------------------------------------------------------------


def _answers_at(rig: Rig, address: int) -> bool:
    rig.wake_pulse()
    rig.clock.advance(T_WHI_S)
    return rig.try_read(4, address=address) == wake_group()


def test_address_moved_by_the_control_surface_applies_at_sleep(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.set_i2c_address(0x35)
    assert rig.ready()  # still at 0x60 while awake ...
    rig.idle()
    assert _answers_at(rig, ADDRESS)  # ... and after idle
    rig.sleep()
    assert _answers_at(rig, 0x35)
    assert rig.try_read(4, address=ADDRESS) is None
    assert not rig.write(b"\x02", address=ADDRESS)
    assert rig.chip.control.state().moved_to_address == 0x35


def test_address_written_to_config_byte_16_applies_after_sleep(rig: Rig) -> None:
    word4 = rig.config()[16:20]
    new = bytes((0x35 << 1,)) + word4[1:]
    assert rig.run(packet(Op.WRITE, 0, 4, new)) == status(Status.SUCCESS)
    assert _answers_at(rig, ADDRESS)
    rig.sleep()
    assert _answers_at(rig, 0x35)
    assert rig.try_read(4, address=ADDRESS) is None


def test_address_change_applies_after_watchdog_expiry(rig: Rig) -> None:
    rig.wake()
    rig.chip.control.set_i2c_address(0x35)
    rig.clock.advance(WATCHDOG_S)
    assert _answers_at(rig, 0x35)


def test_kernel_style_wake_reaches_the_new_address_after_an_unobserved_watchdog_expiry(
    rig: Rig,
) -> None:
    # Nothing touched the chip while its watchdog ran out; routing must still see the move.
    rig.wake()
    rig.chip.control.set_i2c_address(0x35)
    rig.clock.advance(WATCHDOG_S)
    assert not rig.write(b"\x00", address=0x35)  # NACKed, but it is the wake (decision 3)
    rig.clock.advance(T_WHI_S)
    assert rig.try_read(4, address=0x35) == wake_group()
    assert rig.try_read(4, address=ADDRESS) is None


def test_user_extra_add_address_needs_chipmode_bit_0(rig: Rig) -> None:
    # §1.1: a real 608B with byte 85 = 0xB0 but ChipMode bit 0 = 0 kept answering at 0x60.
    assert rig.run(packet(Op.UPDATE_EXTRA, 1, 0xB0)) == status(Status.SUCCESS)
    rig.wake()
    rig.sleep()
    assert _answers_at(rig, ADDRESS)
    word4 = rig.config()[16:20]
    with_bit0 = word4[:3] + bytes((word4[3] | 0x01,))
    assert rig.run(packet(Op.WRITE, 0, 4, with_bit0)) == status(Status.SUCCESS)
    rig.wake()
    rig.sleep()
    assert _answers_at(rig, 0xB0 >> 1)


# --- a provisioning run that never idles (§17 defect 7, decision 33) ------------------------------


def test_provisioning_that_outlasts_the_watchdog_ends_in_ee_then_nacks(rig: Rig) -> None:
    """The Lokey sequence of §17: one wake, three probes, then 27 config writes, never idling.

    Each write takes 48 ms (the upper end of §17's 29-48 ms) and its status is polled every
    millisecond. The watchdog of §1.7 still runs: once a write no longer fits in it the chip
    answers 0xEE without writing (decision 8), and after 1.3 s it sleeps and NACKs.
    """
    rig.wake_pulse()
    rig.clock.advance(2e-3)
    for name, wait in (("Info revision", 2e-3), ("Lokey 'lock check'", 36e-3)):
        rig.send(command(name))
        rig.clock.advance(wait)
        rig.read(7)
    rig.send(command("Lokey 'config read'"))
    rig.clock.advance(36e-3)
    rig.read(35)
    template = bytes.fromhex(factory()["arduino_tls_template"]["config_hex"])
    words = [w for w in range(4, 32) if w != 0x15]
    answers: list[int | None] = []
    for word in words:
        started = rig.clock.monotonic()
        reply = None
        if rig.write(b"\x03" + packet(Op.WRITE, 0, word, template[word * 4 : word * 4 + 4])):
            for _ in range(26):
                rig.clock.advance(1e-3)
                reply = rig.try_read(4)
                if reply is not None:
                    break
        answers.append(reply[1] if reply is not None else None)
        rig.clock.advance(started + 48e-3 - rig.clock.monotonic())
    first_ee = answers.index(Status.WATCHDOG_ABOUT_TO_EXPIRE)
    assert 0 < first_ee < len(words) - 1
    assert set(answers[:first_ee]) == {Status.SUCCESS}
    assert set(answers[first_ee + 1 :]) == {None}
    config = rig.config()  # the NACKed write woke the chip again (decision 3)
    for index, word in enumerate(words):
        source = template if index < first_ee else FACTORY_CONFIG
        assert config[word * 4 : word * 4 + 4] == source[word * 4 : word * 4 + 4], word


def test_command_with_enough_budget_executes_right_before_the_watchdog(rig: Rig) -> None:
    rig.wake_pulse()
    rig.clock.advance(WATCHDOG_S - 5e-3 - 10e-6)  # Info needs at most 5 ms (§4)
    rig.send(command("Info revision"))
    assert rig.response() == response(INFO_608B)

"""Command semantics through the bus: spec §3-§10 and the §18 decisions the emulator implements."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sim.atecc608a import FACTORY_CONFIG, LockState, Status, crc16, crc16_wire
from sim.atecc608a.memory import encode_counter
from tests.atecc_helpers import (
    Op,
    Rig,
    command,
    factory,
    frame,
    make_rig,
    packet,
    response,
    status,
)

OK = Status.SUCCESS
PARSE = Status.PARSE_ERROR
EXEC = Status.EXECUTION_ERROR
COMM = Status.COMM_ERROR
PATTERN = "Random while config unlocked"
WORD_0x15 = "Read config word 0x15"
NUMIN = bytes(range(20))


def _status_of(reply: bytes) -> int:
    assert len(reply) == 4, f"expected a status group, got {reply.hex()}"
    assert reply == status(reply[1])
    return reply[1]


def _payload(reply: bytes) -> bytes:
    assert reply == frame(reply[1:-2]), f"not a well-formed group: {reply.hex()}"
    return reply[1:-2]


# --- count and CRC (§1.6, §3, decisions 6, 7, 32) -------------------------------------------------


@pytest.mark.parametrize("count", [0x00, 0x01, 0x03, 0x9C, 0xFF])
def test_count_outside_4_to_155_answers_comm_error(rig: Rig, count: int) -> None:
    # Decisions 6 and 32: the chip answers at once, without waiting for `count` bytes.
    rig.wake()
    rig.send(bytes((count,)) + command("Random")[1:])
    assert rig.response() == status(COMM)


@pytest.mark.parametrize("count", [4, 5, 6, 155])
def test_crc_valid_groups_at_the_count_limits_reach_the_parser(rig: Rig, count: int) -> None:
    # 4 and 155 are legal counts (§1.6): a Random with the wrong length is a parse error.
    body = bytes((count, Op.RANDOM)) + bytes(count - 4)
    assert rig.run(body + crc16_wire(body)) == status(PARSE)


def test_command_crc_error_answers_comm_error_and_does_not_execute(rig: Rig) -> None:
    lock = command("Lock config, no summary")
    corrupted = lock[:-1] + bytes((lock[-1] ^ 0x01,))
    assert rig.run(corrupted) == status(COMM)
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")


def test_crc_error_takes_precedence_over_every_other_error(rig: Rig) -> None:
    # §3: an unknown opcode with a bad CRC is a CRC error, not a parse error.
    bad = packet(Op.PAUSE)
    assert rig.run(bad[:-2] + bytes((bad[-2] ^ 0x80, bad[-1]))) == status(COMM)


@pytest.mark.parametrize(
    "group",
    [
        packet(Op.RANDOM, data=b"\x00"),
        packet(Op.INFO, data=b"\x00\x00\x00\x00"),
        packet(Op.READ, data=b"\x00"),
        packet(Op.SHA, 0x00, data=b"abc"),
        packet(Op.NONCE, 0x00, data=bytes(19)),
        packet(Op.NONCE, 0x03, data=bytes(31)),
        packet(Op.WRITE, 0x00, 4, bytes(3)),
        packet(Op.LOCK, 0x80, data=b"\x00"),
        packet(Op.COUNTER, 0x00, data=b"\x00"),
        packet(Op.SELF_TEST, 0x3B, data=b"\x00"),
        packet(Op.UPDATE_EXTRA, 0x00, data=b"\x00"),
    ],
    ids=[
        "random",
        "info",
        "read",
        "sha-start",
        "nonce-19",
        "nonce-passthrough-31",
        "write-3",
        "lock",
        "counter",
        "selftest",
        "updateextra",
    ],
)
def test_count_inconsistent_with_the_command_is_parse_error(rig: Rig, group: bytes) -> None:
    assert rig.run(group) == status(PARSE)  # decision 7


# --- opcodes (§4, decision 12) --------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [Op.PAUSE, Op.HMAC, Op.DELETE, 0x00, 0x99, 0xFF])
def test_unknown_opcodes_pause_hmac_delete_answer_parse_error(rig: Rig, opcode: int) -> None:
    assert rig.run(packet(opcode)) == status(PARSE)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (command("GenKey public slot 0"), EXEC),  # no key generated yet
        (packet(Op.SIGN, 0x80), EXEC),  # no digest loaded (decision 30)
        (packet(Op.VERIFY, 0x02, 0x0004, bytes(128)), EXEC),  # no digest loaded
        (packet(Op.ECDH, 0x0C, 0, bytes(64)), EXEC),  # slot 0 (0x2083) does not allow ECDH
    ],
    ids=["genkey-public", "sign", "verify", "ecdh"],
)
def test_genkey_sign_verify_ecdh_without_their_prerequisites_answer_execution_error(
    locked_rig: Rig, group: bytes, expected: int
) -> None:
    # §10.3 / decision 30; tests/test_atecc608a_ecc.py covers these commands in full.
    assert locked_rig.run(group) == status(expected)


def test_genkey_private_slot_0_vector_returns_the_public_key_of_the_noise_block(
    locked_rig: Rig,
) -> None:
    # the key is the noise block reduced into 1..n-1 (sim/atecc608a/ecc.py); the expected point
    # comes from cryptography, not from the emulator's own code
    block = bytes(range(0x20, 0x40))
    locked_rig.chip.control.script_random(block)
    reply = locked_rig.run(command("GenKey private slot 0"))
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # FIPS 186-4 D.1.2.3
    scalar = int.from_bytes(block, "big") % (order - 1) + 1
    numbers = ec.derive_private_key(scalar, ec.SECP256R1()).public_key().public_numbers()
    assert _payload(reply) == numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


# --- Random (§5, decisions 14, 15) ----------------------------------------------------------------


def test_random_while_unlocked_is_the_test_pattern_every_time(rig: Rig) -> None:
    for _ in range(3):
        assert rig.run(command("Random")) == response(PATTERN)


def test_random_modes_0_and_1_behave_identically(locked_rig: Rig) -> None:
    block = bytes(range(32, 64))
    locked_rig.chip.control.script_random(block, block)
    assert locked_rig.run(packet(Op.RANDOM, 0x00)) == frame(block)
    assert locked_rig.run(packet(Op.RANDOM, 0x01)) == frame(block)
    assert make_rig().run(packet(Op.RANDOM, 0x01)) == response(PATTERN)


@pytest.mark.parametrize("mode", [0x02, 0x03, 0x40, 0x80, 0xFF])
def test_random_mode_other_than_0_or_1_is_parse_error(rig: Rig, mode: int) -> None:
    assert rig.run(packet(Op.RANDOM, mode)) == status(PARSE)


@pytest.mark.parametrize("param2", [0x0001, 0x0100, 0xFFFF])
def test_random_param2_other_than_0_is_parse_error(rig: Rig, param2: int) -> None:
    assert rig.run(packet(Op.RANDOM, 0x00, param2)) == status(PARSE)


def test_random_does_not_touch_tempkey(rig: Rig) -> None:
    # §5: Random output is never stored on the chip and does not touch TempKey.
    rig.run(command("Random"))
    assert _info_state(rig)[0] == 0x00
    assert _info_state(rig)[1] & 0x80 == 0


# --- Info (§6, decisions 17-20) -------------------------------------------------------------------


def _info_state(rig: Rig) -> bytes:
    return _payload(rig.run(command("Info State")))


@pytest.mark.parametrize(
    ("revision", "name"), [("608A", "Info revision ATECC608A"), ("608B", "Info revision ATECC608B")]
)
def test_info_revision_equals_config_bytes_4_to_7(revision: str, name: str) -> None:
    rig = make_rig(revision=revision)
    reply = rig.run(command("Info revision"))
    assert reply == response(name)
    assert _payload(reply) == rig.config()[4:8]


@pytest.mark.parametrize("slot", [0, 1, 7, 15])
def test_info_keyvalid_answers_zero_for_a_slot_without_a_generated_key(
    locked_rig: Rig, slot: int
) -> None:
    assert locked_rig.run(packet(Op.INFO, 0x01, slot)) == frame(bytes(4))  # decision 17


def test_info_keyvalid_of_a_slot_above_15_is_parse_error(rig: Rig) -> None:
    # §3: illegal parameters are a parse error; there is no slot 16.
    assert rig.run(packet(Op.INFO, 0x01, 16)) == status(PARSE)


def test_info_state_after_wake_is_all_zero(rig: Rig) -> None:
    assert rig.run(command("Info State")) == frame(bytes(4))


def test_info_state_encodes_rng_use(rig: Rig) -> None:
    # Decision 18: byte 1 bit 0 EEPROM_RNG (seed updated: Random mode 0), bit 1 SRAM_RNG.
    rig.run(packet(Op.RANDOM, 0x01))
    assert _info_state(rig) == bytes((0x00, 0x02, 0, 0))
    rig.run(packet(Op.RANDOM, 0x00))
    assert _info_state(rig) == bytes((0x00, 0x03, 0, 0))


def test_info_state_encodes_tempkey_from_pass_through_and_from_random(rig: Rig) -> None:
    # Decision 18: byte 0 bit 4 SourceFlag (1 = input), byte 1 bit 7 TempKey.Valid.
    assert rig.run(command("Nonce pass-through")) == status(OK)
    assert _info_state(rig) == bytes((0x10, 0x80, 0, 0))
    rig.run(packet(Op.NONCE, 0x01, 0, NUMIN))
    assert _info_state(rig) == bytes((0x00, 0x82, 0, 0))


def test_info_gpio_mode_is_parse_error_on_i2c(rig: Rig) -> None:
    assert rig.run(packet(Op.INFO, 0x03)) == status(PARSE)  # decision 19


def test_info_latch_reads_zero_then_set_and_clear(rig: Rig) -> None:
    # Decision 20: read → 01 00 00 00 / 00 00 00 00; set/clear → success.
    latch = command("Info latch read")
    assert rig.run(latch) == frame(bytes(4))
    assert rig.run(packet(Op.INFO, 0x04, 0x0003)) == status(OK)
    assert rig.run(latch) == frame(b"\x01\x00\x00\x00")
    assert rig.run(packet(Op.INFO, 0x04, 0x0002)) == status(OK)
    assert rig.run(latch) == frame(bytes(4))


@pytest.mark.parametrize("param2", [0x0001, 0x0004, 0x0103])
def test_info_latch_with_another_param2_is_parse_error(rig: Rig, param2: int) -> None:
    # §3 / decision 20: only 0x0000 (read), 0x0002 (clear) and 0x0003 (set) exist.
    assert rig.run(packet(Op.INFO, 0x04, param2)) == status(PARSE)


def test_persistent_latch_survives_sleep_and_watchdog_but_not_a_power_cycle(rig: Rig) -> None:
    # Decision 11.
    latch = command("Info latch read")
    set_latch = frame(b"\x01\x00\x00\x00")
    assert rig.run(packet(Op.INFO, 0x04, 0x0003)) == status(OK)
    rig.wake()
    rig.sleep()
    assert rig.run(latch) == set_latch
    assert rig.run(latch, idle=False) == set_latch
    rig.clock.advance(1.3)
    assert rig.chip.control.state().power == "sleep"
    assert rig.run(latch) == set_latch
    rig.chip.control.power_cycle()
    assert rig.run(latch) == frame(bytes(4))


# --- Read (§7.2, §7.3, decisions 21, 23) ----------------------------------------------------------


def test_config_reads_of_every_word_match_the_image(rig: Rig) -> None:
    image = FACTORY_CONFIG
    for word in range(32):
        assert rig.run(packet(Op.READ, 0x00, word)) == frame(image[word * 4 : word * 4 + 4])


@pytest.mark.parametrize("offset", range(8))
def test_32_byte_access_ignores_the_offset_bits(rig: Rig, offset: int) -> None:
    # Decision 23: block 1 read with any word offset returns the whole block.
    assert rig.run(packet(Op.READ, 0x80, (1 << 3) | offset)) == frame(FACTORY_CONFIG[32:64])


@pytest.mark.parametrize(
    "group",
    [
        packet(Op.READ, 0x00, 0x20),  # config word 32
        packet(Op.READ, 0x80, 0x20),  # config block 4
        packet(Op.READ, 0x00, 0x0100),
        packet(Op.READ, 0x01, 0x10),  # OTP word 16
        packet(Op.READ, 0x81, 0x10),  # OTP block 2
        packet(Op.READ, 0x02, (13 << 8) | (8 << 3)),  # slot 8 has 13 blocks (416 bytes)
        packet(Op.READ, 0x82, (13 << 8) | (8 << 3)),
        packet(Op.READ, 0x02, (1 << 8) | (0 << 3) | 1),  # slot 0: 36 bytes, word 9 is out
        packet(Op.READ, 0x03, 0),  # zone 3
        packet(Op.READ, 0x04, 0),  # reserved param1 bit
    ],
    ids=[
        "config-word-32",
        "config-block-4",
        "config-0x100",
        "otp-word-16",
        "otp-block-2",
        "slot8-4byte-beyond",
        "slot8-block-13",
        "slot0-word-9",
        "zone-3",
        "reserved-bit",
    ],
)
def test_out_of_range_address_is_parse_error(locked_rig: Rig, group: bytes) -> None:
    assert locked_rig.run(group) == status(PARSE)


@pytest.mark.parametrize("zone", [0x01, 0x81, 0x02, 0x82], ids=["otp", "otp32", "data", "data32"])
@pytest.mark.parametrize("lock", [LockState.UNLOCKED, LockState.CONFIG_LOCKED])
def test_read_otp_or_data_while_data_unlocked_is_execution_error(
    zone: int, lock: LockState
) -> None:
    rig = make_rig(lock=lock)
    assert rig.run(packet(Op.READ, zone, 8 << 3 if zone & 0x02 else 0)) == status(EXEC)


def test_data_and_otp_written_before_the_data_lock_read_back_after_it() -> None:
    rig = make_rig(lock=LockState.CONFIG_LOCKED)
    slot8 = bytes(range(32))
    otp = bytes(range(100, 132))
    assert rig.run(packet(Op.WRITE, 0x82, 8 << 3, slot8)) == status(OK)
    assert rig.run(packet(Op.WRITE, 0x81, 0, otp)) == status(OK)
    assert rig.run(command("Lock data+OTP")) == status(OK)
    assert rig.run(packet(Op.READ, 0x82, 8 << 3)) == frame(slot8)
    assert rig.run(packet(Op.READ, 0x02, (8 << 3) | 1)) == frame(slot8[4:8])
    assert rig.run(packet(Op.READ, 0x81, 0)) == frame(otp)
    assert rig.run(packet(Op.READ, 0x01, 1)) == frame(otp[4:8])


def test_last_word_of_the_largest_slot_is_readable(locked_rig: Rig) -> None:
    assert locked_rig.run(packet(Op.READ, 0x02, (12 << 8) | (8 << 3) | 7)) == frame(bytes(4))


def test_32_byte_write_to_a_tail_block_writes_only_the_valid_bytes() -> None:
    # §7.2 (cryptoauthlib hardware test): slot 10, block 2 holds 8 bytes; offset bits ignored.
    rig = make_rig(lock=LockState.CONFIG_LOCKED)
    address = (2 << 8) | (10 << 3) | 1
    value = bytes(range(1, 33))
    assert rig.run(packet(Op.WRITE, 0x82, address, value)) == status(OK)
    assert rig.run(command("Lock data+OTP")) == status(OK)
    assert rig.run(packet(Op.READ, 0x02, (2 << 8) | (10 << 3))) == frame(value[:4])
    assert rig.run(packet(Op.READ, 0x02, (2 << 8) | (10 << 3) | 1)) == frame(value[4:8])
    assert rig.run(packet(Op.READ, 0x02, (2 << 8) | (10 << 3) | 2)) == status(PARSE)
    assert rig.run(packet(Op.READ, 0x02, (1 << 8) | (11 << 3) | 7)) == frame(bytes(4))


def test_secret_slot_is_not_readable_in_clear(locked_rig: Rig) -> None:
    # Factory SlotConfig 0 = 83 20: IsSecret (§11, §12).
    assert FACTORY_CONFIG[20] & 0x80
    assert locked_rig.run(packet(Op.READ, 0x82, 0)) == status(EXEC)


# --- Write (§7.3, decision 22) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "group",
    [
        packet(Op.WRITE, 0x00, 0, bytes(4)),  # word 0 (serial)
        packet(Op.WRITE, 0x00, 1, bytes(4)),  # word 1 (revision)
        packet(Op.WRITE, 0x00, 3, bytes(4)),  # word 3 (AES/I2C enable)
        packet(Op.WRITE, 0x00, 0x15, bytes(4)),  # word 0x15 (lock bytes)
        packet(Op.WRITE, 0x80, 0x00, bytes(32)),  # block 0
        packet(Op.WRITE, 0x80, 0x10, bytes(32)),  # block 2
    ],
    ids=["word0", "word1", "word3", "word0x15", "block0", "block2"],
)
def test_write_config_bytes_0_to_15_word_0x15_and_blocks_0_and_2_are_refused(
    rig: Rig, group: bytes
) -> None:
    assert rig.run(group) == status(EXEC)
    assert rig.config() == FACTORY_CONFIG


@pytest.mark.parametrize("word", [4, 5, 20, 22, 23, 31])
def test_write_config_words_16_to_83_and_88_to_127_succeed(rig: Rig, word: int) -> None:
    value = bytes((word, 0xA5, 0x5A, word))
    assert rig.run(packet(Op.WRITE, 0x00, word, value)) == status(OK)
    assert rig.run(packet(Op.READ, 0x00, word)) == frame(value)


def test_write_config_block_3_succeeds(rig: Rig) -> None:
    block = bytes(range(0xE0, 0x100))
    assert rig.run(packet(Op.WRITE, 0x80, 0x18, block)) == status(OK)
    assert rig.config()[96:] == block


def test_write_config_after_the_config_lock_is_execution_error() -> None:
    rig = make_rig(lock=LockState.CONFIG_LOCKED)
    assert rig.run(command("Write config word 4")) == status(EXEC)
    assert rig.run(command("Write config block 1")) == status(EXEC)


def test_write_data_or_otp_before_the_config_lock_is_execution_error(rig: Rig) -> None:
    assert rig.run(packet(Op.WRITE, 0x82, 8 << 3, bytes(32))) == status(EXEC)
    assert rig.run(packet(Op.WRITE, 0x81, 0, bytes(32))) == status(EXEC)


def test_4_byte_data_write_while_data_unlocked_is_execution_error() -> None:
    rig = make_rig(lock=LockState.CONFIG_LOCKED)
    assert rig.run(packet(Op.WRITE, 0x02, 8 << 3, bytes(4))) == status(EXEC)
    assert rig.run(packet(Op.WRITE, 0x01, 0, bytes(4))) == status(EXEC)


def test_otp_is_read_only_once_the_data_zone_is_locked(locked_rig: Rig) -> None:
    assert locked_rig.run(packet(Op.WRITE, 0x81, 0, bytes(32))) == status(EXEC)


def test_data_slot_writes_after_the_data_lock_follow_write_config(locked_rig: Rig) -> None:
    # Factory SlotConfig 8 = 00 00: WriteConfig Always; SlotConfig 0 = 83 20: WriteConfig 2 (never).
    value = bytes(range(4))
    assert locked_rig.run(packet(Op.WRITE, 0x02, 8 << 3, value)) == status(OK)
    assert locked_rig.run(packet(Op.READ, 0x02, 8 << 3)) == frame(value)
    assert locked_rig.run(packet(Op.WRITE, 0x82, 0, bytes(32))) == status(EXEC)


# --- Lock (§7.5, decisions 24-26) -----------------------------------------------------------------


def test_lock_config_twice_is_execution_error(rig: Rig) -> None:
    assert rig.run(command("Lock config, no summary")) == status(OK)
    assert rig.run(command("Lock config, no summary")) == status(EXEC)


def test_lock_data_before_config_is_execution_error(rig: Rig) -> None:
    assert rig.run(command("Lock data+OTP")) == status(EXEC)
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")


def test_lock_data_twice_is_execution_error(locked_rig: Rig) -> None:
    assert locked_rig.run(command("Lock data+OTP")) == status(EXEC)


def test_lock_data_checks_the_summary_of_data_then_otp() -> None:
    rig = make_rig(lock=LockState.CONFIG_LOCKED)
    assert rig.run(packet(Op.WRITE, 0x81, 0, bytes(range(32)))) == status(OK)
    summary = crc16(rig.chip.control.data + rig.chip.control.otp)
    assert rig.run(packet(Op.LOCK, 0x01, summary ^ 0x0001)) == status(EXEC)
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, config locked")
    assert rig.run(packet(Op.LOCK, 0x01, summary)) == status(OK)
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, both locked")


@pytest.mark.parametrize("param1", [0x40, 0xC0, 0x41, 0x03, 0x83])
def test_lock_reserved_bit_6_or_zone_3_is_parse_error(rig: Rig, param1: int) -> None:
    assert rig.run(packet(Op.LOCK, param1)) == status(PARSE)  # decision 25
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")


def test_slot_lock_does_not_check_the_summary(locked_rig: Rig) -> None:
    # Decision 26; KeyConfig 0 = 33 00 has Lockable (bit 5) set in the factory image.
    assert FACTORY_CONFIG[96] & 0x20
    assert locked_rig.run(packet(Op.LOCK, 0x02 | 0 << 2, 0xBEEF)) == status(OK)
    assert locked_rig.config()[88:90] == bytes((0xFE, 0xFF))
    assert locked_rig.run(packet(Op.LOCK, 0x02 | 0 << 2)) == status(EXEC)  # already locked


def test_slot_lock_needs_a_lockable_slot_and_a_locked_data_zone() -> None:
    # KeyConfig 3 = 1C 00: Lockable clear.
    assert not FACTORY_CONFIG[96 + 2 * 3] & 0x20
    locked = make_rig(lock=LockState.LOCKED)
    assert locked.run(packet(Op.LOCK, 0x02 | 3 << 2)) == status(EXEC)
    config_locked = make_rig(lock=LockState.CONFIG_LOCKED)
    assert config_locked.run(packet(Op.LOCK, 0x02 | 0 << 2)) == status(EXEC)


def test_locked_slot_refuses_writes(locked_rig: Rig) -> None:
    # Slot 8: SlotConfig 00 00 (WriteConfig Always), KeyConfig 3C 00 (Lockable).
    assert FACTORY_CONFIG[36:38] == bytes(2)
    assert FACTORY_CONFIG[112] & 0x20
    assert locked_rig.run(packet(Op.WRITE, 0x02, 8 << 3, bytes(4))) == status(OK)
    assert locked_rig.run(packet(Op.LOCK, 0x02 | 8 << 2)) == status(OK)
    assert locked_rig.run(packet(Op.WRITE, 0x02, 8 << 3, bytes(4))) == status(EXEC)


def test_config_lock_summary_covers_the_current_config_including_0x55(rig: Rig) -> None:
    assert rig.run(packet(Op.WRITE, 0x00, 5, b"\x01\x02\x03\x04")) == status(OK)
    config = rig.config()
    assert config[87] == 0x55
    assert rig.run(packet(Op.LOCK, 0x00, crc16(FACTORY_CONFIG))) == status(EXEC)
    assert rig.run(packet(Op.LOCK, 0x00, crc16(config))) == status(OK)


# --- UpdateExtra (§8, decision 27) ----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "offset"), [(0, 84), (1, 85)])
def test_update_extra_sets_each_byte_once(rig: Rig, mode: int, offset: int) -> None:
    assert rig.run(packet(Op.UPDATE_EXTRA, mode, 0x00)) == status(OK)  # 0x00 over 0x00
    assert rig.run(packet(Op.UPDATE_EXTRA, mode, 0xB0)) == status(OK)
    assert rig.config()[offset] == 0xB0
    assert rig.run(packet(Op.UPDATE_EXTRA, mode, 0x00)) == status(EXEC)
    assert rig.run(packet(Op.UPDATE_EXTRA, mode, 0xB1)) == status(EXEC)
    assert rig.config()[offset] == 0xB0


def test_update_extra_is_accepted_after_the_config_lock(locked_rig: Rig) -> None:
    assert locked_rig.run(command("UpdateExtra byte 84")) == status(OK)
    assert locked_rig.run(packet(Op.UPDATE_EXTRA, 0, 0x42)) == status(OK)
    assert locked_rig.config()[84] == 0x42


def test_update_extra_value_above_one_byte_is_parse_error(rig: Rig) -> None:
    assert rig.run(packet(Op.UPDATE_EXTRA, 0, 0x0100)) == status(PARSE)


# --- Counter (§8, decision 28) --------------------------------------------------------------------


def _counter_value(reply: bytes) -> int:
    return int.from_bytes(_payload(reply), "little")


def test_counter_increments_and_keeps_its_value_across_sleep_and_power_cycle() -> None:
    rig = make_rig(lock=LockState.CONFIG_LOCKED)
    for expected in range(1, 4):
        assert _counter_value(rig.run(command("Counter increment 0"))) == expected
    assert _counter_value(rig.run(packet(Op.COUNTER, 0, 1))) == 0  # counter 1 is independent
    assert _counter_value(rig.run(packet(Op.COUNTER, 1, 1))) == 1
    rig.wake()
    rig.sleep()
    rig.chip.control.power_cycle()
    assert _counter_value(rig.run(command("Counter read 0"))) == 3
    assert _counter_value(rig.run(packet(Op.COUNTER, 0, 1))) == 1


@pytest.mark.parametrize("counter_id", [2, 3, 0xFFFF])
def test_counter_id_above_1_is_parse_error(locked_rig: Rig, counter_id: int) -> None:
    assert locked_rig.run(packet(Op.COUNTER, 0, counter_id)) == status(PARSE)


def test_counter_mode_above_1_is_parse_error(locked_rig: Rig) -> None:
    assert locked_rig.run(packet(Op.COUNTER, 2, 0)) == status(PARSE)


def test_counter_before_the_config_lock_is_execution_error(rig: Rig) -> None:
    assert rig.run(command("Counter read 0")) == status(EXEC)
    assert rig.run(command("Counter increment 0")) == status(EXEC)


def test_counter_starts_from_the_value_encoded_in_the_config_zone(rig: Rig) -> None:
    # §8: Counter[0] at bytes 52-59, written before the lock through the bus.
    encoded = encode_counter(1000)
    assert rig.run(packet(Op.WRITE, 0, 13, encoded[:4])) == status(OK)
    assert rig.run(packet(Op.WRITE, 0, 14, encoded[4:])) == status(OK)
    assert rig.run(command("Lock config, no summary")) == status(OK)
    assert _counter_value(rig.run(command("Counter read 0"))) == 1000
    assert _counter_value(rig.run(command("Counter increment 0"))) == 1001


def test_counter_with_lokeys_eight_zero_bytes_reads_as_zero(rig: Rig) -> None:
    # Decision 28: the non-canonical encoding of Lokey's template decodes as 0.
    for word in (13, 14, 15, 16):
        assert rig.run(packet(Op.WRITE, 0, word, bytes(4))) == status(OK)
    assert rig.run(command("Lock config, no summary")) == status(OK)
    assert rig.run(command("Counter read 0")) == response("Counter value 0")
    assert rig.run(packet(Op.COUNTER, 0, 1)) == response("Counter value 0")


def test_counter_stops_at_its_maximum() -> None:
    maximum = 2_097_151  # §8
    rig = make_rig()
    rig.chip.control.write_config(52, encode_counter(maximum - 1))
    assert rig.run(command("Lock config, no summary")) == status(OK)
    assert _counter_value(rig.run(command("Counter increment 0"))) == maximum
    assert rig.run(command("Counter increment 0")) == status(EXEC)
    assert _counter_value(rig.run(command("Counter read 0"))) == maximum


# --- SHA (§9, decision 29) ------------------------------------------------------------------------


def test_sha_end_without_start_is_execution_error(rig: Rig) -> None:
    assert rig.run(command("SHA end, message abc")) == status(EXEC)


def test_sha_end_consumes_the_context(rig: Rig) -> None:
    assert rig.run(command("SHA start")) == status(OK)
    assert rig.run(command("SHA end, empty message")) == frame(hashlib.sha256(b"").digest())
    assert rig.run(command("SHA end, empty message")) == status(EXEC)


@pytest.mark.parametrize(("param2", "data"), [(2, b"abc"), (4, b"abc"), (0, b"a"), (1, b"")])
def test_sha_count_not_equal_to_param2_is_parse_error(rig: Rig, param2: int, data: bytes) -> None:
    assert rig.run(command("SHA start")) == status(OK)
    assert rig.run(packet(Op.SHA, 0x02, param2, data)) == status(PARSE)


def test_sha_update_then_end_hashes_the_whole_message(rig: Rig) -> None:
    message = bytes(range(256)) * 2
    assert rig.run(command("SHA start")) == status(OK)
    for start in range(0, 448, 64):
        chunk = message[start : start + 64]
        assert rig.run(packet(Op.SHA, 0x01, len(chunk), chunk)) == status(OK)
    tail = message[448:]
    assert rig.run(packet(Op.SHA, 0x02, len(tail), tail)) == frame(hashlib.sha256(message).digest())


def test_sha_end_into_tempkey_sets_tempkey_and_output_only_does_not(rig: Rig) -> None:
    for mode, tempkey_valid in ((0xC2, False), (0x42, False), (0x02, True)):
        rig.chip.control.power_cycle()
        assert rig.run(command("SHA start")) == status(OK)
        reply = rig.run(packet(Op.SHA, mode, 3, b"abc"))
        assert reply == response("SHA end(abc)")
        assert bool(_info_state(rig)[1] & 0x80) is tempkey_valid


@pytest.mark.parametrize(
    "group",
    [
        packet(Op.SHA, 0x00, 1),  # Start with param2
        packet(Op.SHA, 0x01, 0),  # Update with no data
        packet(Op.SHA, 0x01, 65, bytes(65)),  # more than 64 bytes
        packet(Op.SHA, 0x08),  # reserved bits
        packet(Op.SHA, 0x40),  # a target on Start
    ],
    ids=["start-param2", "update-empty", "update-65", "reserved", "target-on-start"],
)
def test_malformed_sha_commands_are_parse_errors(rig: Rig, group: bytes) -> None:
    assert rig.run(command("SHA start")) == status(OK)
    assert rig.run(group) == status(PARSE)


# --- Nonce (§10.1, decision 15) -------------------------------------------------------------------


def test_nonce_random_output_while_unlocked_is_the_test_pattern(rig: Rig) -> None:
    assert rig.run(packet(Op.NONCE, 0x00, 0, NUMIN)) == response(PATTERN)
    assert rig.run(packet(Op.NONCE, 0x01, 0, NUMIN)) == response(PATTERN)


@pytest.mark.parametrize("mode", [0x00, 0x01])
def test_nonce_tempkey_is_sha256_of_randout_numin_opcode_mode_and_param2_lsb(mode: int) -> None:
    rand_out = bytes(range(0x80, 0xA0))
    rig = make_rig(lock=LockState.LOCKED)
    rig.chip.control.script_random(rand_out, rand_out)
    assert rig.run(packet(Op.NONCE, mode, 0, NUMIN)) == frame(rand_out)
    # param2 bit 15 (TempKey calculation mode) returns TempKey itself; param2's LSB stays 0x00.
    tempkey = hashlib.sha256(rand_out + NUMIN + bytes((Op.NONCE, mode, 0x00))).digest()
    assert rig.run(packet(Op.NONCE, mode, 0x8000, NUMIN)) == frame(tempkey)


def test_nonce_while_unlocked_hashes_the_test_pattern(rig: Rig) -> None:
    pattern = _payload(response(PATTERN))
    tempkey = hashlib.sha256(pattern + NUMIN + bytes((Op.NONCE, 0x00, 0x00))).digest()
    assert rig.run(packet(Op.NONCE, 0x00, 0x8000, NUMIN)) == frame(tempkey)


@pytest.mark.parametrize(("param1", "size"), [(0x03, 32), (0x23, 64), (0x43, 32), (0x83, 32)])
def test_nonce_pass_through_accepts_32_or_64_bytes_into_each_target(param1: int, size: int) -> None:
    rig = make_rig()
    assert rig.run(packet(Op.NONCE, param1, 0, bytes(range(size)))) == status(OK)
    tempkey_valid = bool(_info_state(rig)[1] & 0x80)
    assert tempkey_valid is (param1 & 0xC0 == 0)


@pytest.mark.parametrize(
    "group",
    [
        packet(Op.NONCE, 0x02, 0, NUMIN),  # mode 2
        packet(Op.NONCE, 0x03, 0, bytes(64)),  # 64 bytes without bit 5
        packet(Op.NONCE, 0x23, 0, bytes(32)),  # bit 5 with 32 bytes
        packet(Op.NONCE, 0xC3, 0, bytes(32)),  # target 3
        packet(Op.NONCE, 0x00, 0x0001, NUMIN),  # param2 bits other than 15
        packet(Op.NONCE, 0x40, 0, NUMIN),  # a target for random modes
        packet(Op.NONCE, 0x04, 0, NUMIN),  # reserved bit
    ],
    ids=["mode2", "64-no-bit5", "bit5-32", "target3", "param2", "random-target", "reserved"],
)
def test_malformed_nonce_commands_are_parse_errors(rig: Rig, group: bytes) -> None:
    assert rig.run(group) == status(PARSE)


# --- SelfTest (§10.2) -----------------------------------------------------------------------------


def test_self_test_passes_and_the_failure_register_reads_zero(rig: Rig) -> None:
    assert rig.run(command("SelfTest all")) == status(OK)
    for bit in (0x01, 0x08, 0x10, 0x20):  # RNG, ECDH, AES, SHA (§10.2)
        assert rig.run(packet(Op.SELF_TEST, bit)) == status(OK)
    assert rig.run(command("SelfTest read failure register")) == status(OK)


@pytest.mark.parametrize("param1", [0x40, 0x80, 0xFF])
def test_self_test_bits_outside_0x3b_are_parse_errors(rig: Rig, param1: int) -> None:
    assert rig.run(packet(Op.SELF_TEST, param1)) == status(PARSE)


def test_self_test_with_param2_is_parse_error(rig: Rig) -> None:
    assert rig.run(packet(Op.SELF_TEST, 0x3B, 1)) == status(PARSE)


# --- the watchdog budget (§1.7, decision 8) -------------------------------------------------------


def test_watchdog_budget_too_small_answers_ee_without_executing(rig: Rig) -> None:
    rig.wake_pulse()
    rig.clock.advance(1.3 - 35e-3 + 1e-3)  # Lock needs up to 35 ms (§4)
    rig.send(command("Lock config, no summary"))
    assert rig.response() == status(Status.WATCHDOG_ABOUT_TO_EXPIRE)
    assert rig.run(command(WORD_0x15)) == response("Read word 0x15, fresh chip")


def test_watchdog_budget_uses_the_command_maximum(rig: Rig) -> None:
    # At 1.28 s an Info (≤ 5 ms) still fits, a Random (≤ 23 ms) does not.
    rig.wake_pulse()
    rig.clock.advance(1.28)
    rig.send(command("Info revision"))
    assert rig.response() == response("Info revision ATECC608B")
    rig.send(command("Random"))
    assert rig.response() == status(Status.WATCHDOG_ABOUT_TO_EXPIRE)


def test_watchdog_budget_follows_the_chipmode_clock_divider(rig: Rig) -> None:
    # §4: SelfTest takes up to 250 ms at M0 and 625 ms at M1 (ChipMode 0x28).
    word4 = rig.config()[16:20]
    assert rig.run(packet(Op.WRITE, 0, 4, word4[:3] + b"\x28")) == status(OK)
    rig.wake_pulse()
    rig.clock.advance(0.69)  # 0.69 + 0.625 > 1.3 >= 0.69 + 0.25
    rig.send(command("SelfTest all"))
    assert rig.response() == status(Status.WATCHDOG_ABOUT_TO_EXPIRE)
    assert rig.chip.control.state().power != "sleep"
    fresh = make_rig()
    fresh.wake_pulse()
    fresh.clock.advance(0.69)
    fresh.send(command("SelfTest all"))
    assert fresh.response() == status(OK)


def test_ee_is_a_status_and_the_chip_stays_usable_after_idle(rig: Rig) -> None:
    rig.wake_pulse()
    rig.clock.advance(1.29)
    rig.send(command("Random"))
    assert rig.response() == status(Status.WATCHDOG_ABOUT_TO_EXPIRE)
    rig.idle()
    assert rig.run(command("Random")) == response(PATTERN)


def test_template_vector_matches_the_counter_encoding() -> None:
    template = bytes.fromhex(factory()["arduino_tls_template"]["config_hex"])
    assert template[52:60] == template[60:68] == encode_counter(0)

"""ATECC608A protocol conformance: the bytes any correct chip (or emulator) puts on the wire.

Non-destructive: nothing here writes EEPROM, so it is safe on a provisioned chip in the field.
Expected bytes come from ``../shared/vectors/``; chip-specific values (serial, lock state) are
checked for shape and consistency instead.
"""

from __future__ import annotations

import errno

from smbus2 import i2c_msg

from conformance.buses import OpenedBus
from conformance.protocol import Host, expect_nack, group_is_valid, packet, vectors

# atecc_packets.json is keyed by name; look the ones we need up once.
_PACKETS = vectors("atecc_packets.json")
_STATUS = {
    entry["status"]: bytes.fromhex(entry["packet_hex"]) for entry in _PACKETS["status_packets"]
}
_COMMANDS = {entry["name"]: bytes.fromhex(entry["packet_hex"]) for entry in _PACKETS["commands"]}
_RESPONSES = {entry["name"]: bytes.fromhex(entry["payload_hex"]) for entry in _PACKETS["responses"]}
WAKE_GROUP = bytes.fromhex(_PACKETS["wake_response_hex"])
TEST_PATTERN = _RESPONSES["Random while config unlocked (test pattern)"]
LOCK_BYTE_VALUES = {0x00, 0x55}  # spec §7.4


def _lock_word(host: Host) -> bytes:
    response = host.send(_COMMANDS["Read config word 0x15 (bytes 84-87, lock bytes)"], 7)
    assert group_is_valid(response)
    return response[1:5]


def test_wake_pulse_is_not_acknowledged_and_the_chip_answers_with_the_wake_group(
    opened_bus: OpenedBus,
) -> None:
    host = Host(opened_bus.bus, opened_bus.clock)
    error = expect_nack(lambda: opened_bus.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00])))
    if opened_bus.emulator is not None:
        assert error.errno == errno.EREMOTEIO  # i2c-bcm2835, spec §15
    opened_bus.clock.sleep(0.0015)
    assert host.read(4) == WAKE_GROUP


def test_info_revision_is_a_crc_valid_608_family_group(host: Host) -> None:
    host.wake()
    response = host.send(_COMMANDS["Info revision"], 7)
    assert group_is_valid(response)
    assert response[0] == 7
    assert response[1:4] == bytes((0x00, 0x00, 0x60))  # spec §6: byte 2 = 0x60, the 608 family


def test_config_block_0_holds_the_serial_prefix_and_the_info_revision(host: Host) -> None:
    host.wake()
    revision = host.send(_COMMANDS["Info revision"], 7)[1:5]
    block = host.send(_COMMANDS["Read config block 0 (32 bytes)"], 35)
    assert group_is_valid(block)
    assert block[0] == 0x23
    config = block[1:33]
    assert config[0:2] == b"\x01\x23"  # spec §11: SN[0:1]
    assert config[12] == 0xEE  # SN[8]
    assert config[4:8] == revision  # RevNum equals the Info revision


def test_lock_bytes_read_through_word_0x15_are_locked_or_unlocked(host: Host) -> None:
    host.wake()
    word = _lock_word(host)
    assert word[2] in LOCK_BYTE_VALUES
    assert word[3] in LOCK_BYTE_VALUES


def test_random_returns_the_test_pattern_exactly_while_the_config_zone_is_unlocked(
    host: Host,
) -> None:
    host.wake()
    config_unlocked = _lock_word(host)[3] == 0x55
    first = host.send(_COMMANDS["Random"], 35)
    second = host.send(_COMMANDS["Random"], 35)
    assert group_is_valid(first)
    assert group_is_valid(second)
    assert first[0] == 0x23
    if config_unlocked:
        assert first[1:33] == second[1:33] == TEST_PATTERN
    else:
        assert TEST_PATTERN not in (first[1:33], second[1:33])
        assert first[1:33] != second[1:33]


def test_a_command_with_a_bad_crc_is_answered_with_the_comm_error_group(host: Host) -> None:
    host.wake()
    good = _COMMANDS["Info revision"]
    bad = good[:-1] + bytes((good[-1] ^ 0x01,))
    assert host.send(bad, 4) == _STATUS[0xFF]


def test_an_opcode_the_608_does_not_have_is_a_parse_error(host: Host) -> None:
    host.wake()
    pause = packet(0x01)  # Pause exists only on the ATSHA204A/ATECC508A (spec §4)
    assert host.send(pause, 4) == _STATUS[0x03]


def test_reading_past_the_group_returns_ff_and_word_address_0_rereads_it(host: Host) -> None:
    host.wake()
    first = host.send(_COMMANDS["Info revision"], 35)
    assert first[7:] == b"\xff" * 28  # spec §1.5
    host.write(b"\x00")
    assert host.read(7) == first[:7]


def test_a_response_can_be_read_in_two_transfers(host: Host) -> None:
    host.wake()
    host.write(b"\x03" + _COMMANDS["Info revision"])
    count = host.poll_read(1)
    rest = host.read(count[0] - 1)
    assert group_is_valid(count + rest)


def test_after_sleep_the_chip_nacks_until_woken_again(host: Host) -> None:
    host.wake()
    host.sleep()
    expect_nack(lambda: host.read(4))
    assert host.wake() == WAKE_GROUP


def test_after_idle_a_wake_returns_the_wake_group(host: Host) -> None:
    host.wake()
    host.idle()
    expect_nack(lambda: host.read(4))
    assert host.wake() == WAKE_GROUP


def test_nobody_answers_at_an_unused_address(opened_bus: OpenedBus) -> None:
    expect_nack(lambda: opened_bus.bus.i2c_rdwr(i2c_msg.read(0x61, 1)))

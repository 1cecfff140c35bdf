"""The protocol essentials once more, through smbus2's own code path down to ``fcntl.ioctl``.

Every other check talks to the virtual bus, which *is* an smbus2 look-alike, so smbus2's
``SMBus.open`` (the I2C_FUNCS probe) and ``i2c_rdwr`` (the ``i2c_rdwr_ioctl_data`` it builds)
never run in CI. Here the emulator chosen by ``--bus`` sits behind ``sim.i2c_dev``'s i2c-dev
stand-in, and ``lokey.backends.open_bus("i2c://<stand-in>")`` opens a real ``smbus2.SMBus`` on
it: the bytes cross the same ctypes structs and ioctl calls as on a Raspberry Pi.

On real hardware (``--bus /dev/i2c-N``) these are skipped: every check already runs there.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from smbus2 import SMBus, i2c_msg

from conformance.buses import OpenedBus, open_bus
from conformance.protocol import Host, expect_nack, group_is_valid, vectors
from sim.i2c_dev import emulated_i2c_dev

_PACKETS = vectors("atecc_packets.json")
_COMMANDS = {entry["name"]: bytes.fromhex(entry["packet_hex"]) for entry in _PACKETS["commands"]}
_RESPONSES = {entry["name"]: bytes.fromhex(entry["payload_hex"]) for entry in _PACKETS["responses"]}
WAKE_GROUP = bytes.fromhex(_PACKETS["wake_response_hex"])
TEST_PATTERN = _RESPONSES["Random while config unlocked (test pattern)"]


@pytest.fixture
def smbus_bus(opened_bus: OpenedBus) -> Iterator[OpenedBus]:
    """A real ``smbus2.SMBus`` on an i2c-dev stand-in for the ``--bus`` emulator."""
    if opened_bus.emulator is None:
        pytest.skip("--bus is real hardware: the whole suite already runs smbus2 against it")
    with (
        emulated_i2c_dev(opened_bus.bus) as path,
        open_bus(f"i2c://{path}", clock=opened_bus.clock) as device,
    ):
        assert isinstance(device.inner_bus, SMBus)
        yield device


def test_wake_through_smbus2_is_nacked_like_i2c_bcm2835_and_the_wake_group_reads_back(
    smbus_bus: OpenedBus,
) -> None:
    error = expect_nack(lambda: smbus_bus.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00])))
    assert error.errno == errno.EREMOTEIO  # spec §15: the Pi's errno survives the ioctl path
    smbus_bus.clock.sleep(0.0015)
    assert Host(smbus_bus.bus, smbus_bus.clock).read(4) == WAKE_GROUP


def test_info_revision_through_smbus2_is_a_crc_valid_608_family_group(
    smbus_bus: OpenedBus,
) -> None:
    host = Host(smbus_bus.bus, smbus_bus.clock)
    host.wake()
    response = host.send(_COMMANDS["Info revision"], 7)
    assert group_is_valid(response)
    assert response[0] == 7
    assert response[1:4] == bytes((0x00, 0x00, 0x60))  # spec §6


def test_random_through_smbus2_has_the_shape_the_lock_state_calls_for(
    smbus_bus: OpenedBus,
) -> None:
    host = Host(smbus_bus.bus, smbus_bus.clock)
    host.wake()
    lock_word = host.send(_COMMANDS["Read config word 0x15 (bytes 84-87, lock bytes)"], 7)
    assert group_is_valid(lock_word)
    first = host.send(_COMMANDS["Random"], 35)
    second = host.send(_COMMANDS["Random"], 35)
    assert group_is_valid(first)
    assert group_is_valid(second)
    assert first[0] == 0x23
    if lock_word[4] == 0x55:  # LockConfig unlocked: the test pattern, every time
        assert first[1:33] == second[1:33] == TEST_PATTERN
    else:
        assert TEST_PATTERN not in (first[1:33], second[1:33])
        assert first[1:33] != second[1:33]

"""Bus semantics: what Linux i2c-dev (``I2C_RDWR``) shows user space, which any bus must match.

The driver is written against these rules, so the emulator must follow them exactly and a real
adapter is checked for them too: an address nobody acknowledges fails the transfer with a NACK
errno (EREMOTEIO on the Raspberry Pi's i2c-bcm2835), the ATECC608A's wake pulse to address 0x00
is never acknowledged, a transfer stops at its first NACK (earlier messages took effect, later
ones reached nobody), i2c-dev refuses a transfer it cannot carry (0 or more than 42 messages, a
message over 8,192 bytes) with EINVAL before anything reaches the wires, and the chip starts a
command only at the STOP that ends its transfer.

Non-destructive: the only commands sent are wake, idle, sleep and Info. On the emulator every
check runs twice, on the virtual bus and through smbus2's own ``SMBus`` over the i2c-dev
stand-in (``sim.i2c_dev``); on hardware ``--bus`` already is an ``SMBus``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from smbus2 import i2c_msg

from conformance.buses import ATECC_ADDRESS, OpenedBus, open_bus
from conformance.plugin import EMULATED
from conformance.protocol import (
    NACK_ERRNOS,
    WAKE_DELAY_S,
    Host,
    expect_nack,
    group_is_valid,
    vectors,
)
from sim.i2c_dev import emulated_i2c_dev

_PACKETS = vectors("atecc_packets.json")
_COMMANDS = {entry["name"]: bytes.fromhex(entry["packet_hex"]) for entry in _PACKETS["commands"]}
WAKE_GROUP = bytes.fromhex(_PACKETS["wake_response_hex"])  # 04 11 33 43
#: An address no device on the bus answers (the 608 sits at 0x60; 0x61 is free on LoKey's HAT).
EMPTY_ADDRESS = 0x61
MAX_MESSAGES = 42  # Linux include/uapi/linux/i2c-dev.h, I2C_RDWR_IOCTL_MAX_MSGS
MAX_MESSAGE_BYTES = 8192  # Linux drivers/i2c/i2c-dev.c
SLEEP = b"\x01"  # word address 0x01: sleep (spec §1.4)


@pytest.fixture(params=["bus", "smbus2"])
def bus(request: pytest.FixtureRequest, opened_bus: OpenedBus) -> Iterator[OpenedBus]:
    """``--bus`` itself, and on the emulator also smbus2's ``SMBus`` over an i2c-dev stand-in."""
    if request.param == "bus":
        yield opened_bus
        return
    if opened_bus.emulator is None:
        pytest.skip("--bus is real hardware: it already is smbus2 over i2c-dev")
    with (
        emulated_i2c_dev(opened_bus.bus) as path,
        open_bus(f"i2c://{path}", clock=opened_bus.clock) as device,
    ):
        yield device


@pytest.fixture
def nack_errnos(request: pytest.FixtureRequest) -> frozenset[int]:
    """EREMOTEIO on the emulator (the Pi's personality, spec §15); on hardware any NACK errno
    an adapter reports (EREMOTEIO from i2c-bcm2835, ENXIO, EIO or ETIMEDOUT from others)."""
    if request.config.stash.get(EMULATED, False):
        return frozenset({errno.EREMOTEIO})
    return NACK_ERRNOS


def _woken(bus: OpenedBus) -> Host:
    """Send the wake pulse and wait tWHI; the wake group is waiting, unread."""
    with pytest.raises(OSError):  # noqa: PT011 - which errno is checked elsewhere
        bus.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
    bus.clock.sleep(WAKE_DELAY_S)
    return Host(bus.bus, bus.clock)


def _einval(bus: OpenedBus, *msgs: i2c_msg) -> None:
    with pytest.raises(OSError) as caught:  # noqa: PT011 - the errno is asserted below
        bus.bus.i2c_rdwr(*msgs)
    assert caught.value.errno == errno.EINVAL, caught.value


def test_a_read_from_an_empty_address_is_nacked(
    bus: OpenedBus, nack_errnos: frozenset[int]
) -> None:
    error = expect_nack(lambda: bus.bus.i2c_rdwr(i2c_msg.read(EMPTY_ADDRESS, 1)))
    assert error.errno in nack_errnos


def test_a_write_to_an_empty_address_is_nacked(bus: OpenedBus, nack_errnos: frozenset[int]) -> None:
    error = expect_nack(lambda: bus.bus.i2c_rdwr(i2c_msg.write(EMPTY_ADDRESS, b"\x00")))
    assert error.errno in nack_errnos


def test_the_wake_pulse_to_address_0_is_never_acknowledged(
    bus: OpenedBus, nack_errnos: frozenset[int]
) -> None:
    error = expect_nack(lambda: bus.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00])))
    assert error.errno in nack_errnos


def test_after_the_wake_pulse_the_chip_answers_with_the_wake_group(bus: OpenedBus) -> None:
    host = _woken(bus)
    assert host.read(4) == WAKE_GROUP == bytes.fromhex("04113343")


def test_a_transfer_stops_at_its_first_nack_and_later_messages_reach_nobody(
    bus: OpenedBus,
) -> None:
    host = _woken(bus)
    expect_nack(
        lambda: bus.bus.i2c_rdwr(
            i2c_msg.read(EMPTY_ADDRESS, 1), i2c_msg.write(ATECC_ADDRESS, SLEEP)
        )
    )
    assert host.read(4) == WAKE_GROUP  # the sleep never arrived: the chip is awake


def test_messages_before_the_nack_have_taken_effect(bus: OpenedBus) -> None:
    host = _woken(bus)
    expect_nack(
        lambda: bus.bus.i2c_rdwr(
            i2c_msg.write(ATECC_ADDRESS, SLEEP), i2c_msg.read(EMPTY_ADDRESS, 1)
        )
    )
    expect_nack(lambda: host.read(4))  # the sleep arrived: a sleeping chip does not answer
    assert host.wake() == WAKE_GROUP


def test_more_than_42_messages_are_refused_with_einval_before_reaching_the_bus(
    bus: OpenedBus,
) -> None:
    host = _woken(bus)
    _einval(bus, *(i2c_msg.write(ATECC_ADDRESS, SLEEP) for _ in range(MAX_MESSAGES + 1)))
    assert host.read(4) == WAKE_GROUP  # none of the 43 sleeps was sent


def test_an_empty_transfer_is_refused_with_einval(bus: OpenedBus) -> None:
    _einval(bus)


def test_a_message_over_8192_bytes_is_refused_with_einval_before_reaching_the_bus(
    bus: OpenedBus,
) -> None:
    host = _woken(bus)
    _einval(
        bus,
        i2c_msg.write(ATECC_ADDRESS, SLEEP),
        i2c_msg.write(ATECC_ADDRESS, SLEEP + bytes(MAX_MESSAGE_BYTES)),
    )
    assert host.read(4) == WAKE_GROUP  # not even the first message was sent


def test_a_read_fills_exactly_the_bytes_asked_for(bus: OpenedBus) -> None:
    host = _woken(bus)
    first = i2c_msg.read(ATECC_ADDRESS, 1)
    bus.bus.i2c_rdwr(first)
    assert len(first) == 1
    assert bytes(first) == WAKE_GROUP[:1]
    assert host.read(3) == WAKE_GROUP[1:]  # the chip's pointer moved on by one byte


def test_the_chip_starts_a_command_at_the_stop_so_a_repeated_start_read_is_nacked(
    bus: OpenedBus,
) -> None:
    host = _woken(bus)
    host.read(4)
    info = _COMMANDS["Info revision"]
    expect_nack(
        lambda: bus.bus.i2c_rdwr(
            i2c_msg.write(ATECC_ADDRESS, b"\x03" + info), i2c_msg.read(ATECC_ADDRESS, 7)
        )
    )
    response = host.poll_read(7)  # the STOP after the NACK started it; it ran once
    assert group_is_valid(response)
    assert response[1:4] == bytes((0x00, 0x00, 0x60))
    host.idle()

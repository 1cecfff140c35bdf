"""The virtual I2C bus behaves like Linux i2c-dev on a Raspberry Pi, as seen through smbus2.

Every behavioural test runs twice: on the lean path taken when no fault is installed, and on the
fault-injection path with faults installed that never fire. Both must be indistinguishable.
"""

from __future__ import annotations

import ctypes
import errno
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smbus2 import i2c_msg

from sim.clock import VirtualClock
from sim.i2c_bus import (
    I2C_M_RD,
    I2C_RDWR_IOCTL_MAX_MSGS,
    I2C_RDWR_MAX_MSG_LEN,
    BitFlip,
    I2CTarget,
    Nack,
    Schedule,
    VirtualI2CBus,
)

PATHS = ("no-faults", "inert-faults")


def make_bus(path: str, **kwargs: object) -> VirtualI2CBus:
    bus = VirtualI2CBus(VirtualClock(), **kwargs)  # type: ignore[arg-type]
    if path == "inert-faults":
        bus.faults.inject(Nack(None, Schedule(probability=0.0)))
        bus.faults.inject(BitFlip(None, Schedule(probability=0.0)))
    return bus


@pytest.fixture(params=PATHS)
def bus(request: pytest.FixtureRequest) -> Iterator[VirtualI2CBus]:
    with make_bus(request.param) as b:
        yield b


def contents(msg: i2c_msg) -> bytes:
    return ctypes.string_at(msg.buf, msg.len)


class Device:
    """A register device that logs every bus event it sees, in order.

    A write sets the register pointer from its first byte and stores the rest there; a read
    returns registers from the pointer on and advances it. ``ack`` switches the device between
    acknowledging and ignoring its address.
    """

    def __init__(self, name: str = "dev") -> None:
        self.name = name
        self.regs = bytearray(range(256))
        self.pointer = 0
        self.ack = True
        self.address_override: int | None = None
        self.events: list[tuple[str, object]] = []
        self.produced: list[bytes] = []

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def bus_address(self, attached_at: int) -> int:
        return attached_at if self.address_override is None else self.address_override

    def i2c_write(self, data: bytes) -> bool:
        self.events.append(("write", data))
        if not self.ack:
            return False
        if data:
            self.pointer = data[0]
            for offset, value in enumerate(data[1:]):
                self.regs[(self.pointer + offset) & 0xFF] = value
        return True

    def i2c_read(self, length: int) -> bytes | None:
        self.events.append(("read", length))
        if not self.ack:
            return None
        out = bytes(self.regs[(self.pointer + i) & 0xFF] for i in range(length))
        self.pointer = (self.pointer + length) & 0xFF
        self.produced.append(out)
        return out

    def i2c_stop(self) -> None:
        self.events.append(("stop", None))

    def wake_pulse(self) -> None:
        self.events.append(("wake", None))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


# -- reads and writes ---------------------------------------------------------------------------


def test_read_fills_the_smbus2_message_buffer_in_place(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    dev.pointer = 0x10
    msg = i2c_msg.read(0x60, 5)
    bus.i2c_rdwr(msg)
    assert contents(msg) == bytes([0x10, 0x11, 0x12, 0x13, 0x14])


def test_write_delivers_exactly_the_message_bytes(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    bus.i2c_rdwr(i2c_msg.write(0x60, [0x03, 0x07, 0x1B, 0x00, 0x00, 0x00, 0x24, 0xCD]))
    assert dev.events == [
        ("write", bytes.fromhex("03071b00000024cd")),
        ("stop", None),
    ]


def test_zero_length_write_reaches_the_target_as_an_address_probe(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    bus.i2c_rdwr(i2c_msg.write(0x60, b""))
    assert dev.events == [("write", b""), ("stop", None)]


def test_zero_length_read_asks_the_target_and_leaves_the_buffer_alone(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    msg = i2c_msg.read(0x60, 0)
    bus.i2c_rdwr(msg)
    assert dev.events == [("read", 0), ("stop", None)]


def test_write_then_repeated_start_read_reaches_the_target_before_the_stop(
    bus: VirtualI2CBus,
) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    read = i2c_msg.read(0x60, 2)
    bus.i2c_rdwr(i2c_msg.write(0x60, [0x40]), read)
    assert dev.kinds() == ["write", "read", "stop"]
    assert contents(read) == bytes([0x40, 0x41])


def test_bytearray_answers_from_a_target_are_accepted(bus: VirtualI2CBus) -> None:
    class Loose(Device):
        def i2c_read(self, length: int) -> bytes | None:
            return bytearray(b"\xab" * length)  # type: ignore[return-value]

    bus.attach(0x60, Loose())
    msg = i2c_msg.read(0x60, 3)
    bus.i2c_rdwr(msg)
    assert contents(msg) == b"\xab\xab\xab"


def test_target_answering_the_wrong_length_is_reported_not_copied(bus: VirtualI2CBus) -> None:
    class Broken(Device):
        def i2c_read(self, length: int) -> bytes | None:
            return b"\x00" * (length + 1)

    dev = Broken()
    bus.attach(0x60, dev)
    with pytest.raises(ValueError, match="exactly the requested length"):
        bus.i2c_rdwr(i2c_msg.read(0x60, 4))
    assert dev.kinds()[-1] == "stop"


# -- NACK ---------------------------------------------------------------------------------------


def test_address_without_target_raises_eremoteio_naming_the_address(bus: VirtualI2CBus) -> None:
    with pytest.raises(OSError, match="0x42") as info:
        bus.i2c_rdwr(i2c_msg.read(0x42, 4))
    assert info.value.errno == errno.EREMOTEIO == 121


@pytest.mark.parametrize("direction", ["read", "write"])
def test_target_that_does_not_acknowledge_raises_the_nack_errno(
    bus: VirtualI2CBus, direction: str
) -> None:
    dev = Device()
    dev.ack = False
    bus.attach(0x60, dev)
    msg = i2c_msg.read(0x60, 4) if direction == "read" else i2c_msg.write(0x60, [0x03])
    with pytest.raises(OSError, match="0x60") as info:
        bus.i2c_rdwr(msg)
    assert info.value.errno == errno.EREMOTEIO


def test_nacked_read_leaves_the_host_buffer_untouched(bus: VirtualI2CBus) -> None:
    dev = Device()
    dev.ack = False
    bus.attach(0x60, dev)
    msg = i2c_msg.read(0x60, 4)
    with pytest.raises(OSError, match="0x60"):
        bus.i2c_rdwr(msg)
    assert contents(msg) == bytes(4)


@pytest.mark.parametrize("code", [errno.ENXIO, errno.EIO, errno.ETIMEDOUT])
def test_nack_errno_follows_the_adapter_personality(code: int) -> None:
    bus = VirtualI2CBus(VirtualClock(), nack_errno=code)
    assert bus.nack_errno == code
    with pytest.raises(OSError, match="0x60") as info:
        bus.i2c_rdwr(i2c_msg.write(0x60, [0]))
    assert info.value.errno == code
    with pytest.raises(OSError, match="0x00") as info:
        bus.i2c_rdwr(i2c_msg.write(0x00, [0]))
    assert info.value.errno == code


def test_clock_must_be_a_clock() -> None:
    with pytest.raises(TypeError, match="monotonic"):
        VirtualI2CBus(clock=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 100_000, True])
def test_nack_errno_must_be_an_errno_code(bad: int) -> None:
    with pytest.raises(ValueError, match="nack_errno"):
        VirtualI2CBus(nack_errno=bad)


def test_transfer_stops_at_the_first_nack_and_later_messages_reach_nobody(
    bus: VirtualI2CBus,
) -> None:
    first, second = Device("first"), Device("second")
    bus.attach(0x60, first)
    bus.attach(0x61, second)
    with pytest.raises(OSError, match="0x42"):
        bus.i2c_rdwr(
            i2c_msg.write(0x60, [0x20, 0xAA]),
            i2c_msg.write(0x42, [0x01]),
            i2c_msg.write(0x60, [0x30, 0xBB]),
            i2c_msg.write(0x61, [0x00]),
        )
    assert first.events == [("write", bytes([0x20, 0xAA])), ("stop", None)]
    assert first.regs[0x20] == 0xAA
    assert first.regs[0x30] == 0x30
    assert second.events == []


# -- STOP ---------------------------------------------------------------------------------------


def test_stop_reaches_each_addressed_target_exactly_once(bus: VirtualI2CBus) -> None:
    a, b, idle = Device("a"), Device("b"), Device("idle")
    bus.attach(0x60, a)
    bus.attach(0x61, b)
    bus.attach(0x62, idle)
    bus.i2c_rdwr(
        i2c_msg.write(0x60, [0x00]),
        i2c_msg.read(0x60, 1),
        i2c_msg.write(0x61, [0x00]),
        i2c_msg.read(0x60, 1),
    )
    assert a.kinds() == ["write", "read", "read", "stop"]
    assert b.kinds() == ["write", "stop"]
    assert idle.events == []


def test_stop_reaches_addressed_targets_when_the_transfer_aborts(bus: VirtualI2CBus) -> None:
    a, refusing = Device("a"), Device("refusing")
    refusing.ack = False
    bus.attach(0x60, a)
    bus.attach(0x61, refusing)
    with pytest.raises(OSError, match="0x61"):
        bus.i2c_rdwr(i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x61, 4), i2c_msg.read(0x60, 1))
    assert a.kinds() == ["write", "stop"]
    assert refusing.kinds() == ["read", "stop"]


def test_stop_is_delivered_even_when_a_target_raises(bus: VirtualI2CBus) -> None:
    class Exploding(Device):
        def i2c_write(self, data: bytes) -> bool:
            super().i2c_write(data)
            raise RuntimeError("emulator bug")

    dev = Exploding()
    bus.attach(0x60, dev)
    with pytest.raises(RuntimeError, match="emulator bug"):
        bus.i2c_rdwr(i2c_msg.write(0x60, [0x00]))
    assert dev.kinds() == ["write", "stop"]


def test_every_target_gets_its_stop_even_if_another_stop_raises(bus: VirtualI2CBus) -> None:
    class BadStop(Device):
        def i2c_stop(self) -> None:
            super().i2c_stop()
            raise RuntimeError("stop failed")

    bad, good = BadStop("bad"), Device("good")
    bus.attach(0x60, bad)
    bus.attach(0x61, good)
    with pytest.raises(RuntimeError, match="stop failed"):
        bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.write(0x61, [0]))
    assert bad.kinds().count("stop") == 1
    assert good.kinds().count("stop") == 1


def test_stop_goes_to_each_target_object_even_if_two_targets_compare_equal(
    bus: VirtualI2CBus,
) -> None:
    class Twin(Device):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Twin)

        __hash__ = None  # type: ignore[assignment]

    a, b = Twin("a"), Twin("b")
    bus.attach(0x60, a)
    bus.attach(0x61, b)
    bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.write(0x61, [0]))
    assert a.kinds() == ["write", "stop"]
    assert b.kinds() == ["write", "stop"]


def test_separate_transfers_each_end_with_their_own_stop(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    bus.i2c_rdwr(i2c_msg.write(0x60, [0x03, 0x07]))
    bus.i2c_rdwr(i2c_msg.read(0x60, 1))
    assert dev.kinds() == ["write", "stop", "read", "stop"]


# -- wake pulse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\x00", b"\x01", b""])
def test_write_to_address_zero_wakes_every_target_and_is_not_acknowledged(
    bus: VirtualI2CBus, payload: bytes
) -> None:
    a, b = Device("a"), Device("b")
    bus.attach(0x60, a)
    bus.attach(0x35, b)
    with pytest.raises(OSError, match="0x00") as info:
        bus.i2c_rdwr(i2c_msg.write(0x00, payload))
    assert info.value.errno == errno.EREMOTEIO
    assert a.events == [("wake", None)]
    assert b.events == [("wake", None)]


def test_read_from_address_zero_is_a_plain_nack_that_wakes_nobody(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    with pytest.raises(OSError, match="0x00") as info:
        bus.i2c_rdwr(i2c_msg.read(0x00, 1))
    assert info.value.errno == errno.EREMOTEIO
    assert dev.events == []


def test_wake_pulse_aborts_the_transfer_after_earlier_messages_took_effect(
    bus: VirtualI2CBus,
) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    with pytest.raises(OSError, match="0x00"):
        bus.i2c_rdwr(
            i2c_msg.write(0x60, [0x10, 0x99]),
            i2c_msg.write(0x00, [0x00]),
            i2c_msg.write(0x60, [0x11, 0x77]),
        )
    assert dev.kinds() == ["write", "wake", "stop"]
    assert dev.regs[0x10] == 0x99
    assert dev.regs[0x11] == 0x11


# -- routing ------------------------------------------------------------------------------------


def test_target_that_moves_its_address_answers_only_at_the_new_one(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    dev.address_override = 0x35
    with pytest.raises(OSError, match="0x60"):
        bus.i2c_rdwr(i2c_msg.read(0x60, 1))
    msg = i2c_msg.read(0x35, 1)
    bus.i2c_rdwr(msg)
    assert contents(msg) == b"\x00"
    assert dev.kinds() == ["read", "stop"]
    assert set(bus.targets) == {0x60}


def test_detached_target_no_longer_receives_anything(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    assert bus.detach(0x60) is dev
    with pytest.raises(OSError, match="0x60"):
        bus.i2c_rdwr(i2c_msg.write(0x60, [0]))
    with pytest.raises(OSError, match="0x00"):
        bus.i2c_rdwr(i2c_msg.write(0x00, [0]))
    assert dev.events == []
    assert dict(bus.targets) == {}


def test_targets_is_a_read_only_view_of_the_wiring() -> None:
    bus = VirtualI2CBus(VirtualClock())
    dev = Device()
    view = bus.targets
    bus.attach(0x60, dev)
    assert dict(view) == {0x60: dev}
    with pytest.raises(TypeError):
        view[0x61] = dev  # type: ignore[index]


def test_device_satisfies_the_target_protocol() -> None:
    assert isinstance(Device(), I2CTarget)


@pytest.mark.parametrize("address", [0x00, 0x80, -1, 0x1FF])
def test_attach_refuses_addresses_outside_seven_bits_and_zero(address: int) -> None:
    bus = VirtualI2CBus(VirtualClock())
    with pytest.raises(ValueError, match=r"0x01\.\.0x7F"):
        bus.attach(address, Device())


@pytest.mark.parametrize("address", [True, "0x60", 96.0])
def test_attach_refuses_non_integer_addresses(address: object) -> None:
    bus = VirtualI2CBus(VirtualClock())
    with pytest.raises(ValueError, match="address"):
        bus.attach(address, Device())  # type: ignore[arg-type]


@pytest.mark.parametrize("address", [0x01, 0x7F])
def test_attach_accepts_the_ends_of_the_address_range(address: int) -> None:
    bus = VirtualI2CBus(VirtualClock())
    bus.attach(address, Device())
    assert address in bus.targets


def test_attach_refuses_a_second_target_at_the_same_address() -> None:
    bus = VirtualI2CBus(VirtualClock())
    bus.attach(0x60, Device())
    with pytest.raises(ValueError, match="already has a target"):
        bus.attach(0x60, Device())


def test_attach_refuses_the_same_target_at_two_addresses() -> None:
    bus = VirtualI2CBus(VirtualClock())
    dev = Device()
    bus.attach(0x60, dev)
    with pytest.raises(ValueError, match="already attached at 0x60"):
        bus.attach(0x61, dev)


def test_attach_refuses_objects_that_are_not_targets() -> None:
    bus = VirtualI2CBus(VirtualClock())
    with pytest.raises(TypeError, match="I2CTarget"):
        bus.attach(0x60, object())  # type: ignore[arg-type]


def test_detach_of_an_empty_address_is_a_key_error() -> None:
    bus = VirtualI2CBus(VirtualClock())
    with pytest.raises(KeyError, match="0x60"):
        bus.detach(0x60)


# -- i2c-dev argument checks --------------------------------------------------------------------


def test_transfer_without_messages_is_einval(bus: VirtualI2CBus) -> None:
    with pytest.raises(OSError, match="Invalid argument") as info:
        bus.i2c_rdwr()
    assert info.value.errno == errno.EINVAL


def test_more_than_42_messages_is_einval_and_nothing_is_delivered(bus: VirtualI2CBus) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    msgs = [i2c_msg.write(0x60, [0]) for _ in range(I2C_RDWR_IOCTL_MAX_MSGS + 1)]
    with pytest.raises(OSError, match="43 messages") as info:
        bus.i2c_rdwr(*msgs)
    assert info.value.errno == errno.EINVAL
    assert dev.events == []
    bus.i2c_rdwr(*msgs[:I2C_RDWR_IOCTL_MAX_MSGS])
    assert dev.kinds().count("write") == 42


def test_message_longer_than_8192_bytes_is_einval_and_nothing_is_delivered(
    bus: VirtualI2CBus,
) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    with pytest.raises(OSError, match="8193-byte") as info:
        bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.read(0x60, I2C_RDWR_MAX_MSG_LEN + 1))
    assert info.value.errno == errno.EINVAL
    assert dev.events == []
    bus.i2c_rdwr(i2c_msg.read(0x60, I2C_RDWR_MAX_MSG_LEN))
    assert dev.events[0] == ("read", 8192)


@pytest.mark.parametrize("flags", [0, I2C_M_RD])
def test_message_without_a_buffer_is_efault_and_nothing_is_delivered(
    bus: VirtualI2CBus, flags: int
) -> None:
    dev = Device()
    bus.attach(0x60, dev)
    with pytest.raises(OSError, match="no buffer") as info:
        bus.i2c_rdwr(i2c_msg(addr=0x60, flags=flags, len=4, buf=None))
    assert info.value.errno == errno.EFAULT
    assert dev.events == []


def test_closed_bus_fails_with_ebadf() -> None:
    bus = VirtualI2CBus(VirtualClock())
    dev = Device()
    bus.attach(0x60, dev)
    bus.close()
    bus.close()
    assert bus.closed
    with pytest.raises(OSError, match="closed") as info:
        bus.i2c_rdwr(i2c_msg.write(0x60, [0]))
    assert info.value.errno == errno.EBADF
    assert dev.events == []


def test_context_manager_closes_the_bus() -> None:
    with VirtualI2CBus(VirtualClock()) as bus:
        assert not bus.closed
    assert bus.closed
    with pytest.raises(OSError, match="closed") as info:
        bus.i2c_rdwr(i2c_msg.read(0x60, 1))
    assert info.value.errno == errno.EBADF


def test_rejected_calls_do_not_count_as_transfers(bus: VirtualI2CBus) -> None:
    bus.attach(0x60, Device())
    bus.i2c_rdwr(i2c_msg.write(0x60, [0]))
    with pytest.raises(OSError, match="Invalid argument"):
        bus.i2c_rdwr()
    with pytest.raises(OSError, match="0x42"):
        bus.i2c_rdwr(i2c_msg.write(0x42, [0]))
    assert bus.transfers == 2


# -- concurrency --------------------------------------------------------------------------------


class SequenceRecorder:
    """Logs every message and STOP in arrival order, yielding the GIL inside each message so that
    a missing adapter lock would show up as interleaved transfers."""

    def __init__(self) -> None:
        self.log: list[bytes | None] = []

    def bus_address(self, attached_at: int) -> int:
        return attached_at

    def i2c_write(self, data: bytes) -> bool:
        self.log.append(data)
        time.sleep(0)
        return True

    def i2c_read(self, length: int) -> bytes | None:
        self.log.append(b"r")
        time.sleep(0)
        return bytes(length)

    def i2c_stop(self) -> None:
        self.log.append(None)

    def wake_pulse(self) -> None:
        pass


@pytest.mark.parametrize("path", PATHS)
def test_concurrent_transfers_never_interleave_messages(path: str) -> None:
    bus = make_bus(path)
    recorder = SequenceRecorder()
    bus.attach(0x50, recorder)
    rounds, workers = 200, 4

    def hammer(tag: int) -> None:
        for k in range(rounds):
            bus.i2c_rdwr(
                i2c_msg.write(0x50, [tag, k & 0xFF, 0]),
                i2c_msg.write(0x50, [tag, k & 0xFF, 1]),
                i2c_msg.read(0x50, 2),
                i2c_msg.write(0x50, [tag, k & 0xFF, 2]),
            )

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=hammer, args=(tag,)) for tag in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(old)

    transfers: list[list[bytes]] = [[]]
    for entry in recorder.log:
        if entry is None:
            transfers.append([])
        else:
            transfers[-1].append(entry)
    assert transfers.pop() == []
    assert len(transfers) == rounds * workers
    for messages in transfers:
        tag, k = messages[0][0], messages[0][1]
        assert messages == [bytes([tag, k, 0]), bytes([tag, k, 1]), b"r", bytes([tag, k, 2])]
    assert bus.transfers == rounds * workers


# -- transparency property ----------------------------------------------------------------------

_message = st.one_of(
    st.tuples(st.just("w"), st.binary(min_size=0, max_size=40)),
    st.tuples(st.just("r"), st.integers(min_value=0, max_value=40)),
)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=60, deadline=None)
@given(transfers=st.lists(st.lists(_message, min_size=1, max_size=6), min_size=1, max_size=8))
def test_without_faults_the_host_gets_exactly_the_bytes_the_target_produced(
    path: str, transfers: list[list[tuple[str, bytes | int]]]
) -> None:
    bus = make_bus(path)
    dev = Device()
    bus.attach(0x51, dev)
    sent: list[bytes] = []
    received: list[bytes] = []
    for transfer in transfers:
        msgs: list[i2c_msg] = []
        for kind, arg in transfer:
            if kind == "w":
                assert isinstance(arg, bytes)
                msgs.append(i2c_msg.write(0x51, arg))
                sent.append(arg)
            else:
                assert isinstance(arg, int)
                msgs.append(i2c_msg.read(0x51, arg))
        bus.i2c_rdwr(*msgs)
        received.extend(contents(m) for m in msgs if m.flags & 1)
    assert received == dev.produced
    assert [data for kind, data in dev.events if kind == "write"] == sent
    assert dev.kinds().count("stop") == len(transfers)

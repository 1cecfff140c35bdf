"""sim.i2c_dev: the real smbus2 code (SMBus.open, i2c_rdwr, their ctypes structs and ioctl calls)
reaches the emulator through an i2c-dev stand-in, and nothing else is touched.

Everything runs on a VirtualClock; nothing sleeps in real time.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import smbus2.smbus2 as smbus2_module
from smbus2 import SMBus, i2c_msg
from smbus2.smbus2 import I2cFunc, i2c_rdwr_ioctl_data

from lokey.backends import OpenedBus, SpyBus, open_bus
from sim.atecc608a import ATECC608A
from sim.clock import VirtualClock
from sim.i2c_bus import VirtualI2CBus
from sim.i2c_dev import (
    BCM2835_FUNCS,
    I2C_FUNCS,
    I2C_PEC,
    I2C_RDWR,
    I2C_RETRIES,
    I2C_SLAVE,
    I2C_SLAVE_FORCE,
    I2C_TIMEOUT,
    emulated_i2c_dev,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
PACKETS = json.loads((VECTORS / "atecc_packets.json").read_text())
COMMANDS = {entry["name"]: bytes.fromhex(entry["bus_write_hex"]) for entry in PACKETS["commands"]}
RESPONSES = {entry["name"]: bytes.fromhex(entry["packet_hex"]) for entry in PACKETS["responses"]}
WAKE_GROUP = bytes.fromhex(PACKETS["wake_response_hex"])
T_WHI_S = 1500e-6  # spec §1.3


def errno_of(transfer: Callable[[], object]) -> int | None:
    """The errno of the OSError a call must raise."""
    try:
        transfer()
    except OSError as error:
        return error.errno
    raise AssertionError("the call succeeded; expected an OSError")


def rdwr_data(*msgs: i2c_msg) -> i2c_rdwr_ioctl_data:
    """smbus2's struct factory (its stub types each argument as a Sequence; they are messages)."""
    return i2c_rdwr_ioctl_data.create(*msgs)  # type: ignore[arg-type]


def real_ioctl_is_back() -> bool:
    return smbus2_module.ioctl is fcntl.ioctl  # type: ignore[attr-defined]


def chip_bus(
    clock: VirtualClock, *, nack_errno: int = errno.EREMOTEIO, **chip: object
) -> VirtualI2CBus:
    bus = VirtualI2CBus(clock, nack_errno=nack_errno)
    bus.attach(0x60, ATECC608A(clock=clock, **chip))  # type: ignore[arg-type]
    return bus


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def bus(clock: VirtualClock) -> VirtualI2CBus:
    return chip_bus(clock)


@pytest.fixture
def device(bus: VirtualI2CBus, clock: VirtualClock) -> Iterator[OpenedBus]:
    """``open_bus("i2c://<stand-in>")``: a real smbus2.SMBus on the emulated node."""
    with emulated_i2c_dev(bus) as path, open_bus(f"i2c://{path}", clock=clock) as opened:
        yield opened
    assert real_ioctl_is_back()


def wake(opened: OpenedBus) -> bytes:
    assert errno_of(lambda: opened.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))) == 121
    opened.clock.sleep(T_WHI_S)
    return read(opened, 4)


def read(opened: OpenedBus, length: int, address: int = 0x60) -> bytes:
    msg = i2c_msg.read(address, length)
    opened.bus.i2c_rdwr(msg)
    return bytes(msg)


def command(opened: OpenedBus, bus_write: bytes, length: int) -> bytes:
    opened.bus.i2c_rdwr(i2c_msg.write(0x60, bus_write))
    for _ in range(2000):
        try:
            return read(opened, length)
        except OSError:
            opened.clock.sleep(0.0005)
    raise AssertionError("the chip never answered")


# -- the smbus2 path -----------------------------------------------------------------------------


def test_open_bus_on_the_stand_in_is_a_real_smbus_with_the_pi_functionality(
    device: OpenedBus,
) -> None:
    assert device.kind == "i2c-dev"
    assert device.emulator is None  # as far as lokey can tell, this is hardware
    smbus = device.bus
    assert type(smbus) is SMBus
    assert smbus.funcs == BCM2835_FUNCS == I2cFunc.I2C | I2cFunc.SMBUS_EMUL


def test_wake_pulse_through_smbus2_fails_with_eremoteio_and_the_wake_group_reads_back(
    device: OpenedBus, bus: VirtualI2CBus
) -> None:
    assert wake(device) == WAKE_GROUP
    assert [(r.address, r.outcome) for r in bus.trace.records()] == [(0, "wake"), (0x60, "ack")]


@pytest.mark.parametrize(
    ("revision", "vector"),
    [("608A", "Info revision ATECC608A"), ("608B", "Info revision ATECC608B")],
)
def test_info_revision_through_smbus2_returns_the_vector_bytes(
    clock: VirtualClock, revision: str, vector: str
) -> None:
    bus = chip_bus(clock, revision=revision)
    with emulated_i2c_dev(bus) as path, open_bus(f"i2c://{path}", clock=clock) as device:
        assert wake(device) == WAKE_GROUP
        assert command(device, COMMANDS["Info revision"], 7) == RESPONSES[vector]
    # the command crossed smbus2's structs byte for byte
    writes = [r.data for r in bus.trace.records() if r.direction == "w" and r.address == 0x60]
    assert writes == [COMMANDS["Info revision"]]


@pytest.mark.parametrize("code", [errno.EREMOTEIO, errno.ENXIO, errno.EIO, errno.ETIMEDOUT])
def test_the_nack_errno_of_the_virtual_bus_survives_the_ioctl(
    clock: VirtualClock, code: int
) -> None:
    bus = chip_bus(clock, nack_errno=code)
    with emulated_i2c_dev(bus) as path, SMBus(path) as smbus:
        assert errno_of(lambda: smbus.i2c_rdwr(i2c_msg.read(0x60, 4))) == code  # asleep
        assert errno_of(lambda: smbus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))) == code  # wake
        assert errno_of(lambda: smbus.i2c_rdwr(i2c_msg.read(0x61, 1))) == code  # nobody


def test_read_buffers_are_filled_only_when_the_whole_transfer_succeeds(
    device: OpenedBus,
) -> None:
    """i2c-dev copies read data back to user space only after i2c_transfer succeeded."""
    assert wake(device) == WAKE_GROUP
    rewind, first, missing = (
        i2c_msg.write(0x60, [0x00]),
        i2c_msg.read(0x60, 4),
        i2c_msg.read(0x61, 1),
    )
    assert errno_of(lambda: device.bus.i2c_rdwr(rewind, first, missing)) == errno.EREMOTEIO
    assert bytes(first) == b"\x00" * 4  # the chip answered, but the transfer failed
    rewind, again = i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x60, 4)
    device.bus.i2c_rdwr(rewind, again)
    assert bytes(again) == WAKE_GROUP


def test_a_closed_virtual_bus_reports_ebadf_through_the_ioctl(
    device: OpenedBus, bus: VirtualI2CBus
) -> None:
    bus.close()
    assert errno_of(lambda: read(device, 4)) == errno.EBADF


def test_spy_over_the_stand_in_records_what_the_virtual_bus_traced(
    bus: VirtualI2CBus, clock: VirtualClock
) -> None:
    with emulated_i2c_dev(bus) as path, open_bus(f"spy+i2c://{path}", clock=clock) as device:
        assert isinstance(device.bus, SpyBus)
        assert type(device.inner_bus) is SMBus
        assert wake(device) == WAKE_GROUP
        assert errno_of(lambda: read(device, 4, address=0x61)) == errno.EREMOTEIO
        command(device, COMMANDS["Random"], 35)  # NACKed polls while busy, then the answer
        device.bus.i2c_rdwr(i2c_msg.write(0x60, [0x02]))  # idle
        spy = device.trace
        assert spy is not None
        outcomes = {r.outcome for r in spy.records()}
        assert outcomes == {"wake", "nack", "ack"}
        assert spy.to_jsonl() == bus.trace.to_jsonl()


# -- which descriptors the shim serves -----------------------------------------------------------


def test_the_real_ioctl_is_back_after_exit_and_the_stand_in_is_gone(bus: VirtualI2CBus) -> None:
    before = smbus2_module.ioctl  # type: ignore[attr-defined]
    with emulated_i2c_dev(bus) as path:
        assert smbus2_module.ioctl is not before  # type: ignore[attr-defined]
        assert Path(path).is_file()
    assert real_ioctl_is_back()
    assert not Path(path).exists()


def test_other_descriptors_reach_the_real_ioctl_while_the_shim_is_active(
    bus: VirtualI2CBus, tmp_path: Path
) -> None:
    other = tmp_path / "plain"
    other.write_bytes(b"")
    with emulated_i2c_dev(bus):
        assert errno_of(lambda: SMBus(str(other))) == errno.ENOTTY  # the kernel's answer
        fd = os.open(other, os.O_RDWR)
        try:
            funcs = ctypes.c_ulong()
            shim = smbus2_module.ioctl  # type: ignore[attr-defined]
            assert errno_of(lambda: shim(fd, I2C_FUNCS, funcs)) == errno.ENOTTY
        finally:
            os.close(fd)
        assert errno_of(lambda: shim(fd, I2C_FUNCS, funcs)) == errno.EBADF  # closed now
        with pytest.raises(ValueError, match="negative"):  # fcntl's own check, untouched
            shim(-1, I2C_FUNCS, funcs)


def test_a_former_stand_in_path_is_an_ordinary_file_after_exit(
    bus: VirtualI2CBus, tmp_path: Path
) -> None:
    path = tmp_path / "i2c-1"
    path.write_bytes(b"")
    with emulated_i2c_dev(bus, path) as name:
        assert name == str(path)
        with SMBus(name) as smbus:
            assert smbus.funcs == BCM2835_FUNCS
    assert path.exists()  # it was there before: left in place
    assert errno_of(lambda: SMBus(str(path))) == errno.ENOTTY


def test_a_reused_descriptor_number_is_not_mistaken_for_the_stand_in(
    bus: VirtualI2CBus, tmp_path: Path
) -> None:
    other = tmp_path / "plain"
    other.write_bytes(b"")
    with emulated_i2c_dev(bus) as path:
        smbus = SMBus(path)
        number = smbus.fd
        smbus.close()
        fd = os.open(other, os.O_RDWR)
        try:
            assert fd == number  # the lowest free number comes back
            shim = smbus2_module.ioctl  # type: ignore[attr-defined]
            assert errno_of(lambda: shim(fd, I2C_FUNCS, ctypes.c_ulong())) == errno.ENOTTY
        finally:
            os.close(fd)


def test_duplicated_descriptors_and_file_objects_are_recognised(bus: VirtualI2CBus) -> None:
    with emulated_i2c_dev(bus) as path, SMBus(path) as smbus:
        assert smbus.fd is not None
        shim = smbus2_module.ioctl  # type: ignore[attr-defined]
        duplicate = os.dup(smbus.fd)
        try:
            funcs = ctypes.c_ulong()
            assert shim(duplicate, I2C_FUNCS, funcs) == 0
            assert funcs.value == BCM2835_FUNCS
        finally:
            os.close(duplicate)
        with open(path, "rb") as handle:
            funcs = ctypes.c_ulong()
            assert shim(handle, I2C_FUNCS, funcs) == 0
            assert funcs.value == BCM2835_FUNCS


def test_nested_stand_ins_reach_their_own_emulators(clock: VirtualClock) -> None:
    first, second = chip_bus(clock, revision="608A"), chip_bus(clock, revision="608B")
    with emulated_i2c_dev(first) as path_a:
        with emulated_i2c_dev(second) as path_b:
            assert path_a != path_b
            with (
                open_bus(f"i2c://{path_a}", clock=clock) as a,
                open_bus(f"i2c://{path_b}", clock=clock) as b,
            ):
                assert wake(a) == WAKE_GROUP  # the wake pulse wakes only the chip on that bus
                assert errno_of(lambda: read(b, 4)) == errno.EREMOTEIO
                assert wake(b) == WAKE_GROUP
                assert (
                    command(a, COMMANDS["Info revision"], 7) == RESPONSES["Info revision ATECC608A"]
                )
                assert (
                    command(b, COMMANDS["Info revision"], 7) == RESPONSES["Info revision ATECC608B"]
                )
        assert not real_ioctl_is_back()  # the outer block is still active
        with SMBus(path_a) as smbus:
            assert smbus.funcs == BCM2835_FUNCS
    assert real_ioctl_is_back()


def test_a_patch_laid_over_the_shim_is_left_in_place_and_cannot_make_a_loop(
    bus: VirtualI2CBus, tmp_path: Path
) -> None:
    other = tmp_path / "plain"
    other.write_bytes(b"")
    seen: list[int] = []
    with emulated_i2c_dev(bus):
        beneath = smbus2_module.ioctl  # type: ignore[attr-defined]

        def foreign(fd: object, request: int, *rest: object) -> object:
            seen.append(request)
            return beneath(fd, request, *rest)

        smbus2_module.ioctl = foreign  # type: ignore[attr-defined]
    try:
        assert smbus2_module.ioctl is foreign  # type: ignore[attr-defined]  # not clobbered
        with emulated_i2c_dev(bus) as path:  # ours goes on top again; the chain has a cycle
            with SMBus(path) as smbus:
                assert smbus.funcs == BCM2835_FUNCS
            assert errno_of(lambda: SMBus(str(other))) == errno.ENOTTY  # no recursion
        assert smbus2_module.ioctl is foreign  # type: ignore[attr-defined]  # put back
        assert errno_of(lambda: SMBus(str(other))) == errno.ENOTTY  # through it, to fcntl
        assert seen == [I2C_FUNCS]
    finally:
        smbus2_module.ioctl = fcntl.ioctl  # type: ignore[attr-defined]


def test_stand_ins_in_several_threads_at_once(clock: VirtualClock) -> None:
    barrier = threading.Barrier(4)
    answers: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            local = VirtualClock()
            bus = chip_bus(local, timing="instant")
            with emulated_i2c_dev(bus) as path, SMBus(path) as smbus:
                barrier.wait(timeout=10)
                for _ in range(50):
                    errno_of(lambda: smbus.i2c_rdwr(i2c_msg.write(0x00, [0x00])))
                    msg = i2c_msg.read(0x60, 4)
                    smbus.i2c_rdwr(msg)
                    smbus.i2c_rdwr(i2c_msg.write(0x60, [0x02]))  # idle
                answers.append(bytes(msg))
                barrier.wait(timeout=10)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert answers == [WAKE_GROUP] * 4
    assert real_ioctl_is_back()


# -- stand-in paths ------------------------------------------------------------------------------


def test_a_missing_path_is_created_and_removed_again(bus: VirtualI2CBus, tmp_path: Path) -> None:
    path = tmp_path / "i2c-7"
    with emulated_i2c_dev(bus, path) as name:
        assert Path(name).is_file()
        with SMBus(name) as smbus:
            assert smbus.funcs == BCM2835_FUNCS
    assert not path.exists()


def test_a_real_device_node_is_never_taken_over(bus: VirtualI2CBus) -> None:
    with (
        pytest.raises(ValueError, match=r"/dev/null is not a regular file"),
        emulated_i2c_dev(bus, "/dev/null"),
    ):
        pass
    assert real_ioctl_is_back()


def test_one_path_cannot_be_emulated_twice_at_once(bus: VirtualI2CBus, clock: VirtualClock) -> None:
    with emulated_i2c_dev(bus) as path:
        with (
            pytest.raises(ValueError, match=r"is already an emulated i2c-dev node"),
            emulated_i2c_dev(chip_bus(clock), path),
        ):
            pass
        with SMBus(path) as smbus:  # the first registration is intact
            assert smbus.funcs == BCM2835_FUNCS
    assert real_ioctl_is_back()


# -- the requests, one by one --------------------------------------------------------------------


@pytest.fixture
def node(bus: VirtualI2CBus) -> Iterator[int]:
    """A raw descriptor on a stand-in, for calling the patched ioctl directly."""
    with emulated_i2c_dev(bus) as path:
        fd = os.open(path, os.O_RDWR)
        try:
            yield fd
        finally:
            os.close(fd)


def shim(fd: int, request: int, arg: object = 0, mutate_flag: bool = True) -> int | bytes:
    result: int | bytes = smbus2_module.ioctl(fd, request, arg, mutate_flag)  # type: ignore[attr-defined]
    return result


def test_funcs_into_a_bytes_argument_returns_a_copy_like_fcntl(node: int) -> None:
    size = ctypes.sizeof(ctypes.c_ulong)
    result = shim(node, I2C_FUNCS, bytes(size))
    assert isinstance(result, bytes)
    assert int.from_bytes(result, "little") == BCM2835_FUNCS
    buffer = bytearray(size)
    copy = shim(node, I2C_FUNCS, buffer, False)  # mutate_flag=False: the buffer stays as it was
    assert buffer == bytearray(size)
    assert copy == result


@pytest.mark.parametrize(
    ("arg", "code"), [(0, errno.EFAULT), (b"\x00", errno.EFAULT), ("text", errno.EFAULT)]
)
def test_funcs_needs_a_large_enough_buffer(node: int, arg: object, code: int) -> None:
    assert errno_of(lambda: shim(node, I2C_FUNCS, arg)) == code


@pytest.mark.parametrize("request_", [I2C_SLAVE, I2C_SLAVE_FORCE])
def test_slave_address_requests_accept_7_bit_addresses_only(node: int, request_: int) -> None:
    assert shim(node, request_, 0x60) == 0
    assert shim(node, request_, 0x00) == 0
    assert errno_of(lambda: shim(node, request_, 0x80)) == errno.EINVAL
    assert errno_of(lambda: shim(node, request_, -1)) == errno.EINVAL
    assert errno_of(lambda: shim(node, request_, bytearray(4))) == errno.EINVAL


def test_retries_timeout_and_pec_are_accepted(node: int, bus: VirtualI2CBus) -> None:
    for request in (I2C_RETRIES, I2C_TIMEOUT, I2C_PEC):
        assert shim(node, request, 1) == 0
    path = os.readlink(f"/proc/self/fd/{node}")
    with SMBus(path) as smbus:
        smbus.enable_pec(True)  # smbus2 checks the SMBUS_PEC bit, then issues I2C_PEC
        assert smbus.pec == 1


def test_smbus_transfers_are_refused_saying_they_are_not_emulated(device: OpenedBus) -> None:
    smbus = device.bus
    assert isinstance(smbus, SMBus)
    with pytest.raises(OSError, match=r"I2C_SMBUS transfers are not emulated") as info:
        smbus.read_byte(0x60)
    assert info.value.errno == errno.EOPNOTSUPP


def test_unknown_requests_are_enotty_like_i2c_dev(node: int) -> None:
    with pytest.raises(OSError, match=r"unknown request 0x0704") as info:
        shim(node, 0x0704, 1)  # I2C_TENBIT
    assert info.value.errno == errno.ENOTTY


def test_rdwr_failures_raise_the_errno_of_the_bus(node: int) -> None:
    data = rdwr_data(i2c_msg.write(0x60, [0x02]), i2c_msg.read(0x61, 0))
    assert errno_of(lambda: shim(node, I2C_RDWR, data)) == errno.EREMOTEIO  # nobody awake
    data = rdwr_data(i2c_msg.write(0x00, [0x00]))
    assert errno_of(lambda: shim(node, I2C_RDWR, data)) == errno.EREMOTEIO


def test_rdwr_success_returns_the_message_count(bus: VirtualI2CBus, clock: VirtualClock) -> None:
    with emulated_i2c_dev(bus) as path:
        fd = os.open(path, os.O_RDWR)
        try:
            errno_of(lambda: shim(fd, I2C_RDWR, rdwr_data(i2c_msg.write(0, [0]))))
            clock.sleep(T_WHI_S)
            rewind, answer = i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x60, 4)
            assert shim(fd, I2C_RDWR, rdwr_data(rewind, answer)) == 2
            assert bytes(answer) == WAKE_GROUP
            # a read-only copy of the struct still reaches the caller's message buffers
            again = i2c_msg.read(0x60, 4)
            data = rdwr_data(i2c_msg.write(0x60, [0x00]), again)  # owns the message array
            frozen = bytes(data)
            result = shim(fd, I2C_RDWR, frozen)
            assert result == frozen
            assert bytes(again) == WAKE_GROUP
        finally:
            os.close(fd)


class RawMsg(ctypes.Structure):
    _fields_ = (
        ("addr", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("len", ctypes.c_uint16),
        ("buf", ctypes.c_void_p),
    )


class RawRdwr(ctypes.Structure):
    _fields_ = (("msgs", ctypes.c_void_p), ("nmsgs", ctypes.c_uint32))


def raw_rdwr(*msgs: tuple[int, int, int, int | None]) -> tuple[RawRdwr, object]:
    array = (RawMsg * max(len(msgs), 1))(*(RawMsg(*m) for m in msgs))
    return RawRdwr(ctypes.addressof(array) if msgs else None, len(msgs)), array


def test_rdwr_argument_checks_follow_i2cdev_ioctl_rdwr(node: int, bus: VirtualI2CBus) -> None:
    buffer = ctypes.create_string_buffer(8)
    address = ctypes.addressof(buffer)
    cases: list[tuple[tuple[tuple[int, int, int, int | None], ...], int, str]] = [
        ((), errno.EINVAL, "no messages"),
        (((0x60, 0, 1, address),) * 43, errno.EINVAL, "43 messages"),
        (((0x60, 0, 8193, address),), errno.EINVAL, "8193-byte message"),
        (((0x60, 0, 4, None),), errno.EFAULT, "has 4 bytes and no buffer"),
        (((0x60, 0x0010, 1, address),), errno.EOPNOTSUPP, "message flags 0x0010"),
        (((0x60, 0x0401, 1, address),), errno.EOPNOTSUPP, "message flags 0x0401"),
    ]
    for msgs, code, message in cases:
        data, keep = raw_rdwr(*msgs)
        with pytest.raises(OSError, match=message) as info:
            shim(node, I2C_RDWR, data)
        assert info.value.errno == code, message
        del keep
    assert errno_of(lambda: shim(node, I2C_RDWR, 0)) == errno.EFAULT
    assert bus.transfers == 0  # nothing reached the bus


def test_a_zero_length_message_without_a_buffer_is_a_probe(node: int, bus: VirtualI2CBus) -> None:
    data, keep = raw_rdwr((0x61, 0, 0, None))
    assert errno_of(lambda: shim(node, I2C_RDWR, data)) == errno.EREMOTEIO
    assert [(r.address, r.data, r.outcome) for r in bus.trace.records()] == [(0x61, b"", "nack")]
    del keep

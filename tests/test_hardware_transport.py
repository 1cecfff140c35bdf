"""The transport against every fault of spec §14: wire faults (sim.i2c_bus) and chip faults
(sim.atecc608a), each with the outcome "what a correct driver must do" asks for."""

from __future__ import annotations

import errno

import pytest
from smbus2 import i2c_msg

from lokey.errors import (
    BusError,
    ChipCrcError,
    CommunicationError,
    DeviceError,
    DeviceStatusError,
    EccFaultError,
    ExecutionError,
    HealthTestError,
    LostCommandError,
    NoDeviceError,
    ParseError,
    SelfTestError,
    WatchdogError,
)
from lokey.hardware.packets import Opcode
from lokey.hardware.transport import TransportTiming
from sim.atecc608a import (
    BrownOut,
    ChipFault,
    CorruptResponseCrc,
    ExtraBusy,
    ForcedStatus,
    LockState,
    LostCommand,
    RngHealthFailure,
    SelfTestFailure,
    Status,
    WakeIgnored,
    WrongCount,
)
from sim.i2c_bus import (
    BitFlip,
    CorruptByte,
    Nack,
    Schedule,
    SdaLow,
    StuckBus,
    TruncatedRead,
)
from tests.hardware_helpers import ADDRESS, DriverRig, make_driver_rig

BLOCKS = [bytes((i,)) * 16 + bytes(range(i, i + 16)) for i in range(1, 40)]


def scripted_rig(timing: str = "typical", **options: object) -> DriverRig:
    """A config-locked chip whose Random output is the known blocks above, in order."""
    rig = make_driver_rig(timing, lock=LockState.CONFIG_LOCKED, **options)  # type: ignore[arg-type]
    rig.chip.control.script_random(*BLOCKS)
    return rig


def randoms(rig: DriverRig) -> int:
    return rig.opcodes().count(Opcode.RANDOM)


# --- wake ------------------------------------------------------------------------------------


def test_wake_reads_and_checks_the_wake_group() -> None:
    rig = make_driver_rig("maximum")
    rig.transport.wake()
    assert rig.transport.awake
    assert rig.chip.control.state().power == "awake"
    rig.transport.idle()
    assert rig.chip.control.state().power == "idle"


def test_without_check_wake_the_group_is_never_read() -> None:
    rig = scripted_rig(check_wake=False)
    assert rig.driver.random() == BLOCKS[0]
    reads = [r for r in rig.records() if r.direction == "r"]
    assert [len(r.data) for r in reads] == [35]  # only the response, no 4-byte wake read


def test_wake_in_failure_state_is_a_self_test_error_and_a_transient_one_clears() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(SelfTestFailure(tests=0x01))  # the next wake's self-test fails
    with pytest.raises(SelfTestError) as caught:
        rig.driver.random()
    assert caught.value.status == Status.SELFTEST_ERROR
    assert rig.chip.control.state().power == "sleep"  # put back to sleep for a clean re-test
    assert rig.driver.random() == BLOCKS[0]  # that wake re-ran the test and it passed


def test_a_persistent_self_test_failure_keeps_failing_at_wake() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(SelfTestFailure(tests=0x20, persistent=True))
    for _ in range(3):
        with pytest.raises(SelfTestError):
            rig.driver.random()
    assert randoms(rig) == 0


def test_wake_ignored_a_few_times_is_retried() -> None:
    rig = scripted_rig()
    handle = rig.chip.control.inject(WakeIgnored(count=5))
    assert rig.driver.random() == BLOCKS[0]
    assert handle.fired == 5


def test_wake_ignored_forever_is_no_device() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(WakeIgnored(count=None))
    with pytest.raises(NoDeviceError) as caught:
        rig.driver.random()
    assert caught.value.errno == errno.EREMOTEIO
    pulses = [r for r in rig.records() if r.address == 0]
    assert len(pulses) == TransportTiming().wake_retries


@pytest.mark.parametrize("nack_errno", [errno.EREMOTEIO, errno.ENXIO])
def test_a_detached_chip_is_no_device_with_the_errno_kept(nack_errno: int) -> None:
    rig = scripted_rig(nack_errno=nack_errno)
    rig.bus.detach(ADDRESS)
    with pytest.raises(NoDeviceError) as caught:
        rig.driver.random()
    assert caught.value.errno == nack_errno
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == nack_errno


def test_an_adapter_reporting_nack_as_eio_still_works_and_fails_as_bus_error() -> None:
    rig = scripted_rig("maximum", nack_errno=errno.EIO)  # busy polls are NACKed with EIO
    assert rig.driver.random() == BLOCKS[0]
    rig.bus.detach(ADDRESS)
    with pytest.raises(BusError) as caught:
        rig.driver.random()
    assert caught.value.errno == errno.EIO


# --- wire faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 5, 19])
def test_nack_bursts_are_retried(count: int) -> None:
    rig = scripted_rig()
    handle = rig.bus.faults.inject(Nack(ADDRESS, Schedule.first(count)))
    assert rig.driver.random() == BLOCKS[0]
    assert handle.fired == count
    assert randoms(rig) == 1  # the command itself ran once


def test_a_nack_storm_ends_in_no_device() -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(Nack(ADDRESS, Schedule.first(10_000)))
    with pytest.raises(NoDeviceError) as caught:
        rig.driver.random()
    assert caught.value.errno == errno.EREMOTEIO
    rig.bus.faults.clear()
    assert rig.driver.random() == BLOCKS[0]  # the storm has passed


def test_every_other_message_nacked_still_gives_good_samples_or_typed_errors() -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(Nack(ADDRESS, Schedule.every(3)))
    for _ in range(5):
        try:
            sample = rig.driver.random()
        except DeviceError:
            continue
        assert sample in BLOCKS


@pytest.mark.parametrize(
    "fault",
    [
        BitFlip(ADDRESS, Schedule.first(1)),
        BitFlip(ADDRESS, Schedule.first(1), bits=5, seed=3),
        CorruptByte(ADDRESS, Schedule.first(1), seed=1),
        CorruptByte(ADDRESS, Schedule.first(1), value=0x04),  # forged count: a "status group"
        TruncatedRead(ADDRESS, Schedule.first(1), after=10),
        TruncatedRead(ADDRESS, Schedule.first(1), after=0),
    ],
    ids=["bit", "bits", "byte", "count", "truncated", "lost"],
)
def test_a_damaged_response_is_reread_via_word_address_zero(fault: object) -> None:
    rig = scripted_rig(check_wake=False)  # so the first read is the response
    rig.bus.faults.inject(fault)  # type: ignore[arg-type]
    assert rig.driver.random() == BLOCKS[0]
    assert randoms(rig) == 1  # recovered by the re-read, not by a resend
    rewinds = [r for r in rig.chip_records() if r.direction == "w" and r.data == b"\x00"]
    assert len(rewinds) == 1
    rewind = rewinds[0]
    reread = next(r for r in rig.records() if r.transfer == rewind.transfer and r.index == 1)
    assert reread.direction == "r"  # word address 0x00 and the read share one transfer (§15)
    assert len(reread.data) == 35


def test_a_damaged_wake_group_is_retried() -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(BitFlip(ADDRESS, Schedule.first(1)))  # hits the wake read
    assert rig.driver.random() == BLOCKS[0]


def test_every_second_read_damaged_still_gives_exact_samples() -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(CorruptByte(ADDRESS, Schedule.every(2), seed=9))
    samples = [rig.driver.random() for _ in range(10)]
    assert all(s in BLOCKS for s in samples)


def test_responses_always_truncated_end_in_communication_error() -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(TruncatedRead(ADDRESS, Schedule.every(1), after=10))
    with pytest.raises(CommunicationError):
        rig.driver.random()
    assert randoms(rig) == 2  # read, re-read, one resend (Random may run twice), re-read


def test_a_stuck_bus_is_a_communication_error() -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(StuckBus())
    with pytest.raises(CommunicationError, match="ff ff ff ff"):
        rig.driver.random()


@pytest.mark.parametrize("code", [errno.EIO, errno.ETIMEDOUT, errno.EAGAIN])
def test_sda_held_low_is_a_bus_error_with_its_errno(code: int) -> None:
    rig = scripted_rig()
    rig.bus.faults.inject(SdaLow(errno=code))
    with pytest.raises(BusError) as caught:
        rig.driver.random()
    assert type(caught.value) is BusError
    assert caught.value.errno == code
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == code
    rig.bus.faults.clear()
    assert rig.driver.random() == BLOCKS[0]  # the bus recovered: so does the driver


def test_a_closed_bus_is_not_retried() -> None:
    rig = scripted_rig()
    rig.bus.close()
    before = rig.bus.transfers
    with pytest.raises(BusError) as caught:
        rig.driver.random()
    assert caught.value.errno == errno.EBADF
    assert rig.bus.transfers == before


# --- chip faults -----------------------------------------------------------------------------

STATUS_ERRORS: dict[int, type[DeviceError]] = {
    Status.PARSE_ERROR: ParseError,
    Status.ECC_FAULT: EccFaultError,
    Status.SELFTEST_ERROR: SelfTestError,
    Status.HEALTH_TEST_ERROR: HealthTestError,
    Status.EXECUTION_ERROR: ExecutionError,
    Status.WATCHDOG_ABOUT_TO_EXPIRE: WatchdogError,
    Status.COMM_ERROR: ChipCrcError,
    Status.MISCOMPARE: CommunicationError,  # 0x01 where data was due: not a result
}
RESENT = {Status.WATCHDOG_ABOUT_TO_EXPIRE, Status.COMM_ERROR, Status.MISCOMPARE}


@pytest.mark.parametrize("code", list(STATUS_ERRORS), ids=[f"0x{c:02X}" for c in STATUS_ERRORS])
def test_forced_status_on_random_raises_its_typed_error(code: int) -> None:
    rig = scripted_rig()
    rig.chip.control.inject(ForcedStatus(status=code, count=None))
    with pytest.raises(STATUS_ERRORS[code]) as caught:
        rig.driver.random()
    assert type(caught.value) is STATUS_ERRORS[code]
    if isinstance(caught.value, DeviceStatusError):
        assert caught.value.status == code
    assert randoms(rig) == (2 if code in RESENT else 1)


@pytest.mark.parametrize(
    "code",
    [Status.PARSE_ERROR, Status.ECC_FAULT, Status.EXECUTION_ERROR, Status.HEALTH_TEST_ERROR],
)
def test_forced_status_on_a_status_only_command_raises_its_typed_error(code: int) -> None:
    rig = make_driver_rig()
    rig.chip.control.inject(ForcedStatus(status=code, opcode=Opcode.WRITE, count=None))
    with pytest.raises(STATUS_ERRORS[code]):
        rig.driver.write_config_word(4, bytes(4))


def test_a_chip_crc_error_is_resent_once() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(ForcedStatus(status=Status.COMM_ERROR))
    assert rig.driver.random() == BLOCKS[0]
    assert randoms(rig) == 2


def test_a_watchdog_refusal_idles_wakes_and_resends_once() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(ForcedStatus(status=Status.WATCHDOG_ABOUT_TO_EXPIRE))
    assert rig.driver.random() == BLOCKS[0]
    assert randoms(rig) == 2
    writes = rig.chip_writes()
    first, second = (i for i, w in enumerate(writes) if w[:1] == b"\x03")
    assert b"\x02" in writes[first:second]  # idled between the refusal and the resend
    pulses = [r for r in rig.records() if r.address == 0]
    assert len(pulses) == 2


def test_a_corrupt_response_crc_is_resent_and_then_a_communication_error() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(CorruptResponseCrc(count=None))
    with pytest.raises(CommunicationError, match="CRC"):
        rig.driver.random()
    assert randoms(rig) == 2  # the re-read showed the same bytes; one resend; then give up


def test_a_single_corrupt_response_crc_is_cured_by_the_resend() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(CorruptResponseCrc())
    assert rig.driver.random() == BLOCKS[1]  # block 0 went out damaged with the first Random


def test_a_corrupt_reply_to_an_increment_is_never_resent() -> None:
    rig = make_driver_rig(lock=LockState.CONFIG_LOCKED)
    rig.chip.control.inject(CorruptResponseCrc(opcode=Opcode.COUNTER))
    with pytest.raises(CommunicationError):
        rig.driver.counter(0, increment=True)
    assert rig.chip.control.state().counters == (1, 0)  # counted once, not twice
    assert rig.driver.counter(0) == 1


@pytest.mark.parametrize("value", [None, 0x04, 0x22, 0xFF])
def test_a_wrong_count_is_a_communication_error(value: int | None) -> None:
    rig = scripted_rig()
    rig.chip.control.inject(WrongCount(value=value, count=None))
    with pytest.raises(CommunicationError):
        rig.driver.random()


def test_a_lost_command_is_a_lost_command_error_and_the_next_call_works() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(LostCommand())
    with pytest.raises(LostCommandError) as caught:
        rig.driver.random()
    assert caught.value.status == Status.AFTER_WAKE
    assert rig.driver.random() == BLOCKS[0]


def test_a_brown_out_is_a_bus_error_and_the_next_call_wakes_and_works() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(BrownOut())
    with pytest.raises(BusError, match="no response") as caught:
        rig.driver.random()
    assert not isinstance(caught.value, NoDeviceError)
    assert caught.value.errno == errno.EREMOTEIO
    assert rig.chip.control.state().power == "sleep"
    assert rig.driver.random() == BLOCKS[0]


def test_a_partial_command_left_in_the_chip_is_discarded_and_the_call_works() -> None:
    # §1.4 / §14: an awake chip holding a partial group NACKs reads and ignores wake pulses; the
    # driver must reset the input with word address 0x00 instead of reporting "no device".
    rig = scripted_rig()
    assert rig.driver.random() == BLOCKS[0]
    rig.transport.wake()
    rig.bus.i2c_rdwr(i2c_msg.write(0x60, bytes.fromhex("03071b")))  # broke off after 2 bytes
    rig.transport._awake = False  # as after a write that failed mid-message
    assert rig.driver.random() == BLOCKS[1]


def test_an_rng_health_failure_is_sticky_until_a_power_cycle() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(RngHealthFailure(after_calls=1))
    assert rig.driver.random() == BLOCKS[0]
    for _ in range(3):
        with pytest.raises(HealthTestError):
            rig.driver.random()
    rig.chip.control.power_cycle()
    assert rig.driver.random() == BLOCKS[1]


@pytest.mark.parametrize("timing", ["typical", "maximum"])
def test_extra_busy_within_the_maximum_still_works(timing: str) -> None:
    rig = scripted_rig(timing)
    extra = 0.020 if timing == "typical" else 0.001  # Random: 2 + 20 <= 23; 23 + 1 <= 25 ms
    rig.chip.control.inject(ExtraBusy(seconds=extra))
    assert rig.driver.random() == BLOCKS[0]


def test_extra_busy_beyond_the_maximum_times_out_and_the_next_call_recovers() -> None:
    rig = scripted_rig("maximum")
    rig.chip.control.inject(ExtraBusy(seconds=0.030))
    with pytest.raises(BusError, match="no response"):
        rig.driver.random()
    assert rig.driver.random() == BLOCKS[1]  # the chip finished block 0 after we gave up


def test_errors_inside_a_session_sleep_the_chip() -> None:
    rig = scripted_rig()
    rig.chip.control.inject(ForcedStatus(status=Status.EXECUTION_ERROR))
    with pytest.raises(ExecutionError), rig.driver.session():
        rig.driver.random()
    assert rig.chip_writes()[-1] == b"\x01"
    assert rig.chip.control.state().power == "sleep"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (LostCommand(opcode=Opcode.SELF_TEST), LostCommandError),  # 04 11 33 43: bitmap-shaped
        (ForcedStatus(status=Status.PARSE_ERROR, opcode=Opcode.SELF_TEST), ParseError),
        (ForcedStatus(status=Status.HEALTH_TEST_ERROR, opcode=Opcode.SELF_TEST), HealthTestError),
        (ForcedStatus(status=Status.EXECUTION_ERROR, opcode=Opcode.SELF_TEST), ExecutionError),
        (ForcedStatus(status=Status.MISCOMPARE, opcode=Opcode.SELF_TEST), CommunicationError),
    ],
    ids=["lost", "parse", "health", "execution", "miscompare"],
)
def test_a_self_test_status_is_never_mistaken_for_failed_engines(
    fault: ChipFault, expected: type[DeviceError]
) -> None:
    rig = make_driver_rig(lock=LockState.CONFIG_LOCKED)
    rig.chip.control.inject(fault)
    with pytest.raises(expected):
        rig.driver.self_test()
    assert rig.driver.self_test() == 0


def test_without_check_wake_a_missed_wake_is_retried_through_the_command_write() -> None:
    rig = scripted_rig(check_wake=False)
    rig.chip.control.inject(WakeIgnored(count=5))
    assert rig.driver.random() == BLOCKS[0]


def test_an_explicit_wake_of_an_awake_chip_sends_nothing() -> None:
    rig = make_driver_rig()
    rig.transport.wake()
    before = rig.bus.transfers
    rig.transport.wake()
    assert rig.bus.transfers == before
    rig.transport.sleep()
    assert rig.chip.control.state().power == "sleep"
    assert not rig.transport.awake

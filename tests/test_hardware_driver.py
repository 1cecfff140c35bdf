"""The ATECC608A driver through the real emulator: answers pinned to the vectors, no hidden writes,
the lock state by Read (never SHA), idle after every operation, and a watchdog that never bites."""

from __future__ import annotations

import errno
import hashlib
import threading
from typing import Any

import pytest

from lokey.errors import (
    BusError,
    ExecutionError,
    SelfTestError,
    UnsupportedDeviceError,
)
from lokey.hardware.commands import (
    TEST_PATTERN,
    Atecc608aDriver,
    LockState,
    config_summary,
    is_test_pattern,
)
from lokey.hardware.packets import Opcode
from lokey.hardware.transport import Transport, TransportTiming
from sim.atecc608a import LockState as ChipLock
from sim.atecc608a import SelfTestFailure
from tests.hardware_helpers import (
    DriverRig,
    chip_timing,
    factory,
    make_driver_rig,
    packets,
    vector_bytes,
)

WORD_0x15 = 0x15
SHA_OPCODE = 0x47


def _payload(group: bytes) -> bytes:
    return group[1:-2]


# --- identity and the config zone on the factory chip ----------------------------------------


def test_revision_serial_and_config_of_the_factory_chip_match_the_vectors() -> None:
    rig = make_driver_rig("typical")
    decoded = factory()["decoded"]
    driver = rig.driver
    assert driver.revision() == bytes.fromhex(decoded["revision_hex"])
    assert driver.serial_number() == bytes.fromhex(decoded["serial_number_hex"])
    assert driver.read_config() == bytes.fromhex(factory()["factory_config_hex"])
    assert driver.lock_state() == LockState(config_locked=False, data_locked=False)
    for entry in factory()["derived_reads"]:  # every derived read, decoded from its command
        command = bytes.fromhex(entry["command_packet_hex"])
        expected = _payload(bytes.fromhex(entry["response_hex"]))
        param1, param2 = command[2], command[3]
        if param1 & 0x80:
            assert driver.read_config_block(param2 >> 3) == expected, entry["name"]
        else:
            assert driver.read_config_word(param2) == expected, entry["name"]
    assert config_summary(driver.read_config()) == factory()["lock_summary_crc"]


def test_revision_of_a_608a_personality() -> None:
    rig = make_driver_rig(revision="608A")
    expected = vector_bytes("responses", "Info revision ATECC608A", "payload_hex")
    assert rig.driver.revision() == expected
    assert rig.command_writes() == [vector_bytes("commands", "Info revision")]


def test_a_chip_of_another_family_is_refused_by_name() -> None:
    revision_508a = vector_bytes("responses", "Info revision ATECC508A", "payload_hex")
    rig = make_driver_rig(revision=revision_508a)
    with pytest.raises(UnsupportedDeviceError, match="not an ATECC608") as caught:
        rig.driver.revision()
    assert caught.value.revision == revision_508a


@pytest.mark.parametrize(
    ("preset", "vector", "expected"),
    [
        (ChipLock.UNLOCKED, "Read word 0x15, fresh chip", LockState(False, False)),
        (ChipLock.CONFIG_LOCKED, "Read word 0x15, config locked", LockState(True, False)),
        (ChipLock.LOCKED, "Read word 0x15, both locked", LockState(True, True)),
    ],
)
def test_lock_state_reads_word_0x15_and_never_sends_sha(
    preset: ChipLock, vector: str, expected: LockState
) -> None:
    rig = make_driver_rig(lock=preset)
    assert rig.driver.read_config_word(WORD_0x15) == vector_bytes(
        "responses", vector, "payload_hex"
    )
    mark = len(rig.records())
    assert rig.driver.lock_state() == expected
    commands = rig.command_writes(mark)
    assert commands == [vector_bytes("commands", "Read config word 0x15")]
    assert all(c[1] == Opcode.READ and c[1] != SHA_OPCODE for c in commands)
    assert SHA_OPCODE not in rig.opcodes()


@pytest.mark.parametrize(("byte86", "byte87"), [(0x01, 0x55), (0x55, 0xAA), (0xFF, 0x00)])
def test_lock_state_treats_anything_but_0x55_as_locked(byte86: int, byte87: int) -> None:
    rig = make_driver_rig()
    rig.chip.control.write_config(86, bytes((byte86, byte87)))
    assert rig.driver.lock_state() == LockState(
        config_locked=byte87 != 0x55, data_locked=byte86 != 0x55
    )


# --- Random ----------------------------------------------------------------------------------


def test_random_returns_the_test_pattern_while_unlocked() -> None:
    rig = make_driver_rig("typical")
    sample = rig.driver.random()
    assert sample == vector_bytes("responses", "Random while config unlocked", "payload_hex")
    assert len(sample) == 32
    assert is_test_pattern(sample)
    assert rig.command_writes() == [vector_bytes("commands", "Random")]


def test_random_returns_all_32_bytes_never_trimmed() -> None:
    rig = make_driver_rig(lock=ChipLock.CONFIG_LOCKED)
    block = vector_bytes("responses", "Random returning", "payload_hex")  # 00 01 .. 1F
    rig.chip.control.script_random(block)
    assert rig.driver.random() == block  # byte 0 included: the Go reference dropped it (§17.2)


# --- idle after every operation --------------------------------------------------------------


def _segments(rig: DriverRig) -> list[list[Any]]:
    """The trace split at each wake pulse (one wake = one operation here)."""
    segments: list[list[Any]] = []
    for record in rig.records():
        if record.address == 0 and record.direction == "w":
            segments.append([])
        elif segments:
            segments[-1].append(record)
    return segments


def test_every_operation_ends_with_idle() -> None:
    rig = make_driver_rig("typical", lock=ChipLock.CONFIG_LOCKED)
    driver = rig.driver
    driver.revision()
    driver.random()
    driver.lock_state()
    driver.read_config()
    driver.counter(0)
    driver.sha256(b"abc")
    driver.self_test()
    segments = _segments(rig)
    assert len(segments) == 7  # one wake per operation, multi-command ones included
    for segment in segments:
        writes = [r.data for r in segment if r.direction == "w" and r.outcome == "ack"]
        assert writes[-1] == b"\x02", writes
        assert all(w[:1] in (b"\x02", b"\x03") for w in writes)
    assert rig.chip.control.state().power == "idle"


def test_the_wake_pulse_is_address_zero_and_the_read_waits_twhi() -> None:
    rig = make_driver_rig("maximum")
    rig.driver.random()
    pulse, wake_read = rig.records()[:2]
    assert (pulse.address, pulse.data, pulse.outcome) == (0x00, b"\x00", "wake")
    assert wake_read.data == bytes.fromhex(packets()["wake_response_hex"])
    assert wake_read.time - pulse.time >= 0.0015


# --- writes, locks and provisioning -----------------------------------------------------------


@pytest.mark.parametrize("word", [0, 1, 2, 3, 0x15])
def test_protected_config_words_are_refused_before_the_bus(word: int) -> None:
    rig = make_driver_rig()
    before = rig.bus.transfers
    match = "never writable" if word < 4 else "UpdateExtra"
    with pytest.raises(ValueError, match=match):
        rig.driver.write_config_word(word, b"\x00\x00\x00\x00")
    assert rig.bus.transfers == before


def test_write_config_word_writes_exactly_the_vector_packet() -> None:
    rig = make_driver_rig()
    rig.driver.write_config_word(4, bytes.fromhex("c0005500"))
    assert rig.command_writes() == [vector_bytes("commands", "Write config word 4")]
    assert rig.chip.control.config[16:20] == bytes.fromhex("c0005500")


def test_write_config_on_a_locked_config_is_an_execution_error() -> None:
    rig = make_driver_rig(lock=ChipLock.CONFIG_LOCKED)
    with pytest.raises(ExecutionError):
        rig.driver.write_config_word(4, bytes.fromhex("c0005500"))


def _arduino_chip_image() -> bytes:
    """The factory image with block 0 of the real 608A whose serial the Arduino summary uses."""
    block0 = vector_bytes("responses", "Read config block 0 of a real ATECC608A", "payload_hex")
    return block0[:16] + bytes.fromhex(factory()["factory_config_hex"])[16:]


def test_provisioning_27_writes_and_a_summary_lock_with_maximum_timing() -> None:
    """The Go reference's provisioning run (§17.7) without idling would outlast a 0.7 s watchdog:
    27 writes at the 45 ms maximum are 1.2 s. In one driver session the transport idles and
    re-wakes before the budget runs out, so no write ever meets 0xEE or a sleeping chip."""
    rig = make_driver_rig(chip_timing("maximum", watchdog_s=0.7), config=_arduino_chip_image())
    template = bytes.fromhex(factory()["arduino_tls_template"]["config_hex"])
    expected_summary = factory()["arduino_tls_template"][
        "lock_summary_crc_with_serial_0123880500006002_8197baf6ee015d00"
    ]
    words = [w for w in range(4, 32) if w != WORD_0x15]
    assert len(words) == 27
    driver = rig.driver
    start = rig.clock.monotonic()
    with driver.session():
        for word in words:
            driver.write_config_word(word, template[4 * word : 4 * word + 4])
        image = driver.read_config()
        assert config_summary(image) == expected_summary
        driver.lock_config(expected_summary)
    assert rig.clock.monotonic() - start > 1.0  # long enough that the watchdog mattered
    assert image[16:84] == template[16:84]
    assert image[88:] == template[88:]
    assert driver.lock_state() == LockState(config_locked=True, data_locked=False)
    lock_packet = vector_bytes("commands", "Lock config with summary 0x3254")
    assert rig.command_writes()[-2] == lock_packet  # then the lock-state Read
    assert 0xEE not in rig.statuses()
    assert all(s in (None, 0x00) for s in rig.statuses())
    pulses = sum(1 for r in rig.records() if r.address == 0)
    assert pulses >= 3  # the session re-woke the chip at least twice (budget 0.6 s)
    refused = [r for r in rig.records() if r.direction == "w" and r.outcome == "nack"]
    assert [r for r in refused if r.address == 0x60] == []  # never a sleeping chip


def test_without_the_budget_the_chip_would_have_refused() -> None:
    """Control experiment: the same run with a budget beyond the watchdog meets 0xEE (and the
    transport's idle-wake-resend recovers), so the budget is what keeps the first test clean."""
    rig = make_driver_rig(
        chip_timing("maximum", watchdog_s=0.7),
        config=_arduino_chip_image(),
        transport_timing=TransportTiming(watchdog_budget_s=10.0),
    )
    template = bytes.fromhex(factory()["arduino_tls_template"]["config_hex"])
    with rig.driver.session():
        for word in (w for w in range(4, 32) if w != WORD_0x15):
            rig.driver.write_config_word(word, template[4 * word : 4 * word + 4])
    assert 0xEE in rig.statuses()
    assert rig.chip.control.config[16:84] == template[16:84]


def test_lock_config_with_a_wrong_summary_locks_nothing() -> None:
    rig = make_driver_rig()
    with pytest.raises(ExecutionError):
        rig.driver.lock_config(factory()["lock_summary_crc"] ^ 1)
    assert rig.driver.lock_state() == LockState(False, False)
    rig.driver.lock_config(factory()["lock_summary_crc"])
    assert rig.command_writes()[-1] == bytes.fromhex(
        factory()["lock_config_with_summary_packet_hex"]
    )
    assert rig.driver.lock_state() == LockState(True, False)


def test_lock_config_unchecked_only_when_asked_explicitly() -> None:
    rig = make_driver_rig()
    rig.driver.lock_config(None)
    assert rig.command_writes() == [vector_bytes("commands", "Lock config, no summary")]
    assert rig.driver.lock_state() == LockState(True, False)
    with pytest.raises(ExecutionError):  # already locked (§7.5)
        rig.driver.lock_config(None)


def test_2000_randoms_in_one_session_never_meet_the_watchdog() -> None:
    rig = make_driver_rig(
        chip_timing("maximum", watchdog_s=0.7), lock=ChipLock.CONFIG_LOCKED, seed=7
    )
    with rig.driver.session():
        samples = [rig.driver.random() for _ in range(2000)]
    assert len(set(samples)) == 2000
    assert all(len(s) == 32 for s in samples)
    assert rig.clock.monotonic() > 2000 * 0.023  # 46 s of virtual time: dozens of watchdogs
    assert set(rig.statuses()) == {None}  # every command answered with data, never 0xEE
    assert rig.opcodes().count(Opcode.RANDOM) == 2000  # no resend was ever needed


def test_a_caller_pausing_inside_a_session_gets_a_fresh_wake() -> None:
    rig = make_driver_rig("typical", lock=ChipLock.CONFIG_LOCKED)
    with rig.driver.session():
        rig.driver.random()
        rig.clock.advance(0.59)  # budget nearly spent: the next Random would not fit
        rig.driver.random()
        rig.clock.advance(2.0)  # the chip's own watchdog has expired: it is asleep
        rig.driver.random()
    assert set(rig.statuses()) == {None}


# --- SelfTest, Counter, SHA ------------------------------------------------------------------


def test_self_test_passes_then_reports_a_broken_engine() -> None:
    rig = make_driver_rig("typical", lock=ChipLock.CONFIG_LOCKED)
    assert rig.driver.self_test() == 0
    assert rig.command_writes() == [vector_bytes("commands", "SelfTest all")]
    assert rig.driver.self_test(0) == 0
    broken = rig.chip.control.inject(SelfTestFailure(tests=0x01, persistent=True))
    assert rig.driver.self_test() == 0x01  # runs although the wake group says Failure state
    assert rig.driver.self_test(0) == 0x01  # the failure register
    with pytest.raises(SelfTestError):
        rig.driver.random()  # Failure state: only config Read and SelfTest run (§10.2)
    rig.chip.control.remove(broken)  # the engine is repaired; re-testing clears the state
    assert rig.driver.self_test() == 0
    assert len(rig.driver.random()) == 32


def test_counter_reads_and_increments() -> None:
    rig = make_driver_rig(lock=ChipLock.CONFIG_LOCKED)
    driver = rig.driver
    assert driver.counter(0) == 0
    assert driver.counter(0, increment=True) == 1
    assert driver.counter(0, increment=True) == 2
    assert driver.counter(1) == 0
    assert rig.command_writes()[:2] == [
        vector_bytes("commands", "Counter read 0"),
        vector_bytes("commands", "Counter increment 0"),
    ]
    assert rig.chip.control.state().counters == (2, 0)


def test_counter_on_an_unlocked_chip_is_an_execution_error() -> None:
    with pytest.raises(ExecutionError):
        make_driver_rig().driver.counter(0)


def test_sha256_matches_the_vectors_and_hashlib() -> None:
    rig = make_driver_rig("typical")
    abc = vector_bytes("responses", "SHA end(abc)", "payload_hex")
    assert rig.driver.sha256(b"abc") == abc
    start, end = rig.command_writes()
    assert start == vector_bytes("commands", "SHA start")
    assert end[:5] == bytes.fromhex("0a47c20300")  # End, output only (0xC2), 3 bytes
    assert rig.driver.sha256(b"") == hashlib.sha256(b"").digest()
    for size in (63, 64, 65, 128, 200):
        message = bytes(range(256))[:size] * 1
        assert rig.driver.sha256(message) == hashlib.sha256(message).digest()
    assert rig.chip.control.state().tempkey_valid is False  # output-only: no hidden writes


def test_a_long_sha256_survives_watchdog_refreshes_inside_the_operation() -> None:
    rig = make_driver_rig(chip_timing("maximum", watchdog_s=0.7))
    message = bytes(i * 7 & 0xFF for i in range(64 * 40 + 17))  # 41 commands x 36 ms max
    assert rig.driver.sha256(message) == hashlib.sha256(message).digest()
    assert 0xEE not in rig.statuses()
    assert sum(1 for r in rig.records() if r.address == 0) >= 3  # idled and re-woke mid-hash


# --- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda d: d.read_config_word(32), "word"),
        (lambda d: d.read_config_word(-1), "word"),
        (lambda d: d.read_config_word(True), "word"),
        (lambda d: d.read_config_block(4), "block"),
        (lambda d: d.read_config_block("0"), "block"),
        (lambda d: d.write_config_word(4, b"\x00" * 3), "data"),
        (lambda d: d.write_config_word(4, "abcd"), "data"),
        (lambda d: d.write_config_word(40, b"\x00" * 4), "word"),
        (lambda d: d.lock_config(0x10000), "summary_crc"),
        (lambda d: d.lock_config(-1), "summary_crc"),
        (lambda d: d.self_test(0x04), "tests"),
        (lambda d: d.self_test(0x100), "tests"),
        (lambda d: d.counter(2), "counter_id"),
        (lambda d: d.counter(0, increment=1), "increment"),
        (lambda d: d.sha256("abc"), "message"),
    ],
)
def test_arguments_are_validated_by_name_before_the_bus(call: Any, name: str) -> None:
    rig = make_driver_rig()
    before = rig.bus.transfers
    with pytest.raises(ValueError, match=name):
        call(rig.driver)
    assert rig.bus.transfers == before


def test_transport_validates_its_arguments() -> None:
    rig = make_driver_rig()
    transport = rig.transport
    with pytest.raises(ValueError, match="opcode"):
        transport.execute(0x100, payload_length=4)
    with pytest.raises(ValueError, match="param2"):
        transport.execute(Opcode.READ, 0, 0x10000, payload_length=4)
    with pytest.raises(ValueError, match="payload_length"):
        transport.execute(Opcode.READ, payload_length=0)
    with pytest.raises(ValueError, match="no timing for opcode 0x08"):
        transport.execute(0x08, payload_length=32)  # MAC: not in the driver's table
    with pytest.raises(ValueError, match="data"):
        transport.execute(Opcode.SHA, 1, 149, bytes(149), payload_length=1)
    with pytest.raises(ValueError, match="address"):
        Transport(rig.bus, rig.clock, address=0x80)
    with pytest.raises(ValueError, match="read_attempts"):
        TransportTiming(read_attempts=0)
    with pytest.raises(ValueError, match="transport"):
        Atecc608aDriver(rig.bus)  # type: ignore[arg-type]


# --- power, close, threads -------------------------------------------------------------------


def test_sleep_idle_and_close() -> None:
    rig = make_driver_rig("typical")
    driver = rig.driver
    driver.random()
    assert rig.chip.control.state().power == "idle"
    driver.idle()  # already idle: nothing to do
    driver.sleep()
    assert rig.chip.control.state().power == "sleep"
    driver.close()
    assert rig.chip.control.state().power == "sleep"
    assert rig.bus.closed
    driver.close()  # idempotent
    with pytest.raises(BusError) as caught:
        driver.random()
    assert caught.value.errno == errno.EBADF


def test_close_swallows_a_chip_that_is_gone() -> None:
    rig = make_driver_rig()
    rig.bus.detach(0x60)
    with rig.driver:
        pass  # __exit__ closes; the sleep command is NACKed and that is fine
    assert rig.bus.closed


def test_threads_share_one_driver_without_interleaving() -> None:
    rig = make_driver_rig(lock=ChipLock.CONFIG_LOCKED, seed=3)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(150):
                results.append(rig.driver.random())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 600
    assert set(rig.statuses()) == {None}
    assert not any(is_test_pattern(r) or r == TEST_PATTERN for r in results)

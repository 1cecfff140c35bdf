"""Record and replay: ``spy+`` records a driver session, ``replay://`` plays the chip's side back.

``tests/data/emulator-session.jsonl`` is a session recorded from the emulator by
:func:`record_session` below; a test re-records it and requires the same bytes, so the fixture
cannot rot. Regenerate it (after a deliberate change to the driver or the emulator) with::

    python -m tests.test_replay                         # rewrites tests/data/emulator-session.jsonl
    python -m tests.test_replay --bus spy+/dev/i2c-1 --out pi-session.jsonl   # on a Pi

The second form records the same session on real hardware (docs/replay.md shows how such a
trace becomes a CI test).
"""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from smbus2 import SMBus, i2c_msg

from lokey.backends import (
    OpenedBus,
    ReplayBus,
    ReplayClock,
    ReplayError,
    ReplayExhaustedError,
    ReplayIncompleteError,
    ReplayMismatchError,
    SpyRecord,
    open_bus,
    parse_bus_url,
    read_trace,
    validate_bus_url,
)
from lokey.hardware.commands import TEST_PATTERN, Atecc608aDriver, LockState
from lokey.hardware.transport import Transport
from sim.clock import VirtualClock
from sim.i2c_bus import Nack, Schedule, VirtualI2CBus
from sim.i2c_dev import emulated_i2c_dev

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "emulator-session.jsonl"
#: A provisioned chip with a reproducible RNG, answering at once, on a virtual clock: the same
#: session always crosses the bus as the same bytes at the same (virtual) times.
SESSION_URL = "spy+sim://atecc608a?lock=config-locked&seed=1&timing=instant&clock=virtual"
SESSION_RANDOMS = 8
LOCK_READ = bytes.fromhex("0307020015")  # word address 0x03, count 7, Read, zone config, word 0x15


@dataclass(frozen=True)
class SessionResult:
    """What the driver got out of one session; a replay must get exactly the same."""

    revision: bytes
    lock: LockState
    randoms: tuple[bytes, ...]
    self_test: int
    config: bytes


def run_session(opened: OpenedBus, pause: Callable[[], None] = lambda: None) -> SessionResult:
    """A realistic driver session: Info, the lock word, Randoms under one wake, SelfTest, the
    config zone, then close (sleep). Every call but the Randoms is its own wake ... idle."""
    driver = Atecc608aDriver(Transport(opened.bus, opened.clock))
    revision = driver.revision()
    lock = driver.lock_state()
    randoms = []
    with driver.session():
        for _ in range(SESSION_RANDOMS):
            randoms.append(driver.random())
            pause()
    self_test = driver.self_test()
    config = driver.read_config()
    driver.close()
    return SessionResult(revision, lock, tuple(randoms), self_test, config)


def record_session(url: str = SESSION_URL) -> tuple[SessionResult, str]:
    """Run :func:`run_session` on a ``spy+`` URL; the result and the trace as JSON lines."""
    with open_bus(url) as opened:
        result = run_session(opened)
        assert opened.trace is not None, "record_session needs a spy+ URL"
        return result, opened.trace.to_jsonl()


def replay(path: Path | str) -> OpenedBus:
    return open_bus(f"replay://{path}")


def replay_bus_of(opened: OpenedBus) -> ReplayBus:
    assert opened.replay is not None
    return opened.replay


# -- the shipped trace ---------------------------------------------------------------------------


def test_the_shipped_trace_is_exactly_what_the_emulator_records_today() -> None:
    _, text = record_session()
    assert text == FIXTURE.read_text(encoding="utf-8"), (
        "the emulator session no longer records as tests/data/emulator-session.jsonl; if the "
        "change is deliberate, regenerate it with `python -m tests.test_replay`"
    )


def test_replaying_the_shipped_trace_gives_the_driver_the_recorded_results() -> None:
    live, _ = record_session()
    with replay(FIXTURE) as opened:
        assert opened.kind == "replay"
        assert opened.emulator is None
        assert isinstance(opened.clock, ReplayClock)  # nothing waits in real time
        replayed = run_session(opened)
        replay_bus_of(opened).finish()  # the driver asked for every recorded message
    assert replayed == live
    assert replayed.revision[2] == 0x60  # spec §6: the 608 family
    assert replayed.lock == LockState(config_locked=True, data_locked=False)
    assert len(set(replayed.randoms)) == SESSION_RANDOMS
    assert TEST_PATTERN not in replayed.randoms
    assert replayed.self_test == 0
    assert len(replayed.config) == 128


def test_the_replay_clock_reads_exactly_the_recorded_times() -> None:
    records = read_trace(FIXTURE)
    with replay(FIXTURE) as opened:
        assert opened.clock.monotonic() == records[0].time
        run_session(opened)
        # The driver's own sleeps moved the virtual clock the same way the recording did.
        assert opened.clock.monotonic() >= records[-1].time


def test_a_relative_trace_path_is_resolved_against_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    with open_bus("replay://tests/data/emulator-session.jsonl") as opened:
        run_session(opened)
        assert replay_bus_of(opened).finished
        assert replay_bus_of(opened).source == "tests/data/emulator-session.jsonl"


def test_spying_on_a_replay_records_the_trace_it_replays() -> None:
    """Because the replay's clock follows the recorded times, even the timestamps agree."""
    with open_bus(f"spy+replay://{FIXTURE}") as opened:
        assert opened.replay is not None
        run_session(opened)
        assert opened.trace is not None
        assert opened.trace.to_jsonl() == FIXTURE.read_text(encoding="utf-8")


def test_the_real_smbus2_path_replays_too() -> None:
    """smbus2's own ioctl code over sim.i2c_dev's stand-in, with the replay behind it."""
    live, _ = record_session()
    with replay(FIXTURE) as source, emulated_i2c_dev(source.bus) as path:
        with open_bus(f"i2c://{path}", clock=source.clock) as device:
            assert isinstance(device.inner_bus, SMBus)
            assert run_session(device) == live
        replay_bus_of(source).finish()


# -- divergence, exhaustion, incompleteness ------------------------------------------------------


def first_index(records: Sequence[SpyRecord], prefix: bytes) -> int:
    return next(i for i, r in enumerate(records) if r.direction == "w" and r.data[:5] == prefix)


def test_a_different_host_write_fails_at_the_first_difference() -> None:
    records = read_trace(FIXTURE)
    expected_index = first_index(records, LOCK_READ)
    with replay(FIXTURE) as opened:
        driver = Atecc608aDriver(Transport(opened.bus, opened.clock))
        driver.revision()  # as recorded
        with pytest.raises(ReplayMismatchError) as info:
            driver.read_config_word(0x16)  # the session read word 0x15 here
        error = info.value
        assert error.index == expected_index
        assert error.transfer == records[expected_index].transfer
        assert "03 07 02 00 15 00" in error.expected
        assert "03 07 02 00 16 00" in error.got
        assert f"diverged at record {expected_index} " in str(error)
        assert "first difference at byte 4" in str(error)
        # The transport's clean-up (sleep after an error) hit the same divergence: the error
        # that escaped is still the first one, and every later transfer repeats it.
        with pytest.raises(ReplayMismatchError) as again:
            opened.bus.i2c_rdwr(i2c_msg.read(0x60, 4))
        assert again.value is error
        with pytest.raises(ReplayMismatchError):
            replay_bus_of(opened).finish()


def test_a_read_of_another_length_or_a_write_in_place_of_a_read_diverges() -> None:
    with replay(FIXTURE) as opened:
        wake = i2c_msg.write(0x00, [0x00])  # record 0: the wake pulse
        assert errno_of(lambda: opened.bus.i2c_rdwr(wake)) == errno.EREMOTEIO
        with pytest.raises(ReplayMismatchError, match=r"5 bytes instead of 4"):
            opened.bus.i2c_rdwr(i2c_msg.read(0x60, 5))  # record 1: a 4-byte wake group
    with (
        replay(FIXTURE) as opened,
        pytest.raises(ReplayMismatchError, match=r"a read where the trace has a write"),
    ):
        opened.bus.i2c_rdwr(i2c_msg.read(0x00, 1))
    with (
        replay(FIXTURE) as opened,
        pytest.raises(ReplayMismatchError, match=r"address 0x35 instead of 0x00"),
    ):
        opened.bus.i2c_rdwr(i2c_msg.write(0x35, [0x00]))


def test_running_past_the_end_of_the_trace_is_a_clear_error() -> None:
    """A recording cut short after Info: the session's next command finds nothing to replay."""
    records = read_trace(FIXTURE)
    cut = first_index(records, LOCK_READ) - 1  # keeps the wake pulse, not the wake group read
    bus = ReplayBus(records[:cut], source="the cut trace")
    with pytest.raises(ReplayExhaustedError, match=rf"all {cut} recorded messages were replayed"):
        run_session(OpenedBus(bus, "replay://", "replay", bus.clock))
    assert bus.finished
    with pytest.raises(ReplayExhaustedError):  # and it stays over
        bus.i2c_rdwr(i2c_msg.read(0x60, 4))


def test_finish_names_what_the_host_never_asked_for() -> None:
    records = read_trace(FIXTURE)
    with replay(FIXTURE) as opened:
        driver = Atecc608aDriver(Transport(opened.bus, opened.clock))
        driver.revision()
        bus = replay_bus_of(opened)
        assert 0 < bus.position < len(records)
        assert bus.remaining == len(records) - bus.position
        with pytest.raises(ReplayIncompleteError, match=rf"first at record {bus.position} "):
            bus.finish()


# -- the recorded outcomes -----------------------------------------------------------------------


def errno_of(transfer: Callable[[], object]) -> int | None:
    """The errno of the plain OSError (never a replay error) a transfer must raise."""
    try:
        transfer()
    except OSError as error:
        return error.errno
    raise AssertionError("the transfer succeeded; expected an OSError")


def rec(
    transfer: int,
    direction: Literal["w", "r"],
    data: str,
    outcome: str = "ack",
    *,
    index: int = 0,
    t: float = 0,
) -> SpyRecord:
    return SpyRecord(t, transfer, index, 0x60, direction, bytes.fromhex(data), outcome)


def test_recorded_nacks_and_errnos_come_back_as_oserror_with_that_errno() -> None:
    bus = ReplayBus(
        [
            rec(0, "r", "", "nack"),
            rec(1, "w", "02", "error:EIO"),
            rec(2, "r", "", "error:ETIMEDOUT"),
            rec(3, "r", "04113343"),
        ],
        VirtualClock(),
    )
    assert errno_of(lambda: bus.i2c_rdwr(i2c_msg.read(0x60, 4))) == errno.EREMOTEIO
    assert errno_of(lambda: bus.i2c_rdwr(i2c_msg.write(0x60, [0x02]))) == errno.EIO
    assert errno_of(lambda: bus.i2c_rdwr(i2c_msg.read(0x60, 4))) == errno.ETIMEDOUT
    msg = i2c_msg.read(0x60, 4)
    bus.i2c_rdwr(msg)
    assert bytes(msg) == bytes.fromhex("04113343")
    bus.finish()


def test_another_nack_errno_can_be_chosen() -> None:
    bus = ReplayBus([rec(0, "r", "", "nack")], VirtualClock(), nack_errno=errno.ENXIO)
    assert errno_of(lambda: bus.i2c_rdwr(i2c_msg.read(0x60, 4))) == errno.ENXIO


def test_multi_message_transfers_replay_message_for_message() -> None:
    """The re-read form (word address 0x00, then a read) is one transfer of two messages."""
    records = [rec(0, "w", "00"), rec(0, "r", "04113343", index=1)]
    bus = ReplayBus(records, VirtualClock())
    reset, msg = i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x60, 4)
    bus.i2c_rdwr(reset, msg)
    assert bytes(msg) == bytes.fromhex("04113343")
    split = ReplayBus(records, VirtualClock())
    with pytest.raises(ReplayMismatchError, match=r"the recorded transfer has 2 message\(s\)"):
        split.i2c_rdwr(i2c_msg.write(0x60, [0x00]))  # the same bytes, but STOP in between


def test_a_failed_transfer_recorded_by_the_virtual_bus_allows_the_messages_it_never_saw() -> None:
    """The virtual bus stops tracing at the failing message; the spy records them all."""
    bus = ReplayBus([rec(0, "w", "00", "nack")], VirtualClock())
    reset, msg = i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x60, 4)
    assert errno_of(lambda: bus.i2c_rdwr(reset, msg)) == errno.EREMOTEIO


def test_a_recorded_failure_that_is_no_oserror_is_a_replay_error() -> None:
    bus = ReplayBus([rec(0, "r", "", "error:ValueError")], VirtualClock())
    with pytest.raises(ReplayError, match=r"failed with ValueError, which is not an OSError"):
        bus.i2c_rdwr(i2c_msg.read(0x60, 4))


def test_a_closed_replay_fails_like_a_closed_descriptor() -> None:
    bus = ReplayBus([rec(0, "r", "04113343")], VirtualClock())
    bus.close()
    assert errno_of(lambda: bus.i2c_rdwr(i2c_msg.read(0x60, 4))) == errno.EBADF


def test_nacked_polls_recorded_under_a_fault_replay_through_the_driver(tmp_path: Path) -> None:
    """A chip that misses its address twice: the driver's retries are in the trace and replay."""
    with open_bus(SESSION_URL) as opened:
        bus = opened.inner_bus
        assert isinstance(bus, VirtualI2CBus)
        bus.faults.inject(Nack(address=0x60, schedule=Schedule(every_nth=5)))
        live = run_session(opened)
        assert opened.trace is not None
        text = opened.trace.to_jsonl()
    assert '"outcome":"nack"' in text
    with open_bus(f"replay://{write(tmp_path, text)}") as replayed:
        assert run_session(replayed) == live
        replay_bus_of(replayed).finish()


def write(directory: Path, text: str) -> Path:
    path = directory / "trace.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


# -- time ----------------------------------------------------------------------------------------


def test_the_replay_clock_follows_the_recorded_time_so_watchdog_decisions_repeat(
    tmp_path: Path,
) -> None:
    """Recorded on a slow host (0.65 s between Randoms): the transport idled and re-woke the
    chip before each command to stay inside the watchdog. Replayed, the same session takes no
    time of its own, but the clock jumps with the trace and the driver decides the same way."""
    with open_bus(SESSION_URL) as opened:
        live = run_session(opened, pause=lambda: opened.clock.sleep(0.65))
        assert opened.trace is not None
        text = opened.trace.to_jsonl()
    assert '"data":"02"' in text  # the transport idled the chip to restart its watchdog
    path = write(tmp_path, text)
    with replay(path) as replayed:
        assert run_session(replayed) == live
        replay_bus_of(replayed).finish()
    # Without following the recording, the driver does not see time pass and skips a re-wake.
    stopped = ReplayBus(read_trace(path), follow_time=False)
    with pytest.raises(ReplayMismatchError, match=r"the trace has a write to 0x60 of \[02\]"):
        run_session(OpenedBus(stopped, "replay://", "replay", stopped.clock))


def test_a_given_virtual_clock_is_moved_to_each_transfer_from_its_own_reading() -> None:
    clock = VirtualClock(start=1000.0)
    records = [rec(0, "r", "04113343", t=5.0), rec(1, "r", "04113343", t=7.5)]
    bus = ReplayBus(records, clock)
    bus.i2c_rdwr(i2c_msg.read(0x60, 4))
    assert clock.monotonic() == 1000.0
    bus.i2c_rdwr(i2c_msg.read(0x60, 4))
    assert clock.monotonic() == 1002.5


# -- URLs and files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("replay://", r"replay:// needs the path of a trace file"),
        ("replay://x.jsonl?speed=1", r"replay URLs take no options \(got 'speed=1'\)"),
        ("replay://x.jsonl#frag", r"unexpected fragment '#frag'"),
        ("replay:x.jsonl", r"write replay://<path of a trace file>"),
        ("replay:/x.jsonl", r"write replay://<path of a trace file>"),
        ("http://x", r"or replay://<trace file>, optionally prefixed with spy\+"),
    ],
)
def test_bad_replay_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_bus_url(url)


def test_replay_urls_parse_as_replays_with_percent_escapes_decoded(tmp_path: Path) -> None:
    assert parse_bus_url("replay://a.jsonl").kind == "replay"
    assert parse_bus_url("spy+replay:///abs/a.jsonl").spy
    path = tmp_path / "odd ?name#.jsonl"
    path.write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    encoded = str(path).replace("?", "%3F").replace("#", "%23")
    with open_bus(f"replay://{encoded}") as opened:
        assert replay_bus_of(opened).source == str(path)


def test_replay_ignores_sim_defaults_but_checks_them() -> None:
    with open_bus(f"replay://{FIXTURE}", defaults={"clock": "virtual"}) as opened:
        assert opened.kind == "replay"
    with pytest.raises(ValueError, match=r"default option 'colour' is not a sim:// option"):
        open_bus(f"replay://{FIXTURE}", defaults={"colour": "red"})


def test_unreadable_malformed_and_empty_traces_are_replay_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"cannot read replay trace .*missing.jsonl"):
        open_bus(f"replay://{tmp_path / 'missing.jsonl'}")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0}\n', encoding="utf-8")
    with pytest.raises(ReplayError, match=r"is not a bus trace: trace line 1: .*lacks key"):
        open_bus(f"replay://{bad}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ReplayError, match=r"holds no messages"):
        open_bus(f"replay://{empty}")
    odd = tmp_path / "odd.jsonl"
    odd.write_text(
        '{"t":0,"xfer":0,"i":0,"addr":96,"dir":"r","data":"","outcome":"maybe","faults":[]}\n',
        encoding="utf-8",
    )
    with pytest.raises(ReplayError, match=r"record 0: unknown outcome 'maybe'"):
        open_bus(f"replay://{odd}")


def test_the_virtual_bus_own_trace_replays_too(tmp_path: Path) -> None:
    """Not only spy recordings: ``VirtualI2CBus.trace`` writes the same format."""
    with open_bus(SESSION_URL.removeprefix("spy+")) as opened:
        live = run_session(opened)
        bus = opened.inner_bus
        assert isinstance(bus, VirtualI2CBus)
        path = write(tmp_path, bus.trace.to_jsonl())
    with replay(path) as replayed:
        assert run_session(replayed) == live


def test_validating_a_replay_url_does_not_import_sim() -> None:
    code = (
        "import sys, lokey.backends as b\n"
        "b.validate_bus_url('replay://tests/data/emulator-session.jsonl')\n"
        "assert not any(m == 'sim' or m.startswith('sim.') for m in sys.modules), 'sim imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- regenerating the fixture --------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.test_replay", description="Record the replay test's driver session."
    )
    parser.add_argument(
        "--bus", default=SESSION_URL, help=f"a spy+ bus URL (default {SESSION_URL})"
    )
    parser.add_argument("--out", type=Path, default=FIXTURE, help=f"trace file (default {FIXTURE})")
    args = parser.parse_args(argv)
    if not args.bus.startswith("spy+"):
        parser.error("--bus must start with spy+ (only a spy records)")
    result, text = record_session(args.bus)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {text.count(chr(10))} messages; revision {result.revision.hex(' ')}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())

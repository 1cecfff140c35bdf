"""lokey.backends: one URL picks the bus, its options reach the emulator, and the spy records
exactly what crossed the bus in the sim trace format.

The i2c-dev forms are exercised end to end (real ``smbus2.SMBus``) in ``test_i2c_dev.py``;
here ``SMBus`` is replaced where only the URL-to-path mapping is under test.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from smbus2 import SMBus, i2c_msg

from lokey import backends
from lokey.backends import (
    DEFAULT_BUS_URL,
    DEFAULT_SPY_CAPACITY,
    NACK_ERRNOS,
    SIM_OPTIONS,
    BusRecorder,
    OpenedBus,
    SpyBus,
    SpyRecord,
    bus_url_from_env,
    open_bus,
    validate_bus_url,
)
from lokey.clock import SystemClock
from lokey.errors import BusError, LokeyError
from sim.atecc608a import ATECC608A, LockState, TimingModel
from sim.atecc608a.constants import REVISIONS
from sim.clock import VirtualClock
from sim.i2c_bus import DEFAULT_TRACE_CAPACITY, SdaLow, Trace, TraceRecord, VirtualI2CBus

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT.parent / "shared" / "vectors"
PACKETS = json.loads((VECTORS / "atecc_packets.json").read_text())
COMMANDS = {entry["name"]: bytes.fromhex(entry["bus_write_hex"]) for entry in PACKETS["commands"]}
RESPONSES = {entry["name"]: bytes.fromhex(entry["packet_hex"]) for entry in PACKETS["responses"]}
WAKE_GROUP = bytes.fromhex(PACKETS["wake_response_hex"])
T_WHI_S = 1500e-6  # spec §1.3


def errno_of(transfer: Callable[[], object]) -> int | None:
    """The errno of the OSError a transfer must raise."""
    try:
        transfer()
    except OSError as error:
        return error.errno
    raise AssertionError("the transfer succeeded; expected an OSError")


def chip_of(opened: OpenedBus) -> ATECC608A:
    assert isinstance(opened.emulator, ATECC608A)
    return opened.emulator


def virtual_bus_of(opened: OpenedBus) -> VirtualI2CBus:
    bus = opened.inner_bus
    assert isinstance(bus, VirtualI2CBus)
    return bus


def wake(opened: OpenedBus) -> bytes:
    """Wake pulse (NACKed, ignored), tWHI on the bus's clock, read the wake group."""
    with pytest.raises(OSError, match="wake pulse"):
        opened.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
    opened.clock.sleep(T_WHI_S)
    return read(opened, 4)


def read(opened: OpenedBus, length: int, address: int = 0x60) -> bytes:
    msg = i2c_msg.read(address, length)
    opened.bus.i2c_rdwr(msg)
    return bytes(msg)


def command(opened: OpenedBus, bus_write: bytes, length: int) -> bytes:
    """Send a command and poll (on the virtual clock) until the chip answers."""
    opened.bus.i2c_rdwr(i2c_msg.write(0x60, bus_write))
    for _ in range(2000):
        try:
            return read(opened, length)
        except OSError:
            opened.clock.sleep(0.0005)
    raise AssertionError("the chip never answered")


# -- sim:// --------------------------------------------------------------------------------------


def test_default_url_is_an_unlocked_emulator_at_0x60_on_the_wall_clock() -> None:
    with open_bus(DEFAULT_BUS_URL) as opened:
        assert opened.url == "sim://atecc608a"
        assert opened.kind == "emulator"
        assert not opened.spy
        assert opened.trace is None
        assert isinstance(opened.clock, SystemClock)  # a service on the emulator runs in real time
        bus = virtual_bus_of(opened)
        assert opened.bus is bus
        assert bus.clock is opened.clock
        chip = chip_of(opened)
        assert dict(bus.targets) == {0x60: chip}
        assert chip.settings.timing.name == "typical"
        state = chip.control.state()
        assert not state.config_locked
        assert not state.data_locked
    assert bus.closed  # the context manager closed it


@pytest.mark.parametrize("url", ["sim://atecc608a/", "SIM://ATECC608A", "sim://atecc608a?"])
def test_equivalent_spellings_of_the_emulator_url_are_accepted(url: str) -> None:
    with open_bus(url) as opened:
        assert opened.kind == "emulator"


def test_clock_virtual_shares_one_virtual_clock_between_chip_bus_and_caller() -> None:
    with open_bus("sim://atecc608a?clock=virtual") as opened:
        assert isinstance(opened.clock, VirtualClock)
        assert virtual_bus_of(opened).clock is opened.clock
        with pytest.raises(OSError, match="wake pulse"):
            opened.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
        # no time has passed: the chip is still waking
        assert errno_of(lambda: read(opened, 4)) == errno.EREMOTEIO
        opened.clock.sleep(T_WHI_S)  # the chip reads the same clock: now it is awake
        assert read(opened, 4) == WAKE_GROUP
        assert opened.clock.monotonic() == pytest.approx(T_WHI_S)


def test_clock_wall_is_the_system_clock() -> None:
    with open_bus("sim://atecc608a?clock=wall") as opened:
        assert isinstance(opened.clock, SystemClock)


@pytest.mark.parametrize("name", ["typical", "maximum", "instant"])
def test_timing_option_reaches_the_emulator(name: str) -> None:
    with open_bus(f"sim://atecc608a?timing={name}&clock=virtual") as opened:
        assert chip_of(opened).settings.timing == TimingModel.named(name)


def test_instant_timing_answers_without_any_wait() -> None:
    with open_bus("sim://atecc608a?timing=instant&clock=virtual") as opened:
        assert errno_of(lambda: opened.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))) == errno.EREMOTEIO
        assert read(opened, 4) == WAKE_GROUP  # no tWHI needed
        opened.bus.i2c_rdwr(i2c_msg.write(0x60, COMMANDS["Info revision"]))
        assert read(opened, 7) == RESPONSES["Info revision ATECC608B"]
        assert opened.clock.monotonic() == 0.0


@pytest.mark.parametrize(
    ("lock", "config_locked", "data_locked"),
    [("unlocked", False, False), ("config-locked", True, False), ("locked", True, True)],
)
def test_lock_option_reaches_the_emulator(
    lock: str, config_locked: bool, data_locked: bool
) -> None:
    with open_bus(f"sim://atecc608a?lock={lock}") as opened:
        state = chip_of(opened).control.state()
        assert (state.config_locked, state.data_locked) == (config_locked, data_locked)


@pytest.mark.parametrize(
    ("revision", "vector"),
    [
        ("608A", "Info revision ATECC608A"),
        ("608B", "Info revision ATECC608B"),
        ("608a", "Info revision ATECC608A"),
    ],
)
def test_revision_option_changes_what_info_answers(revision: str, vector: str) -> None:
    with open_bus(f"sim://atecc608a?revision={revision}&clock=virtual") as opened:
        assert wake(opened) == WAKE_GROUP
        assert command(opened, COMMANDS["Info revision"], 7) == RESPONSES[vector]


def test_seed_option_makes_the_rng_stream_reproducible() -> None:
    def random_block(url: str) -> bytes:
        with open_bus(url) as opened:
            assert wake(opened) == WAKE_GROUP
            return command(opened, COMMANDS["Random"], 35)

    url = "sim://atecc608a?lock=locked&clock=virtual&seed={}"
    first = random_block(url.format(5))
    assert random_block(url.format(5)) == first
    assert random_block(url.format(-6)) != first
    with open_bus(url.format(5)) as opened:
        assert chip_of(opened).settings.seed == 5


@pytest.mark.parametrize(("option", "address"), [("0x35", 0x35), ("53", 0x35), ("0x01", 1)])
def test_address_option_attaches_the_chip_there(option: str, address: int) -> None:
    with open_bus(f"sim://atecc608a?address={option}&timing=instant&clock=virtual") as opened:
        assert list(virtual_bus_of(opened).targets) == [address]
        assert errno_of(lambda: opened.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))) == errno.EREMOTEIO
        assert read(opened, 4, address=address) == WAKE_GROUP
        assert errno_of(lambda: read(opened, 4, address=0x60)) == errno.EREMOTEIO


def test_a_clock_argument_is_used_for_chip_bus_and_caller() -> None:
    clock = VirtualClock(start=100.0)
    with open_bus("sim://atecc608a", clock=clock) as opened:
        assert opened.clock is clock
        assert virtual_bus_of(opened).clock is clock
        assert wake(opened) == WAKE_GROUP
        assert clock.monotonic() == pytest.approx(100.0 + T_WHI_S)


def test_a_clock_argument_and_a_clock_option_together_are_refused() -> None:
    with pytest.raises(ValueError, match=r"clock=virtual and a clock argument"):
        open_bus("sim://atecc608a?clock=virtual", clock=VirtualClock())


def test_defaults_fill_in_options_the_url_leaves_out() -> None:
    with open_bus("sim://atecc608a", defaults={"clock": "virtual", "lock": "locked"}) as opened:
        assert isinstance(opened.clock, VirtualClock)
        assert chip_of(opened).control.state().data_locked
    url = "sim://atecc608a?clock=wall&lock=unlocked"
    with open_bus(url, defaults={"clock": "virtual", "lock": "locked"}) as opened:
        assert isinstance(opened.clock, SystemClock)  # the URL wins
        assert not chip_of(opened).control.state().config_locked
    clock = VirtualClock()
    with open_bus("sim://atecc608a", clock=clock, defaults={"clock": "wall"}) as opened:
        assert opened.clock is clock  # the argument beats a default


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"speed": "fast"}, r"default option 'speed' is not a sim:// option"),
        ({"clock": "sundial"}, r"default unknown clock 'sundial'; choose one of: wall, virtual"),
    ],
)
def test_bad_defaults_are_refused_for_every_backend(defaults: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_bus("sim://atecc608a", defaults=defaults)
    with pytest.raises(ValueError, match=message):
        open_bus("/dev/i2c-1", defaults=defaults)


def test_sim_option_lists_match_the_emulator() -> None:
    """lokey validates URLs without importing sim; its lists must be the emulator's."""
    assert set(SIM_OPTIONS) == {"timing", "seed", "lock", "revision", "address", "clock"}
    for name in SIM_OPTIONS["timing"] or ():
        assert TimingModel.named(name).name == name
    assert SIM_OPTIONS["lock"] == tuple(state.value for state in LockState)
    assert SIM_OPTIONS["revision"] == tuple(REVISIONS)
    assert DEFAULT_SPY_CAPACITY == DEFAULT_TRACE_CAPACITY


# -- errors --------------------------------------------------------------------------------------

BAD_URLS = [
    ("", r"cannot open bus '': the URL is empty; use sim://atecc608a"),
    ("sim://atecc508a", r"unknown emulated device 'atecc508a'; choose one of: atecc608a"),
    ("sim://", r"unknown emulated device ''; choose one of: atecc608a"),
    ("sim://atecc608a/chip", r"unexpected path '/chip' after sim://atecc608a"),
    ("sim://atecc608a#x", r"unexpected fragment '#x'"),
    (
        "sim://atecc608a?speed=fast",
        r"unknown option 'speed' for sim://atecc608a; "
        r"choose from: address, clock, lock, revision, seed, timing",
    ),
    ("sim://atecc608a?timing", r"malformed options 'timing'; write name=value pairs joined by &"),
    ("sim://atecc608a?seed=1&seed=2", r"option 'seed' is given twice"),
    ("sim://atecc608a?seed=abc", r"seed must be an integer, got 'abc'"),
    ("sim://atecc608a?seed=", r"seed must be an integer, got ''"),
    ("sim://atecc608a?seed=1.5", r"seed must be an integer, got '1.5'"),
    (
        "sim://atecc608a?timing=fast",
        r"unknown timing model 'fast'; choose one of: typical, maximum, instant",
    ),
    (
        "sim://atecc608a?lock=half",
        r"unknown lock state 'half'; choose one of: unlocked, config-locked, locked",
    ),
    ("sim://atecc608a?revision=508A", r"unknown revision '508A'; choose one of: 608A, 608B"),
    ("sim://atecc608a?clock=sundial", r"unknown clock 'sundial'; choose one of: wall, virtual"),
    ("sim://atecc608a?address=0x80", r"address must be a 7-bit I2C address 0x01..0x7f .*'0x80'"),
    ("sim://atecc608a?address=0", r"address must be a 7-bit I2C address 0x01..0x7f .*'0'"),
    ("sim://atecc608a?address=sixty", r"address must be a 7-bit I2C address .*'sixty'"),
    ("/dev/spidev0.0", r"a bare path must be an I2C adapter node /dev/i2c-N; write i2c:///dev/spi"),
    ("/dev/i2c-", r"a bare path must be an I2C adapter node /dev/i2c-N"),
    ("/dev/i2c-\u0661", r"a bare path must be an I2C adapter node /dev/i2c-N"),
    ("sim://atecc608a?seed=\u0661", r"seed must be an integer"),
    ("/tmp/i2c-1", r"write i2c:///tmp/i2c-1 to open another i2c-dev node"),
    ("i2c://dev/i2c-1", r"an i2c URL needs an absolute path after i2c:// \(three slashes"),
    ("i2c://", r"an i2c URL needs an absolute path after i2c://"),
    ("i2c:///dev/i2c-1?speed=100k", r"i2c-dev URLs take no options \(got 'speed=100k'\)"),
    ("http://localhost/", r"unknown scheme 'http'; use sim://atecc608a\[\?options\], /dev/i2c-N"),
    ("atecc608a", r"not a bus URL; use sim://atecc608a"),
    ("spy+", r"spy\+ needs a bus URL after it"),
    ("spy+spy+sim://atecc608a", r"spy\+ can be given only once"),
    ("spy+sim://atecc608a?lock=half", r"unknown lock state 'half'"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_bad_urls_are_refused_naming_the_problem_and_the_choices(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_bus(url)
    assert str(info.value).startswith(f"cannot open bus {url!r}: ")
    with pytest.raises(ValueError, match=message):
        validate_bus_url(url)


def test_a_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="a bus URL is a str, not int"):
        open_bus(1)  # type: ignore[arg-type]


def test_validate_returns_good_urls_unchanged_and_opens_nothing() -> None:
    for url in ("sim://atecc608a?lock=locked", "/dev/i2c-99", "spy+i2c:///nonexistent/node"):
        assert validate_bus_url(url) == url


def test_importing_and_validating_does_not_import_sim() -> None:
    """On a Pi, lokey.backends must cost nothing from the emulator until a sim:// URL opens."""
    code = (
        "import sys, lokey.backends as b\n"
        "b.validate_bus_url('sim://atecc608a?timing=instant')\n"
        "b.bus_url_from_env({'I2C_BUS_NUMBER': '1'})\n"
        "print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


# -- i2c-dev (path mapping; the real thing runs in test_i2c_dev.py) -----------------------------


class FakeSMBus:
    """Stands in for smbus2.SMBus where only the path open_bus asks for matters."""

    opened: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.fd: int | None = None
        self.closed = False

    def open(self, bus: int | str) -> None:
        assert isinstance(bus, str)
        FakeSMBus.opened.append(bus)
        self.fd = 3

    def close(self) -> None:
        self.closed = True

    def i2c_rdwr(self, *msgs: i2c_msg) -> None:
        pass


@pytest.fixture
def fake_smbus(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    FakeSMBus.opened = []
    monkeypatch.setattr(backends, "SMBus", FakeSMBus)
    return FakeSMBus.opened


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/dev/i2c-1", "/dev/i2c-1"),
        ("/dev/i2c-22", "/dev/i2c-22"),
        ("i2c:///dev/i2c-1", "/dev/i2c-1"),
        ("i2c:///run/lokey/stand%20in", "/run/lokey/stand in"),
        ("i2c:/dev/i2c-0", "/dev/i2c-0"),
    ],
)
def test_i2c_urls_open_smbus_on_the_path_they_name(
    fake_smbus: list[str], url: str, path: str
) -> None:
    with open_bus(url) as opened:
        assert fake_smbus == [path]
        assert opened.kind == "i2c-dev"
        assert opened.emulator is None
        assert opened.trace is None
        assert isinstance(opened.bus, FakeSMBus)
        assert isinstance(opened.clock, SystemClock)
    assert opened.bus.closed


def test_i2c_urls_use_a_given_clock_and_ignore_sim_defaults(fake_smbus: list[str]) -> None:
    clock = SystemClock()
    with open_bus("/dev/i2c-1", clock=clock, defaults={"clock": "virtual"}) as opened:
        assert opened.clock is clock


def test_a_missing_node_is_a_bus_error_naming_the_path_and_the_pi_settings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "i2c-1"
    with pytest.raises(BusError) as info:
        open_bus(f"i2c://{path}")
    error = info.value
    assert isinstance(error, LokeyError)
    assert error.errno == errno.ENOENT
    assert isinstance(error.__cause__, FileNotFoundError)
    message = str(error)
    assert message.startswith(f"cannot open I2C bus {path}: No such file or directory (ENOENT)")
    assert "dtparam=i2c_arm=on" in message
    assert "modprobe i2c-dev" in message


def test_a_permission_error_says_how_to_grant_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: SMBus, bus: int | str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", bus)

    monkeypatch.setattr(SMBus, "open", refuse)
    with pytest.raises(
        BusError, match=r"cannot open I2C bus /dev/i2c-1: Permission denied"
    ) as info:
        open_bus("/dev/i2c-1")
    assert info.value.errno == errno.EACCES
    assert "i2c group" in str(info.value)
    assert "crw-rw---- root:i2c" in str(info.value)


def test_a_file_that_is_not_an_adapter_is_refused_without_leaking_its_descriptor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plain-file"
    path.write_bytes(b"")
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(BusError, match=r"opened but is not an I2C adapter.*ENOTTY") as info:
        open_bus(f"i2c://{path}")
    assert info.value.errno == errno.ENOTTY
    assert set(os.listdir("/proc/self/fd")) <= before


def test_other_open_failures_name_the_path_and_errno(tmp_path: Path) -> None:
    with pytest.raises(BusError, match=r"cannot open I2C bus .*: Is a directory \(EISDIR\)$"):
        open_bus(f"i2c://{tmp_path}")


# -- the spy -------------------------------------------------------------------------------------


def spied(url: str = "spy+sim://atecc608a?clock=virtual") -> OpenedBus:
    opened = open_bus(url)
    assert opened.spy
    assert isinstance(opened.bus, SpyBus)
    assert opened.trace is opened.bus.recorder
    return opened


def as_trace_fields(records: list[TraceRecord]) -> list[tuple[Any, ...]]:
    return [
        (r.time, r.transfer, r.index, r.address, r.direction, r.data, r.outcome) for r in records
    ]


def as_spy_fields(records: list[SpyRecord]) -> list[tuple[Any, ...]]:
    return [
        (r.time, r.transfer, r.index, r.address, r.direction, r.data, r.outcome) for r in records
    ]


def test_spy_url_wraps_the_emulator_and_keeps_its_options() -> None:
    with spied("spy+sim://atecc608a?lock=locked&timing=instant&clock=virtual") as opened:
        assert opened.kind == "emulator"
        assert opened.url == "spy+sim://atecc608a?lock=locked&timing=instant&clock=virtual"
        assert isinstance(opened.inner_bus, VirtualI2CBus)
        assert isinstance(opened.bus, SpyBus)
        assert opened.bus.inner is opened.inner_bus
        assert chip_of(opened).control.state().data_locked
    assert virtual_bus_of(opened).closed  # closing the spy closes what it wraps


def test_spy_records_every_message_and_outcome_like_the_virtual_bus_trace() -> None:
    with spied() as opened:
        clock = opened.clock
        assert isinstance(clock, VirtualClock)
        # the wake pulse: NACKed, recorded as "wake"
        assert errno_of(lambda: opened.bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))) == errno.EREMOTEIO
        assert errno_of(lambda: read(opened, 4)) == errno.EREMOTEIO  # still waking: a NACKed read
        clock.advance(T_WHI_S)
        assert read(opened, 4) == WAKE_GROUP
        opened.bus.i2c_rdwr(i2c_msg.write(0x60, COMMANDS["Info revision"]))
        assert errno_of(lambda: read(opened, 7)) == errno.EREMOTEIO  # busy: NACK
        clock.advance(0.01)
        assert read(opened, 7) == RESPONSES["Info revision ATECC608B"]
        # nobody at 0x61
        assert (
            errno_of(lambda: opened.bus.i2c_rdwr(i2c_msg.write(0x61, [0x01, 0x02])))
            == errno.EREMOTEIO
        )

        spy = opened.trace
        assert spy is not None
        assert as_spy_fields(spy.records()) == [
            (0.0, 0, 0, 0x00, "w", b"\x00", "wake"),
            (0.0, 1, 0, 0x60, "r", b"", "nack"),
            (T_WHI_S, 2, 0, 0x60, "r", WAKE_GROUP, "ack"),
            (T_WHI_S, 3, 0, 0x60, "w", COMMANDS["Info revision"], "ack"),
            (T_WHI_S, 4, 0, 0x60, "r", b"", "nack"),
            (T_WHI_S + 0.01, 5, 0, 0x60, "r", RESPONSES["Info revision ATECC608B"], "ack"),
            (T_WHI_S + 0.01, 6, 0, 0x61, "w", b"\x01\x02", "nack"),
        ]
        assert spy.transfers == 7
        # Single-message transfers: the spy saw exactly what the virtual bus traced.
        assert as_spy_fields(spy.records()) == as_trace_fields(
            virtual_bus_of(opened).trace.records()
        )
        assert spy.to_jsonl() == virtual_bus_of(opened).trace.to_jsonl()


def test_a_failed_transfer_gives_each_of_its_messages_the_transfer_outcome() -> None:
    """i2c-dev reports one errno per I2C_RDWR, never which message failed."""
    with spied("spy+sim://atecc608a?clock=virtual&timing=instant") as opened:
        assert wake(opened) == WAKE_GROUP
        rewind, response = i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x60, 4)
        opened.bus.i2c_rdwr(rewind, response)  # both acknowledged: both "ack", read data kept
        probe, missing = i2c_msg.write(0x60, [0x00]), i2c_msg.read(0x61, 2)
        assert errno_of(lambda: opened.bus.i2c_rdwr(probe, missing)) == errno.EREMOTEIO
        spy = opened.trace
        assert spy is not None
        assert bytes(response) == WAKE_GROUP  # the rewind re-reads the wake group
        assert as_spy_fields(spy.records()[-4:]) == [
            (T_WHI_S, 2, 0, 0x60, "w", b"\x00", "ack"),
            (T_WHI_S, 2, 1, 0x60, "r", WAKE_GROUP, "ack"),
            (T_WHI_S, 3, 0, 0x60, "w", b"\x00", "nack"),
            (T_WHI_S, 3, 1, 0x61, "r", b"", "nack"),
        ]


def test_bus_errors_are_recorded_by_errno_name_and_re_raised_unchanged() -> None:
    with spied() as opened:
        faults = virtual_bus_of(opened).faults
        handle = faults.inject(SdaLow(errno=errno.ETIMEDOUT))
        with pytest.raises(OSError, match="SDA held low") as info:
            read(opened, 4)
        assert info.value.errno == errno.ETIMEDOUT
        faults.remove(handle)
        opened.inner_bus.close()
        assert errno_of(lambda: read(opened, 4)) == errno.EBADF
        spy = opened.trace
        assert spy is not None
        assert [r.outcome for r in spy.records()] == ["error:ETIMEDOUT", "error:EBADF"]
        # the virtual bus agrees on the injected error (a closed bus traces nothing)
        assert [r.outcome for r in virtual_bus_of(opened).trace.records()] == ["error:ETIMEDOUT"]


class Exploding:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def i2c_rdwr(self, *msgs: i2c_msg) -> None:
        raise self.failure

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (OSError(errno.EIO, "Input/output error"), "error:EIO"),
        (OSError(errno.ENXIO, "No such device or address"), "nack"),
        (OSError("no errno at all"), "error:OSError"),
        (ValueError("target returned 3 bytes for a 4-byte read"), "error:ValueError"),
        (OSError(9999, "unknown code"), "error:9999"),
    ],
)
def test_outcomes_of_other_failures(failure: Exception, outcome: str) -> None:
    spy = SpyBus(Exploding(failure), VirtualClock(start=2.0))
    with pytest.raises(type(failure)) as info:
        spy.i2c_rdwr(i2c_msg.read(0x60, 2))
    assert info.value is failure
    assert spy.recorder.records() == [SpyRecord(2.0, 0, 0, 0x60, "r", b"", outcome)]


def test_nack_errnos_are_the_address_nack_codes_and_can_be_chosen() -> None:
    assert frozenset({errno.EREMOTEIO, errno.ENXIO}) == NACK_ERRNOS
    recorder = BusRecorder(nack_errnos={errno.EIO})
    spy = SpyBus(Exploding(OSError(errno.EIO, "Input/output error")), SystemClock(), recorder)
    assert errno_of(lambda: spy.i2c_rdwr(i2c_msg.write(0x00, [0x00]), i2c_msg.read(0x60, 1))) == 5
    assert [r.outcome for r in recorder.records()] == ["wake", "nack"]


def test_spy_json_lines_load_back_with_the_sim_trace_reader(tmp_path: Path) -> None:
    with spied() as opened:
        assert wake(opened) == WAKE_GROUP
        command(opened, COMMANDS["Random"], 35)
        spy = opened.trace
        assert spy is not None
        path = tmp_path / "spy.jsonl"
        spy.write_jsonl(path)
        loaded = Trace.read_jsonl(path).records()
        assert as_trace_fields(loaded) == as_spy_fields(spy.records())
        assert all(record.faults == () for record in loaded)
        assert Trace.read_jsonl(spy.to_jsonl()).to_jsonl() == path.read_text()


def test_recorder_is_bounded_and_keeps_counting_transfers() -> None:
    recorder = BusRecorder(capacity=2)
    spy = SpyBus(Exploding(OSError(errno.EREMOTEIO, "nack")), VirtualClock(), recorder)
    for address in (0x10, 0x11, 0x12):
        transfer = functools.partial(spy.i2c_rdwr, i2c_msg.read(address, 1))
        assert errno_of(transfer) == errno.EREMOTEIO
    assert [(r.transfer, r.address) for r in recorder.records()] == [(1, 0x11), (2, 0x12)]
    assert len(recorder) == 2
    assert recorder.capacity == 2
    recorder.clear()
    assert recorder.records() == []
    assert recorder.transfers == 3
    assert repr(recorder) == "BusRecorder(0 records, capacity=2)"
    assert BusRecorder(capacity=0).capacity == 0


@pytest.mark.parametrize("capacity", [-1, True, 1.5])
def test_recorder_capacity_must_be_a_non_negative_integer(capacity: Any) -> None:
    with pytest.raises(ValueError, match="recorder capacity must be a non-negative integer"):
        BusRecorder(capacity=capacity)


def test_spy_never_dereferences_a_null_write_buffer() -> None:
    """The virtual bus refuses it with EFAULT; the spy must get there without crashing."""
    with spied() as opened:
        msg = i2c_msg.write(0x60, [0x01])
        msg.buf = None
        assert errno_of(lambda: opened.bus.i2c_rdwr(msg)) == errno.EFAULT
        spy = opened.trace
        assert spy is not None
        assert spy.records() == [SpyRecord(0.0, 0, 0, 0x60, "w", b"", "error:EFAULT")]


def test_spy_over_i2c_dev_urls(fake_smbus: list[str]) -> None:
    with open_bus("spy+/dev/i2c-1") as opened:
        assert fake_smbus == ["/dev/i2c-1"]
        assert opened.kind == "i2c-dev"
        assert opened.spy
        assert isinstance(opened.inner_bus, FakeSMBus)
        opened.bus.i2c_rdwr(i2c_msg.write(0x60, [0x02]))
        assert opened.trace is not None
        assert [(r.data, r.outcome) for r in opened.trace.records()] == [(b"\x02", "ack")]


# -- configuration from the environment ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "sim://atecc608a"),
        ({"I2C_BUS_NUMBER": "1"}, "/dev/i2c-1"),
        ({"I2C_BUS_NUMBER": " 0 "}, "/dev/i2c-0"),
        ({"I2C_BUS_NUMBER": "007"}, "/dev/i2c-7"),
        ({"I2C_BUS_NUMBER": ""}, "sim://atecc608a"),
        ({"LOKEY_BUS_URL": "spy+/dev/i2c-3"}, "spy+/dev/i2c-3"),
        (
            {"LOKEY_BUS_URL": "sim://atecc608a?lock=locked", "I2C_BUS_NUMBER": "1"},
            "sim://atecc608a?lock=locked",
        ),
        ({"LOKEY_BUS_URL": "  ", "I2C_BUS_NUMBER": "2"}, "/dev/i2c-2"),
        ({"LOKEY_BUS_URL": " /dev/i2c-4\n"}, "/dev/i2c-4"),
    ],
)
def test_bus_url_from_env_precedence(env: Mapping[str, str], url: str) -> None:
    assert bus_url_from_env(env) == url


@pytest.mark.parametrize("number", ["-1", "one", "1.0", "0x1", "1 2", "\u0661"])
def test_i2c_bus_number_must_be_a_non_negative_integer(number: str) -> None:
    with pytest.raises(
        ValueError,
        match=r"I2C_BUS_NUMBER must be a non-negative integer \(the N of /dev/i2c-N\), got ",
    ):
        bus_url_from_env({"I2C_BUS_NUMBER": number})


def test_a_bad_lokey_bus_url_is_reported_under_its_variable_name() -> None:
    with pytest.raises(ValueError, match=r"^LOKEY_BUS_URL: cannot open bus 'sim://x': unknown"):
        bus_url_from_env({"LOKEY_BUS_URL": "sim://x", "I2C_BUS_NUMBER": "1"})


def test_bus_url_from_env_reads_a_real_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOKEY_BUS_URL", raising=False)
    monkeypatch.setenv("I2C_BUS_NUMBER", "5")
    assert bus_url_from_env(os.environ) == "/dev/i2c-5"

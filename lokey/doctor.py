"""``lokey doctor``: can this machine serve randomness from its ATECC608A, and if not, why not?

``python -m lokey.doctor [--bus URL] [--samples N] [--json] [--record FILE]`` runs six checks in
order, each ending PASS, WARN, FAIL or SKIP (not run: an earlier check makes it pointless) with
one line of advice:

1. ``bus``: the bus opens (``/dev/i2c-N`` exists and is accessible; on a Pi also whether the
   adapter runs at the 100 kHz the wake pulse needs). The emulator and a replay pass, saying so.
2. ``address``: an ATECC608 answers the wake protocol at 0x60. If not, the Trust&GO (0x35) and
   TrustFLEX (0x36) addresses are tried too, read-only, to tell "wrong part" from "no part".
3. ``revision``: Info says ATECC608A or 608B.
4. ``lock``: the config zone is locked; an unlocked chip's Random is the test pattern.
5. ``self-test``: SelfTest of every engine passes.
6. ``samples``: N Random samples (default 64, 2 KiB) are not the test pattern, all-equal or
   mostly 0xFF, never repeat, pass the SP 800-90B health tests (start-up, RCT, APT, as the
   controller gates them) and the legacy monobit balance (by its SP 800-22 p-value).

Read-only: the doctor sends wake pulses, Idle and Sleep, Info, Read (config word 0x15),
SelfTest and Random (SelfTest changes no EEPROM); never Write, Lock, UpdateExtra or a Counter
increment. Exit status: 0 nothing failed (warnings allowed), 1 a check failed, 2 the doctor
could not run (a bad option or URL, an unreadable or diverging replay, an internal error).

The bus URL defaults like the controller's (``LOKEY_BUS_URL``, else ``/dev/i2c-$I2C_BUS_NUMBER``,
else the emulator, whose default chip is unlocked: the lock check fails there, as it should).
``--record FILE`` writes everything that crossed the bus as a trace; ``--bus replay://FILE``
runs the doctor against that trace later, with no chip (docs/replay.md).

In-process: :func:`diagnose` opens a URL and checks it; :func:`diagnose_bus` checks a bus that
is already open (tests inject emulator faults first); both return a :class:`Report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import errno
import json
import os
import re
import sys
import traceback
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

from smbus2 import i2c_msg

from lokey.backends import (
    DEFAULT_SPY_CAPACITY,
    BusRecorder,
    OpenedBus,
    ReplayError,
    SpyBus,
    bus_url_from_env,
    open_bus,
    parse_bus_url,
)
from lokey.clock import Clock
from lokey.controller.errors import RejectReason
from lokey.controller.source import SAMPLE_BYTES, classify
from lokey.errors import (
    BusError,
    CommunicationError,
    DeviceError,
    HealthTestError,
    NoDeviceError,
    SelfTestError,
    UnsupportedDeviceError,
)
from lokey.hardware.commands import SELFTEST_ALL, Atecc608aDriver
from lokey.hardware.transport import DEFAULT_ADDRESS, Transport
from lokey.quality.health import STARTUP_SAMPLES, HealthState, HealthTracker
from lokey.quality.legacy import LegacyMetrics

__all__ = [
    "CHECKS",
    "DEFAULT_SAMPLES",
    "EXIT_FAIL",
    "EXIT_PASS",
    "EXIT_USAGE",
    "MAX_SAMPLES",
    "Check",
    "Report",
    "Status",
    "diagnose",
    "diagnose_bus",
    "main",
    "render",
]

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: 64 Random samples = 2 KiB: past SP 800-90B's 1,024-sample start-up test, a few seconds on a Pi.
DEFAULT_SAMPLES: Final = 64
MAX_SAMPLES: Final = 1_000_000  # 32 MB: about 15 hours at the chip's ~18 samples/s
CHECKS: Final = ("bus", "address", "revision", "lock", "self-test", "samples")

#: Monobit p-values (SP 800-22 frequency test over all sample bits): below the first a healthy
#: chip lands 1 time in 100 (a warning: run again), below the second once in a million runs.
MONOBIT_WARN_P: Final = 0.01
MONOBIT_FAIL_P: Final = 1e-6

_WAKE_DELAY_S: Final = 0.0015  # spec/atecc608a.md §1.3: tWHI
_WAKE_GROUP: Final = bytes.fromhex("04113343")  # §1.3
_FAILURE_WAKE_GROUP: Final = bytes.fromhex("040740c2")  # §1.3: wake self-test failed
_SLEEP: Final = 0x01  # §1.2: word address Sleep
#: §1.1: where pre-configured parts answer instead of the factory 0x60.
_OTHER_ADDRESSES: Final = ((0x35, "Trust&GO"), (0x36, "TrustFLEX"))
_PROBE_ATTEMPTS: Final = 3
_MAX_BUS_HZ: Final = 100_000  # §1.3: at 400 kHz the wake pulse is too short
_PARTS: Final = {0x02: "ATECC608A", 0x03: "ATECC608B"}  # §6: Info revision byte 3
_ENGINES: Final = ((0x01, "RNG"), (0x02, "ECDSA"), (0x08, "ECDH"), (0x10, "AES"), (0x20, "SHA"))
_DEV_NODE = re.compile(r"/dev/i2c-([0-9]+)")

_ADVICE_ENABLE_I2C: Final = (
    "enable I2C: add dtparam=i2c_arm=on to /boot/firmware/config.txt (or raspi-config > "
    "Interface Options > I2C), reboot, and add the user to the i2c group "
    "(sudo usermod -aG i2c $USER, then log in again)"
)
_ADVICE_PERMISSION: Final = (
    "add the user to the i2c group (sudo usermod -aG i2c $USER, then log in again), or fix "
    "the udev rule that sets the node's permissions"
)
_ADVICE_SPEED: Final = (
    "set dtparam=i2c_arm_baudrate=100000 in /boot/firmware/config.txt and reboot: above "
    "100 kHz the wake pulse is too short for the ATECC608"
)
_ADVICE_NOISE: Final = (
    "damaged responses: keep the wires short, run the bus at 100 kHz "
    "(dtparam=i2c_arm_baudrate=100000) and check the pull-ups on SDA and SCL"
)
_ADVICE_DEFECTIVE: Final = (
    "the chip is defective: power-cycle it and run the doctor again; if the self-test still "
    "fails, replace the chip"
)
_ADVICE_PROVISION: Final = (
    "run `lokey provision` to review LoKey's RNG configuration, then `lokey provision --yes` "
    "to write and lock it (irreversible)"
)


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # not run: an earlier check failed in a way that makes it pointless


@dataclass(frozen=True)
class Check:
    """One check's outcome: what was found (``summary``) and what to do (``advice``, or "")."""

    name: str
    status: Status
    summary: str
    advice: str = ""
    details: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "advice": self.advice,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Report:
    """Every check, in :data:`CHECKS` order, for the bus ``url``."""

    url: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAIL)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.WARN)

    @property
    def result(self) -> Status:
        """FAIL if any check failed, else WARN if any warned, else PASS."""
        if self.failed:
            return Status.FAIL
        return Status.WARN if self.warnings else Status.PASS

    @property
    def exit_code(self) -> int:
        return EXIT_FAIL if self.failed else EXIT_PASS

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if there is none)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "result": self.result.value,
            "exit_code": self.exit_code,
            "checks": [c.to_dict() for c in self.checks],
        }


def _details(**values: object) -> Mapping[str, object]:
    return MappingProxyType(values)


def _skipped(names: Sequence[str], reason: str) -> list[Check]:
    return [Check(name, Status.SKIP, f"not run: {reason}") for name in names]


# -- the bus ----------------------------------------------------------------------------------


def _device_path(url: str) -> str | None:
    """The i2c-dev path a URL opens (None for the emulator and replays)."""
    rest = url[4:] if url[:4].lower() == "spy+" else url
    if rest.startswith("/"):
        return rest
    if rest[:6].lower() == "i2c://":
        return unquote(rest[6:])
    return None


def _adapter_number(url: str) -> int | None:
    path = _device_path(url)
    match = _DEV_NODE.fullmatch(path) if path else None
    return int(match.group(1)) if match else None


def _adapters(dev: Path) -> list[str]:
    try:
        found = [p for p in dev.glob("i2c-*") if _DEV_NODE.fullmatch(f"/dev/{p.name}")]
    except OSError:
        return []
    return sorted((f"/dev/{p.name}" for p in found), key=lambda s: int(s.rpartition("-")[2]))


def _bus_speed_hz(number: int, sysfs: Path) -> int | None:
    """The adapter's devicetree clock-frequency (a Pi's dtparam=i2c_arm_baudrate), if known."""
    node = sysfs / "bus" / "i2c" / "devices" / f"i2c-{number}" / "of_node" / "clock-frequency"
    try:
        raw = node.read_bytes()
    except OSError:
        return None
    return int.from_bytes(raw, "big") if len(raw) == 4 else None  # a big-endian u32 cell


def _bus_failure(url: str, exc: Exception, dev: Path) -> Check:
    cause = exc.__cause__
    path = _device_path(url) or url
    if isinstance(exc, BusError) and isinstance(cause, OSError):
        code = cause.errno
        name = errno.errorcode.get(code, "?") if code is not None else "?"
        summary = f"cannot open {path}: {cause.strerror or cause} ({name})"
        if code == errno.ENOENT:
            present = _adapters(dev)
            if present:
                summary += f"; this machine has {', '.join(present)}"
            advice = _ADVICE_ENABLE_I2C
        elif code in (errno.EACCES, errno.EPERM):
            advice = _ADVICE_PERMISSION
        else:
            advice = "name the /dev/i2c-N node of an I2C adapter (ls /dev/i2c-*)"
        return Check("bus", Status.FAIL, summary, advice, _details(url=url, errno=name))
    if isinstance(exc, BusError):  # opened, but not an adapter
        return Check(
            "bus",
            Status.FAIL,
            str(exc),
            "name the /dev/i2c-N node of an I2C adapter (ls /dev/i2c-*)",
            _details(url=url),
        )
    return Check(
        "bus",
        Status.FAIL,
        str(exc),
        "check the path of the trace file (record one with lokey doctor --record FILE)",
        _details(url=url),
    )


def _bus_check(opened: OpenedBus, sysfs: Path) -> Check:
    details: dict[str, object] = {"url": opened.url, "kind": opened.kind}
    if opened.kind == "emulator":
        return Check(
            "bus",
            Status.PASS,
            "the emulator (sim://), not hardware",
            "set LOKEY_BUS_URL=/dev/i2c-1 (or I2C_BUS_NUMBER=1) to check a real chip",
            _details(**details),
        )
    replay = opened.replay
    if replay is not None:
        details["records"] = len(replay.records)
        return Check(
            "bus",
            Status.PASS,
            f"a replay of {replay.source} ({len(replay.records)} recorded messages), not hardware",
            "",
            _details(**details),
        )
    path = _device_path(opened.url) or opened.url
    number = _adapter_number(opened.url)
    speed = None if number is None else _bus_speed_hz(number, sysfs)
    details["clock_hz"] = speed
    if speed is not None and speed > _MAX_BUS_HZ:
        return Check(
            "bus",
            Status.WARN,
            f"{path} is open, but the adapter runs at {speed / 1000:g} kHz",
            _ADVICE_SPEED,
            _details(**details),
        )
    at = f" at {speed / 1000:g} kHz" if speed is not None else ""
    return Check("bus", Status.PASS, f"{path} is open{at}", "", _details(**details))


# -- the chip ---------------------------------------------------------------------------------


def _wiring_advice(url: str) -> str:
    number = _adapter_number(url)
    return (
        "check the wiring: SDA to GPIO2 (pin 3), SCL to GPIO3 (pin 5), VCC to 3.3 V (pin 1), "
        f"GND (pin 6); `i2cdetect -y {1 if number is None else number}` should list 60 (run it "
        "twice: the first scan may only wake the chip)"
    )


def _probe(opened: OpenedBus, addresses: Sequence[int]) -> list[int]:
    """Read-only: at which of ``addresses`` does an ATECC608 answer a wake pulse?

    Pulse, tWHI, read four bytes at each address still unknown; a few rounds, since a pulse
    wakes every ATECC608 on the bus at once. Nothing is written to an address unless it
    answered with a wake group, and then only Sleep (after all rounds, so no later pulse
    wakes it again): an unknown device there is never written to.
    """
    bus, clock = opened.bus, opened.clock
    found: list[int] = []
    pending = list(addresses)
    for _ in range(_PROBE_ATTEMPTS):
        if not pending:
            break
        with suppress(OSError):
            bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
        clock.sleep(_WAKE_DELAY_S)
        for address in list(pending):
            msg = i2c_msg.read(address, len(_WAKE_GROUP))
            try:
                bus.i2c_rdwr(msg)
            except OSError:
                continue  # asleep still, or nobody there: ask again next round
            pending.remove(address)  # answered: an ATECC608, or someone to leave alone
            if bytes(msg) in (_WAKE_GROUP, _FAILURE_WAKE_GROUP):
                found.append(address)
    for address in found:
        with suppress(OSError):
            bus.i2c_rdwr(i2c_msg.write(address, [_SLEEP]))
    return found


def _address_check(opened: OpenedBus, transport: Transport) -> Check:
    address = transport.address
    shown = f"0x{address:02x}"
    try:
        with transport.session():
            transport.wake()
    except SelfTestError:
        return Check(
            "address",
            Status.WARN,
            f"an ATECC608 answers at {shown}, but woke in self-test Failure state (status 0x07)",
            "see the self-test check; a failure that comes back at every wake means a failing "
            "chip or an unstable supply",
            _details(address=shown, wake_group=_FAILURE_WAKE_GROUP.hex()),
        )
    except NoDeviceError:
        others = {a: part for a, part in _OTHER_ADDRESSES if a != address}
        found = [(a, others[a]) for a in _probe(opened, list(others))]
        if found:
            where = ", ".join(f"0x{a:02x} ({part} default)" for a, part in found)
            return Check(
                "address",
                Status.FAIL,
                f"no ACK at {shown}, but an ATECC608 answers at {where}",
                f"a pre-configured part: LoKey talks to the factory address {shown} (config "
                "byte 16 = 0xC0, e.g. ATECC608A-MAHDA); use such a part",
                _details(address=shown, found=[f"0x{a:02x}" for a, _ in found]),
            )
        return Check(
            "address",
            Status.FAIL,
            f"no ACK at {shown}: no ATECC608 answers the wake protocol",
            _wiring_advice(opened.url),
            _details(address=shown, found=[]),
        )
    except CommunicationError as exc:
        return Check(
            "address",
            Status.FAIL,
            f"something answers at {shown}, but not with an ATECC608 wake group ({exc})",
            "another device at that address (i2cdetect), or " + _ADVICE_NOISE,
            _details(address=shown),
        )
    except BusError as exc:
        return Check(
            "address",
            Status.FAIL,
            f"the bus failed while waking the chip: {exc}",
            "a line held low (SDA stuck): power-cycle the chip and check the wiring and "
            "pull-ups; " + _wiring_advice(opened.url),
            _details(address=shown, errno=exc.errno),
        )
    return Check(
        "address",
        Status.PASS,
        f"an ATECC608 answers at {shown} (wake group {_WAKE_GROUP.hex(' ')})",
        "",
        _details(address=shown, wake_group=_WAKE_GROUP.hex()),
    )


def _device_failure(name: str, exc: DeviceError) -> Check:
    """A check interrupted by a driver error, with the advice that error calls for."""
    if isinstance(exc, SelfTestError) and name != "self-test":
        return Check(name, Status.SKIP, "not run: the chip is in self-test Failure state")
    if isinstance(exc, HealthTestError):
        advice = (
            "the chip's own RNG health test failed: power-cycle it; if it keeps failing, the "
            "chip is defective"
        )
    elif isinstance(exc, NoDeviceError):
        advice = (
            "the chip stopped answering: check power and loose wires, and that no other "
            "program uses the bus"
        )
    elif isinstance(exc, CommunicationError):
        advice = _ADVICE_NOISE
    elif isinstance(exc, BusError):
        advice = "a bus error: power-cycle the chip and check the wiring and pull-ups"
    else:
        advice = "power-cycle the chip and run the doctor again"
    return Check(name, Status.FAIL, f"{type(exc).__name__}: {exc}", advice)


def _revision_check(driver: Atecc608aDriver) -> Check:
    try:
        revision = driver.revision()
    except UnsupportedDeviceError as exc:
        return Check(
            "revision",
            Status.FAIL,
            f"Info revision {exc.revision.hex(' ')} is not an ATECC608",
            "another device answers at this address (i2cdetect shows what is on the bus); "
            "LoKey drives the ATECC608A and ATECC608B only",
            _details(revision=exc.revision.hex()),
        )
    except DeviceError as exc:
        return _device_failure("revision", exc)
    part = _PARTS.get(revision[3])
    details = _details(revision=revision.hex(), part=part)
    if part is None:
        return Check(
            "revision",
            Status.WARN,
            f"an ATECC608 of unknown revision {revision.hex(' ')}",
            "LoKey is tested with the 608A (00 00 60 02) and 608B (00 00 60 03)",
            details,
        )
    return Check("revision", Status.PASS, f"{part}, Info revision {revision.hex(' ')}", "", details)


def _lock_check(driver: Atecc608aDriver, kind: str) -> Check:
    try:
        state = driver.lock_state()
    except DeviceError as exc:
        return _device_failure("lock", exc)
    details = _details(config_locked=state.config_locked, data_locked=state.data_locked)
    if state.config_locked:
        data = "locked" if state.data_locked else "unlocked"
        return Check("lock", Status.PASS, f"config zone locked (data zone {data})", "", details)
    advice = _ADVICE_PROVISION
    if kind == "emulator":
        advice += "; or start the emulator locked: sim://atecc608a?lock=config-locked"
    return Check(
        "lock",
        Status.FAIL,
        "config zone unlocked: Random returns the test pattern FF FF 00 00, not entropy",
        advice,
        details,
    )


def _engines(bitmap: int) -> list[str]:
    return [name for bit, name in _ENGINES if bitmap & bit]


def _self_test_check(driver: Atecc608aDriver) -> Check:
    try:
        failed = driver.self_test(SELFTEST_ALL)
    except DeviceError as exc:
        check = _device_failure("self-test", exc)
        if isinstance(exc, SelfTestError):
            return dataclasses.replace(check, advice=_ADVICE_DEFECTIVE)
        return check
    details = _details(tests=f"0x{SELFTEST_ALL:02x}", failed=f"0x{failed:02x}")
    if failed:
        return Check(
            "self-test",
            Status.FAIL,
            f"SelfTest failed: {', '.join(_engines(failed))} (bitmap 0x{failed:02X})",
            _ADVICE_DEFECTIVE,
            details,
        )
    engines = ", ".join(_engines(SELFTEST_ALL))
    return Check("self-test", Status.PASS, f"every engine passes ({engines})", "", details)


_REJECT_TEXT: Final = {
    RejectReason.TEST_PATTERN: "the unlocked chip's test pattern",
    RejectReason.ALL_EQUAL: "all 32 bytes equal (a stuck noise source)",
    RejectReason.MOSTLY_FF: "over 90 % 0xFF (an error group or a floating SDA line)",
    RejectReason.LENGTH: f"not {SAMPLE_BYTES} bytes",
}
_ADVICE_STUCK: Final = (
    "the noise source is stuck or biased: power-cycle the chip and run the doctor again; if it "
    "persists, the chip is defective"
)


def _samples_check(driver: Atecc608aDriver, count: int) -> Check:
    samples: list[bytes] = []
    clock = driver.transport.clock
    started = clock.monotonic()
    try:
        with driver.session():
            for _ in range(count):
                samples.append(driver.random())
    except DeviceError as exc:
        check = _device_failure("samples", exc)
        details = _details(samples=count, read=len(samples))
        return dataclasses.replace(check, details=details)
    return _judge(samples, clock.monotonic() - started)


def _judge(samples: Sequence[bytes], elapsed_s: float) -> Check:
    """The verdict over ``samples``: classification, repeats, SP 800-90B, legacy monobit."""
    data = b"".join(samples)
    rejected: dict[str, int] = {}
    first_reject: tuple[int, RejectReason] | None = None
    for number, sample in enumerate(samples):
        reason = classify(sample)
        if reason is not None:
            rejected[reason.value] = rejected.get(reason.value, 0) + 1
            first_reject = first_reject or (number, reason)
    seen: dict[bytes, int] = {}
    repeats: list[tuple[int, int]] = []
    for number, sample in enumerate(samples):
        if sample in seen:
            repeats.append((number, seen[sample]))
        else:
            seen[sample] = number
    tracker = HealthTracker()  # the controller's gate: H = 8 bits per byte, alpha = 2^-20
    tracker.feed(data)
    health = tracker.snapshot()
    legacy = LegacyMetrics()
    legacy.feed(data)
    monobit = legacy.snapshot().monobit
    p_value = monobit.p_value
    rate = len(data) / elapsed_s if elapsed_s > 0 else None  # none on a clock that stood still
    details = _details(
        samples=len(samples),
        bytes=len(data),
        seconds=elapsed_s,
        bytes_per_second=rate,
        rejected=rejected,
        repeats=len(repeats),
        health={
            "state": health.state.value,
            "rct_cutoff": health.rct_cutoff,
            "apt_cutoff": health.apt_cutoff,
            "apt_window": health.apt_window,
            "failure": health.reason,
        },
        monobit={
            "ones": monobit.ones,
            "total": monobit.total,
            "average": monobit.average,
            "p_value": p_value,
        },
    )
    size = f"{len(samples)} samples ({len(data):,} bytes)"

    def verdict(status: Status, summary: str, advice: str = "") -> Check:
        return Check("samples", status, summary, advice, details)

    if first_reject is not None:
        number, reason = first_reject
        total = sum(rejected.values())
        return verdict(
            Status.FAIL,
            f"{total} of {size} rejected, first sample {number}: {_REJECT_TEXT[reason]}",
            _ADVICE_STUCK,
        )
    if repeats:
        number, earlier = repeats[0]
        return verdict(
            Status.FAIL,
            f"sample {number} repeats sample {earlier} ({len(repeats)} repeat(s) in {size}): "
            "a stuck or cycling noise source",
            _ADVICE_STUCK,
        )
    if health.state is HealthState.FAILED:
        return verdict(Status.FAIL, f"SP 800-90B over {size}: {health.reason}", _ADVICE_STUCK)
    if p_value is not None and p_value < MONOBIT_FAIL_P:
        return verdict(
            Status.FAIL,
            f"monobit: {monobit.average:.4f} ones over {monobit.total:,} bits, p = {p_value:.2g}",
            _ADVICE_STUCK,
        )
    if p_value is not None and p_value < MONOBIT_WARN_P:
        return verdict(
            Status.WARN,
            f"monobit: {monobit.average:.4f} ones over {monobit.total:,} bits, p = {p_value:.2g}",
            "a healthy chip does this 1 time in 100: run again with --samples 1024",
        )
    if health.state is not HealthState.STEADY:
        return verdict(
            Status.WARN,
            f"{size}: too few for SP 800-90B's {STARTUP_SAMPLES:,}-sample start-up test",
            f"use --samples {-(-STARTUP_SAMPLES // SAMPLE_BYTES)} or more",
        )
    speed = f" in {elapsed_s:.2f} s ({rate:,.0f} B/s)" if rate is not None else ""
    return verdict(
        Status.PASS,
        f"{size}{speed}: no repeats; SP 800-90B start-up, RCT (C = {health.rct_cutoff}) and APT "
        f"(C = {health.apt_cutoff} per {health.apt_window}) pass; monobit p = {p_value:.2f}",
    )


def diagnose_bus(
    opened: OpenedBus,
    *,
    samples: int = DEFAULT_SAMPLES,
    address: int = DEFAULT_ADDRESS,
    sysfs: Path = Path("/sys"),
) -> Report:
    """Run every check on an open bus (which stays open; the chip is left asleep).

    Driver errors become FAIL (or SKIP) checks. Anything else propagates: a
    :class:`~lokey.backends.ReplayError` from a replay that diverged, a bug.
    """
    _check_samples(samples)
    checks = [_bus_check(opened, sysfs)]
    transport = Transport(opened.bus, opened.clock, address=address)
    driver = Atecc608aDriver(transport)
    found = _address_check(opened, transport)
    checks.append(found)
    if found.status is Status.FAIL:
        checks += _skipped(CHECKS[2:], "no ATECC608 answers at the address")
        return Report(opened.url, tuple(checks))
    try:
        revision = _revision_check(driver)
        checks.append(revision)
        if revision.status is Status.FAIL:
            checks += _skipped(CHECKS[3:], "the device is not a working ATECC608")
            return Report(opened.url, tuple(checks))
        lock = _lock_check(driver, opened.kind)
        checks.append(lock)
        self_test = _self_test_check(driver)
        checks.append(self_test)
        if self_test.status is Status.FAIL:
            checks += _skipped(CHECKS[5:], "the self-test failed")
        elif lock.details.get("config_locked") is False:
            checks += _skipped(
                CHECKS[5:], "the config zone is unlocked, so Random returns the test pattern"
            )
        elif lock.status is not Status.PASS:
            checks += _skipped(CHECKS[5:], "the lock state is unknown")
        else:
            checks.append(_samples_check(driver, samples))
    finally:
        with suppress(DeviceError):
            transport.sleep()  # leave the chip as the doctor found it: asleep
    return Report(opened.url, tuple(checks))


def _check_samples(samples: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be an integer 1..{MAX_SAMPLES}, got {samples!r}")


def diagnose(
    url: str,
    *,
    samples: int = DEFAULT_SAMPLES,
    clock: Clock | None = None,
    record: str | os.PathLike[str] | None = None,
    sysfs: Path = Path("/sys"),
    dev: Path = Path("/dev"),
) -> Report:
    """Open ``url`` and run every check; the bus is closed afterwards.

    A bus that cannot be opened is the ``bus`` check's FAIL, not an exception; a URL that can
    never work raises :class:`ValueError` (from :func:`~lokey.backends.open_bus`). With
    ``record`` everything that crossed the bus is written there as a JSON-lines trace (also
    when a check failed), ready for ``--bus replay://<record>``.
    """
    _check_samples(samples)
    parse_bus_url(url)  # a bad URL raises ValueError before anything is opened
    try:
        opened = open_bus(url, clock=clock)
    except BusError as exc:
        return Report(url, (_bus_failure(url, exc, dev), *_skipped(CHECKS[1:], "no bus")))
    # a replay that cannot be read is "cannot run" (exit 2), like one that diverges: it says
    # nothing about a chip
    recorder: BusRecorder | None = None
    if record is not None:
        recorder = opened.trace
        if recorder is None:
            # Room for the whole run: a Random is a write and a read, plus the reads a busy
            # chip NACKs on hardware (at most 20 per command), plus the other checks.
            recorder = BusRecorder(max(DEFAULT_SPY_CAPACITY, 24 * samples + 4096))
            opened = dataclasses.replace(
                opened, bus=SpyBus(opened.bus, opened.clock, recorder), trace=recorder
            )
    try:
        return diagnose_bus(opened, samples=samples, sysfs=sysfs)
    finally:
        try:
            if recorder is not None and record is not None:
                if len(recorder) >= recorder.capacity:
                    print(
                        f"lokey doctor: the trace holds only the last {recorder.capacity:,} "
                        "messages and will not replay; record with fewer --samples",
                        file=sys.stderr,
                    )
                recorder.write_jsonl(record)
        finally:
            opened.close()


# -- output -----------------------------------------------------------------------------------

_LABELS: Final = {
    Status.PASS: "PASS",
    Status.WARN: "WARN",
    Status.FAIL: "FAIL",
    Status.SKIP: "SKIP",
}


def render(report: Report) -> str:
    """The report as a table: one row per check, its advice indented below it."""
    width = max(len(name) for name in CHECKS)
    lines = [f"LoKey doctor: {report.url}", f"  {'check':<{width}}  result  finding"]
    for check in report.checks:
        lines.append(f"  {check.name:<{width}}  {_LABELS[check.status]:<6}  {check.summary}")
        if check.advice:
            lines.append(f"  {'':<{width}}  {'':<6}  -> {check.advice}")
    counts = [f"{len(report.failed)} failed"] if report.failed else []
    if report.warnings:
        counts.append(f"{len(report.warnings)} warning(s)")
    lines.append(f"RESULT: {_LABELS[report.result]} ({', '.join(counts) or 'all checks passed'})")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def _bounded_samples(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--samples must be an integer, got {text!r}") from None
    if not 1 <= value <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"--samples must be in [1, {MAX_SAMPLES:,}], got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lokey doctor",
        description=(
            "Check the bus, the chip at 0x60, its revision, lock state and self-test, and the "
            "quality of a few Random samples, with advice for each problem. Read-only: "
            "nothing is written to the chip. Exit 0 nothing failed, 1 a check failed, 2 the "
            "doctor could not run."
        ),
    )
    parser.add_argument(
        "--bus",
        metavar="URL",
        default=None,
        help="bus URL (default: LOKEY_BUS_URL, else /dev/i2c-$I2C_BUS_NUMBER, else the emulator)",
    )
    parser.add_argument(
        "--samples",
        type=_bounded_samples,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help=f"Random samples (32 bytes each) to test (default {DEFAULT_SAMPLES}: 2 KiB)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write every bus message as a JSON-lines trace; replay it with --bus replay://FILE",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None) -> int:
    """``lokey doctor``; returns the exit status (0 pass, 1 a check failed, 2 cannot run)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        url = args.bus or bus_url_from_env(os.environ if env is None else env)
        parse_bus_url(url)
    except ValueError as exc:
        print(f"lokey doctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = diagnose(url, samples=args.samples, record=args.record)
    except KeyboardInterrupt:
        print("lokey doctor: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except ReplayError as exc:  # the replayed session went another way than the recorded one
        print(f"lokey doctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the trace could not be written
        print(f"lokey doctor: cannot write {args.record}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print(
            "lokey doctor: internal error (the traceback above is a bug: please report it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())

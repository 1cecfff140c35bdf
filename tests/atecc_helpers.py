"""Shared helpers for the ATECC608A emulator tests: vectors, a chip on the virtual bus, framing.

Everything here talks to the chip the way a Linux host does (spec §15): one ``i2c_rdwr`` call per
START … STOP, real ``smbus2.i2c_msg`` objects, ``OSError(EREMOTEIO)`` for every NACK, and a
:class:`~sim.clock.VirtualClock` that only moves when a test moves it.

Known answers come from ``../shared/vectors/`` (relative to the repository root) and are never
retyped here; :func:`packet` and :func:`frame` build the few groups no vector holds, with the CRC
that ``test_atecc608a_crc.py`` pins to ``vectors/crc16.json``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from smbus2 import i2c_msg

from sim.atecc608a import ATECC608A, TimingModel, crc16_wire
from sim.clock import VirtualClock
from sim.i2c_bus import VirtualI2CBus

__all__ = [
    "ADDRESS",
    "POLL_STEP_S",
    "T_WHI_S",
    "VECTORS",
    "NoResponseError",
    "Op",
    "Rig",
    "command",
    "crc_algorithm",
    "crc_cases",
    "derived_read",
    "factory",
    "factory_image",
    "frame",
    "make_rig",
    "packet",
    "packets",
    "response",
    "status",
    "transact",
    "wake_group",
]

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"

ADDRESS = 0x60  # §1.1 default 7-bit address
T_WHI_S = 1500e-6  # §1.3: the host's guaranteed-safe wait after a wake pulse
POLL_STEP_S = 0.25e-3  # host polling interval while the chip NACKs (busy)
POLL_LIMIT_S = 2.5  # §1.4: cryptoauthlib polls for at most 2500 ms


class Op(IntEnum):
    """Opcodes as printed in spec §4 (the test side's own copy, checked against the vectors)."""

    PAUSE = 0x01
    READ = 0x02
    HMAC = 0x11
    WRITE = 0x12
    DELETE = 0x13
    NONCE = 0x16
    LOCK = 0x17
    RANDOM = 0x1B
    UPDATE_EXTRA = 0x20
    COUNTER = 0x24
    INFO = 0x30
    GENKEY = 0x40
    SIGN = 0x41
    ECDH = 0x43
    VERIFY = 0x45
    SHA = 0x47
    SELF_TEST = 0x77


class NoResponseError(AssertionError):
    """The chip never acknowledged a read within the polling limit."""


# --- vectors --------------------------------------------------------------------------------------


@functools.cache
def _load(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


def packets() -> Any:
    """``vectors/atecc_packets.json``."""
    return _load("atecc_packets")


def factory() -> Any:
    """``vectors/atecc_config_factory.json``."""
    return _load("atecc_config_factory")


def crc_cases() -> Any:
    """The ``cases`` of ``vectors/crc16.json``."""
    return _load("crc16")["cases"]


def crc_algorithm() -> Any:
    """The ``algorithm`` block of ``vectors/crc16.json``."""
    return _load("crc16")["algorithm"]


def _find(entries: list[Any], name: str) -> Any:
    """The entry called ``name``, or the only one whose name starts with it."""
    exact = [e for e in entries if e["name"] == name]
    if exact:
        return exact[0]
    matches = [e for e in entries if e["name"].startswith(name)]
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} vector entries match {name!r}")
    return matches[0]


def command(name: str) -> bytes:
    """A command group (count … CRC) from ``atecc_packets.json``, by name or unique prefix."""
    entries = packets()["commands"] + packets()["reference_quirk_commands"]
    return bytes.fromhex(_find(entries, name)["packet_hex"])


def response(name: str) -> bytes:
    """A response group from ``atecc_packets.json``, by name or unique prefix."""
    return bytes.fromhex(_find(packets()["responses"], name)["packet_hex"])


def status(code: int) -> bytes:
    """The 4-byte status group of ``code`` from ``status_packets`` (§3)."""
    for entry in packets()["status_packets"]:
        if entry["status"] == code:
            return bytes.fromhex(entry["packet_hex"])
    raise KeyError(f"no status group 0x{code:02X} in the vectors")


def wake_group() -> bytes:
    return bytes.fromhex(packets()["wake_response_hex"])


def factory_image() -> bytes:
    return bytes.fromhex(factory()["factory_config_hex"])


def derived_read(command_packet: bytes) -> bytes:
    """The factory image's response to a Read command, from ``derived_reads``."""
    for entry in factory()["derived_reads"]:
        if bytes.fromhex(entry["command_packet_hex"]) == command_packet:
            return bytes.fromhex(entry["response_hex"])
    raise KeyError(f"no derived read for {command_packet.hex()}")


# --- framing ------------------------------------------------------------------------------------


def packet(opcode: int, param1: int = 0, param2: int = 0, data: bytes = b"") -> bytes:
    """A command group (§2.1): count, opcode, param1, param2 little-endian, data, CRC."""
    body = bytes((7 + len(data), opcode, param1, param2 & 0xFF, param2 >> 8)) + data
    return body + crc16_wire(body)


def frame(payload: bytes) -> bytes:
    """A response group (§2.2): ``[count][payload][crc lo][crc hi]``."""
    body = bytes((len(payload) + 3,)) + payload
    return body + crc16_wire(body)


def with_bad_crc(group: bytes) -> bytes:
    """The same group with its CRC low byte flipped (a host → device CRC error)."""
    return group[:-2] + bytes((group[-2] ^ 0xFF, group[-1]))


# --- the chip on a virtual bus ------------------------------------------------------------------


def _is_nack(exc: OSError) -> bool:
    return exc.errno == errno.EREMOTEIO


def _wake_pulse(bus: VirtualI2CBus) -> None:
    """§15: ``i2c_msg.write(0x00, [0x00])``; nobody acknowledges it (EREMOTEIO on a Pi)."""
    try:
        bus.i2c_rdwr(i2c_msg.write(0x00, [0x00]))
    except OSError as exc:
        if not _is_nack(exc):
            raise
        return
    raise AssertionError("the wake pulse to address 0x00 was acknowledged")


def _try_read(bus: VirtualI2CBus, address: int, length: int) -> bytes | None:
    msg = i2c_msg.read(address, length)
    try:
        bus.i2c_rdwr(msg)
    except OSError as exc:
        if not _is_nack(exc):
            raise
        return None
    return ctypes.string_at(msg.buf, length) if length else b""


def _poll(bus: VirtualI2CBus, clock: VirtualClock, address: int, length: int) -> bytes:
    waited = 0.0
    while True:
        data = _try_read(bus, address, length)
        if data is not None:
            return data
        if waited >= POLL_LIMIT_S:
            raise NoResponseError(f"no ACK from 0x{address:02x} within {POLL_LIMIT_S} s")
        clock.advance(POLL_STEP_S)
        waited += POLL_STEP_S


def _read_group(bus: VirtualI2CBus, clock: VirtualClock, address: int) -> bytes:
    """cryptoauthlib's way (§1.5): read the count byte, then ``count - 1`` more bytes."""
    head = _poll(bus, clock, address, 1)
    rest = _try_read(bus, address, head[0] - 1) if head[0] > 1 else b""
    assert rest is not None, "the chip NACKed the rest of a response it had started"
    return head + rest


def transact(
    bus: VirtualI2CBus,
    clock: VirtualClock,
    packet: bytes,
    read_len: int | None = None,
    *,
    address: int = ADDRESS,
    idle: bool = True,
) -> bytes:
    """Wake, send ``packet`` (after word address 0x03), poll for the response, then idle.

    ``read_len`` None reads the group the cryptoauthlib way (count byte, then the rest); a
    number reads that many bytes at once, as Adafruit/Arduino/Lokey do. ``idle`` ends with the
    idle word address, as cryptoauthlib does after every command (§1.9).
    """
    _wake_pulse(bus)
    clock.advance(T_WHI_S)
    bus.i2c_rdwr(i2c_msg.write(address, b"\x03" + packet))
    if read_len is None:
        answer = _read_group(bus, clock, address)
    else:
        answer = _poll(bus, clock, address, read_len)
    if idle:
        bus.i2c_rdwr(i2c_msg.write(address, [0x02]))
    return answer


@dataclass
class Rig:
    """A VirtualClock, a VirtualI2CBus and one ATECC608A attached at 0x60."""

    clock: VirtualClock
    bus: VirtualI2CBus
    chip: ATECC608A
    address: int = ADDRESS

    # --- single transfers ---------------------------------------------------------------------
    def wake_pulse(self) -> None:
        _wake_pulse(self.bus)

    def write(self, data: bytes, address: int | None = None) -> bool:
        """One write transfer; True if acknowledged, False on a NACK (EREMOTEIO)."""
        try:
            self.bus.i2c_rdwr(i2c_msg.write(self.address if address is None else address, data))
        except OSError as exc:
            if not _is_nack(exc):
                raise
            return False
        return True

    def try_read(self, length: int, address: int | None = None) -> bytes | None:
        """One read transfer; the bytes, or None on a NACK."""
        return _try_read(self.bus, self.address if address is None else address, length)

    def read(self, length: int) -> bytes:
        data = self.try_read(length)
        assert data is not None, "the chip NACKed a read that should have been acknowledged"
        return data

    def ready(self) -> bool:
        """A zero-length read: acknowledged only when the chip has a response ready (§1.4)."""
        return self.try_read(0) is not None

    def send(self, group: bytes) -> None:
        """Write a command group after word address 0x03; it must be acknowledged."""
        assert self.write(b"\x03" + group), "the command write was NACKed"

    def idle(self) -> None:
        assert self.write(b"\x02"), "the idle word address was NACKed"

    def sleep(self) -> None:
        assert self.write(b"\x01"), "the sleep word address was NACKed"

    def reset_pointer(self) -> None:
        assert self.write(b"\x00"), "the reset word address was NACKed"

    # --- sequences ----------------------------------------------------------------------------
    def wake(self) -> bytes:
        """Wake pulse, wait tWHI, read the 4-byte group the chip answers after wake."""
        self.wake_pulse()
        self.clock.advance(T_WHI_S)
        return self.read(4)

    def poll(self, length: int) -> bytes:
        """Poll until the chip acknowledges a ``length``-byte read."""
        return _poll(self.bus, self.clock, self.address, length)

    def response(self) -> bytes:
        """Poll for the response group and read it (count byte, then the rest)."""
        return _read_group(self.bus, self.clock, self.address)

    def run(self, group: bytes, read_len: int | None = None, *, idle: bool = True) -> bytes:
        """:func:`transact` on this rig."""
        return transact(self.bus, self.clock, group, read_len, address=self.address, idle=idle)

    def config(self) -> bytes:
        """The 128-byte config zone as read back through four 32-byte Read commands."""
        return b"".join(self.run(packet(Op.READ, 0x80, block << 3))[1:-2] for block in range(4))


def make_rig(*, timing: str | TimingModel = "typical", **chip_options: Any) -> Rig:
    """A fresh chip (factory-fresh and unlocked unless told otherwise) at 0x60 on a new bus."""
    clock = VirtualClock()
    bus = VirtualI2CBus(clock, trace=False)
    chip = ATECC608A(clock=clock, timing=timing, **chip_options)
    bus.attach(ADDRESS, chip)
    return Rig(clock=clock, bus=bus, chip=chip)

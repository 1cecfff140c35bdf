"""The driver's P-256 commands over a scripted bus: the exact bytes each method writes, how it
reads the answers, and its argument checks (spec/atecc608a.md §2, §3, §4, §10.1, §10.3).

Expected packets are built here from the §2.1 layout with the driver's CRC, which is first pinned
to ``vectors/crc16.json``; the GenKey and Nonce packets the spec prints are taken from
``vectors/atecc_packets.json``. No emulator: the bus answers what each test scripts, so these
tests hold the driver to the spec on their own (tests/test_ecc_roundtrip.py runs the emulator).
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from smbus2 import i2c_msg

from lokey.errors import (
    BusError,
    ChipCrcError,
    CommunicationError,
    DeviceStatusError,
    EccFaultError,
    ExecutionError,
    HealthTestError,
    LostCommandError,
    ParseError,
    SelfTestError,
)
from lokey.hardware.commands import Atecc608aDriver, NonceTarget, PublicKey, Signature
from lokey.hardware.crc import crc16, crc16_bytes
from lokey.hardware.packets import Opcode
from lokey.hardware.transport import DEFAULT_TIMING, Transport
from sim.clock import VirtualClock
from tests.hardware_helpers import ADDRESS, crc_cases, packets, vector_bytes

_I2C_M_RD = 0x0001  # smbus2 / linux i2c.h: read message flag
WAKE_GROUP = bytes.fromhex(packets()["wake_response_hex"])
STATUS_GROUPS = {
    entry["status"]: bytes.fromhex(entry["packet_hex"]) for entry in packets()["status_packets"]
}
SUCCESS = STATUS_GROUPS[0x00]
MISCOMPARE = STATUS_GROUPS[0x01]

# §4 "608 M0" column, ms: the longest each command may keep the chip busy.
M0_MAX_MS = {Opcode.RANDOM: 23, Opcode.NONCE: 20, Opcode.GENKEY: 115, Opcode.SIGN: 115}
M0_MAX_MS |= {Opcode.VERIFY: 105, Opcode.ECDH: 75}

DIGEST = bytes(range(0xA0, 0xC0))  # 32 bytes
HOST_KEY = ec.derive_private_key(0x1234_5678_9ABC_DEF0, ec.SECP256R1())
HOST_NUMBERS = HOST_KEY.public_key().public_numbers()
HOST_XY = HOST_NUMBERS.x.to_bytes(32, "big") + HOST_NUMBERS.y.to_bytes(32, "big")
SIGNATURE_RS = bytes(range(1, 33)) + bytes(range(33, 65))


@pytest.mark.parametrize("case", crc_cases(), ids=[c["name"] for c in crc_cases()])
def test_the_drivers_crc_matches_every_vector(case: Any) -> None:
    data = bytes.fromhex(case["data_hex"])
    assert crc16(data) == case["crc"]
    assert crc16_bytes(data) == bytes.fromhex(case["wire_hex"])


def command(opcode: int, param1: int, param2: int, data: bytes = b"") -> bytes:
    """§2.1: count, opcode, param1, param2 low byte first, data, CRC low byte first."""
    body = bytes((7 + len(data), opcode, param1, param2 & 0xFF, param2 >> 8)) + data
    return body + crc16_bytes(body)


def group(payload: bytes) -> bytes:
    """§2.2: a response group ``count, payload, CRC``."""
    body = bytes((len(payload) + 3,)) + payload
    return body + crc16_bytes(body)


class ScriptedBus:
    """A :class:`lokey.hardware.bus.Bus` whose chip answers each command from a script.

    Wake pulses (writes to 0x00) raise the NACK i2c-dev reports; the read after one answers the
    wake group. Each command write takes the next scripted group, readable once the command's
    busy time (``busy_s`` by opcode, default none) has passed on the clock; before that, and
    after the script ends, reads are NACKed. Every acknowledged write is recorded.
    """

    def __init__(
        self, clock: VirtualClock, *answers: bytes, busy_s: dict[int, float] | None = None
    ):
        self.clock = clock
        self.answers = list(answers)
        self.busy_s = busy_s or {}
        self.writes: list[bytes] = []
        self.pulses = 0
        self._waking = False
        self._pending: bytes | None = None
        self._ready_at = 0.0

    def close(self) -> None:
        pass

    def i2c_rdwr(self, *msgs: i2c_msg) -> None:
        for msg in msgs:
            if msg.flags & _I2C_M_RD:
                self._read(msg)
                continue
            if msg.addr == 0x00:
                self.pulses += 1
                self._waking = True
                raise OSError(errno.EREMOTEIO, "wake pulse: nobody acknowledges 0x00")
            assert msg.addr == ADDRESS
            data = bytes(msg)
            self.writes.append(data)
            if data[:1] == b"\x03":
                self._waking = False
                self._pending = self.answers.pop(0) if self.answers else None
                self._ready_at = self.clock.monotonic() + self.busy_s.get(data[2], 0.0)

    def _read(self, msg: i2c_msg) -> None:
        if self._waking:
            answer = WAKE_GROUP
        elif self._pending is None or self.clock.monotonic() < self._ready_at:
            raise OSError(errno.EREMOTEIO, "no ACK: busy or nothing to say")
        else:
            answer = self._pending
        data = (answer + b"\xff" * msg.len)[: msg.len]
        ctypes.memmove(msg.buf, data, msg.len)

    def commands(self) -> list[bytes]:
        """Every command group written (without the word address 0x03)."""
        return [w[1:] for w in self.writes if w[:1] == b"\x03"]


def rig(
    *answers: bytes, busy_s: dict[int, float] | None = None
) -> tuple[ScriptedBus, Atecc608aDriver]:
    clock = VirtualClock()
    bus = ScriptedBus(clock, *answers, busy_s=busy_s)
    return bus, Atecc608aDriver(Transport(bus, clock))


def test_the_test_framing_rebuilds_the_vectors() -> None:
    assert command(0x1B, 0, 0) == vector_bytes("commands", "Random")
    assert group(b"\x00") == SUCCESS
    payload = vector_bytes("responses", "SHA end(abc)", "payload_hex")
    assert group(payload) == vector_bytes("responses", "SHA end(abc)")


# --- Nonce pass-through ------------------------------------------------------------------------


def test_nonce_load_to_tempkey_is_the_vector_packet() -> None:
    bus, driver = rig(SUCCESS)
    driver.nonce_load(bytes(32))
    assert bus.commands() == [vector_bytes("commands", "Nonce pass-through")]
    assert bus.pulses == 1
    assert bus.writes[-1] == b"\x02"  # idle after the operation (§1.9)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize(
    ("target", "bits"),
    [
        (NonceTarget.TEMPKEY, 0x00),
        (NonceTarget.MESSAGE_DIGEST, 0x40),
        (NonceTarget.ALTERNATE_KEY, 0x80),
    ],
)
def test_nonce_load_mode_bits(target: NonceTarget, bits: int, size: int) -> None:
    data = bytes(range(size))
    bus, driver = rig(SUCCESS)
    driver.nonce_load(data, target=target)
    param1 = 0x03 | bits | (0x20 if size == 64 else 0)  # §10.1: mode 3, bit 5, bits 7:6
    assert bus.commands() == [command(0x16, param1, 0x0000, data)]


@pytest.mark.parametrize(
    ("status", "error"),
    [(0x03, ParseError), (0x0F, ExecutionError), (0x07, SelfTestError), (0x11, LostCommandError)],
)
def test_nonce_load_status_errors_are_typed(status: int, error: type[Exception]) -> None:
    _, driver = rig(STATUS_GROUPS[status])
    with pytest.raises(error, match="Nonce"):
        driver.nonce_load(DIGEST, target=NonceTarget.MESSAGE_DIGEST)


# --- GenKey ------------------------------------------------------------------------------------


def test_genkey_and_public_key_of_slot_0_are_the_vector_packets() -> None:
    bus, driver = rig(group(HOST_XY), group(HOST_XY))
    assert driver.genkey(0) == PublicKey(HOST_XY)
    assert driver.public_key(0) == PublicKey(HOST_XY)
    assert bus.commands() == [
        vector_bytes("commands", "GenKey private slot 0"),
        vector_bytes("commands", "GenKey public slot 0"),
    ]


@pytest.mark.parametrize("slot", [1, 9, 15])
def test_genkey_and_public_key_put_the_slot_in_param2(slot: int) -> None:
    bus, driver = rig(group(HOST_XY), group(HOST_XY))
    key = driver.genkey(slot)
    assert driver.public_key(slot) == key
    assert bus.commands() == [command(0x40, 0x04, slot), command(0x40, 0x00, slot)]
    assert isinstance(key, PublicKey)
    assert key.raw == HOST_XY
    assert (key.x, key.y) == (HOST_NUMBERS.x, HOST_NUMBERS.y)
    assert key.to_cryptography().public_numbers() == HOST_NUMBERS


def test_genkey_on_an_unlocked_chip_is_an_execution_error() -> None:
    _, driver = rig(STATUS_GROUPS[0x0F])  # §10.3: GenKey fails with 0x0F while unlocked
    with pytest.raises(ExecutionError, match="GenKey"):
        driver.genkey(0)


def test_a_damaged_genkey_answer_is_never_resent() -> None:
    damaged = bytearray(group(HOST_XY))
    damaged[5] ^= 0x01
    bus, driver = rig(bytes(damaged), group(HOST_XY))  # the re-read sees the same damage
    with pytest.raises(CommunicationError, match="CRC"):
        driver.genkey(2)
    assert bus.commands() == [command(0x40, 0x04, 2)]  # a resend would replace the key again


def test_a_damaged_public_key_answer_is_resent() -> None:
    damaged = bytearray(group(HOST_XY))
    damaged[5] ^= 0x01
    bus, driver = rig(bytes(damaged), group(HOST_XY))  # read and re-read damaged, then good
    assert driver.public_key(2) == PublicKey(HOST_XY)
    assert bus.commands() == [command(0x40, 0x00, 2)] * 2


# --- Sign ----------------------------------------------------------------------------------------


def test_sign_digest_random_then_nonce_into_the_digest_buffer_then_sign_in_one_wake() -> None:
    random_block = vector_bytes("responses", "Random returning", "payload_hex")
    bus, driver = rig(group(random_block), SUCCESS, group(SIGNATURE_RS))
    signature = driver.sign_digest(3, DIGEST)
    assert bus.commands() == [
        vector_bytes("commands", "Random"),  # cryptoauthlib: "so the RNG seed is updated"
        command(0x16, 0x43, 0x0000, DIGEST),  # pass-through into the Message-Digest buffer
        command(0x41, 0xA0, 3),  # external, digest from the Message-Digest buffer, slot 3
    ]
    assert bus.pulses == 1  # one wake: the buffer is lost at sleep (§1.8)
    assert bus.writes[-1] == b"\x02"
    assert signature == Signature(SIGNATURE_RS)
    assert signature.r == int.from_bytes(SIGNATURE_RS[:32], "big")
    assert signature.s == int.from_bytes(SIGNATURE_RS[32:], "big")
    assert decode_dss_signature(signature.to_der()) == (signature.r, signature.s)


@pytest.mark.parametrize(
    ("status", "error"),
    [(0x0F, ExecutionError), (0x05, EccFaultError), (0x03, ParseError), (0x08, HealthTestError)],
)
def test_sign_status_errors_are_typed_and_sleep_the_chip(
    status: int, error: type[Exception]
) -> None:
    bus, driver = rig(group(bytes(32)), SUCCESS, STATUS_GROUPS[status])
    with pytest.raises(error, match="Sign"):
        driver.sign_digest(0, DIGEST)
    assert bus.writes[-1] == b"\x01"  # sleep after an error (transport rule)


def test_a_failed_nonce_stops_sign_before_it_is_sent() -> None:
    bus, driver = rig(group(bytes(32)), STATUS_GROUPS[0x03])
    with pytest.raises(ParseError, match="Nonce"):
        driver.sign_digest(0, DIGEST)
    assert [c[1] for c in bus.commands()] == [Opcode.RANDOM, Opcode.NONCE]


def test_a_damaged_signature_is_never_resent() -> None:
    damaged = bytearray(group(SIGNATURE_RS))
    damaged[-1] ^= 0x80
    bus, driver = rig(group(bytes(32)), SUCCESS, bytes(damaged), group(SIGNATURE_RS))
    with pytest.raises(CommunicationError):
        driver.sign_digest(0, DIGEST)
    assert [c[1] for c in bus.commands()].count(Opcode.SIGN) == 1


# --- Verify --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [(SUCCESS, True), (MISCOMPARE, False)])
def test_verify_digest_packets_and_result(answer: bytes, expected: bool) -> None:
    bus, driver = rig(SUCCESS, answer)
    result = driver.verify_digest(DIGEST, Signature(SIGNATURE_RS), PublicKey(HOST_XY))
    assert result is expected
    assert bus.commands() == [
        command(0x16, 0x43, 0x0000, DIGEST),
        command(0x45, 0x22, 0x0004, SIGNATURE_RS + HOST_XY),  # external, MsgDigBuf, P-256
    ]
    assert bus.commands()[1][3:5] == b"\x04\x00"  # param2 little-endian (§2.1)
    assert bus.pulses == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (0x03, ParseError),
        (0x05, EccFaultError),
        (0x07, SelfTestError),
        (0x08, HealthTestError),
        (0x0F, ExecutionError),
        (0x11, LostCommandError),
    ],
)
def test_verify_status_errors_are_typed(status: int, error: type[Exception]) -> None:
    _, driver = rig(SUCCESS, STATUS_GROUPS[status])
    with pytest.raises(error, match="Verify") as caught:
        driver.verify_digest(DIGEST, Signature(SIGNATURE_RS), PublicKey(HOST_XY))
    assert isinstance(caught.value, DeviceStatusError)
    assert caught.value.status == status


def test_verify_chip_crc_error_is_resent_once_then_raised() -> None:
    crc_error = STATUS_GROUPS[0xFF]
    bus, driver = rig(SUCCESS, crc_error, crc_error)
    with pytest.raises(ChipCrcError):
        driver.verify_digest(DIGEST, Signature(SIGNATURE_RS), PublicKey(HOST_XY))
    assert [c[1] for c in bus.commands()] == [Opcode.NONCE, Opcode.VERIFY, Opcode.VERIFY]


def test_verify_unknown_status_is_a_device_status_error() -> None:
    _, driver = rig(SUCCESS, group(b"\x02"))
    with pytest.raises(DeviceStatusError, match="unknown status 0x02"):
        driver.verify_digest(DIGEST, Signature(SIGNATURE_RS), PublicKey(HOST_XY))


# --- ECDH ----------------------------------------------------------------------------------------


def test_ecdh_packet_and_shared_secret() -> None:
    secret = bytes(range(100, 132))
    bus, driver = rig(group(secret))
    assert driver.ecdh(2, PublicKey(HOST_XY)) == secret
    assert bus.commands() == [command(0x43, 0x0C, 2, HOST_XY)]  # §10.3: output in clear


def test_ecdh_refused_by_the_slot_is_an_execution_error() -> None:
    _, driver = rig(STATUS_GROUPS[0x0F])
    with pytest.raises(ExecutionError, match="ECDH"):
        driver.ecdh(0, PublicKey(HOST_XY))


# --- execution times (§4) ------------------------------------------------------------------------


def _every_command(driver: Atecc608aDriver) -> None:
    driver.genkey(1)
    driver.public_key(1)
    driver.sign_digest(1, DIGEST)
    driver.verify_digest(DIGEST, Signature(SIGNATURE_RS), PublicKey(HOST_XY))
    driver.ecdh(1, PublicKey(HOST_XY))


_ANSWERS = (
    group(HOST_XY),
    group(HOST_XY),
    group(bytes(32)),
    SUCCESS,
    group(SIGNATURE_RS),
    SUCCESS,
    SUCCESS,
    group(bytes(32)),
)


def test_the_transport_knows_the_section_4_maxima() -> None:
    for opcode, max_ms in M0_MAX_MS.items():
        timing = DEFAULT_TIMING.command(opcode)
        assert timing.max_s == pytest.approx(max_ms / 1000), opcode.name
        assert 0 < timing.typical_s <= timing.max_s


def test_a_chip_busy_for_each_commands_maximum_is_still_read() -> None:
    bus, driver = rig(*_ANSWERS, busy_s={op: ms / 1000 for op, ms in M0_MAX_MS.items()})
    _every_command(driver)
    assert bus.answers == []


@pytest.mark.parametrize("opcode", [Opcode.GENKEY, Opcode.SIGN, Opcode.VERIFY, Opcode.ECDH])
def test_a_chip_busy_beyond_the_maximum_is_given_up(opcode: Opcode) -> None:
    late = M0_MAX_MS[opcode] / 1000 + 0.005  # past the last poll (maximum + 2 ms slack)
    _, driver = rig(*_ANSWERS, busy_s={opcode: late})
    with pytest.raises(BusError, match="no response within"):
        _every_command(driver)


# --- arguments -----------------------------------------------------------------------------------

KEY = PublicKey(HOST_XY)
SIG = Signature(SIGNATURE_RS)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda d: d.nonce_load(bytes(31)), "data"),
        (lambda d: d.nonce_load(bytes(48)), "data"),
        (lambda d: d.nonce_load("x" * 32), "data"),
        (lambda d: d.nonce_load(bytes(32), target=0x20), "target"),
        (lambda d: d.nonce_load(bytes(32), target=True), "target"),
        (lambda d: d.genkey(16), "slot"),
        (lambda d: d.genkey(-1), "slot"),
        (lambda d: d.genkey(True), "slot"),
        (lambda d: d.public_key(0xFFFF), "slot"),
        (lambda d: d.sign_digest(16, DIGEST), "slot"),
        (lambda d: d.sign_digest(0, DIGEST[:31]), "digest"),
        (lambda d: d.sign_digest(0, DIGEST + b"\x00"), "digest"),
        (lambda d: d.sign_digest(0, DIGEST.hex()), "digest"),
        (lambda d: d.verify_digest(bytes(33), SIG, KEY), "digest"),
        (lambda d: d.verify_digest(DIGEST, SIGNATURE_RS, KEY), "signature"),
        (lambda d: d.verify_digest(DIGEST, SIG, HOST_XY), "public_key"),
        (lambda d: d.verify_digest(DIGEST, KEY, SIG), "signature"),
        (lambda d: d.ecdh(16, KEY), "slot"),
        (lambda d: d.ecdh(0, HOST_XY), "peer"),
    ],
)
def test_arguments_are_validated_by_name_before_the_bus(
    call: Callable[[Atecc608aDriver], object], name: str
) -> None:
    bus, driver = rig(SUCCESS)
    with pytest.raises(ValueError, match=name):
        call(driver)
    assert bus.writes == []
    assert bus.pulses == 0


# --- the typed values ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [PublicKey, Signature])
@pytest.mark.parametrize("raw", [bytes(63), bytes(65), b"", "00" * 64, None])
def test_values_are_exactly_64_bytes(kind: type[PublicKey | Signature], raw: Any) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        kind(raw)


def test_values_copy_bytes_like_input_and_are_frozen() -> None:
    source = bytearray(HOST_XY)
    key = PublicKey(source)  # type: ignore[arg-type]
    source[0] ^= 0xFF
    assert type(key.raw) is bytes
    assert key.raw == HOST_XY
    assert bytes(key) == HOST_XY
    assert bytes(Signature(SIGNATURE_RS)) == SIGNATURE_RS
    with pytest.raises(AttributeError):
        key.raw = bytes(64)  # type: ignore[misc]


def test_public_key_round_trips_through_cryptography() -> None:
    key = PublicKey.from_cryptography(HOST_KEY.public_key())
    assert key.raw == HOST_XY
    assert key.to_cryptography() == HOST_KEY.public_key()
    generator = ec.derive_private_key(1, ec.SECP256R1()).public_key()
    assert PublicKey.from_cryptography(generator).to_cryptography() == generator


def test_public_key_refuses_other_curves_and_points_off_the_curve() -> None:
    other = ec.derive_private_key(5, ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="SECP256R1"):
        PublicKey.from_cryptography(other)
    off_curve = PublicKey(HOST_XY[:63] + bytes((HOST_XY[63] ^ 1,)))
    with pytest.raises(ValueError, match="not a point on P-256"):
        off_curve.to_cryptography()


def test_signature_der_round_trip() -> None:
    signature = Signature(bytes(31) + b"\x01" + b"\xff" * 32)  # r = 1: DER drops the zeros
    assert Signature.from_der(signature.to_der()) == signature
    assert decode_dss_signature(signature.to_der()) == (1, (1 << 256) - 1)


def test_signature_from_der_refuses_values_wider_than_32_bytes() -> None:
    with pytest.raises(ValueError, match="r does not fit"):
        Signature.from_der(encode_dss_signature(1 << 256, 1))

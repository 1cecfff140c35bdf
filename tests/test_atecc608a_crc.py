"""The emulator's CRC-16 and response framing, pinned to vectors/crc16.json (spec §2.3, §2.4).

Pure units: no bus. The bus-level tests build their expected groups with this CRC, so it is pinned
here first, to the vectors and to two independent formulations of the same algorithm.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.atecc608a import Opcode, crc16, crc16_wire, group
from sim.atecc608a.crc import crc16_bitwise
from tests.atecc_helpers import Op, crc_algorithm, crc_cases, packet, packets


def _reverse_bits(value: int, width: int) -> int:
    return int(f"{value:0{width}b}"[::-1], 2)


def _crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (reflected poly 0xA001, init 0), written out independently of the emulator."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _crc16_umts(data: bytes) -> int:
    """CRC-16/UMTS (poly 0x8005, no reflection, init 0), written out independently."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


CASES = crc_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_crc16_reproduces_every_vector(case: Any) -> None:
    data = bytes.fromhex(case["data_hex"])
    assert crc16(data) == case["crc"] == int(case["crc_hex"], 16)
    assert crc16_bitwise(data) == case["crc"]
    assert crc16_wire(data) == bytes.fromhex(case["wire_hex"])


def test_crc16_accepts_bytearray_and_memoryview() -> None:
    case = CASES[0]
    data = bytes.fromhex(case["data_hex"])
    assert crc16(bytearray(data)) == crc16(memoryview(data)) == case["crc"]


def test_check_value_over_ascii_123456789() -> None:
    check = int(crc_algorithm()["check_123456789"], 16)
    assert crc16(b"123456789") == check


def test_wire_bytes_are_the_register_low_byte_first() -> None:
    for case in CASES:
        value = case["crc"]
        assert crc16_wire(bytes.fromhex(case["data_hex"])) == bytes((value & 0xFF, value >> 8))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=160))
def test_table_crc_equals_the_datasheet_bitwise_algorithm(data: bytes) -> None:
    assert crc16(data) == crc16_bitwise(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=160))
def test_crc_equals_the_bit_reversed_crc16_arc(data: bytes) -> None:
    # §2.3: "the 16-bit bit-reversal of CRC-16/ARC (what the Linux driver computes)"
    assert crc16(data) == _reverse_bits(_crc16_arc(data), 16)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=160))
def test_crc_equals_crc16_umts_over_bit_reversed_bytes(data: bytes) -> None:
    # §2.3: "CRC-16/UMTS applied to bit-reversed input bytes"
    assert crc16(data) == _crc16_umts(bytes(_reverse_bits(b, 8) for b in data))


# --- framing -------------------------------------------------------------------------------------


RESPONSES = packets()["responses"]


@pytest.mark.parametrize("entry", RESPONSES, ids=[r["name"] for r in RESPONSES])
def test_group_frames_every_vector_response(entry: Any) -> None:
    assert group(bytes.fromhex(entry["payload_hex"])) == bytes.fromhex(entry["packet_hex"])


STATUSES = packets()["status_packets"]


@pytest.mark.parametrize("entry", STATUSES, ids=[s["name"] for s in STATUSES])
def test_group_frames_every_status_group(entry: Any) -> None:
    assert group(bytes((entry["status"],))) == bytes.fromhex(entry["packet_hex"])


def test_wake_group_is_the_after_wake_status() -> None:
    assert group(b"\x11") == bytes.fromhex(packets()["wake_response_hex"])


def test_self_test_wake_group_is_crc_valid_and_the_library_constant_is_not() -> None:
    # §1.3 / decision 2: 04 07 40 C2 is CRC-correct; libraries compare against 04 07 C4 40.
    good = bytes.fromhex(packets()["selftest_failure_wake_response_hex"])
    constant = bytes.fromhex(packets()["non_crc_valid_library_constant_hex"])
    assert group(b"\x07") == good
    assert crc16_wire(constant[:2]) != constant[2:]


COMMANDS = packets()["commands"] + packets()["reference_quirk_commands"]


@pytest.mark.parametrize("entry", COMMANDS, ids=[c["name"] for c in COMMANDS])
def test_every_vector_command_is_a_crc_valid_group_built_from_its_fields(entry: Any) -> None:
    data = bytes.fromhex(entry["data_hex"])
    built = packet(entry["opcode"], entry["param1"], entry["param2"], data)
    assert built == bytes.fromhex(entry["packet_hex"])
    assert bytes.fromhex(entry["bus_write_hex"]) == bytes((entry["word_address"],)) + built


_COMMAND_WORDS = {
    "Info": Op.INFO,
    "Random": Op.RANDOM,
    "Read": Op.READ,
    "Write": Op.WRITE,
    "Lock": Op.LOCK,
    "SHA": Op.SHA,
    "SelfTest": Op.SELF_TEST,
    "Counter": Op.COUNTER,
    "UpdateExtra": Op.UPDATE_EXTRA,
    "GenKey": Op.GENKEY,
    "Nonce": Op.NONCE,
}


@pytest.mark.parametrize(
    "entry", packets()["commands"], ids=[c["name"] for c in packets()["commands"]]
)
def test_test_side_opcodes_agree_with_the_vectors(entry: Any) -> None:
    assert entry["opcode"] == _COMMAND_WORDS[entry["name"].split()[0]]


@pytest.mark.parametrize("op", list(Op), ids=[op.name for op in Op])
def test_emulator_opcodes_agree_with_spec_section_4(op: Op) -> None:
    if op.name in Opcode.__members__:
        assert Opcode[op.name] == op.value
    else:  # §4: Pause, HMAC and Delete do not exist on the 608
        assert op.value not in {o.value for o in Opcode}

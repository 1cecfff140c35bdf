"""The driver's pure framing against the vectors: CRC, command groups, responses, statuses."""

from __future__ import annotations

from typing import Any

import pytest

from lokey.errors import (
    ChipCrcError,
    CommunicationError,
    DeviceStatusError,
    EccFaultError,
    ExecutionError,
    HealthTestError,
    LostCommandError,
    ParseError,
    SelfTestError,
    WatchdogError,
)
from lokey.hardware.commands import TEST_PATTERN, config_summary, is_test_pattern
from lokey.hardware.crc import crc16, crc16_bytes
from lokey.hardware.packets import command_group, response_payload
from tests.hardware_helpers import crc_cases, factory, packets, vector_bytes

# §3, status -> the exception the driver must raise where a result was due.
STATUS_ERRORS: dict[int, type[DeviceStatusError]] = {
    0x03: ParseError,
    0x05: EccFaultError,
    0x07: SelfTestError,
    0x08: HealthTestError,
    0x0F: ExecutionError,
    0x11: LostCommandError,
    0xEE: WatchdogError,
    0xFF: ChipCrcError,
}


def _ids(entries: list[Any]) -> list[str]:
    return [str(e.get("name", e.get("status_hex"))) for e in entries]


@pytest.mark.parametrize("case", crc_cases(), ids=_ids(crc_cases()))
def test_driver_crc_matches_every_vector(case: Any) -> None:
    data = bytes.fromhex(case["data_hex"])
    assert crc16(data) == case["crc"]
    assert crc16_bytes(data) == bytes.fromhex(case["wire_hex"])


COMMANDS = packets()["commands"] + packets()["reference_quirk_commands"]


@pytest.mark.parametrize("entry", COMMANDS, ids=_ids(COMMANDS))
def test_command_group_reproduces_every_command_packet(entry: Any) -> None:
    group = command_group(
        entry["opcode"], entry["param1"], entry["param2"], bytes.fromhex(entry["data_hex"])
    )
    assert group == bytes.fromhex(entry["packet_hex"])
    assert bytes((entry["word_address"],)) + group == bytes.fromhex(entry["bus_write_hex"])


RESPONSES = packets()["responses"]


@pytest.mark.parametrize("entry", RESPONSES, ids=_ids(RESPONSES))
def test_response_payload_accepts_every_response(entry: Any) -> None:
    payload = bytes.fromhex(entry["payload_hex"])
    raw = bytes.fromhex(entry["packet_hex"])
    assert response_payload(raw, len(payload)) == payload
    # A fixed-length read past the group sees 0xFF (§1.5); the count still delimits it.
    assert response_payload(raw + b"\xff" * 8, len(payload)) == payload


@pytest.mark.parametrize("entry", RESPONSES, ids=_ids(RESPONSES))
def test_response_payload_rejects_every_response_with_a_damaged_byte(entry: Any) -> None:
    raw = bytes.fromhex(entry["packet_hex"])
    length = len(bytes.fromhex(entry["payload_hex"]))
    for index in range(len(raw)):
        damaged = bytearray(raw)
        damaged[index] ^= 0x01
        with pytest.raises(CommunicationError):
            response_payload(bytes(damaged), length)


STATUS_PACKETS = packets()["status_packets"]


@pytest.mark.parametrize("entry", STATUS_PACKETS, ids=_ids(STATUS_PACKETS))
def test_every_status_packet_maps_to_its_exception(entry: Any) -> None:
    raw = bytes.fromhex(entry["packet_hex"])
    expected = STATUS_ERRORS.get(entry["status"])
    for payload_length in (4, 32):  # where data was due
        if expected is None:  # success / miscompare where data was due: not a result
            with pytest.raises(CommunicationError, match="where data was due"):
                response_payload(raw, payload_length)
        else:
            with pytest.raises(expected) as caught:
                response_payload(raw, payload_length)
            assert type(caught.value) is expected
            assert caught.value.status == entry["status"]
    # A one-byte result has the shape of a status group (§2.2): the byte comes back as is.
    assert response_payload(raw, 1) == bytes((entry["status"],))


def test_a_padded_error_group_is_an_error_not_data() -> None:
    raw = bytes.fromhex(packets()["padded_reads"][0]["read_hex"])
    with pytest.raises(ExecutionError):
        response_payload(raw, 32)


def test_wake_groups_and_the_libraries_non_crc_constant() -> None:
    vectors = packets()
    with pytest.raises(LostCommandError):
        response_payload(bytes.fromhex(vectors["wake_response_hex"]), 32)
    with pytest.raises(SelfTestError):
        response_payload(bytes.fromhex(vectors["selftest_failure_wake_response_hex"]), 32)
    # cryptoauthlib's 04 07 C4 40 is not CRC-valid (decision 2): damaged, never a status.
    with pytest.raises(CommunicationError, match="CRC"):
        response_payload(bytes.fromhex(vectors["non_crc_valid_library_constant_hex"]), 32)


def test_test_pattern_detection_uses_the_vector() -> None:
    pattern = vector_bytes("responses", "Random while config unlocked", "payload_hex")
    assert pattern == TEST_PATTERN
    assert is_test_pattern(pattern)
    assert not is_test_pattern(vector_bytes("responses", "Random returning", "payload_hex"))
    assert not is_test_pattern(pattern[1:])  # the Go reference's 31-byte slice (§17.4)


def test_config_summaries_match_the_vectors() -> None:
    vectors = factory()
    image = bytes.fromhex(vectors["factory_config_hex"])
    assert config_summary(image) == vectors["lock_summary_crc"]
    image_608a = image[:4] + bytes.fromhex(vectors["variant_608a_revision"]["revision_hex"])
    image_608a += image[8:]
    assert config_summary(image_608a) == vectors["variant_608a_revision"]["lock_summary_crc"]
    template = vectors["arduino_tls_template"]
    placeholder = bytes.fromhex(template["config_hex"])
    assert config_summary(placeholder) == template["lock_summary_crc_with_placeholder_bytes_0_15"]
    assert command_group(0x17, 0x00, vectors["lock_summary_crc"]) == bytes.fromhex(
        vectors["lock_config_with_summary_packet_hex"]
    )
    with pytest.raises(ValueError, match="128 bytes"):
        config_summary(image[:-1])

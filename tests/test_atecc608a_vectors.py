"""Every vector the emulator can produce, reproduced byte for byte through the virtual bus.

The command, response and status tables are parametrised over the vector files themselves: a
vector added later without a way to produce it here fails ``KeyError`` instead of being skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sim.atecc608a import (
    ATECC608A,
    FACTORY_CONFIG,
    ForcedStatus,
    LockState,
    RngHealthFailure,
    SelfTestFailure,
    Status,
    crc16,
)
from sim.atecc608a.timing import EXEC_MAX_MS
from tests.atecc_helpers import (
    T_WHI_S,
    Op,
    Rig,
    command,
    crc_cases,
    derived_read,
    factory,
    factory_image,
    frame,
    make_rig,
    packet,
    packets,
    response,
    status,
    wake_group,
    with_bad_crc,
)

READ_WORD_0x15 = "Read config word 0x15"


def _template() -> bytes:
    return bytes.fromhex(factory()["arduino_tls_template"]["config_hex"])


def _vector_serial_bytes() -> bytes:
    """Bytes 0-15 named in the template's ``lock_summary_crc_with_serial_…`` key."""
    template = factory()["arduino_tls_template"]
    key = next(k for k in template if k.startswith("lock_summary_crc_with_serial_"))
    first, second = key.removeprefix("lock_summary_crc_with_serial_").split("_")
    return bytes.fromhex(first + second)


def _template_summary_with_vector_serial() -> int:
    template = factory()["arduino_tls_template"]
    key = next(k for k in template if k.startswith("lock_summary_crc_with_serial_"))
    value: int = template[key]
    return value


def _write_template_words(rig: Rig, template: bytes) -> None:
    """§13: bytes 16-127 as 4-byte config writes, words 4..31 skipping word 21."""
    for word in range(4, 32):
        if word == 0x15:
            continue
        data = template[word * 4 : word * 4 + 4]
        assert rig.run(packet(Op.WRITE, 0x00, word, data)) == status(Status.SUCCESS), word


# --- the factory image --------------------------------------------------------------------------


def test_factory_image_vector_equals_the_constant_and_a_fresh_chip() -> None:
    image = factory_image()
    rows = b"".join(bytes.fromhex(r["hex"]) for r in factory()["factory_config_rows"])
    assert len(image) == 128
    assert rows == image
    assert image == FACTORY_CONFIG
    assert ATECC608A().control.config == image


def test_factory_image_reads_back_through_the_bus(rig: Rig) -> None:
    assert rig.config() == factory_image()


DERIVED = factory()["derived_reads"]


@pytest.mark.parametrize("entry", DERIVED, ids=[d["name"] for d in DERIVED])
def test_derived_reads_of_the_factory_image(rig: Rig, entry: Any) -> None:
    reply = rig.run(bytes.fromhex(entry["command_packet_hex"]))
    assert reply == bytes.fromhex(entry["response_hex"])


def test_serial_and_revision_options_lay_out_bytes_0_to_15_like_the_factory_image() -> None:
    # §11/§12: the 9-byte serial is bytes 0-3 followed by bytes 8-12; bytes 4-7 are RevNum.
    decoded = factory()["decoded"]
    image = factory_image()
    blank = bytes(16) + image[16:]
    chip = ATECC608A(
        config=blank,
        serial=bytes.fromhex(decoded["serial_number_hex"]),
        revision=bytes.fromhex(decoded["revision_hex"]),
    )
    assert chip.control.config == image[:13] + bytes(3) + image[16:]


def test_fresh_chip_answers_at_the_decoded_i2c_address_after_sleep(rig: Rig) -> None:
    address = factory()["decoded"]["i2c_address_7bit"]
    assert address == rig.address
    rig.wake()
    rig.sleep()
    rig.wake_pulse()
    rig.clock.advance(T_WHI_S)
    assert rig.try_read(4, address=address) == wake_group()


# --- the wake group, status groups and the padded read ------------------------------------------


def test_wake_group(rig: Rig) -> None:
    assert rig.wake() == wake_group()


def _trigger_success(rig: Rig) -> bytes:
    return rig.run(command("SHA start"))


def _trigger_miscompare(rig: Rig) -> bytes:
    # CheckMac/Verify are not modelled; the status is forced (§14).
    rig.chip.control.inject(ForcedStatus(status=Status.MISCOMPARE))
    return rig.run(command("Info revision"))


def _trigger_parse_error(rig: Rig) -> bytes:
    return rig.run(packet(Op.RANDOM, 0x02))  # decision 14


def _trigger_ecc_fault(rig: Rig) -> bytes:
    # ECC computations are not modelled; the status is forced (§14).
    rig.chip.control.inject(ForcedStatus(status=Status.ECC_FAULT))
    return rig.run(command("Random"))


def _trigger_self_test_error(rig: Rig) -> bytes:
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    return rig.run(command("Random"))


def _trigger_health_test_error(rig: Rig) -> bytes:
    rig.chip.control.inject(RngHealthFailure(after_calls=0))
    return rig.run(command("Random"))


def _trigger_execution_error(rig: Rig) -> bytes:
    return rig.run(command("Lock data+OTP"))  # data before config (§7.5)


def _trigger_after_wake(rig: Rig) -> bytes:
    return rig.wake()


def _trigger_watchdog(rig: Rig) -> bytes:
    rig.wake()
    budget = 1.3 - EXEC_MAX_MS[Op.RANDOM][0] / 1000
    rig.clock.advance(budget - T_WHI_S + 0.001)  # decision 8: not enough time left
    rig.send(command("Random"))
    return rig.response()


def _trigger_comm_error(rig: Rig) -> bytes:
    return rig.run(with_bad_crc(command("Random")))


TRIGGERS: dict[int, Callable[[Rig], bytes]] = {
    Status.SUCCESS: _trigger_success,
    Status.MISCOMPARE: _trigger_miscompare,
    Status.PARSE_ERROR: _trigger_parse_error,
    Status.ECC_FAULT: _trigger_ecc_fault,
    Status.SELFTEST_ERROR: _trigger_self_test_error,
    Status.HEALTH_TEST_ERROR: _trigger_health_test_error,
    Status.EXECUTION_ERROR: _trigger_execution_error,
    Status.AFTER_WAKE: _trigger_after_wake,
    Status.WATCHDOG_ABOUT_TO_EXPIRE: _trigger_watchdog,
    Status.COMM_ERROR: _trigger_comm_error,
}

STATUSES = packets()["status_packets"]


@pytest.mark.parametrize("entry", STATUSES, ids=[s["name"] for s in STATUSES])
def test_chip_answers_every_status_group(rig: Rig, entry: Any) -> None:
    assert TRIGGERS[entry["status"]](rig) == bytes.fromhex(entry["packet_hex"])


PADDED = packets()["padded_reads"]


@pytest.mark.parametrize("entry", PADDED, ids=[p["name"] for p in PADDED])
def test_error_group_read_as_35_bytes_is_padded_with_ff(rig: Rig, entry: Any) -> None:
    expected = bytes.fromhex(entry["read_hex"])
    assert expected[:4] == status(expected[1])
    assert rig.run(command("Lock data+OTP"), read_len=len(expected)) == expected


# --- every command packet -----------------------------------------------------------------------


@dataclass
class Case:
    """How to make the chip answer one vector command, and what it must answer."""

    expected: Callable[[], bytes]
    options: dict[str, Any] = field(default_factory=dict)
    before: tuple[str, ...] = ()  # vector commands sent first, each answered with success


def _template_chip_with_vector_serial() -> dict[str, Any]:
    return {"config": _vector_serial_bytes() + _template()[16:]}


def _ok() -> bytes:
    return status(Status.SUCCESS)


COMMAND_CASES: dict[str, Case] = {
    "Info revision": Case(lambda: response("Info revision ATECC608B")),
    "Info KeyValid slot 0": Case(lambda: frame(bytes(4))),  # decision 17
    "Info State": Case(lambda: frame(bytes(4))),  # decision 18: nothing valid after wake
    "Info latch read (mode 4)": Case(lambda: frame(bytes(4))),  # decision 20
    "Random": Case(lambda: response("Random while config unlocked")),
    "Read config word 0 (bytes 0-3, SN0-3)": Case(
        lambda: derived_read(command("Read config word 0 (bytes 0-3, SN0-3)"))
    ),
    "Read config word 2 (bytes 8-11, SN4-7)": Case(
        lambda: derived_read(command("Read config word 2"))
    ),
    "Read config word 3 (bytes 12-15)": Case(lambda: derived_read(command("Read config word 3"))),
    "Read config word 0x15 (bytes 84-87, lock bytes)": Case(
        lambda: response("Read word 0x15, fresh chip")
    ),
    "Read config block 0 (32 bytes)": Case(lambda: derived_read(command("Read config block 0"))),
    "Lock config, no summary check (0x80)": Case(_ok),
    "Lock data+OTP, no summary check (0x81)": Case(_ok, before=("Lock config, no summary",)),
    "Lock config with summary 0x3254": Case(_ok, options=_template_chip_with_vector_serial()),
    "SHA start": Case(_ok),
    "SHA end, message abc": Case(lambda: response("SHA end(abc)"), before=("SHA start",)),
    "SHA end, empty message": Case(
        lambda: frame(hashlib.sha256(b"").digest()), before=("SHA start",)
    ),
    "SelfTest all (0x3B)": Case(_ok),  # output 0x00: every test passed
    "SelfTest read failure register (0x00)": Case(_ok),  # no failure latched
    "Counter read 0": Case(
        lambda: response("Counter value 0"), options={"lock": LockState.CONFIG_LOCKED}
    ),
    "Counter increment 0": Case(
        lambda: response("Counter value 1"), options={"lock": LockState.CONFIG_LOCKED}
    ),
    "UpdateExtra byte 84 <- 0x00": Case(_ok),
    # §7.3 / §10.3: GenKey fails with 0x0F while the zones are unlocked (a fresh chip).
    "GenKey private slot 0": Case(lambda: status(Status.EXECUTION_ERROR)),
    "GenKey public slot 0": Case(lambda: status(Status.EXECUTION_ERROR)),
    "Nonce mode 0, NumIn = 20 x 00": Case(lambda: response("Random while config unlocked")),
    "Nonce pass-through, 32 x 00": Case(_ok),
    "Write config word 4 <- C0 00 55 00": Case(_ok),
    "Write config block 1 (32 bytes, Arduino TLS template bytes 32-63)": Case(_ok),
}

COMMANDS = packets()["commands"]


def _case_for(name: str) -> Case:
    matches = [case for key, case in COMMAND_CASES.items() if name.startswith(key)]
    assert len(matches) == 1, f"no unique case for the vector command {name!r}"
    return matches[0]


@pytest.mark.parametrize("entry", COMMANDS, ids=[c["name"] for c in COMMANDS])
def test_every_vector_command_gets_its_specified_answer(entry: Any) -> None:
    case = _case_for(entry["name"])
    rig = make_rig(**case.options)
    for name in case.before:
        assert rig.run(command(name)) == status(Status.SUCCESS)
    reply = rig.run(bytes.fromhex(entry["packet_hex"]))
    assert reply == case.expected()


QUIRKS = packets()["reference_quirk_commands"]
QUIRK_ANSWERS = {
    "Lokey 'lock check'": Status.PARSE_ERROR,  # decision 29: count != param2
    "Lokey 'config read'": Status.EXECUTION_ERROR,  # decision 29: SHA End without Start
}


@pytest.mark.parametrize("entry", QUIRKS, ids=[q["name"] for q in QUIRKS])
def test_go_reference_quirk_commands_are_errors_not_config_reads(rig: Rig, entry: Any) -> None:
    code = next(v for k, v in QUIRK_ANSWERS.items() if entry["name"].startswith(k))
    assert rig.run(bytes.fromhex(entry["packet_hex"]), read_len=7) == status(code) + b"\xff" * 3


# --- every response -----------------------------------------------------------------------------


def _info_revision(revision: str | bytes) -> Callable[[], bytes]:
    return lambda: make_rig(revision=revision).run(command("Info revision"))


def _word_0x15(lock: LockState) -> Callable[[], bytes]:
    return lambda: make_rig(lock=lock).run(command(READ_WORD_0x15))


def _synthetic_random() -> bytes:
    rig = make_rig(lock=LockState.LOCKED)
    payload = bytes.fromhex(packets_response("Random returning 00 01")["payload_hex"])
    rig.chip.control.script_random(payload)
    return rig.run(command("Random"))


def _sha_abc() -> bytes:
    rig = make_rig()
    assert rig.run(command("SHA start")) == status(Status.SUCCESS)
    return rig.run(command("SHA end, message abc"))


def _counter(increments: int) -> Callable[[], bytes]:
    def produce() -> bytes:
        rig = make_rig(lock=LockState.CONFIG_LOCKED)
        for _ in range(increments):
            rig.run(command("Counter increment 0"))
        return rig.run(command("Counter read 0"))

    return produce


def _real_608a_block_0() -> bytes:
    block0 = bytes.fromhex(packets_response("Read config block 0 of a real")["payload_hex"])
    rig = make_rig(config=block0 + FACTORY_CONFIG[32:])
    return rig.run(command("Read config block 0"))


def packets_response(name: str) -> Any:
    return next(r for r in packets()["responses"] if r["name"].startswith(name))


RESPONSE_CASES: dict[str, Callable[[], bytes]] = {
    "Info revision ATECC608A": _info_revision("608A"),
    "Info revision ATECC608B": _info_revision("608B"),
    # §6: Info revision returns config bytes 4-7; a 508A personality is those four bytes.
    "Info revision ATECC508A": _info_revision(
        bytes.fromhex(packets_response("Info revision ATECC508A")["payload_hex"])
    ),
    "Read word 0x15, fresh chip": _word_0x15(LockState.UNLOCKED),
    "Read word 0x15, config locked, data unlocked": _word_0x15(LockState.CONFIG_LOCKED),
    "Read word 0x15, both locked": _word_0x15(LockState.LOCKED),
    "Random while config unlocked (test pattern)": lambda: make_rig().run(command("Random")),
    "Random returning 00 01 .. 1F (synthetic)": _synthetic_random,
    "SHA end(abc) digest": _sha_abc,
    "Counter value 0": _counter(0),
    "Counter value 1": _counter(1),
    "Read config block 0 of a real ATECC608A": _real_608a_block_0,
}

RESPONSES = packets()["responses"]


@pytest.mark.parametrize("entry", RESPONSES, ids=[r["name"] for r in RESPONSES])
def test_every_vector_response_is_produced_through_the_bus(entry: Any) -> None:
    assert RESPONSE_CASES[entry["name"]]() == bytes.fromhex(entry["packet_hex"])


def test_real_608a_block_0_response_carries_the_crc_of_the_crc_vector() -> None:
    case = next(c for c in crc_cases() if c["name"].startswith("Read(config block 0)"))
    reply = _real_608a_block_0()
    assert reply[:-2] == bytes.fromhex(case["data_hex"])
    assert reply[-2:] == bytes.fromhex(case["wire_hex"])


def test_sha_end_abc_digest_is_sha256_of_abc() -> None:
    assert _sha_abc()[1:-2] == hashlib.sha256(b"abc").digest()


def test_random_while_config_locked_is_not_the_test_pattern() -> None:
    # §5: locking only the config zone is enough to leave the diagnostic pattern.
    rig = make_rig(lock=LockState.CONFIG_LOCKED, seed=1)
    reply = rig.run(command("Random"))
    assert len(reply) == 35
    assert reply[0] == 0x23
    assert reply[-2:] == frame(reply[1:-2])[-2:]
    assert reply != response("Random while config unlocked")


# --- lock summaries and the Arduino TLS template ------------------------------------------------


def test_lock_with_the_factory_summary_packet_succeeds(rig: Rig) -> None:
    summary = factory()["lock_summary_crc"]
    assert crc16(rig.config()) == summary == int(factory()["lock_summary_crc_hex"], 16)
    lock = bytes.fromhex(factory()["lock_config_with_summary_packet_hex"])
    assert lock[3:5] == bytes.fromhex(factory()["lock_param2_wire_hex"])
    assert rig.run(lock) == status(Status.SUCCESS)
    assert rig.run(command(READ_WORD_0x15)) == response("Read word 0x15, config locked")


def test_608a_variant_summary_locks_a_608a_personality() -> None:
    variant = factory()["variant_608a_revision"]
    rig = make_rig(revision="608A")
    config = rig.config()
    assert config[4:8] == bytes.fromhex(variant["revision_hex"])
    assert crc16(config) == variant["lock_summary_crc"] == int(variant["lock_summary_crc_hex"], 16)
    assert rig.run(packet(Op.LOCK, 0x00, variant["lock_summary_crc"])) == status(Status.SUCCESS)
    assert rig.run(command(READ_WORD_0x15)) == response("Read word 0x15, config locked")


def test_wrong_summary_is_an_execution_error_and_locks_nothing(rig: Rig) -> None:
    # Decision 24. The 608A variant's summary does not match the 608B factory chip.
    wrong = factory()["variant_608a_revision"]["lock_summary_crc"]
    assert rig.run(packet(Op.LOCK, 0x00, wrong)) == status(Status.EXECUTION_ERROR)
    assert rig.run(command(READ_WORD_0x15)) == response("Read word 0x15, fresh chip")
    assert rig.run(command("Random")) == response("Random while config unlocked")


def test_arduino_template_written_word_by_word_then_lock_0x80(rig: Rig) -> None:
    template = _template()
    assert packet(Op.WRITE, 0x00, 4, template[16:20]) == command("Write config word 4")
    serial = rig.config()[:16]
    _write_template_words(rig, template)
    written = rig.config()
    # Bytes 0-15 are the chip's own, 84-87 are never written, the rest is the template.
    assert written == serial + template[16:84] + FACTORY_CONFIG[84:88] + template[88:]
    summary = crc16(written)
    assert rig.run(command("Lock config, no summary")) == status(Status.SUCCESS)
    locked = rig.config()
    assert locked[87] == 0x00
    assert locked[:87] == written[:87]
    assert crc16(locked[:87] + written[87:]) == summary
    assert rig.run(command("Lock data+OTP")) == status(Status.SUCCESS)
    assert rig.run(command(READ_WORD_0x15)) == response("Read word 0x15, both locked")


def test_arduino_template_with_the_vector_serial_has_the_vector_summary() -> None:
    serial = _vector_serial_bytes()
    # The serial in the key's name is that of the real 608A whose block 0 is a response vector.
    assert (
        serial
        == bytes.fromhex(packets_response("Read config block 0 of a real")["payload_hex"])[:16]
    )
    rig = make_rig(config=serial + FACTORY_CONFIG[16:])
    _write_template_words(rig, _template())
    written = rig.config()
    assert written[:16] == serial
    assert crc16(written) == _template_summary_with_vector_serial()
    lock = command("Lock config with summary 0x3254")
    assert lock[3] | lock[4] << 8 == _template_summary_with_vector_serial()
    assert rig.run(lock) == status(Status.SUCCESS)
    assert rig.run(command(READ_WORD_0x15)) == response("Read word 0x15, config locked")


def test_arduino_template_with_placeholder_bytes_has_the_placeholder_summary() -> None:
    template = _template()
    summary = factory()["arduino_tls_template"]["lock_summary_crc_with_placeholder_bytes_0_15"]
    rig = make_rig(config=template[:16] + FACTORY_CONFIG[16:])
    _write_template_words(rig, template)
    assert crc16(rig.config()) == summary
    assert rig.run(packet(Op.LOCK, 0x00, summary)) == status(Status.SUCCESS)


def test_write_config_block_1_packet_writes_the_template_bytes(rig: Rig) -> None:
    entry = next(c for c in COMMANDS if c["name"].startswith("Write config block 1"))
    assert rig.run(bytes.fromhex(entry["packet_hex"])) == status(Status.SUCCESS)
    assert rig.config()[32:64] == bytes.fromhex(entry["data_hex"]) == _template()[32:64]


# --- the remaining vector-driven behaviours -----------------------------------------------------


def test_wake_response_of_a_chip_in_failure_state_is_the_crc_correct_group(rig: Rig) -> None:
    # Decision 2: 04 07 40 C2, not the libraries' constant 04 07 C4 40.
    rig.chip.control.inject(SelfTestFailure(tests=0x01))
    reply = rig.wake()
    assert reply == bytes.fromhex(packets()["selftest_failure_wake_response_hex"])
    assert reply != bytes.fromhex(packets()["non_crc_valid_library_constant_hex"])

"""Provisioning: the plan is pure and shown first; writing and locking only when asked.

Pinned to vectors/atecc_config_factory.json (the factory image, its lock summary CRC, the
Arduino TLS template) and to spec/atecc608a.md §7.3-§7.5 and §11.
"""

from __future__ import annotations

import pytest

from lokey import cli
from lokey.errors import ExecutionError, ProvisioningError
from lokey.hardware.packets import Opcode
from lokey.hardware.provisioning import RNG_TEMPLATE, plan, provision
from sim.atecc608a import ForcedStatus
from tests.hardware_helpers import factory, make_driver_rig


def _factory_image() -> bytes:
    return bytes.fromhex(factory()["factory_config_hex"])


def test_template_is_the_factory_configuration_in_every_writable_byte() -> None:
    image = _factory_image()
    assert RNG_TEMPLATE[16:84] == image[16:84]
    assert RNG_TEMPLATE[88:128] == image[88:128]


def test_a_factory_chip_needs_no_writes_and_locks_with_the_vectors_summary() -> None:
    the_plan = plan(_factory_image())
    assert the_plan.writes == ()
    assert the_plan.summary_crc == factory()["lock_summary_crc"]  # 0x4353, §12
    assert not the_plan.already_locked


def test_plan_lists_each_differing_word_but_never_words_0_to_3_or_0x15() -> None:
    template = factory()["arduino_tls_template"]
    arduino = bytearray(bytes.fromhex(template["config_hex"]))
    arduino[84:88] = b"\x12\x34\x55\x55"  # different UserExtra bytes must not be "fixed"
    the_plan = plan(bytes(arduino))
    words = [write.word for write in the_plan.writes]
    assert words  # the Arduino template differs from the factory in CountMatch, slots, ...
    assert not {0, 1, 2, 3, 0x15} & set(words)
    assert the_plan.expected[84:88] == b"\x12\x34\x55\x55"
    assert the_plan.expected[16:84] == RNG_TEMPLATE[16:84]


def test_provision_restores_changed_words_verifies_and_locks_with_mode_0() -> None:
    rig = make_driver_rig("maximum", lock="unlocked")
    rig.driver.write_config_word(4, bytes.fromhex("c0005500"))  # CountMatch 0x55 (§13)
    rig.driver.write_config_word(20, bytes.fromhex("ffffffff"))  # bytes 80-83, reserved (§11)
    done = provision(rig.driver)
    assert [write.word for write in done.writes] == [4, 20]
    assert rig.chip.control.state().config_locked
    assert rig.chip.control.config[16:84] == RNG_TEMPLATE[16:84]
    locks = [r for r in rig.chip.control.commands() if r.opcode == Opcode.LOCK]
    assert [(r.param1, r.param2, r.status) for r in locks] == [(0x00, done.summary_crc, 0)]


def test_provision_refuses_a_locked_chip_and_writes_nothing() -> None:
    rig = make_driver_rig("instant", lock="config-locked")
    with pytest.raises(ProvisioningError, match="already locked"):
        provision(rig.driver)
    assert not {Opcode.WRITE, Opcode.LOCK} & set(rig.opcodes())


def test_provision_refuses_when_the_config_changed_since_the_plan_was_shown() -> None:
    rig = make_driver_rig("instant", lock="unlocked")
    shown = plan(rig.driver.read_config())
    rig.chip.control.write_config(84, b"\x07")  # UserExtra changes behind the operator's back
    with pytest.raises(ProvisioningError, match="changed since the plan was shown"):
        provision(rig.driver, shown)
    assert not rig.chip.control.state().config_locked


def test_provision_locks_exactly_the_approved_plan() -> None:
    rig = make_driver_rig("instant", lock="unlocked")
    shown = plan(rig.driver.read_config())
    assert provision(rig.driver, shown) == shown
    locks = [r for r in rig.chip.control.commands() if r.opcode == Opcode.LOCK]
    assert [r.param2 for r in locks] == [shown.summary_crc]


def test_a_write_the_chip_refuses_leaves_the_zone_unlocked() -> None:
    rig = make_driver_rig("instant", lock="unlocked")
    rig.driver.write_config_word(4, bytes.fromhex("c0005500"))
    rig.chip.control.inject(ForcedStatus(status=0x0F, opcode=Opcode.WRITE))
    with pytest.raises(ExecutionError):
        provision(rig.driver)
    assert not rig.chip.control.state().config_locked
    assert Opcode.LOCK not in rig.opcodes()


def test_cli_dry_run_shows_the_plan_and_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["provision", "--bus", "sim://atecc608a?timing=instant"]) == cli.EXIT_PASS
    out = capsys.readouterr().out
    assert "no writes needed" in out
    assert "0x4353" in out
    assert "Dry run: nothing was written" in out


def test_cli_yes_locks_and_reports_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["provision", "--bus", "sim://atecc608a?timing=instant", "--yes"]) == 0
    assert "Config zone locked with summary CRC 0x4353." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("url", "message"),
    [("sim://atecc508a", "unknown emulated device"), ("/dev/i2c-99", "/dev/i2c-99")],
)
def test_cli_reports_a_bus_it_cannot_open(
    capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    assert cli.main(["provision", "--bus", url]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err

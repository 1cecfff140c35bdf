"""The timing model as a pure unit (spec §1.3, §1.7, §4, decision 13), plus jitter on the bus."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sim.atecc608a import ATECC608A, Opcode, TimingModel
from sim.atecc608a.timing import EXEC_MAX_MS
from tests.atecc_helpers import T_WHI_S, command, make_rig

# §4: the 608 maximum execution times in ms at clock divider M0, M1, M2.
SPEC_MAXIMA = {
    Opcode.READ: (5, 5, 5),
    Opcode.MAC: (55, 55, 55),
    Opcode.WRITE: (45, 45, 45),
    Opcode.GENDIG: (25, 35, 35),
    Opcode.NONCE: (20, 20, 20),
    Opcode.LOCK: (35, 35, 35),
    Opcode.RANDOM: (23, 23, 23),
    Opcode.DERIVE_KEY: (50, 50, 50),
    Opcode.UPDATE_EXTRA: (10, 10, 10),
    Opcode.COUNTER: (25, 25, 25),
    Opcode.CHECK_MAC: (40, 40, 40),
    Opcode.INFO: (5, 5, 5),
    Opcode.GENKEY: (115, 215, 653),
    Opcode.SIGN: (115, 220, 665),
    Opcode.ECDH: (75, 172, 531),
    Opcode.VERIFY: (105, 295, 1085),
    Opcode.PRIV_WRITE: (50, 50, 50),
    Opcode.SHA: (36, 42, 75),
    Opcode.AES: (27, 27, 27),
    Opcode.KDF: (165, 165, 165),
    Opcode.SELF_TEST: (250, 625, 2324),
    Opcode.SECURE_BOOT: (80, 160, 480),
}

# Decision 13: the typical busy times it names.
SPEC_TYPICAL_MS = {
    Opcode.RANDOM: 2.0,
    Opcode.INFO: 0.5,
    Opcode.READ: 0.5,
    Opcode.WRITE: 8.0,
    Opcode.LOCK: 10.0,
    Opcode.SHA: 0.5,
}


@pytest.mark.parametrize("opcode", list(SPEC_MAXIMA), ids=[op.name for op in SPEC_MAXIMA])
def test_exec_maxima_are_the_section_4_table(opcode: Opcode) -> None:
    model = TimingModel.typical()
    for divider, maximum_ms in enumerate(SPEC_MAXIMA[opcode]):
        assert model.exec_max_s(opcode, divider) == pytest.approx(maximum_ms / 1000)
    assert EXEC_MAX_MS[opcode] == SPEC_MAXIMA[opcode]


def test_default_chip_uses_the_typical_model() -> None:
    # design.md "Emulator timing": typical by default.
    assert ATECC608A().settings.timing == TimingModel.typical()


def test_typical_model_wake_delay_and_watchdog() -> None:
    model = TimingModel.typical()
    assert (model.name, model.wake_delay_s, model.watchdog_s) == ("typical", 800e-6, 1.3)


@pytest.mark.parametrize("opcode", list(SPEC_TYPICAL_MS), ids=[op.name for op in SPEC_TYPICAL_MS])
def test_typical_busy_times_are_decision_13(opcode: Opcode) -> None:
    assert TimingModel.typical().busy_s(opcode) == pytest.approx(SPEC_TYPICAL_MS[opcode] / 1000)


@pytest.mark.parametrize("opcode", list(SPEC_MAXIMA), ids=[op.name for op in SPEC_MAXIMA])
def test_typical_busy_times_never_exceed_the_m0_maximum(opcode: Opcode) -> None:
    typical = TimingModel.typical()
    assert 0 < typical.busy_s(opcode) <= typical.exec_max_s(opcode, 0)


def test_maximum_model_uses_twhi_and_the_maxima_for_every_divider() -> None:
    model = TimingModel.maximum()
    assert (model.name, model.wake_delay_s, model.watchdog_s) == ("maximum", T_WHI_S, 1.3)
    for opcode, row in SPEC_MAXIMA.items():
        for divider, maximum_ms in enumerate(row):
            assert model.busy_s(opcode, divider) == pytest.approx(maximum_ms / 1000)


def test_instant_model_has_no_wake_delay_or_busy_time_but_keeps_the_watchdog() -> None:
    model = TimingModel.instant()
    assert (model.wake_delay_s, model.parse_s, model.watchdog_s) == (0.0, 0.0, 1.3)
    assert all(model.busy_s(opcode) == 0.0 for opcode in SPEC_MAXIMA)


@pytest.mark.parametrize("name", ["typical", "maximum", "instant"])
def test_models_are_found_by_name(name: str) -> None:
    assert TimingModel.named(name).name == name


def test_unknown_model_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown timing model"):
        TimingModel.named("turbo")


@pytest.mark.parametrize("field", ["wake_delay_s", "watchdog_s", "parse_s"])
def test_negative_times_are_refused(field: str) -> None:
    negative: dict[str, Any] = {field: -1.0}
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(TimingModel.typical(), **negative)


def test_zero_watchdog_is_refused() -> None:
    with pytest.raises(ValueError, match="watchdog_s"):
        dataclasses.replace(TimingModel.typical(), watchdog_s=0.0)


def test_busy_ms_overrides_one_opcode_and_is_frozen() -> None:
    model = dataclasses.replace(TimingModel.typical(), busy_ms={Opcode.RANDOM: 7.0})
    assert model.busy_s(Opcode.RANDOM) == pytest.approx(0.007)
    assert model.busy_s(Opcode.INFO) == pytest.approx(0.0005)
    with pytest.raises(TypeError):
        model.busy_ms[Opcode.INFO] = 1.0  # type: ignore[index]


def _busy_time(chip_seed: int, commands: int = 6) -> list[float]:
    """Busy windows of Random on a jittered chip, measured by polling every 100 µs."""
    rig = make_rig(timing=dataclasses.replace(TimingModel.typical(), jitter=True), seed=chip_seed)
    windows = []
    for _ in range(commands):
        rig.wake()
        rig.send(command("Random"))
        sent = rig.clock.monotonic()
        while rig.try_read(0) is None:
            rig.clock.advance(100e-6)
        windows.append(rig.clock.monotonic() - sent)
        rig.idle()
    return windows


def test_jitter_draws_busy_times_between_typical_and_maximum_reproducibly() -> None:
    windows = _busy_time(5)
    assert all(2e-3 <= w <= 23e-3 + 100e-6 for w in windows)  # decision 13: up to the maximum
    assert len({round(w, 4) for w in windows}) > 1
    assert windows == _busy_time(5)

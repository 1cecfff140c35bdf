"""The conformance package's pure parts: sample checks, the walk check, the tables, the CLI args."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conformance.__main__ import DEFAULT_JUNITXML, PACKAGE_DIR, pytest_args
from conformance.buses import open_bus
from conformance.campaigns import CAMPAIGNS, EXPECTED_KINDS, Campaign, campaigns_for, walk_problems
from conformance.emulator import Emulator
from conformance.samples import repeated_sample, sample_problem, samples_of
from conformance.stack import check_stack_url
from conformance.summary import format_table, recoveries, suite_rows
from lokey.backends import fault_kinds
from lokey.controller import ALLOWED_TRANSITIONS

ALLOWED = frozenset((a.value, b.value) for a, b in ALLOWED_TRANSITIONS)
GOOD = "3a9c1f4e7b2d8e605f1ac3b7942de8017c6b5a49382716f5e4d3c2b1a0918273"

# -- samples -----------------------------------------------------------------------------------


def test_a_random_looking_sample_is_fine_in_either_case() -> None:
    assert sample_problem(GOOD) is None
    assert sample_problem(GOOD.upper()) is None
    assert sample_problem(os.urandom(32).hex()) is None


@pytest.mark.parametrize(
    ("sample", "why"),
    [
        ("ffff0000" * 8, "test pattern"),
        ("ff" * 32, "all 32 bytes equal 0xFF"),
        ("00" * 32, "all 32 bytes equal 0x00"),
        ("ff" * 29 + "123456", "29 of 32 bytes are 0xFF"),
        (GOOD[:-2], "not 64 hex characters"),
        (GOOD[:-1] + "g", "not 64 hex characters"),
        (GOOD + "00", "not 64 hex characters"),
        (12, "not a hex string"),
        (None, "not a hex string"),
    ],
)
def test_bad_samples_are_named(sample: object, why: str) -> None:
    problem = sample_problem(sample)
    assert problem is not None
    assert why in problem


def test_28_ff_bytes_are_not_yet_flagged() -> None:
    assert sample_problem("ff" * 28 + "12345678") is None  # 87.5 % is not > 90 %


def test_samples_of_reads_both_shapes_and_refuses_others() -> None:
    assert samples_of({"data": GOOD}, 1) == [GOOD]
    assert samples_of({"data": [GOOD, GOOD]}, 2) == [GOOD, GOOD]
    with pytest.raises(AssertionError):
        samples_of({"data": [GOOD]}, 2)
    with pytest.raises(AssertionError):
        samples_of({"data": GOOD}, 2)
    with pytest.raises(AssertionError):
        samples_of([GOOD], 1)


def test_repeated_sample_finds_a_sample_served_twice() -> None:
    assert repeated_sample([GOOD, "00" + GOOD[2:]]) is None
    assert repeated_sample([GOOD, "00" + GOOD[2:], GOOD.upper()]) == GOOD.upper()


# -- the state-machine walk --------------------------------------------------------------------


def test_a_failure_and_recovery_is_a_walk_of_the_diagram() -> None:
    before = {"unknown->validating": 1, "validating->healthy": 1}
    after = {
        **before,
        "healthy->failed": 1,
        "failed->recovering": 2,
        "recovering->failed": 1,
        "recovering->validating": 1,
        "validating->healthy": 2,
    }
    assert walk_problems("healthy", "healthy", before, after, ALLOWED) == []
    during = {**before, "healthy->failed": 1, "failed->recovering": 1}
    assert walk_problems("healthy", "recovering", before, during, ALLOWED) == []


def test_a_transition_outside_the_diagram_is_named() -> None:
    problems = walk_problems("healthy", "recovering", {}, {"healthy->recovering": 1}, ALLOWED)
    assert problems == ["healthy->recovering (1x) is not a transition of the state diagram"]


def test_counts_that_do_not_join_up_are_not_a_walk() -> None:
    problems = walk_problems("healthy", "healthy", {}, {"healthy->failed": 1}, ALLOWED)
    assert len(problems) == 1
    assert "do not form a walk from healthy to healthy" in problems[0]
    problems = walk_problems("healthy", "failed", {}, {}, ALLOWED)
    assert "do not form a walk" in problems[0]


def test_counts_that_go_down_or_are_not_transitions_are_named() -> None:
    problems = walk_problems("healthy", "healthy", {"healthy->failed": 2}, {"x": 1}, ALLOWED)
    assert "the count of healthy->failed went down by 2" in problems
    assert "'x' is not a 'from->to' transition" in problems


# -- campaigns -----------------------------------------------------------------------------------


def test_every_fault_kind_of_the_emulator_has_a_main_campaign() -> None:
    kinds = set(fault_kinds())
    assert kinds == EXPECTED_KINDS
    mains = {c.kind for c in CAMPAIGNS if not c.variant}
    assert mains == kinds
    ids = [c.id for c in CAMPAIGNS]
    assert len(ids) == len(set(ids))


def test_a_kind_without_a_campaign_is_kept_so_that_its_test_fails() -> None:
    found = campaigns_for(["latency", "new_kind"])
    assert [c.id if isinstance(c, Campaign) else c for c in found] == ["latency", "new_kind"]


# -- the tables ----------------------------------------------------------------------------------


@dataclass
class FakeReport:
    nodeid: str
    when: str | None
    outcome: str
    duration: float = 0.5
    user_properties: list[tuple[str, object]] = field(default_factory=list)


def test_suite_rows_count_each_test_once_by_its_worst_phase() -> None:
    reports = [
        FakeReport("a.py::ok", "setup", "passed"),
        FakeReport("a.py::ok", "call", "passed"),
        FakeReport("a.py::ok", "teardown", "passed"),
        FakeReport("a.py::bad", "call", "failed"),
        FakeReport("a.py::broken", "setup", "failed"),
        FakeReport("b.py::skip", "setup", "skipped"),
    ]
    rows = suite_rows(reports)
    assert [(r.suite, r.passed, r.failed, r.skipped, r.errors) for r in rows] == [
        ("a.py", 1, 1, 0, 1),
        ("b.py", 0, 0, 1, 0),
    ]
    assert rows[0].seconds == pytest.approx(2.5)


def test_recoveries_come_from_the_recorded_properties() -> None:
    properties: list[tuple[str, object]] = [
        ("fault", "nack"),
        ("recovery_s", "0.250"),
        ("recovery_bound_s", "10"),
    ]
    reports = [
        FakeReport("c.py::t[nack]", "call", "passed", user_properties=properties),
        FakeReport("c.py::t[nack]", "teardown", "passed", user_properties=properties),
        FakeReport("c.py::other", "call", "passed"),
    ]
    (only,) = recoveries(reports)
    assert (only.fault, only.seconds, only.bound_s) == ("nack", 0.25, 10.0)


def test_format_table_aligns_the_columns() -> None:
    lines = format_table(("suite", "passed"), [("a.py", 3), ("longer.py", 12)])
    assert lines == [
        "suite      passed",
        "---------  ------",
        "a.py            3",
        "longer.py      12",
    ]


# -- stack URL, CLI arguments, the emulator handle -----------------------------------------------


def test_check_stack_url_wants_a_base_url() -> None:
    assert check_stack_url("http://127.0.0.1:8081/") == "http://127.0.0.1:8081"
    assert check_stack_url("https://lokey.local") == "https://lokey.local"
    for bad in ("127.0.0.1:8081", "ftp://x", "http://x/generate", "http://x?a=1", "http://"):
        with pytest.raises(ValueError, match=r"expected|without a path"):
            check_stack_url(bad)


def test_pytest_args_default_the_junit_xml_and_pass_the_rest_through(tmp_path: Path) -> None:
    args = pytest_args(["-k", "bus", "--stack", "http://h:1", "-x"])
    assert args[0] == str(PACKAGE_DIR)
    assert f"--junitxml={os.path.abspath(DEFAULT_JUNITXML)}" in args
    assert "junit_family=xunit1" in args
    assert "--stack=http://h:1" in args
    assert args[-3:] == ["-k", "bus", "-x"]
    assert not any(a.startswith("--bus") for a in args)
    given = pytest_args(["--junit-xml", str(tmp_path / "r.xml"), "--bus", "/dev/i2c-1"])
    assert f"--junitxml={tmp_path / 'r.xml'}" in given
    assert "--bus=/dev/i2c-1" in given
    assert "--allow-destructive" in pytest_args(["--allow-destructive"])


def test_the_emulator_handle_narrows_the_opened_bus() -> None:
    with open_bus("sim://atecc608a?lock=config-locked") as opened:
        emulator = Emulator.of(opened)
        assert emulator is not None
        assert emulator.chip is opened.emulator
        assert emulator.clock is opened.clock
        assert emulator.bus_faults is emulator.virtual_bus.faults
        assert emulator.host().wake() == bytes.fromhex("04113343")
        assert len(emulator.trace.records()) > 0


def test_the_vectors_come_from_lokey_vectors_dir_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conformance import protocol

    monkeypatch.setenv(protocol.VECTORS_ENV, str(tmp_path))
    assert protocol.vectors_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="LOKEY_VECTORS_DIR"):
        protocol.vectors.__wrapped__("atecc_packets.json")
    monkeypatch.delenv(protocol.VECTORS_ENV)
    assert (protocol.vectors_dir() / "atecc_packets.json").is_file()  # the repository's own

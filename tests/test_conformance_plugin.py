"""The conformance plugin as users meet it: pytest and ``python -m conformance`` as child processes.

* It is registered exactly once (entry point ``lokey``), whether the suites run by path in this
  repository, from another project, or with plugin autoloading disabled (then the package's
  conftest registers it).
* It costs nothing in a run that does not use it: no bus opened, no emulator imported, no
  controller started, even with a ``--bus`` that cannot be opened.
* Another project can build on its fixtures (``emulator``, ``opened_bus``, ``host``).
* ``python -m conformance`` writes JUnit XML (with the recovery times) and the summary table.
* The fault campaign can fail: against a fake controller that serves the unlocked chip's test
  pattern, takes a transition the diagram does not have, serves one sample twice or never
  recovers, the matching checks fail (and against the same fake behaving well, they pass).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "conformance"
TEST_PATTERN_HEX = "ffff0000" * 8

REGISTERED_ONCE = """
import sys

import conformance.plugin


def test_the_plugin_is_registered_once_under_its_entry_point_name(pytestconfig):
    manager = pytestconfig.pluginmanager
    names = [n for n, p in manager.list_name_plugin() if p is conformance.plugin]
    assert names == ["lokey"]
    assert pytestconfig.getoption("--stack") is None


def test_nothing_was_opened_or_started(pytestconfig):
    assert "sim.atecc608a" not in sys.modules  # no emulator was built
    assert "conformance.stack" not in sys.modules  # no controller was started
"""

USES_THE_FIXTURES = """
from sim.atecc608a import StuckOutput


def test_a_stuck_rng_on_the_emulator_fixture(emulator):
    emulator.control.set_lock_state("config-locked")  # an unlocked chip gives its test pattern
    emulator.control.inject(StuckOutput(block=b"\\x00"))
    host = emulator.host()
    assert host.wake() == bytes.fromhex("04113343")
    random = host.send(bytes.fromhex("071b00000024cd"), 35)
    assert random[1:33] == bytes(32)


def test_the_host_fixture_reads_the_info_revision(host):
    host.wake()
    assert host.send(bytes.fromhex("0730000000035d"), 7)[1:4] == bytes((0, 0, 0x60))
"""


def _env(**extra: str) -> dict[str, str]:
    """This environment without this run's pytest variables (xdist worker ids, addopts ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra)
    return env


def _python(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stdout


def _project(tmp_path: Path, name: str, source: str) -> Path:
    """A bare project of its own (no ini file, no conftest) holding one test file."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / name).write_text(source)
    return project


# -- registration and cost -------------------------------------------------------------------------


def test_running_the_suites_by_path_registers_the_plugin_once(tmp_path: Path) -> None:
    check = _project(tmp_path, "test_registered.py", REGISTERED_ONCE) / "test_registered.py"
    code, out = _python(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "conformance/test_bus_semantics.py",
        f"{check}::test_the_plugin_is_registered_once_under_its_entry_point_name",
        "--bus",
        "sim://atecc608a",
        cwd=ROOT,
    )
    assert code == 0, out
    assert "already added" not in out
    assert "23 passed" in out, out


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({}, id="entry-point"),
        pytest.param({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, id="autoload-off-conftest"),
    ],
)
def test_the_conftest_registers_the_plugin_only_when_the_entry_point_did_not(
    tmp_path: Path, how: dict[str, str]
) -> None:
    check = _project(tmp_path, "test_registered.py", REGISTERED_ONCE) / "test_registered.py"
    code, out = _python(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(PACKAGE / "test_atecc608a_protocol.py"),
        f"{check}::test_the_plugin_is_registered_once_under_its_entry_point_name",
        cwd=tmp_path,
        env=how,
    )
    assert code == 0, out
    assert "13 passed" in out, out


def test_in_another_project_the_plugin_opens_no_bus_and_starts_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path, "test_registered.py", REGISTERED_ONCE)
    code, out = _python(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--bus",
        "/dev/i2c-250",  # cannot be opened: a run that does not need the bus must not notice
        cwd=project,
    )
    assert code == 0, out
    assert "2 passed" in out, out
    assert "LoKey conformance summary" not in out  # not a conformance run


def test_a_bus_that_cannot_be_opened_fails_once_before_any_test_that_needs_it(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, "test_fixtures.py", USES_THE_FIXTURES)
    code, out = _python(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "--bus", "/dev/i2c-250", cwd=project
    )
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert "--bus /dev/i2c-250" in out


def test_a_bad_bus_or_stack_url_is_a_usage_error(tmp_path: Path) -> None:
    project = _project(tmp_path, "test_registered.py", REGISTERED_ONCE)
    for option, value in (("--bus", "bogus://x"), ("--stack", "ftp://x")):
        code, out = _python("-m", "pytest", "-q", option, value, cwd=project)
        assert code == pytest.ExitCode.USAGE_ERROR, (option, value, out)
        assert f"ERROR: {option}" in out, out


def test_another_project_builds_on_the_emulator_and_host_fixtures(tmp_path: Path) -> None:
    project = _project(tmp_path, "test_fixtures.py", USES_THE_FIXTURES)
    code, out = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert code == 0, out
    assert "2 passed" in out, out


# -- python -m conformance -----------------------------------------------------------------------


def test_python_m_conformance_writes_junit_xml_and_prints_the_summary(tmp_path: Path) -> None:
    code, out = _python(
        "-m",
        "conformance",
        "--bus",
        "sim://atecc608a?timing=instant",
        "-k",
        "test_bus_semantics or sda_low or lists_every",
        cwd=tmp_path,
    )
    assert code == 0, out
    assert "LoKey conformance summary" in out
    lines = out.splitlines()
    suite_line = next(line for line in lines if "test_bus_semantics.py" in line and "22" in line)
    assert suite_line.split()[1:5] == ["22", "0", "0", "0"], suite_line
    assert any(line.split()[:1] == ["sda_low"] for line in lines), out
    report = tmp_path / "conformance-results.xml"  # the default, in the working directory
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("name") == "lokey-conformance"
    assert suite.get("failures") == "0"
    assert suite.get("errors") == "0"
    assert int(suite.get("tests", "0")) == 22 + 2 + 1
    recoveries = {
        case.get("name"): float(prop.get("value", "nan"))
        for case in suite.iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "recovery_s"
    }
    assert set(recoveries) == {
        "test_fault_campaign[sda_low]",
        "test_fault_campaign[sda_low-etimedout]",
    }
    assert all(0 <= seconds <= 10 for seconds in recoveries.values()), recoveries


def test_python_m_conformance_exits_with_pytests_status(tmp_path: Path) -> None:
    code, out = _python(
        "-m", "conformance", "-k", "no_such_test", "--junitxml", "out/r.xml", cwd=tmp_path
    )
    assert code == pytest.ExitCode.NO_TESTS_COLLECTED, out
    assert (tmp_path / "out" / "r.xml").is_file()
    assert not (tmp_path / "conformance-results.xml").exists()


# -- the fault campaign can fail -------------------------------------------------------------------

#: Per fault kind, how the fake controller misbehaves (or not) while that fault is installed.
FAKE_BEHAVIOUR = {
    "forced_status": "well",  # 503 while faulted, FAILED and back through the diagram
    "stuck_output": "test-pattern",  # serves FFFF0000 x 8 and stays HEALTHY
    "nack": "illegal-transition",  # HEALTHY -> RECOVERING, not in the diagram
    "latency": "same-sample",  # serves one valid-looking sample again and again
    "sda_low": "never-recovers",  # stays FAILED after the fault is cleared
}


class FakeController(BaseHTTPRequestHandler):
    """Just enough of the controller and its /sim API to run one campaign; misbehaves on cue."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    fault: ClassVar[str | None] = None
    state: ClassVar[str] = "healthy"
    transitions: ClassVar[dict[str, int]] = {}
    same: ClassVar[str] = os.urandom(32).hex()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: object, **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    @classmethod
    def _go(cls, *path: str) -> None:
        for source, target in itertools.pairwise(path):
            key = f"{source}->{target}"
            cls.transitions[key] = cls.transitions.get(key, 0) + 1
        cls.state = path[-1]

    def do_GET(self) -> None:
        cls = type(self)
        path, _, query = self.path.partition("?")
        with cls.lock:
            behaviour = FAKE_BEHAVIOUR.get(cls.fault or "", "")
            if path == "/health":
                self._send(200 if cls.state == "healthy" else 503, {"status": cls.state})
            elif path == "/info":
                self._send(
                    200,
                    {
                        "state": {"name": cls.state},
                        "counters": {"transitions": dict(cls.transitions)},
                    },
                )
            elif path == "/generate":
                count = int(query.partition("=")[2] or 1)
                if behaviour == "test-pattern":
                    data = [TEST_PATTERN_HEX] * count
                elif behaviour == "same-sample":
                    data = [cls.same] * count
                elif cls.state != "healthy":
                    self._send(
                        503, {"error": "Failed to generate random data"}, **{"Retry-After": "1"}
                    )
                    return
                else:
                    data = [os.urandom(32).hex() for _ in range(count)]
                self._send(200, {"data": data[0] if count == 1 else data, "source": "trng"})
            elif path == "/sim/faults/kinds":
                self._send(200, {k: {"target": "chip", "params": {}} for k in FAKE_BEHAVIOUR})
            else:
                self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        cls = type(self)
        length = int(self.headers.get("Content-Length", "0"))
        with cls.lock:
            if self.path == "/sim/faults":
                kind = json.loads(self.rfile.read(length))["kind"]
                cls.fault = kind
                behaviour = FAKE_BEHAVIOUR[kind]
                if behaviour in ("well", "never-recovers"):
                    cls._go("healthy", "failed")
                elif behaviour == "illegal-transition":
                    cls._go("healthy", "recovering")
                self._send(201, {"injected": {"kind": kind, "target": "chip", "params": {}}})
            elif self.path == "/sim/power-cycle":
                self._send(200, {"status": "power-cycled"})
            else:
                self._send(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        cls = type(self)
        with cls.lock:
            behaviour = FAKE_BEHAVIOUR.get(cls.fault or "", "")
            cls.fault = None
            if behaviour == "well":
                cls._go("failed", "recovering", "validating", "healthy")
            elif behaviour == "illegal-transition":
                cls._go("recovering", "validating", "healthy")
            latched = {"health_failed": False, "failure": 0}
            self._send(200, {"cleared": {"chip": 1, "bus": 0}, "latched": latched})


@contextmanager
def fake_controller() -> Iterator[str]:
    FakeController.fault, FakeController.state = None, "healthy"
    FakeController.transitions = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeController)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_fault_campaign_fails_on_bad_samples_illegal_transitions_and_no_recovery(
    tmp_path: Path,
) -> None:
    report = tmp_path / "campaign.xml"
    campaign = "conformance/test_fault_campaigns.py"
    selected = [f"{campaign}::test_fault_campaign[{kind}]" for kind in FAKE_BEHAVIOUR]
    selected.append(f"{campaign}::test_the_chaos_api_lists_every_expected_fault_kind")
    with fake_controller() as url:
        code, out = _python(
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "junit_family=xunit1",
            f"--junitxml={report}",
            "--stack",
            url,
            "--recovery-bound",
            "0.5",
            *selected,
            cwd=ROOT,
        )
    assert code == pytest.ExitCode.TESTS_FAILED, out
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        outcomes[str(case.get("name"))] = "" if failure is None else failure.get("message", "")
    assert outcomes["test_fault_campaign[forced_status]"] == ""  # the fake itself is sound
    assert "test pattern" in outcomes["test_fault_campaign[stuck_output]"]
    assert "not a transition of the state diagram" in outcomes["test_fault_campaign[nack]"]
    assert "served twice" in outcomes["test_fault_campaign[latency]"]
    assert "not healthy and serving" in outcomes["test_fault_campaign[sda_low]"]
    assert "lacks" in outcomes["test_the_chaos_api_lists_every_expected_fault_kind"]
    assert "recovery after the fault was cleared" in out

"""pytest plugin for LoKey's conformance suites (the ``pytest11`` entry point ``lokey``).

Installed with LoKey, it is active in every pytest run of that environment, so it costs nothing
until a test asks for one of its fixtures: no bus is opened and no process started otherwise.

Options (group "lokey conformance"):

``--bus URL``
    The chip under test: ``sim://atecc608a[?options]`` (the default; a virtual clock unless the
    URL says ``clock=wall``), ``/dev/i2c-1`` on a Raspberry Pi, ``i2c://<path>``, optionally
    prefixed with ``spy+``. Opened once, only when a collected test needs it, to fail clearly.
``--allow-destructive``
    Run tests marked ``destructive`` (they write or lock the chip) on real hardware; on the
    emulator they always run.
``--stack URL``
    Base URL of a running LoKey controller (``http://127.0.0.1:8081``). Without it, tests that
    need a stack start their own controller once per session: ``python -m lokey.services
    controller`` as a real process on ``sim://atecc608a?lock=config-locked&timing=instant``
    with fast recovery (``conformance.stack``). The fault campaign needs the stack to itself.
``--recovery-bound SECONDS``
    How long a fault campaign waits for the stack to be healthy again after a fault is cleared
    (default 10). A stack with the default 5-minute circuit breaker needs more (about 330).
``--load-all`` / ``--load-consumers N``
    Faults under load (``test_faults_under_load.py``, which starts its own four services on the
    emulator and is skipped with ``--stack`` or a hardware ``--bus``): run every fault campaign
    instead of one per fault kind; consumer threads per serving path (default 4).

Fixtures to build on:

``opened_bus`` (:class:`lokey.backends.OpenedBus`)
    A fresh bus per test; on the emulator a fresh chip and clock.
``host`` (:class:`conformance.protocol.Host`)
    A host on ``opened_bus`` (wake, send, poll); idles the chip afterwards.
``emulator`` (:class:`conformance.emulator.Emulator`)
    The emulated chip and virtual bus behind ``opened_bus`` with their typed control surfaces
    (``control`` for chip faults and power, ``bus_faults``, ``trace``). Skipped on hardware.
``stack`` (``str``, session)
    The base URL of the controller under test (``--stack`` or our own, see above).
``stack_client`` (:class:`conformance.stack.StackClient`, session)
    ``/health``, ``/info``, ``/generate`` of the stack.
``chaos`` (:class:`conformance.stack.ChaosClient`)
    The stack's chaos API: ``inject(kind, params)``, ``clear()``, ``kinds()``, ``faults()``,
    ``state()``, ``trace(limit)``, ``power_cycle()``. Skipped when the stack does not run on
    the emulator. After each test every fault is cleared (and a latched chip power-cycled).
``recovery_bound_s`` (``float``)
    ``--recovery-bound``.

Markers: ``destructive`` (writes the chip; skipped on hardware without ``--allow-destructive``)
and ``stack`` (needs a running controller: the fault campaign has it, so ``-m "not stack"`` runs
the suites that need only the bus).

At the end of a run that includes the conformance suites the terminal shows a table per suite
file (passed / failed / skipped / errors / seconds), the recovery time measured per fault
(also in the JUnit XML as the test's ``recovery_s`` property) and, per fault under load, the
throughput before and during the fault and the recovery time (the ``load_*`` properties).
``python -m conformance`` runs the suites with JUnit XML on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from conformance.buses import OpenedBus, open_bus
from conformance.protocol import Host
from conformance.summary import LOAD_COLUMNS, format_table, load_rows, recoveries, suite_rows
from lokey.backends import parse_bus_url
from lokey.errors import LokeyError

if TYPE_CHECKING:  # the stack modules import httpx: loaded only by tests that use a stack
    from conformance.emulator import Emulator
    from conformance.stack import ChaosClient, StackClient

__all__ = [
    "DEFAULT_BUS",
    "DEFAULT_LOAD_CONSUMERS",
    "DEFAULT_RECOVERY_BOUND_S",
    "EMULATED",
    "STACK_URL",
    "chaos",
    "emulator",
    "host",
    "opened_bus",
    "recovery_bound_s",
    "stack",
    "stack_client",
]

DEFAULT_BUS: Final = "sim://atecc608a"
DEFAULT_RECOVERY_BOUND_S: Final = 10.0
DEFAULT_LOAD_CONSUMERS: Final = 4
PACKAGE_DIR: Final = Path(__file__).resolve().parent
#: Whether ``--bus`` names an emulator (decided from the URL, without opening it).
EMULATED = pytest.StashKey[bool]()
#: ``--stack`` checked and without a trailing slash; None: start our own controller.
STACK_URL = pytest.StashKey["str | None"]()
#: Tests that ask for one of these need the bus; for the others it is never opened.
BUS_FIXTURES: Final = frozenset({"opened_bus", "host", "emulator"})
STACK_ANSWER_TIMEOUT_S: Final = 10.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lokey conformance")
    group.addoption(
        "--bus",
        default=DEFAULT_BUS,
        help=(
            "bus URL: sim://atecc608a[?timing=&seed=&lock=&revision=&address=&clock=] "
            "(virtual clock unless clock=wall), /dev/i2c-N or i2c://<path>, optionally spy+..."
        ),
    )
    group.addoption(
        "--allow-destructive",
        action="store_true",
        default=False,
        help="run checks that write or lock the chip (never needed on the emulator)",
    )
    group.addoption(
        "--stack",
        default=None,
        metavar="URL",
        help=(
            "base URL of a running LoKey controller, e.g. http://127.0.0.1:8081 (default: start "
            "one on the emulator for the tests that need it)"
        ),
    )
    group.addoption(
        "--load-all",
        action="store_true",
        default=False,
        help=(
            "faults under load: run every fault campaign with consumers on every path (default: "
            "one campaign per fault kind)"
        ),
    )
    group.addoption(
        "--load-consumers",
        type=int,
        default=DEFAULT_LOAD_CONSUMERS,
        metavar="N",
        help=(
            "faults under load: consumer threads per serving path "
            f"(default {DEFAULT_LOAD_CONSUMERS})"
        ),
    )
    group.addoption(
        "--recovery-bound",
        type=float,
        default=DEFAULT_RECOVERY_BOUND_S,
        metavar="SECONDS",
        help=(
            "longest a fault campaign waits for the stack to recover after a fault is cleared "
            f"(default {DEFAULT_RECOVERY_BOUND_S:g})"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "destructive: writes or locks the chip")
    config.addinivalue_line(
        "markers", "stack: needs a running LoKey controller (--stack, or one started for the run)"
    )
    url = str(config.getoption("--bus"))
    try:  # syntax only: opening waits until a collected test needs the bus
        config.stash[EMULATED] = parse_bus_url(url).kind == "emulator"
    except ValueError as error:
        raise pytest.UsageError(f"--bus {url}: {error}") from None
    stack_url = config.getoption("--stack")
    if stack_url is not None:
        from conformance.stack import check_stack_url  # noqa: PLC0415 - httpx only when asked

        try:
            stack_url = check_stack_url(str(stack_url))
        except ValueError as error:
            raise pytest.UsageError(f"--stack: {error}") from None
    config.stash[STACK_URL] = stack_url
    consumers = config.getoption("--load-consumers")
    if not (isinstance(consumers, int) and 1 <= consumers <= 64):
        raise pytest.UsageError(f"--load-consumers must be 1..64, got {consumers!r}")
    bound = config.getoption("--recovery-bound")
    if not (isinstance(bound, float) and 0 < bound < float("inf")):
        raise pytest.UsageError(f"--recovery-bound must be a positive number, got {bound!r}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    destructive_ok = config.getoption("--allow-destructive") or config.stash.get(EMULATED, False)
    skip = pytest.mark.skip(reason="writes the chip: pass --allow-destructive to run it")
    for item in items:
        if not destructive_ok and "destructive" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Open ``--bus`` once, before any test runs, if a selected test will use it."""
    config = session.config
    if config.option.collectonly or not any(
        BUS_FIXTURES.intersection(getattr(item, "fixturenames", ())) for item in session.items
    ):
        return
    url = str(config.getoption("--bus"))
    try:
        with open_bus(url):
            pass
    except (ValueError, OSError, LokeyError) as error:
        pytest.exit(f"--bus {url}: {error}", returncode=pytest.ExitCode.USAGE_ERROR)


# -- bus fixtures --------------------------------------------------------------------------------


@pytest.fixture
def opened_bus(request: pytest.FixtureRequest) -> Iterator[OpenedBus]:
    """A fresh bus per test (on the emulator: a fresh chip and virtual clock)."""
    with open_bus(str(request.config.getoption("--bus"))) as opened:
        yield opened


@pytest.fixture
def host(opened_bus: OpenedBus) -> Iterator[Host]:
    """A host that has woken the chip; it idles the chip afterwards so the watchdog is quiet."""
    chip = Host(opened_bus.bus, opened_bus.clock)
    yield chip
    with contextlib.suppress(OSError):  # asleep already: a test put it to sleep
        chip.idle()


@pytest.fixture
def emulator(opened_bus: OpenedBus) -> Emulator:
    """The emulated chip and bus behind ``--bus`` with their fault surfaces; skipped on hardware."""
    from conformance.emulator import Emulator  # noqa: PLC0415 - the emulator only on sim://

    found = Emulator.of(opened_bus)
    if found is None:
        pytest.skip(f"needs the emulator; --bus {opened_bus.url} is {opened_bus.kind}")
    return found


# -- stack fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of the controller under test: ``--stack``, or our own on the emulator."""
    import httpx  # noqa: PLC0415 - the stack's modules load only for tests that use it

    from conformance.stack import LocalController, StackClient  # noqa: PLC0415

    given = request.config.stash.get(STACK_URL, None)
    if given is not None:
        with StackClient(given, timeout_s=2.0) as client:
            deadline = time.monotonic() + STACK_ANSWER_TIMEOUT_S
            while True:
                try:
                    client.health()
                    break
                except httpx.TransportError as error:
                    if time.monotonic() > deadline:
                        pytest.fail(f"--stack {given}: no answer from /health: {error}")
                time.sleep(0.1)
        yield given
        return
    controller = LocalController.start(tmp_path_factory.mktemp("lokey-controller"))
    try:
        yield controller.base_url
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def stack_client(stack: str) -> Iterator[StackClient]:
    """``/health``, ``/info`` and ``/generate`` of the stack under test."""
    from conformance.stack import StackClient  # noqa: PLC0415

    with StackClient(stack) as client:
        yield client


@pytest.fixture(scope="session")
def _lokey_chaos_client(stack: str) -> Iterator[ChaosClient]:
    from conformance.stack import ChaosClient  # noqa: PLC0415

    with ChaosClient(stack) as client:
        yield client


@pytest.fixture
def chaos(_lokey_chaos_client: ChaosClient) -> Iterator[ChaosClient]:
    """The stack's chaos API; skipped when the stack does not run on the emulator.

    After the test every fault is cleared, and a chip left with a latched failure is
    power-cycled, so one test's fault never leaks into the next.
    """
    client = _lokey_chaos_client
    if not client.available():
        pytest.skip(f"{client.base_url} serves no chaos API (/sim): not running on the emulator")
    yield client
    latched = client.clear().get("latched")
    if isinstance(latched, dict) and any(latched.values()):
        client.power_cycle()


@pytest.fixture
def recovery_bound_s(request: pytest.FixtureRequest) -> float:
    """``--recovery-bound``: seconds a stack may take to recover once a fault is cleared."""
    return float(request.config.getoption("--recovery-bound"))


# -- the summary -----------------------------------------------------------------------------------


def _in_package(config: pytest.Config, files: dict[str, bool], report: pytest.TestReport) -> bool:
    """Whether the report's test file is one of this package's suites (memoised per file)."""
    file = report.location[0]
    if file not in files:
        try:
            files[file] = (config.rootpath / file).resolve().is_relative_to(PACKAGE_DIR)
        except (OSError, ValueError):
            files[file] = False
    return files[file]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Per suite file and per fault, when the run included the conformance suites."""
    reports = [
        report
        for stat in terminalreporter.stats.values()
        for report in stat
        if isinstance(report, pytest.TestReport)
    ]
    files: dict[str, bool] = {}
    if not any(_in_package(config, files, report) for report in reports):
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("=", "LoKey conformance summary")
    stack_url = config.stash.get(STACK_URL, None)
    write(f"bus: {config.getoption('--bus')}")
    write(f"stack: {stack_url or 'own controller on the emulator (started when needed)'}")
    rows = suite_rows(reports)
    total = [
        sum(getattr(r, name) for r in rows) for name in ("passed", "failed", "skipped", "errors")
    ]
    table = [(r.suite, r.passed, r.failed, r.skipped, r.errors, f"{r.seconds:.2f}") for r in rows]
    table.append(("total", *total, f"{sum(r.seconds for r in rows):.2f}"))
    headers = ("suite", "passed", "failed", "skipped", "errors", "seconds")
    for line in format_table(headers, table):
        write(line)
    measured = recoveries(reports)
    if measured:
        write("")
        write("recovery after the fault was cleared (healthy and serving again):")
        fault_rows = [
            (m.fault, f"{m.seconds:.3f}", "" if m.bound_s is None else f"{m.bound_s:g}")
            for m in sorted(measured, key=lambda m: m.fault)
        ]
        for line in format_table(("fault", "recovery s", "bound s"), fault_rows):
            write(line)
    under_load = load_rows(reports)
    if under_load:
        write("")
        write(
            "faults under load (consumers on every path; recovery: healthy and every judged "
            "path at half its baseline):"
        )
        for line in format_table(tuple(name for name, _ in LOAD_COLUMNS), under_load):
            write(line)

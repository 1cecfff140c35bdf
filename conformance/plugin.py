"""pytest plugin for the conformance suites: ``--bus URL`` and ``--allow-destructive``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from conformance.buses import OpenedBus, open_bus
from conformance.protocol import Host
from lokey.errors import LokeyError

DEFAULT_BUS = "sim://atecc608a"
#: Whether ``--bus`` names an emulator, learnt by opening it once in ``pytest_configure``.
EMULATED = pytest.StashKey[bool]()


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "destructive: writes or locks the chip")
    url = config.getoption("--bus", default=None)
    if url is not None:
        try:
            with open_bus(str(url)) as opened:  # fail once, clearly, before any test runs
                config.stash[EMULATED] = opened.emulator is not None
        except (ValueError, OSError, LokeyError) as error:
            raise pytest.UsageError(f"--bus {url}: {error}") from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--allow-destructive") or config.stash.get(EMULATED, False):
        return
    skip = pytest.mark.skip(reason="writes the chip: pass --allow-destructive to run it")
    for item in items:
        if "destructive" in item.keywords:
            item.add_marker(skip)


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

"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.atecc608a import LockState
from tests.api_helpers import BACKENDS, api_settings, running_api, settings_for
from tests.atecc_helpers import Rig, make_rig
from tests.service_helpers import TestClient


@pytest.fixture
def rig() -> Rig:
    """A factory-fresh, unlocked ATECC608A at 0x60 with typical timing on a virtual clock."""
    return make_rig()


@pytest.fixture
def locked_rig() -> Rig:
    """The same chip with both zones locked, as a provisioned chip in the field."""
    return make_rig(lock=LockState.LOCKED)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each API store back-end in turn."""
    name: str = request.param
    return name


@pytest.fixture
def client(tmp_path: Path, backend: str) -> Iterator[TestClient]:
    """The API app on each store back-end (for behaviour both must share)."""
    with running_api(settings_for(tmp_path, backend)) as the_client:
        yield the_client


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    """The API app on the default (LMDB) store."""
    with running_api(api_settings(tmp_path)) as the_client:
        yield the_client


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One API app for tests whose requests are all refused (nothing may change in it)."""
    with running_api(api_settings(tmp_path_factory.mktemp("shared"))) as the_client:
        yield the_client

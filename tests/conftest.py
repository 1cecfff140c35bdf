"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

from sim.atecc608a import LockState
from tests.atecc_helpers import Rig, make_rig


@pytest.fixture
def rig() -> Rig:
    """A factory-fresh, unlocked ATECC608A at 0x60 with typical timing on a virtual clock."""
    return make_rig()


@pytest.fixture
def locked_rig() -> Rig:
    """The same chip with both zones locked, as a provisioned chip in the field."""
    return make_rig(lock=LockState.LOCKED)

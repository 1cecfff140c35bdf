"""Loads the conformance plugin when the suites are run by path (``pytest conformance``)."""

from conformance.plugin import (
    host,
    opened_bus,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
)

__all__ = [
    "host",
    "opened_bus",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
]

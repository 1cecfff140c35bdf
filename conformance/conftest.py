"""Makes sure the conformance plugin is registered exactly once when the suites run by path.

The plugin (:mod:`conformance.plugin`) is the ``pytest11`` entry point ``lokey``: installing
LoKey registers it in every pytest run, so this file must not register it again (re-exporting
its hooks here made pytest add ``--bus`` twice). Only when entry points are not loaded
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` without ``-p lokey``) is it registered here, under the
same name, so that ``pytest conformance`` works either way.
"""

from __future__ import annotations

import pytest

import conformance.plugin

PLUGIN_NAME = "lokey"  # the entry point's name (pyproject.toml, [project.entry-points.pytest11])


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # Called once, when pytest registers this conftest (before the command line is parsed), so
    # the plugin registered here still gets its own pytest_addoption call.
    if not pluginmanager.is_registered(conformance.plugin) and not pluginmanager.is_blocked(
        PLUGIN_NAME
    ):
        pluginmanager.register(conformance.plugin, PLUGIN_NAME)

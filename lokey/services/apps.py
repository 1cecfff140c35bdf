"""Settings and app for a service by name: what ``python -m lokey.services SERVICE`` and
``lokey up --single-process`` both build.

Importing this module imports all four app factories (FastAPI, numpy, LMDB...), which is why
``python -m lokey.services`` imports it only when it serves something: the ``up`` supervisor
stays small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from fastapi import FastAPI

from lokey.errors import StoreError
from lokey.services.api import create_api_app
from lokey.services.controller import create_controller_app
from lokey.services.fortuna import create_fortuna_app
from lokey.services.settings import (
    ApiSettings,
    ControllerSettings,
    FortunaSettings,
    SettingsError,
    VirtioSettings,
    load_api_settings,
    load_controller_settings,
    load_fortuna_settings,
    load_virtio_settings,
)
from lokey.services.virtio import create_virtio_app
from lokey.store import resolve_db_path

__all__ = ["NAMES", "AnySettings", "StartupError", "create_app", "load_settings"]

NAMES: Final = ("controller", "fortuna", "virtio", "api")

AnySettings = ControllerSettings | FortunaSettings | VirtioSettings | ApiSettings

#: What :func:`load_settings` raises: the message names each bad variable (or the DB path).
StartupError = (SettingsError, StoreError)


def load_settings(service: str, env: Mapping[str, str]) -> AnySettings:
    """``service``'s settings from ``env`` only; the api's DB_PATH is resolved (checked) too."""
    if service == "api":
        settings = load_api_settings(env)
        if not settings.in_memory:
            resolve_db_path(settings.db_path)  # a clear error now, not a lifespan traceback
        return settings
    if service == "fortuna":
        return load_fortuna_settings(env)
    if service == "virtio":
        return load_virtio_settings(env)
    if service == "controller":
        return load_controller_settings(env)
    raise ValueError(f"unknown service {service!r}")


def create_app(settings: AnySettings) -> FastAPI:
    """The service's app for ``settings``; opens nothing until its lifespan starts."""
    if isinstance(settings, ApiSettings):
        return create_api_app(settings)
    if isinstance(settings, FortunaSettings):
        return create_fortuna_app(settings)
    if isinstance(settings, VirtioSettings):
        return create_virtio_app(settings)
    return create_controller_app(settings)

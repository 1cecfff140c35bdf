"""Settings and app for a service by name: what ``python -m lokey.services SERVICE`` and
``lokey up --single-process`` both build.

Each app factory is imported only when its service is built, so a service's process loads only
the libraries that service uses (the VirtIO service never loads numpy, LMDB or cryptography; a
Raspberry Pi Zero 2 W has 512 MB for all four). ``python -m lokey.services`` imports this module
only when it serves something: the ``up`` supervisor stays smaller still.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Final

from fastapi import FastAPI

from lokey.errors import StoreError
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

__all__ = [
    "MMAP_THRESHOLD",
    "NAMES",
    "AnySettings",
    "StartupError",
    "create_app",
    "limit_heap_retention",
    "load_settings",
]

NAMES: Final = ("controller", "fortuna", "virtio", "api")

AnySettings = ControllerSettings | FortunaSettings | VirtioSettings | ApiSettings

#: What :func:`load_settings` raises: the message names each bad variable (or the DB path).
StartupError = (SettingsError, StoreError)

#: Blocks at least this large get their own mapping, returned to the system when freed.
MMAP_THRESHOLD: Final = 128 << 10
_M_MMAP_THRESHOLD: Final = -3  # glibc <malloc.h>


def limit_heap_retention() -> bool:
    """Pin glibc's mmap threshold at :data:`MMAP_THRESHOLD` for a long-running service process.

    glibc starts at 128 KiB but raises the threshold to the size of every mapped block freed
    (up to 32 MiB), so after the first 1 MiB Fortuna response or top-up the later ones are cut
    from the heap, which keeps its high-water mark: measured idle after 60 s of ``lokey up
    --fast``, about 5 MB of the API's resident memory and 6 MB of ``--single-process``. Setting
    the threshold turns that adjustment off (mallopt(3)). True if it was set; without glibc
    nothing happens.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no glibc (musl, macOS); Windows: TypeError
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def load_settings(service: str, env: Mapping[str, str]) -> AnySettings:
    """``service``'s settings from ``env`` only; the api's LMDB path (``STORE_URL=lmdb://`` or
    ``DB_PATH``) is resolved (checked) too. A Redis server is not contacted here: it may be
    starting as well, and the lifespan's error names it."""
    if service == "api":
        settings = load_api_settings(env)
        store = settings.store
        if store.kind == "lmdb" and store.path is not None:
            from lokey.store import resolve_db_path  # noqa: PLC0415 - the store is the API's

            resolve_db_path(store.path)  # a clear error now, not a lifespan traceback
        return settings
    if service == "fortuna":
        return load_fortuna_settings(env)
    if service == "virtio":
        return load_virtio_settings(env)
    if service == "controller":
        return load_controller_settings(env)
    raise ValueError(f"unknown service {service!r}")


def create_app(settings: AnySettings) -> FastAPI:
    """The service's app for ``settings``; opens nothing until its lifespan starts.

    The factory's module is imported here, not at the top: see the module docstring (pinned by
    tests/test_service_imports.py).
    """
    if isinstance(settings, ApiSettings):
        from lokey.services.api import create_api_app  # noqa: PLC0415

        return create_api_app(settings)
    if isinstance(settings, FortunaSettings):
        from lokey.services.fortuna import create_fortuna_app  # noqa: PLC0415

        return create_fortuna_app(settings)
    if isinstance(settings, VirtioSettings):
        from lokey.services.virtio import create_virtio_app  # noqa: PLC0415

        return create_virtio_app(settings)
    from lokey.services.controller import create_controller_app  # noqa: PLC0415

    return create_controller_app(settings)

"""Fortuna (spec/fortuna.md): generator, accumulator with seed file, and the seed-quality gate.

Pure cores with the clock injected: :class:`Generator` (§2), :class:`Fortuna` (§§3-5, its only
I/O the optional seed file), :func:`check_seed` (§7). Fork safety for every live instance is
the one piece of process-global state (:mod:`lokey.fortuna._fork`). Errors come from
:mod:`lokey.errors` and are re-exported here.

The names below are imported from their modules on first use (PEP 562), so a process that only
needs the seed-quality gate (the API service) does not load the generator and with it the
``cryptography`` package (about 7 MB resident): see tests/test_service_imports.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lokey.errors import (
    FortunaError,
    FortunaInputError,
    NotSeededError,
    SeedFileError,
    SeedQualityError,
)

if TYPE_CHECKING:
    from lokey.fortuna.accumulator import (
        MAX_EVENT_BYTES,
        MAX_SOURCE,
        MIN_DIRECT_SEED_BYTES,
        MIN_POOL_SIZE,
        NUM_POOLS,
        RESEED_INTERVAL_S,
        Fortuna,
        Pool,
        which_pools,
    )
    from lokey.fortuna.gate import SeedRejectReason, check_seed, shannon_entropy
    from lokey.fortuna.generator import MAX_REQUEST_BYTES, Generator, shad256
    from lokey.fortuna.seedfile import SEED_FILE_SIZE, SeedFileStatus

_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "MAX_EVENT_BYTES",
            "MAX_SOURCE",
            "MIN_DIRECT_SEED_BYTES",
            "MIN_POOL_SIZE",
            "NUM_POOLS",
            "RESEED_INTERVAL_S",
            "Fortuna",
            "Pool",
            "which_pools",
        ),
        "accumulator",
    ),
    **dict.fromkeys(("SeedRejectReason", "check_seed", "shannon_entropy"), "gate"),
    **dict.fromkeys(("MAX_REQUEST_BYTES", "Generator", "shad256"), "generator"),
    **dict.fromkeys(("SEED_FILE_SIZE", "SeedFileStatus"), "seedfile"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_SOURCE",
    "MIN_DIRECT_SEED_BYTES",
    "MIN_POOL_SIZE",
    "NUM_POOLS",
    "RESEED_INTERVAL_S",
    "SEED_FILE_SIZE",
    "Fortuna",
    "FortunaError",
    "FortunaInputError",
    "Generator",
    "NotSeededError",
    "Pool",
    "SeedFileError",
    "SeedFileStatus",
    "SeedQualityError",
    "SeedRejectReason",
    "check_seed",
    "shad256",
    "shannon_entropy",
    "which_pools",
]

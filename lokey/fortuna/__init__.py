"""Fortuna (spec/fortuna.md): generator, accumulator with seed file, and the seed-quality gate.

Pure cores with the clock injected: :class:`Generator` (§2), :class:`Fortuna` (§§3-5, its only
I/O the optional seed file), :func:`check_seed` (§7). Fork safety for every live instance is
the one piece of process-global state (:mod:`lokey.fortuna._fork`). Errors come from
:mod:`lokey.errors` and are re-exported here.
"""

from lokey.errors import (
    FortunaError,
    FortunaInputError,
    NotSeededError,
    SeedFileError,
    SeedQualityError,
)
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

"""The API's queue store (service-api.md §1.2, §1.6, §5; design.md "No byte twice").

Two queues (``trng``, ``fortuna``) of items consumed at byte granularity, with persistent
counters, configuration and usage statistics. :class:`LmdbStore` keeps them in one LMDB file
and commits every consumption before returning its bytes; :class:`MemoryStore`
(``DB_IMPLEMENTATION=channel``) has the same semantics in process memory. Both satisfy
:class:`QueueStore`; :func:`open_store` picks one. :class:`~lokey.store.redis_store.RedisStore`
(``STORE_URL=redis://...``) keeps the same queues on a Redis server that any number of API
instances share; :func:`open_store_url` opens whichever ``STORE_URL`` names.
"""

from __future__ import annotations

from lokey.store.base import (
    DEFAULT_CAPACITY,
    MAX_CAPACITY,
    MIN_CAPACITY,
    SOURCES,
    DatabaseInfo,
    QueueStats,
    QueueStore,
    Source,
    Usage,
    UsageBucket,
)
from lokey.store.factory import open_store, open_store_url
from lokey.store.lmdb_store import LmdbStore
from lokey.store.memory import MemoryStore
from lokey.store.paths import resolve_db_path
from lokey.store.url import StoreUrl, parse_store_url

__all__ = [
    "DEFAULT_CAPACITY",
    "MAX_CAPACITY",
    "MIN_CAPACITY",
    "SOURCES",
    "DatabaseInfo",
    "LmdbStore",
    "MemoryStore",
    "QueueStats",
    "QueueStore",
    "Source",
    "StoreUrl",
    "Usage",
    "UsageBucket",
    "open_store",
    "open_store_url",
    "parse_store_url",
    "resolve_db_path",
]

"""``open_store``: the store ``DB_IMPLEMENTATION`` asks for (service-api.md §5, §6.1), and
``open_store_url``: the one ``STORE_URL`` names (issue 11). The Redis store's module (and the
Redis client) is imported only when a Redis URL is opened."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from lokey.store.base import DEFAULT_CAPACITY, QueueStore
from lokey.store.lmdb_store import LmdbStore
from lokey.store.memory import MemoryStore
from lokey.store.paths import resolve_db_path
from lokey.store.url import StoreUrl

__all__ = ["open_store", "open_store_url"]


def open_store(
    kind: Literal["lmdb", "channel"],
    path: Path | None,
    *,
    sync: bool = True,
    default_capacity: int = DEFAULT_CAPACITY,
    now: Callable[[], float] = time.time,
) -> QueueStore:
    """``"lmdb"``: an :class:`LmdbStore` at :func:`resolve_db_path` of ``path``;
    ``"channel"``: a :class:`MemoryStore` (``path`` and ``sync`` are not used)."""
    if kind == "channel":
        return MemoryStore(default_capacity=default_capacity, now=now)
    if kind == "lmdb":
        if path is None:
            raise ValueError("the LMDB store needs a path")
        return LmdbStore(
            resolve_db_path(path), sync=sync, default_capacity=default_capacity, now=now
        )
    raise ValueError(f"kind must be 'lmdb' or 'channel', got {kind!r}")


def open_store_url(
    url: StoreUrl,
    *,
    sync: bool = True,
    default_capacity: int = DEFAULT_CAPACITY,
    now: Callable[[], float] = time.time,
) -> QueueStore:
    """The store ``url`` names; ``sync`` applies to LMDB only (Redis's durability is the
    server's ``appendfsync``, see :mod:`lokey.store.redis_store`)."""
    if url.kind == "memory":
        return open_store("channel", None, default_capacity=default_capacity, now=now)
    if url.kind == "lmdb":
        return open_store("lmdb", url.path, sync=sync, default_capacity=default_capacity, now=now)
    from lokey.store.redis_store import RedisStore  # noqa: PLC0415 - only Redis users load it

    assert url.redis_url is not None
    return RedisStore(url.redis_url, prefix=url.prefix, default_capacity=default_capacity, now=now)

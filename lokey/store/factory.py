"""``open_store``: the store ``DB_IMPLEMENTATION`` asks for (service-api.md §5, §6.1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from lokey.store.base import DEFAULT_CAPACITY, QueueStore
from lokey.store.lmdb_store import LmdbStore
from lokey.store.memory import MemoryStore
from lokey.store.paths import resolve_db_path

__all__ = ["open_store"]


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

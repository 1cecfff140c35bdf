"""``STORE_URL``: which queue store the API opens, as one URL (issue 11).

* ``lmdb:///data/api.db`` (or ``lmdb://relative/path``): the embedded LMDB store at that path;
  a directory gets ``database.db`` appended (:func:`~lokey.store.paths.resolve_db_path`).
* ``memory://``: the in-memory store (the reference's ``DB_IMPLEMENTATION=channel``).
* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
  ``unix:///path/to/redis.sock[?db=N]``: a Redis server shared by any number of API instances.
  ``?prefix=NAME`` (default ``lokey``) namespaces the keys, so several LoKey deployments can
  share one server.

Parsed with the standard library only, so a bad URL fails at start-up with a message naming
the problem, and the Redis client is imported only by a service that uses Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_REDIS_PREFIX",
    "REDIS_SCHEMES",
    "StoreUrl",
    "check_redis_prefix",
    "parse_store_url",
]

StoreKind = Literal["lmdb", "memory", "redis"]
REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
DEFAULT_REDIS_PREFIX: Final = "lokey"
# Redis's default configuration has 16 databases (redis.conf "databases 16"); a server can be
# configured with more, so only the form is checked here and the server judges the number.
_DB: Final = re.compile(r"[0-9]{1,5}")
_PREFIX: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_EXAMPLES: Final = "lmdb:///data/api.db, memory:// or redis://host:6379/0"


@dataclass(frozen=True)
class StoreUrl:
    """A parsed ``STORE_URL``. ``redis_url`` is what the Redis client connects to (without
    LoKey's own ``prefix`` parameter); :attr:`display` never shows a password."""

    kind: StoreKind
    path: Path | None = None
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    prefix: str = DEFAULT_REDIS_PREFIX

    @property
    def display(self) -> str:
        """The URL as logs and ``/api/v1/status`` show it: any password replaced by ``***``."""
        if self.kind == "lmdb":
            return f"lmdb://{self.path}"
        if self.kind == "memory":
            return "memory://"
        assert self.redis_url is not None
        if self.redis_url.startswith("unix://"):
            return self.redis_url  # a socket path holds no password
        return _redact(urlsplit(self.redis_url))


def parse_store_url(text: str) -> StoreUrl:
    """``text`` as a :class:`StoreUrl`; ValueError naming what is wrong."""
    value = text.strip()
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(f"must be a URL such as {_EXAMPLES}")
    scheme = scheme.lower()
    if scheme == "lmdb":
        if not rest or "?" in rest or "#" in rest:
            raise ValueError(
                "lmdb:// needs a path and nothing else, such as lmdb:///data/api.db "
                "(three slashes for an absolute path)"
            )
        return StoreUrl("lmdb", path=Path(rest))
    if scheme == "memory":
        if rest:
            raise ValueError("memory:// takes nothing after the scheme")
        return StoreUrl("memory")
    if scheme in REDIS_SCHEMES:
        return _parse_redis(value)
    raise ValueError(f"unknown store scheme {scheme!r}: use {_EXAMPLES}")


def _parse_redis(value: str) -> StoreUrl:
    # Credentials first, and never quoted in a message: a password holding "/", "?" or "#"
    # would otherwise end the authority early and reach the port, path or query checks below.
    # unix:// takes no credentials (its authority must be empty, checked below), and an "@"
    # in a socket path is just a character.
    scheme, _, rest = value.partition("://")
    if scheme.lower() != "unix" and "@" in rest:
        userinfo = rest.rpartition("@")[0]
        if any(c in userinfo for c in "/?#"):
            raise ValueError(
                "the Redis URL's user or password holds / ? or # (percent-encode them:"
                " %2F %3F %23, and @ as %40), or an @ stands after the host"
            )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        raise ValueError("the Redis port must be a number from 1 to 65535") from None
    if parts.fragment:
        raise ValueError("a Redis URL takes no #fragment")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the Redis URL's query is not name=value pairs") from None
    params = dict(query)
    if len(params) != len(query):
        raise ValueError("a Redis URL parameter is given twice")
    unknown = sorted(set(params) - {"db", "prefix"})
    if unknown:
        raise ValueError(f"unknown Redis URL parameter {unknown[0]!r} (known: db, prefix)")
    prefix = check_redis_prefix(params.pop("prefix", DEFAULT_REDIS_PREFIX))
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError("unix:// needs an absolute socket path: unix:///run/redis.sock")
        db = params.get("db", "0")
    else:
        if not parts.hostname:
            raise ValueError("a Redis URL needs a host: redis://host:6379/0")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("the Redis port must be 1..65535")
        path_db = parts.path.strip("/")
        if path_db and "db" in params:
            raise ValueError("give the Redis database once: in the path or as ?db=, not both")
        db = path_db or params.get("db", "0")
    if _DB.fullmatch(db) is None:
        raise ValueError(f"the Redis database must be a number, got {db!r}")
    if parts.scheme == "unix":  # urlunsplit would drop the empty authority's "//"
        client = f"unix://{parts.path}?db={int(db)}"
    else:
        client = urlunsplit((parts.scheme, parts.netloc, f"/{int(db)}", "", ""))
    return StoreUrl("redis", redis_url=client, prefix=prefix)


def check_redis_prefix(prefix: object) -> str:
    """``prefix`` if it can name a Redis key namespace (no ``{`` or ``}``: it becomes a hash
    tag), else ValueError."""
    if not isinstance(prefix, str) or _PREFIX.fullmatch(prefix) is None:
        raise ValueError("prefix must be 1..64 letters, digits or _ . : -")
    return prefix


def _redact(parts: SplitResult) -> str:
    if parts.password is None:
        return parts.geturl()
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))

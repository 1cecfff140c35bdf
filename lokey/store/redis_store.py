"""The Redis queue store (issue 11): the API's queues on a Redis server that any number of API
processes share (``STORE_URL=redis://...``).

Same semantics and the same counters as :class:`~lokey.store.lmdb_store.LmdbStore` and
:class:`~lokey.store.memory.MemoryStore`: :mod:`lokey.store.redis_scripts` runs
:mod:`lokey.store.queue`'s algorithms as Lua scripts inside Redis.

**Keys.** Every key starts with the hash tag ``{prefix}`` (default ``{lokey}``), so a Redis
Cluster keeps them all in one slot, which a script touching several keys needs:

* ``{prefix}:format``: the layout version; a store refuses a layout it does not know.
* ``{prefix}:<source>:items``: a LIST of the queue's items, oldest first.
* ``{prefix}:<source>:meta``: a HASH of :class:`~lokey.store.queue.QueueMeta`'s fields.
* ``{prefix}:<source>:usage``: a HASH: ``bytes``, ``requests`` and, per active hour (at most
  :data:`~lokey.store.usage.RECENT_HOURS`), ``b:<start>`` and ``r:<start>``.
* ``{prefix}:config``: a HASH, key -> JSON text.
* ``{prefix}:lease:<name>``: a lease's holder, with the lease's expiry as the key's TTL.

**Atomicity.** Every operation that reads and then writes (push, take with its usage
accounting, a resize step, count_poll, lease acquire/renew and release) is one Lua script:
Redis runs a script with no other command in between, so two API instances taking at once
get disjoint bytes. A resize drops at most :data:`~lokey.store.queue.DROP_CHUNK` items per
script call and loops from Python, so no single script holds the server for long.

**No retries.** The client is configured to retry nothing (``Retry(NoBackoff(), 0)``, no
``retry_on_error``, no health-check PING before commands, RESP2 so that none of redis-py 8's
RESP3 maintenance-notification handling reconnects on its own). A command whose reply is lost
may still have run: a push retried after a lost reply would store the same TRNG samples twice
and serve them twice, and a take retried after one would consume more bytes than anyone
received. A lost reply is a :class:`StoreError`; the caller decides. redis-py's Script object
answers NOSCRIPT (a server that has not cached the script, after a restart) by loading the
script and running it once: the server refused the first call without running it.

**Threads.** The client's connection pool gives each concurrent call its own connection, so
the store is thread-safe. :meth:`RedisStore.healthy` pings on its own client and a probe
thread, and answers within :data:`~lokey.store.writer.HEALTH_TIMEOUT` whatever the server does.

**Durability.** "No byte twice" across a Redis restart needs either ``appendonly yes`` with
``appendfsync always`` (every script's writes are on disk before its reply, like
``DB_SYNC=true``), or no persistence at all (a restart empties the queues: bytes are lost but
none is served twice). RDB snapshots alone (Redis's default ``save``) or ``appendfsync
everysec`` can roll a restart back to before bytes were consumed, and they would be served
again; asynchronous replication can do the same on a failover to a replica that had not yet
received the latest takes. Opening the store checks the server's configuration (``CONFIG
GET``) and logs a warning on the ``lokey.store`` logger when a restart could roll consumption
back, or when the check is refused (managed Redis services often disable CONFIG).

Passwords never appear in messages or logs: the store names its server by
:attr:`~lokey.store.url.StoreUrl.display`.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from lokey.errors import NotEnoughDataError, StoreClosedError, StoreError
from lokey.store import queue, redis_scripts
from lokey.store.base import (
    DEFAULT_CAPACITY,
    MIN_LEASE_S,
    SOURCES,
    DatabaseInfo,
    QueueStats,
    Source,
    Usage,
    UsageBucket,
    check_capacity,
    check_items,
    check_lease,
    check_polls,
    check_source,
    check_take,
    encode_config,
)
from lokey.store.url import check_redis_prefix, parse_store_url
from lokey.store.usage import HOUR
from lokey.store.writer import HEALTH_TIMEOUT

__all__ = ["LAYOUT_VERSION", "RedisStore", "make_client", "restart_can_roll_back"]

# Bumped when the key layout changes; a store refuses a layout it does not know.
LAYOUT_VERSION: Final = b"lokey-redis-1"

log = logging.getLogger("lokey.store")
T = TypeVar("T")


def make_client(url: str, timeout_s: float) -> redis.Redis:
    """A client that never retries a command (see "No retries" in the module docstring)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=0,  # no PING before commands: a dead link fails the command itself
        decode_responses=False,
        # RESP2: redis-py 8 speaks RESP3 by default and then handles the server's maintenance
        # push notifications itself (reconnecting, changing timeouts); RESP2 has no pushes.
        protocol=2,
    )


class RedisStore:
    """Both queues on a Redis server shared by any number of API processes (module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lokey",
        default_capacity: int = DEFAULT_CAPACITY,
        now: Callable[[], float] = time.time,
        timeout_s: float = 5.0,
    ) -> None:
        capacity = check_capacity(default_capacity, "default_capacity")
        check_redis_prefix(prefix)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise ValueError(f"timeout_s must be a number, got {timeout_s!r}")
        if not 0 < timeout_s <= 3600:
            raise ValueError(f"timeout_s must be above 0 and at most 3600 s, got {timeout_s!r}")
        parsed = parse_store_url(url)
        if parsed.kind != "redis" or parsed.redis_url is None:
            raise ValueError("RedisStore needs a redis://, rediss:// or unix:// URL")
        self._display = parsed.display
        self._prefix = prefix
        self._now = now
        self._closed = False
        self._close_lock = threading.Lock()
        tag = "{" + prefix + "}"
        self._format_key = f"{tag}:format"
        self._config_key = f"{tag}:config"
        self._lease_prefix = f"{tag}:lease:"
        self._items = {source: f"{tag}:{source}:items" for source in SOURCES}
        self._meta = {source: f"{tag}:{source}:meta" for source in SOURCES}
        self._usage = {source: f"{tag}:{source}:usage" for source in SOURCES}
        self._client = make_client(parsed.redis_url, float(timeout_s))
        # A health probe gets its own connections with a timeout it can afford to wait.
        self._health = make_client(parsed.redis_url, min(float(timeout_s), HEALTH_TIMEOUT))
        self._prober = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lokey-health")
        self._probe: concurrent.futures.Future[bool] | None = None
        self._probe_lock = threading.Lock()
        self._capacity = capacity
        self._init_script = self._client.register_script(redis_scripts.INIT)
        self._recreate_script = self._client.register_script(redis_scripts.RECREATE)
        self._push_script = self._client.register_script(redis_scripts.PUSH)
        self._take_script = self._client.register_script(redis_scripts.TAKE)
        self._resize_script = self._client.register_script(redis_scripts.RESIZE)
        self._lease_script = self._client.register_script(redis_scripts.LEASE)
        self._release_script = self._client.register_script(redis_scripts.RELEASE)
        try:
            self._call(self._client.ping, doing="connect to")
            found = self._run(
                self._init_script,
                [self._format_key, *self._meta.values()],
                [LAYOUT_VERSION, capacity],
                doing="set up",
            )
            if int(found[0]) != 0:
                raise StoreError(
                    f"{self._where} holds queue store layout {found[1]!r};"
                    f" this LoKey reads {LAYOUT_VERSION!r}"
                )
            self._check_durability()
        except BaseException:
            self._client.close()
            self._health.close()
            self._prober.shutdown(wait=False)
            raise

    # -- the QueueStore protocol ------------------------------------------------------------

    def push(self, source: Source, items: Sequence[bytes], *, polls: int = 0) -> int:
        src = check_source(source)
        data = check_items(items)
        count = check_polls(polls)
        dropped = self._run_queue(
            self._push_script,
            [self._items[src], self._meta[src]],
            [count, queue.DROP_CHUNK, redis_scripts.DROP_ROUND, *data],
        )
        return int(dropped)

    def take(
        self,
        source: Source,
        n: int,
        *,
        skip: int = 0,
        consume: bool = True,
        partial: bool = False,
        account: bool = True,
    ) -> bytes:
        src = check_source(source)
        check_take(n, skip)
        self._check_open()
        # Read before the script, as MemoryStore does: a failing clock costs nothing. The hour
        # is UsageRecord.add's, computed here so a test's clock decides it.
        hour = math.floor(self._now() / HOUR) * HOUR if account else 0
        status, value = self._run_queue(
            self._take_script,
            [self._items[src], self._meta[src], self._usage[src]],
            [
                n,
                skip,
                int(consume),
                int(partial),
                int(account),
                hour,
                queue.MIN_ROUND,
                queue.SKIP_ROUND,
            ],
        )
        if int(status) != 0:
            raise NotEnoughDataError(src, requested=skip + n, available=int(value))
        result: bytes = value
        return result

    def resize(self, source: Source, capacity: int) -> int:
        src = check_source(source)
        size = check_capacity(capacity)
        keys = [self._items[src], self._meta[src]]
        # One bounded drop per script (queue.trim): the server serves others in between.
        dropped, pending = self._run_queue(
            self._resize_script, keys, [size, queue.DROP_CHUNK, redis_scripts.DROP_ROUND]
        )
        total = int(dropped)
        while int(pending):
            dropped, pending = self._run_queue(
                self._resize_script, keys, ["", queue.DROP_CHUNK, redis_scripts.DROP_ROUND]
            )
            total += int(dropped)
        return total

    def count_poll(self, source: Source) -> None:
        self.push(source, (), polls=1)

    def stats(self, source: Source) -> QueueStats:
        src = check_source(source)

        def read() -> list[bytes | None]:
            values: list[bytes | None] = self._call(
                lambda: self._client.hmget(self._meta[src], list(redis_scripts.META_FIELDS))
            )
            if any(value is None for value in values):
                problem = f"{self._where}: the {src} queue's counters are missing"
                raise _CountersMissingError(problem)
            return values

        values = self._after_a_lost_store(read)
        meta = queue.QueueMeta(*(int(value or 0) for value in values))
        return meta.stats()

    def usage(self, source: Source) -> Usage:
        src = check_source(source)
        record: dict[bytes, bytes] = self._call(lambda: self._client.hgetall(self._usage[src]))
        buckets: dict[int, list[int]] = {}
        for field, value in record.items():
            kind, _, start = field.partition(b":")
            if kind in (b"b", b"r") and start:
                buckets.setdefault(int(start), [0, 0])[kind == b"r"] = int(value)
        recent = tuple(UsageBucket(float(s), b, r) for s, (b, r) in sorted(buckets.items()))
        return Usage(
            bytes=int(record.get(b"bytes", 0)),
            requests=int(record.get(b"requests", 0)),
            recent=recent,
        )

    def config(self) -> dict[str, object]:
        values: dict[bytes, bytes] = self._call(lambda: self._client.hgetall(self._config_key))
        return {key.decode(): json.loads(value) for key, value in values.items()}

    def update_config(self, values: Mapping[str, object]) -> None:
        encoded = {key: json.dumps(value) for key, value in encode_config(values).items()}
        if not encoded:
            self._check_open()
            return
        # One HSET: the keys change together, and it reads nothing, so it needs no script.
        self._call(lambda: self._client.hset(self._config_key, mapping=encoded))  # type: ignore[arg-type]

    def database(self) -> DatabaseInfo:
        keys = [
            self._format_key,
            self._config_key,
            *self._items.values(),
            *self._meta.values(),
            *self._usage.values(),
        ]

        def measure() -> int:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key)
            try:
                sizes = pipe.execute()
            except redis.ResponseError:  # MEMORY refused (renamed or ACL'd away)
                return 0
            return sum(int(size) for size in sizes if size is not None)

        size = self._call(measure)
        return DatabaseInfo(
            path=f"{self._display} (prefix {self._prefix})", size_bytes=size, in_memory=False
        )

    def healthy(self) -> bool:
        """The server answered PING within HEALTH_TIMEOUT seconds; never blocks longer.

        The PING runs on a probe thread: a fresh connection makes several round trips (AUTH,
        SELECT, CLIENT SETINFO), each allowed the socket timeout, so only a deadline on the
        answer bounds the wait. A probe still running is waited for, not doubled."""
        if self._closed:
            return False
        with self._probe_lock:
            probe = self._probe
            if probe is None or probe.done():
                try:
                    probe = self._probe = self._prober.submit(self._ping)
                except RuntimeError:  # close() shut the prober down meanwhile
                    return False
        try:
            return probe.result(timeout=HEALTH_TIMEOUT)
        except concurrent.futures.TimeoutError:
            return False

    def _ping(self) -> bool:
        """The server answers and still holds the store (after a restart without persistence
        the format key is gone until the next queue operation recreates it)."""
        try:
            return bool(self._call(self._health.ping)) and bool(
                self._call(lambda: self._health.exists(self._format_key))
            )
        except StoreError:  # closed, unreachable, or refused
            return False
        except Exception:  # a reply redis-py cannot parse: a probe answers, it never raises
            log.debug("health probe of %s failed", self._where, exc_info=True)
            return False

    @property
    def shared(self) -> bool:
        return True  # any number of API processes may open the same prefix

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        check_lease(name, holder, ttl_s)
        ttl_ms = max(1, round(ttl_s * 1000))
        granted = self._run(self._lease_script, [self._lease_prefix + name], [holder, ttl_ms])
        return bool(int(granted))

    def release_lease(self, name: str, holder: str) -> None:
        check_lease(name, holder, MIN_LEASE_S)
        self._run(self._release_script, [self._lease_prefix + name], [holder])

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._prober.shutdown(wait=False)  # a probe in flight fails fast once _health closes
        self._client.close()
        self._health.close()

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"the Redis queue store at {self._display} (prefix {self._prefix})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the queue store is closed")

    def _run(self, script: Script, keys: list[str], args: list[Any], *, doing: str = "use") -> Any:
        return self._call(lambda: script(keys=keys, args=args), doing=doing)

    def _run_queue(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return self._after_a_lost_store(lambda: self._run(script, keys, args))

    def _after_a_lost_store(self, operation: Callable[[], T]) -> T:
        """``operation()``; if the server answered that a queue's counters are gone and the
        format key is gone too (the server lost the whole store: a restart without
        persistence, a flush), empty queues are created and it runs once more.

        Only that answer counts: the script checked before its first write, so it wrote
        nothing and running it again does nothing twice. Any other failure (a timeout, a
        dropped connection) is raised as it is, even if the store is gone meanwhile: the
        script may have run, and a push run twice would store its samples twice. Counters
        gone while the format key stays are a real disagreement, raised as it is too."""
        try:
            return operation()
        except _CountersMissingError as failure:
            try:
                lost = not self._call(lambda: self._client.exists(self._format_key))
            except StoreError:
                raise failure from None
            if not lost:
                raise
        recreated = self._run(
            self._recreate_script,
            [
                self._format_key,
                *self._meta.values(),
                *self._items.values(),
                *self._usage.values(),
            ],
            [LAYOUT_VERSION, self._capacity],
            doing="recreate",
        )
        if int(recreated):
            log.warning(
                "%s had lost the queue store (Redis restarted without persistence, or was"
                " flushed): empty queues with capacity %d were created, counters start at 0",
                self._where,
                self._capacity,
            )
        return operation()

    def _call(self, call: Callable[[], Any], *, doing: str = "use") -> Any:
        """The one seam to the server: redis-py's errors and OSError become StoreError.

        Typed Any: redis-py annotates replies as a union of what any client configuration
        could return; this client returns bytes (``decode_responses=False``)."""
        self._check_open()
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            if self._closed:  # closed while the call was on its way: the caller sees why
                raise StoreClosedError("the queue store is closed") from exc
            if isinstance(exc, redis.ResponseError) and str(exc).startswith(
                redis_scripts.MISSING_PREFIX
            ):
                raise _CountersMissingError(f"cannot {doing} {self._where}: {exc}") from exc
            raise StoreError(f"cannot {doing} {self._where}: {exc}") from exc

    def _check_durability(self) -> None:
        """Warn (once, at open) when a server restart could serve consumed bytes again."""

        def read() -> dict[str, str] | redis.ResponseError:
            found: dict[str, str] = {}
            try:
                for name in ("save", "appendonly", "appendfsync", "maxmemory-policy"):
                    for key, value in self._client.config_get(name).items():
                        found[_text(key)] = _text(value)
            except redis.ResponseError as exc:  # CONFIG renamed or forbidden: managed Redis
                return exc
            return found

        config = self._call(read, doing="check")
        if isinstance(config, redis.ResponseError):
            log.warning(
                "could not check the persistence of %s (CONFIG GET refused: %s): no byte is"
                " served twice across a Redis restart only with appendonly yes and appendfsync"
                " always, or with no persistence at all",
                self._where,
                config,
            )
            return
        policy = config.get("maxmemory-policy", "noeviction")
        if policy.startswith("allkeys-"):
            log.warning(
                "%s may evict any key when full (maxmemory-policy %s): an evicted queue key"
                " loses its bytes and breaks the store; set maxmemory-policy noeviction",
                self._where,
                policy,
            )
        if not restart_can_roll_back(config):
            return
        log.warning(
            "%s persists with save=%r appendonly=%s appendfsync=%s: a Redis restart can roll"
            " the queues back to before bytes were consumed, and they would be served again"
            " (so can a failover to an asynchronous replica); set appendonly yes with"
            " appendfsync always, or turn persistence off",
            self._where,
            config.get("save", ""),
            config.get("appendonly", "?"),
            config.get("appendfsync", "?"),
        )

    def __repr__(self) -> str:
        return f"RedisStore({self._display!r}, prefix={self._prefix!r})"


class _CountersMissingError(StoreError):
    """The server answered that a queue's counters are gone (nothing was written)."""


def restart_can_roll_back(config: Mapping[str, str]) -> bool:
    """Whether a Redis with these ``CONFIG GET`` values (``save``, ``appendonly``,
    ``appendfsync``) can restart at a state from before consumptions it acknowledged."""
    aof = config.get("appendonly") == "yes"
    if aof:
        return config.get("appendfsync") != "always"
    # no persistence at all: a restart empties the queues, nothing is served twice
    return bool(config.get("save", "").strip())


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""RedisStore specifics (issue 11): several API instances on one prefix, leases, a server that
is down or gone, the layout version, no retries, the durability warning, STORE_URL parsing and
open_store_url. The QueueStore contract itself runs against Redis in tests/test_store_*.py.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lokey.errors import NotEnoughDataError, StoreClosedError, StoreError
from lokey.store import (
    LmdbStore,
    MemoryStore,
    QueueStore,
    StoreUrl,
    open_store_url,
    parse_store_url,
    queue,
)
from lokey.store import redis_store as redis_store_module
from lokey.store.redis_store import LAYOUT_VERSION, RedisStore, make_client
from lokey.store.writer import HEALTH_TIMEOUT
from tests.redis_helpers import new_prefix, redis_url, start_redis_server
from tests.store_helpers import FakeClock, run_threads, unique_items, windows


@pytest.fixture
def prefix() -> str:
    return new_prefix()


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain client on the test server, for what a test does behind the store's back."""
    client = redis.Redis.from_url(redis_url())
    yield client
    client.close()


@pytest.fixture
def stores(prefix: str) -> Iterator[list[RedisStore]]:
    """Two stores on one prefix: two API instances sharing one server."""
    opened = [RedisStore(redis_url(), prefix=prefix, default_capacity=1_000_000) for _ in "ab"]
    yield opened
    for store in opened:
        store.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- two instances on one prefix --------------------------------------------------------------


def test_two_instances_taking_concurrently_serve_every_byte_exactly_once(
    stores: list[RedisStore],
) -> None:
    items = unique_items(0, 4000)
    stores[0].push("trng", items[:1000])
    served: list[bytes] = []
    lock = threading.Lock()
    pushed_all = threading.Event()

    def pusher() -> None:  # pushes alternate between the instances
        rng = random.Random(1)
        position = 1000
        while position < len(items):
            count = rng.randint(1, 40)
            stores[position % 2].push("trng", items[position : position + count], polls=1)
            position += count
        pushed_all.set()

    def consumer(index: int) -> None:
        rng = random.Random(100 + index)
        store = stores[index % 2]
        while True:
            try:
                chunk = store.take("trng", rng.randint(16, 300), skip=rng.randint(0, 48))
            except NotEnoughDataError:
                if pushed_all.is_set():
                    return
                continue
            with lock:
                served.append(chunk)

    threads = [threading.Thread(target=pusher)]
    threads += [threading.Thread(target=consumer, args=(i,)) for i in range(8)]
    run_threads(threads)
    rest = stores[1].take("trng", 1 << 30, partial=True, account=False)
    seen: set[bytes] = set()
    for chunk in [*served, rest]:
        for window in windows(chunk):
            assert window not in seen  # no 16-byte block served twice
            seen.add(window)
    total = sum(map(len, served)) + len(rest)
    assert total == sum(map(len, items))
    assert len(served) > 100
    assert sorted(b"".join([*served, rest])) == sorted(b"".join(items))
    assert stores[0].stats("trng") == stores[1].stats("trng")
    assert stores[0].stats("trng").consumed_bytes == total


def test_capacity_and_drop_oldest_hold_across_instances(stores: list[RedisStore]) -> None:
    first, second = stores
    assert first.resize("fortuna", 10) == 0
    assert second.stats("fortuna").capacity == 10  # one queue, whoever set it
    first.push("fortuna", [bytes([i]) * 4 for i in range(6)])
    assert second.push("fortuna", [bytes([i]) * 4 for i in range(6, 12)]) == 2
    assert first.take("fortuna", 4, consume=False) == bytes([2]) * 4  # the two oldest went
    stats = first.stats("fortuna")
    assert (stats.items, stats.dropped, stats.dropped_bytes) == (10, 2, 8)
    first.push("fortuna", [b"new"])  # full: drops the oldest, whoever pushed it
    assert second.stats("fortuna").items == 10
    assert second.take("fortuna", 4) == bytes([3]) * 4


def test_every_key_carries_the_prefix_hash_tag(stores: list[RedisStore], prefix: str) -> None:
    store = stores[0]
    store.push("trng", [b"abc"])
    store.push("fortuna", [b"def"])
    store.take("trng", 1)
    store.take("fortuna", 1)
    store.update_config({"x": 1})
    store.lease("poller", "me", 5)
    client = store._client
    keys = sorted(key.decode() for key in client.scan_iter(match=f"*{prefix}*"))
    assert len(keys) == 9  # format, config, lease, and items/meta/usage per queue
    assert all(key.startswith("{" + prefix + "}:") for key in keys)
    assert {key.split(":", 1)[1] for key in keys} >= {"trng:items", "fortuna:meta", "config"}


def test_a_push_of_more_items_than_lua_can_unpack_at_once(prefix: str) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    try:
        items = [bytes([i % 256]) for i in range(20_000)]  # unpack() stops near 8,000
        assert store.push("trng", items) == 0
        assert store.stats("trng").items == 20_000
        assert store.take("trng", 20_000) == b"".join(items)
    finally:
        store.close()


# -- disagreement and errors ------------------------------------------------------------------


def test_items_missing_behind_the_counters_are_a_store_error_and_change_nothing(
    prefix: str, raw: redis.Redis
) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    try:
        store.push("trng", [bytes([i]) * 4 for i in range(10)])
        assert store.resize("trng", 10) == 0  # full now, nothing dropped
        raw.rpop("{" + prefix + "}:trng:items", 2)
        before = store.stats("trng")
        for skip in (0, 5):
            with pytest.raises(StoreError, match="disagree"):
                store.take("trng", 40 - skip, skip=skip)
            with pytest.raises(StoreError, match="disagree"):
                store.take("trng", 40 - skip, skip=skip, consume=False)
        with pytest.raises(StoreError, match="disagree"):
            store.push("trng", [b"x"] * 10)  # drops the ten: two are not there
        assert store.stats("trng") == before
        assert raw.llen("{" + prefix + "}:trng:items") == 8
    finally:
        store.close()


def test_a_redis_error_reaches_the_caller_as_a_store_error(prefix: str, raw: redis.Redis) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    try:
        raw.set("{" + prefix + "}:trng:items", b"not a list")
        store.push("fortuna", [b"ok"])
        with pytest.raises(StoreError) as caught:
            store.push("trng", [b"x"])
        assert not isinstance(caught.value, NotEnoughDataError)
        assert isinstance(caught.value.__cause__, redis.RedisError)
    finally:
        store.close()


def test_an_unsatisfiable_take_is_not_enough_data_with_the_queue_s_figures(prefix: str) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    try:
        store.push("trng", [b"abcd"])
        with pytest.raises(NotEnoughDataError) as caught:
            store.take("trng", 4, skip=1)
        assert (caught.value.source, caught.value.requested, caught.value.available) == (
            "trng",
            5,
            4,
        )
        assert store.take("trng", 4) == b"abcd"
    finally:
        store.close()


# -- leases -------------------------------------------------------------------------------------


def test_a_lease_is_exclusive_and_renewable_by_its_holder(stores: list[RedisStore]) -> None:
    first, second = stores
    assert first.shared
    assert second.shared
    assert first.lease("poller", "a", 30)
    assert not second.lease("poller", "b", 30)
    assert first.lease("poller", "a", 30)  # renewed
    assert second.lease("seeder", "b", 30)  # another name is another lease
    assert not first.lease("seeder", "a", 30)


def test_a_renewal_extends_the_lease(stores: list[RedisStore], raw: redis.Redis) -> None:
    first, _ = stores
    key = "{" + first._prefix + "}:lease:poller"
    assert first.lease("poller", "a", 1)
    raw.pexpire(key, 50)
    assert first.lease("poller", "a", 30)
    assert 29_000 < raw.pttl(key) <= 30_000


def test_an_expired_lease_is_taken_over(stores: list[RedisStore], raw: redis.Redis) -> None:
    first, second = stores
    key = "{" + first._prefix + "}:lease:poller"
    assert first.lease("poller", "a", 30)
    raw.pexpire(key, 1)
    deadline = time.monotonic() + 5
    while raw.exists(key):  # Redis expires the key on access once its time is up
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert second.lease("poller", "b", 30)
    assert not first.lease("poller", "a", 30)  # the old holder cannot renew it back
    raw.delete(key)
    assert first.lease("poller", "a", 30)


def test_release_lets_another_take_the_lease_at_once(stores: list[RedisStore]) -> None:
    first, second = stores
    assert first.lease("poller", "a", 30)
    second.release_lease("poller", "b")  # not its lease: nothing happens
    assert not second.lease("poller", "b", 30)
    first.release_lease("poller", "a")
    assert second.lease("poller", "b", 30)
    with pytest.raises(ValueError, match="ttl_s"):
        first.lease("poller", "a", 0.01)


# -- the server: down, dying, stopped -----------------------------------------------------------


def test_a_server_that_is_down_is_a_store_error_naming_the_url_without_its_password() -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(StoreError) as caught:
        RedisStore(f"redis://:hunter2@127.0.0.1:{port}/0", timeout_s=1.0)
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message
    assert "hunter2" not in message
    assert not isinstance(caught.value, StoreClosedError)


def test_healthy_is_false_soon_after_the_server_dies() -> None:
    server = start_redis_server()
    try:
        store = RedisStore(server.url, prefix=new_prefix())
        assert store.healthy()
        server.kill()
        started = time.monotonic()
        assert not store.healthy()
        assert time.monotonic() - started < HEALTH_TIMEOUT + 0.5
        with pytest.raises(StoreError):
            store.stats("trng")
        store.close()
    finally:
        server.kill()


def test_healthy_does_not_hang_on_a_server_that_stopped_answering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_store_module, "HEALTH_TIMEOUT", 0.3)
    server = start_redis_server()
    try:
        store = RedisStore(server.url, prefix=new_prefix(), timeout_s=0.5)
        assert store.healthy()
        server.pause()
        started = time.monotonic()
        assert not store.healthy()
        assert time.monotonic() - started < 1.0  # the health client's 0.3 s, not a hang
        with pytest.raises(StoreError, match=r"Timeout|timed out"):
            store.push("trng", [b"x"])
        server.resume()
        store.close()
    finally:
        server.resume()
        server.kill()


class _Tarpit:
    """A RESP server that answers every command correctly, each after ``delay`` seconds: slow
    enough that a fresh connection's handshake plus PING take several times ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                commands = [line for line in data.split(b"\r\n") if line.startswith(b"*")]
                time.sleep(self.delay)
                replies = [b"+PONG" if b"PING" in data else b"+OK" for _ in commands]
                conn.sendall(b"".join(reply + b"\r\n" for reply in replies))

    def close(self) -> None:
        self.listener.close()


def test_healthy_answers_within_the_timeout_however_slow_the_handshake(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """No single read times out, but a fresh connection's round trips add up past the limit."""
    monkeypatch.setattr(redis_store_module, "HEALTH_TIMEOUT", 0.3)
    tarpit = _Tarpit(delay=0.28)
    store = RedisStore(redis_url(), prefix=prefix)
    try:
        store._health.close()
        store._health = make_client(f"redis://127.0.0.1:{tarpit.port}/0", 0.3)
        started = time.monotonic()
        assert not store.healthy()
        assert time.monotonic() - started < 0.5  # the handshake and PING alone take 0.56 s
    finally:
        store.close()
        tarpit.close()


def test_calls_after_close_raise_store_closed_error(prefix: str) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    store.push("trng", [b"abc"])
    store.close()
    store.close()
    assert not store.healthy()
    calls = [
        lambda: store.push("trng", [b"x"]),
        lambda: store.take("trng", 1),
        lambda: store.resize("trng", 10),
        lambda: store.stats("trng"),
        lambda: store.update_config({}),
        lambda: store.lease("poller", "a", 5),
        lambda: store.release_lease("poller", "a"),
        store.database,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()
    reopened = RedisStore(redis_url(), prefix=prefix)
    try:
        assert reopened.take("trng", 3) == b"abc"  # close() loses nothing
    finally:
        reopened.close()


def test_an_unknown_layout_version_is_refused(prefix: str, raw: redis.Redis) -> None:
    raw.set("{" + prefix + "}:format", b"lokey-redis-0")
    with pytest.raises(StoreError, match="layout") as caught:
        RedisStore(redis_url(), prefix=prefix)
    assert LAYOUT_VERSION.decode() in str(caught.value)
    assert raw.exists("{" + prefix + "}:trng:meta") == 0  # refused before creating anything


def test_opening_keeps_existing_counters_and_capacity(prefix: str) -> None:
    first = RedisStore(redis_url(), prefix=prefix, default_capacity=20)
    first.push("trng", [b"abc"])
    second = RedisStore(redis_url(), prefix=prefix, default_capacity=99)
    try:
        assert second.stats("trng").capacity == 20
        assert second.stats("fortuna").capacity == 20
        assert second.stats("trng").items == 1
    finally:
        first.close()
        second.close()


def test_the_prefix_and_timeout_are_checked() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(redis_url(), prefix="a}b")
    with pytest.raises(ValueError, match="timeout_s"):
        RedisStore(redis_url(), timeout_s=0)
    with pytest.raises(ValueError, match="redis"):
        RedisStore("memory://")


# -- no retries ---------------------------------------------------------------------------------


class _Hangup:
    """A TCP server that reads one request per connection and hangs up without a reply: what a
    lost reply looks like to the client. Counts the connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)

    def close(self) -> None:
        self.listener.close()


def test_the_client_retries_nothing_after_a_lost_reply() -> None:
    server = _Hangup()
    try:
        client = make_client(f"redis://127.0.0.1:{server.port}/0", 2.0)
        with pytest.raises(redis.ConnectionError):
            client.rpush("k", "sample")
        assert server.connections == 1  # one attempt: the push is never sent again
        retry = client.connection_pool.connection_kwargs["retry"]
        assert retry.get_retries() == 0
        client.close()
        # The counterfactual: a client with retries (redis.Redis() defaults to ten) sends it again.
        retrying = redis.Redis(
            host="127.0.0.1", port=server.port, socket_timeout=2, retry=Retry(NoBackoff(), 3)
        )
        with pytest.raises(redis.ConnectionError):
            retrying.rpush("k", "sample")
        assert server.connections == 1 + 4
        retrying.close()
    finally:
        server.close()


def test_the_store_s_clients_retry_nothing(prefix: str) -> None:
    store = RedisStore(redis_url(), prefix=prefix, timeout_s=1.5)
    try:
        for client in (store._client, store._health):
            kwargs = client.connection_pool.connection_kwargs
            assert kwargs["retry"].get_retries() == 0
            assert kwargs["retry_on_error"] == []
            assert kwargs.get("health_check_interval", 0) == 0
            assert kwargs["protocol"] == 2  # no RESP3 maintenance handling
        assert store._client.connection_pool.connection_kwargs["socket_timeout"] == 1.5
        assert store._client.connection_pool.connection_kwargs["socket_connect_timeout"] == 1.5
    finally:
        store.close()


# -- durability warning --------------------------------------------------------------------------


def _open_and_warnings(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lokey.store"):
        RedisStore(url, prefix=new_prefix()).close()
    return [r.getMessage() for r in caplog.records if r.name == "lokey.store"]


def test_the_durability_warning_appears_for_the_default_save(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis_server("--save", "3600 1 300 100 60 10000")  # redis.conf's default
    try:
        warnings = _open_and_warnings(server.url, caplog)
        assert len(warnings) == 1
        assert "served again" in warnings[0]
        assert "appendfsync always" in warnings[0]
        client = redis.Redis.from_url(server.url)
        client.config_set("appendonly", "yes")  # appendfsync everysec, the default
        assert len(_open_and_warnings(server.url, caplog)) == 1
        client.close()
    finally:
        server.kill()


def test_no_durability_warning_for_appendfsync_always_or_no_persistence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis_server("--appendonly", "yes", "--appendfsync", "always")
    try:
        assert _open_and_warnings(server.url, caplog) == []
    finally:
        server.kill()
    assert _open_and_warnings(redis_url(), caplog) == []  # --save "" --appendonly no


def test_a_managed_server_refusing_config_and_memory_is_logged_and_sized_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis_server("--rename-command", "CONFIG", "", "--rename-command", "MEMORY", "")
    try:
        warnings = _open_and_warnings(server.url, caplog)
        assert len(warnings) == 1
        assert "could not check" in warnings[0]
        store = RedisStore(server.url, prefix=new_prefix())
        store.push("trng", [b"abc"])
        assert store.database().size_bytes == 0  # MEMORY USAGE refused: unknown, not an error
        store.close()
    finally:
        server.kill()


def test_the_password_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    server = start_redis_server("--requirepass", "hunter2", "--save", "60 1")
    try:
        url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
        warnings = _open_and_warnings(url, caplog)
        assert len(warnings) == 1
        assert f"redis://:***@127.0.0.1:{server.port}/0" in warnings[0]
        assert "hunter2" not in caplog.text
        with pytest.raises(StoreError) as caught:
            RedisStore(f"redis://:wrong-pass@127.0.0.1:{server.port}/0")
        assert "wrong-pass" not in str(caught.value)
    finally:
        server.kill()


# -- STORE_URL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "display"),
    [
        ("memory://", StoreUrl("memory"), "memory://"),
        ("lmdb:///data/api.db", StoreUrl("lmdb", path=Path("/data/api.db")), "lmdb:///data/api.db"),
        ("lmdb://rel/api.db", StoreUrl("lmdb", path=Path("rel/api.db")), "lmdb://rel/api.db"),
        ("redis://h", StoreUrl("redis", redis_url="redis://h/0"), "redis://h/0"),
        (" REDIS://h:6380?db=4 ", StoreUrl("redis", redis_url="redis://h:6380/4"), None),
        (
            "redis://:pw@h:6380/2?prefix=app.1",
            StoreUrl("redis", redis_url="redis://:pw@h:6380/2", prefix="app.1"),
            "redis://:***@h:6380/2",
        ),
        (
            "rediss://user:pw@h/1",
            StoreUrl("redis", redis_url="rediss://user:pw@h/1"),
            "rediss://user:***@h/1",
        ),
        (
            "unix:///run/redis.sock?db=3",
            StoreUrl("redis", redis_url="unix:///run/redis.sock?db=3"),
            "unix:///run/redis.sock?db=3",
        ),
    ],
)
def test_parse_store_url_accepts(text: str, expected: StoreUrl, display: str | None) -> None:
    parsed = parse_store_url(text)
    assert parsed == expected
    if display is not None:
        assert parsed.display == display
    assert "pw" not in parsed.display


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/data/api.db", "must be a URL such as"),
        ("lmdb://", "lmdb:// needs a path"),
        ("lmdb:///a?b", "lmdb:// needs a path and nothing else"),
        ("memory://x", "memory:// takes nothing"),
        ("ftp://h", "unknown store scheme 'ftp'"),
        ("redis://h:port", "the Redis port must be a number from 1 to 65535"),
        ("redis://h:70000", "the Redis port must be a number from 1 to 65535"),
        ("redis://h:0/0", "the Redis port must be 1..65535"),
        ("redis://:a/b@h/0", "percent-encode them"),
        ("redis://h/0#f", "takes no #fragment"),
        ("redis://h/0?x", "not name=value pairs"),
        ("redis://h/0?prefix=a&prefix=b", "given twice"),
        ("redis://h/0?foo=1", "unknown Redis URL parameter 'foo'"),
        ("redis://h/0?prefix=a{b}", "prefix must be"),
        ("redis://h/0?prefix=", "prefix must be"),
        ("unix://host/x", "unix:// needs an absolute socket path"),
        ("redis:///0", "needs a host"),
        ("redis://h/1?db=2", "give the Redis database once"),
        ("redis://h/abc", "must be a number, got 'abc'"),
        ("unix:///s.sock?db=x", "must be a number"),
    ],
)
def test_parse_store_url_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        parse_store_url(text)


def test_parse_store_url_errors_never_show_the_password() -> None:
    for text in (
        "redis://:s3cret@h:port/0",
        "redis://u:s3cret@h/0?foo=1",
        "redis://:s3cret@/0",
        # "/", "?" or "#" in a password (base64 has "/") would end the authority early
        "redis://:Zm9v/s3cret+dG9r=@redis.lan:6379/0",
        "redis://:s3cret?x=1@h/0",
        "redis://:s3c#ret@h/0",
    ):
        with pytest.raises(ValueError, match="Redis") as caught:
            parse_store_url(text)
        assert "s3cret" not in str(caught.value)


def test_open_store_url_opens_each_kind(tmp_path: Path, prefix: str) -> None:
    clock = FakeClock()
    opened: list[QueueStore] = []
    try:
        memory = open_store_url(parse_store_url("memory://"), default_capacity=11, now=clock)
        opened.append(memory)
        assert isinstance(memory, MemoryStore)
        assert not memory.shared
        lmdb_store = open_store_url(
            parse_store_url(f"lmdb://{tmp_path}"), sync=False, default_capacity=12
        )
        opened.append(lmdb_store)
        assert isinstance(lmdb_store, LmdbStore)
        assert lmdb_store.path == tmp_path / "database.db"
        url = f"{redis_url()}?prefix={prefix}"
        shared = open_store_url(parse_store_url(url), default_capacity=13, now=clock)
        opened.append(shared)
        assert isinstance(shared, RedisStore)
        assert shared.shared
        assert [s.stats("trng").capacity for s in opened] == [11, 12, 13]
        shared.push("trng", [b"abc"])
        shared.take("trng", 3)
        assert shared.usage("trng").recent[0].start == clock.now // 3600 * 3600
        assert shared.database().path == f"{redis_url()} (prefix {prefix})"
    finally:
        for store in opened:
            store.close()


def test_importing_the_store_package_does_not_import_redis() -> None:
    code = "import sys, lokey.store; print('redis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_resize_runs_one_bounded_script_per_chunk(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "DROP_CHUNK", 7)
    store = RedisStore(redis_url(), prefix=prefix, default_capacity=100)
    try:
        store.push("trng", [bytes([i]) * 3 for i in range(100)])
        calls: list[list[Any]] = []
        script = store._resize_script

        def counting(*, keys: list[str], args: list[Any]) -> object:
            calls.append(args)
            return script(keys=keys, args=args)

        monkeypatch.setattr(store, "_resize_script", counting)
        assert store.resize("trng", 50) == 50
        assert len(calls) == 8  # 7 x 7 + 1, each its own script call
        assert store.stats("trng").items == 50
    finally:
        store.close()


# -- a server that lost the store -------------------------------------------------------------


def test_after_a_restart_without_persistence_the_store_recreates_empty_queues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every instance keeps working once the server is back (nothing to serve twice: the
    queues are empty), and health says so only once the store is there again."""
    server = start_redis_server()
    port = server.port
    try:
        first, second = (RedisStore(server.url, prefix="p") for _ in "ab")
        first.push("trng", [b"x" * 32, b"y" * 32])
        server.kill()
        with pytest.raises(StoreError):
            first.take("trng", 32)  # the server is gone: nothing is served
        server = start_redis_server(port=port)  # back, empty
        assert not first.healthy()  # answering, but without the store
        with caplog.at_level(logging.WARNING, logger="lokey.store"):
            with pytest.raises(NotEnoughDataError):
                second.take("trng", 1)
            assert second.stats("trng").capacity == 1_000_000
            first.push("trng", [b"z" * 32])
        recreated = [r for r in caplog.records if "lost the queue store" in r.getMessage()]
        assert len(recreated) == 1  # of two instances noticing, one recreated
        assert second.take("trng", 32) == b"z" * 32
        assert first.healthy()
        first.close()
        second.close()
    finally:
        server.kill()


def test_leftover_items_without_their_counters_are_dropped_never_served(
    raw: redis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    store.push("fortuna", [b"old" * 11])
    tag = "{" + prefix + "}"
    raw.delete(f"{tag}:format", f"{tag}:fortuna:meta", f"{tag}:trng:meta")  # items survive
    with pytest.raises(NotEnoughDataError):
        store.take("fortuna", 1)
    assert raw.llen(f"{tag}:fortuna:items") == 0
    store.close()


def test_missing_counters_beside_the_format_key_are_an_error_not_a_fresh_start(
    raw: redis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url(), prefix=prefix)
    store.push("trng", [b"a" * 32])
    raw.delete("{" + prefix + "}:trng:meta")  # the store is there, one record is not
    with pytest.raises(StoreError, match="missing"):
        store.take("trng", 32)
    with pytest.raises(StoreError, match="missing"):
        store.stats("trng")
    assert raw.llen("{" + prefix + "}:trng:items") == 1  # nothing dropped behind the error
    store.close()


def test_a_push_whose_reply_is_lost_is_never_run_again_even_if_the_store_is_gone(
    raw: redis.Redis, prefix: str
) -> None:
    """The push ran (another instance served its bytes), then the store was lost, then the
    reply: running the push again on fresh queues would serve those bytes twice."""
    first, second = (RedisStore(redis_url(), prefix=prefix) for _ in "ab")
    real = first._push_script
    tag = "{" + prefix + "}"
    served: list[bytes] = []

    def ran_then_lost(keys: list[str], args: list[Any]) -> Any:
        reply = real(keys=keys, args=args)
        if served:
            return reply  # run again: its bytes are queued a second time
        served.append(second.take("trng", 8))
        raw.delete(*raw.keys(f"{tag}*"))  # the server restarted without persistence
        raise redis.TimeoutError("Timeout reading from socket")

    first._push_script = ran_then_lost  # type: ignore[assignment]
    with pytest.raises(StoreError, match="Timeout"):
        first.push("trng", [bytes(range(1, 9))])
    first._push_script = real
    with pytest.raises(NotEnoughDataError):  # the next operation recreates, empty
        served.append(second.take("trng", 8))
    assert served == [bytes(range(1, 9))]
    first.close()
    second.close()


def test_an_at_sign_in_a_socket_path_is_part_of_the_path() -> None:
    parsed = parse_store_url("unix:///run/redis@main/redis.sock")
    assert parsed.redis_url == "unix:///run/redis@main/redis.sock?db=0"


def test_a_server_that_may_evict_any_key_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis_server("--maxmemory-policy", "allkeys-lru")
    try:
        warnings = _open_and_warnings(server.url, caplog)
    finally:
        server.kill()
    assert len(warnings) == 1
    assert "maxmemory-policy noeviction" in warnings[0]

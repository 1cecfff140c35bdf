"""Several controllers and Fortunas, STORE_URL, leases and shared configuration (issue 11).

The peers are simulated by :class:`Fleet`, an ``httpx.MockTransport`` handler answering as any
number of controllers and Fortunas would (each controller hands out samples no other one ever
does), with switches to make one instance fail. The breakers and leases run on a
:class:`VirtualClock`. A shared store is :class:`SharedMemoryStore`: a MemoryStore whose
``shared`` is True and whose leases come from a :class:`LeaseTable` several stores (several
API instances) share, on the same virtual clock.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from lokey.controller.breaker import BreakerState
from lokey.errors import StoreError
from lokey.services.api import app as api_app
from lokey.services.api import leases as leases_module
from lokey.services.api.background import INSTANCE_BREAKER_OPEN_S
from lokey.services.api.leases import (
    FORTUNA_POLL,
    LEASE_SAFETY,
    LeaseKeeper,
    fortuna_seed_lease,
    holder_id,
    trng_poll_lease,
    virtio_seed_lease,
)
from lokey.services.apps import load_settings
from lokey.services.settings import ApiSettings, SettingsError
from lokey.store import MemoryStore
from sim.clock import VirtualClock
from tests.api_helpers import api_service, api_settings, running_api
from tests.service_helpers import TestClient

SAMPLE = 32
STARTUP_SAMPLES = 32  # SP 800-90B start-up: 1,024 bytes (health-tests.md §1)
BREAKER_THRESHOLD = 5  # lokey.controller.breaker's default
UNSEEDED = {"error": "Generator not seeded"}  # the Fortuna service's 503 (spec §3, LoKey)
CONTROLLERS = ("http://ctl-a.test:8081", "http://ctl-b.test:8081")
FORTUNAS = ("http://fortuna-a.test:8082", "http://fortuna-b.test:8082")
VIRTIO = "http://virtio.test:8083"


# -- simulated peers -------------------------------------------------------------------------------


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port}"


class Fleet:
    """Controllers and Fortunas by base URL; ``down[url]`` makes one answer that status (or
    refuse connections with 0); every request is recorded."""

    def __init__(self) -> None:
        self.down: dict[str, int] = {}
        self.unseeded: set[str] = set()
        self.requests: list[httpx.Request] = []
        self._streams = {url: random.Random(n) for n, url in enumerate(CONTROLLERS)}
        self.stuck: set[str] = set()  # controllers answering a stuck sample in every batch

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        base = _origin(request.url)
        status = self.down.get(base)
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        if status is not None:
            return httpx.Response(status, json={"error": "injected"}, headers={"Retry-After": "1"})
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "healthy"})
        if base in self._streams and path == "/generate":
            count = int(request.url.params["count"])
            samples = [self._streams[base].randbytes(SAMPLE) for _ in range(count)]
            if base in self.stuck:
                samples[-1] = bytes(SAMPLE)
            texts = [s.hex() for s in samples]
            return httpx.Response(200, json={"data": texts[0] if count == 1 else texts})
        if base in FORTUNAS and path == "/seed":
            self.unseeded.discard(base)
            return httpx.Response(200, json={"status": "reseeded"})
        if base in FORTUNAS and path == "/generate":
            if base in self.unseeded:
                return httpx.Response(503, json=UNSEEDED, headers={"Retry-After": "1"})
            return httpx.Response(200, content=bytes(int(request.url.params["size"])))
        if base == VIRTIO and path == "/config/queue":
            return httpx.Response(200, json={"queue_size": 100, "queue_current": 100})
        return httpx.Response(404, json={"error": "not simulated"})

    def sent(self, base: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if _origin(r.url) == base and r.url.path == path]

    def seeds(self, fortuna: str) -> list[bytes]:
        return [
            bytes.fromhex(seed)
            for request in self.sent(fortuna, "/seed")
            for seed in json.loads(request.content)["seeds"]
        ]


def fleet_env(**env: str) -> dict[str, str]:
    return {
        "CONTROLLER_ADDR": ",".join(CONTROLLERS),
        "FORTUNA_ADDR": ",".join(FORTUNAS),
        "VIRTIO_ADDR": VIRTIO,
        "DB_IMPLEMENTATION": "channel",
        **env,
    }


@contextmanager
def fleet_api(
    tmp_path: Path, fleet: Fleet, clock: VirtualClock, **env: str
) -> Iterator[TestClient]:
    settings = api_settings(tmp_path, **fleet_env(**env))
    with running_api(settings, transport=httpx.MockTransport(fleet), clock=clock) as client:
        yield client


def call(client: TestClient, job: Callable[[], Any]) -> Any:
    assert client.portal is not None
    return client.portal.call(job)


# -- a shared store -------------------------------------------------------------------------------


class LeaseTable:
    """Leases as a shared store keeps them: one holder per name until its ttl runs out.
    ``refuse`` makes every lease call answer False (a test's override)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.holders: dict[str, tuple[str, float]] = {}
        self.refuse = False
        self.calls: list[tuple[str, str]] = []

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        self.calls.append((name, holder))
        if self.refuse:
            return False
        now = self.clock.monotonic()
        current = self.holders.get(name)
        if current is None or current[0] == holder or current[1] <= now:
            self.holders[name] = (holder, now + ttl_s)
            return True
        return False

    def release(self, name: str, holder: str) -> None:
        if self.holders.get(name, ("", 0.0))[0] == holder:
            del self.holders[name]


class SharedMemoryStore:
    """A MemoryStore shared as Redis would be: ``shared`` True, leases from ``table``."""

    def __init__(self, inner: MemoryStore, table: LeaseTable) -> None:
        self._inner = inner
        self.table = table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def shared(self) -> bool:
        return True

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return self.table.lease(name, holder, ttl_s)

    def release_lease(self, name: str, holder: str) -> None:
        self.table.release(name, holder)

    def close(self) -> None:
        """The other instances still use the queues."""


@contextmanager
def opening(monkeypatch: pytest.MonkeyPatch, store: SharedMemoryStore) -> Iterator[None]:
    """The next API lifespans open ``store`` instead of what their settings name."""
    with monkeypatch.context() as patch:
        patch.setattr(api_app, "_open_store", lambda settings: store)
        yield


def renew(keeper: LeaseKeeper) -> None:
    asyncio.run(keeper.renew())


# -- settings -------------------------------------------------------------------------------------


def test_load_settings_resolves_only_an_lmdb_store_url(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    unusable = tmp_path / "file" / "api.db"  # under a regular file: no directory can exist
    env = {"DB_PATH": str(unusable), "STORE_URL": "memory://"}
    settings = load_settings("api", env)
    assert isinstance(settings, ApiSettings)
    assert settings.store.kind == "memory"  # DB_PATH is not even looked at
    with pytest.raises(StoreError, match="cannot create the directory"):
        load_settings("api", {"STORE_URL": f"lmdb://{unusable}"})
    fresh = tmp_path / "new" / "api.db"
    settings = load_settings("api", {"STORE_URL": f"lmdb://{fresh}"})
    assert isinstance(settings, ApiSettings)
    assert settings.store.path == fresh
    assert fresh.parent.is_dir()  # resolved (created) at start-up, as DB_PATH is


def test_store_url_wins_over_db_path_and_db_implementation(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, DB_IMPLEMENTATION="channel", STORE_URL="lmdb:///x/api.db")
    assert (settings.store.kind, str(settings.store.path)) == ("lmdb", "/x/api.db")
    assert api_settings(tmp_path, DB_IMPLEMENTATION="channel").store.kind == "memory"
    assert api_settings(tmp_path).store.kind == "lmdb"


def test_a_bad_store_url_is_a_settings_error_naming_store_url_but_never_the_password(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError) as caught:
        api_settings(tmp_path, STORE_URL="redis://user:hunter2@host:notaport/0")
    assert "STORE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    settings = api_settings(tmp_path, STORE_URL="redis://user:hunter2@host:6379/0")
    assert "hunter2" not in settings.store.display
    assert "hunter2" not in repr(settings)


# -- several controllers --------------------------------------------------------------------------


def test_each_controller_is_polled_by_its_own_step_and_both_fill_the_trng_queue(
    tmp_path: Path,
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    with fleet_api(tmp_path, fleet, clock, LOKEY_TRNG_POLL_SAMPLES="8") as client:
        background = api_service(client).background
        for _ in range(STARTUP_SAMPLES // 8 + 1):  # each: its own start-up, then one batch
            for index in range(len(CONTROLLERS)):
                call(client, partial(background.poll_trng, index))
        stats = api_service(client).store.stats("trng")
        stored = {c.url: c.counters["samples_stored"] for c in background.controllers}
    assert [len(fleet.sent(url, "/generate")) for url in CONTROLLERS] == [5, 5]
    assert stored == dict.fromkeys(CONTROLLERS, 8)
    assert stats.items == 16


def test_a_controller_failing_its_health_tests_rejects_only_its_own_batches(
    tmp_path: Path,
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    with fleet_api(tmp_path, fleet, clock, LOKEY_TRNG_POLL_SAMPLES="8") as client:
        background = api_service(client).background
        for _ in range(STARTUP_SAMPLES // 8):
            for index in range(len(CONTROLLERS)):
                call(client, partial(background.poll_trng, index))
        fleet.stuck.add(CONTROLLERS[1])
        for index in range(len(CONTROLLERS)):
            call(client, partial(background.poll_trng, index))
        first, second = background.controllers
        status = client.get("/api/v1/status").json()
    assert (first.quality.batches_rejected, second.quality.batches_rejected) == (0, 1)
    assert first.counters["samples_stored"] == 8
    assert second.counters["samples_stored"] == 0
    views = status["instances"]["controller"]
    assert views[CONTROLLERS[1]]["health_tests"]["batches_rejected"] == 1
    assert views[CONTROLLERS[0]]["health_tests"]["state"] == "steady"


def test_a_failing_controller_is_skipped_for_a_few_seconds_then_tried_again(
    tmp_path: Path,
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    fleet.down[CONTROLLERS[0]] = 0  # refuses connections
    with fleet_api(tmp_path, fleet, clock, TRNG_POLL_INTERVAL_MS="100") as client:
        background = api_service(client).background
        delays = [call(client, background.poll_trng) for _ in range(BREAKER_THRESHOLD)]
        breaker = background.controllers[0].breaker
        assert breaker.state is BreakerState.OPEN
        asked = len(fleet.sent(CONTROLLERS[0], "/generate"))
        waited = call(client, background.poll_trng)  # open: waits instead of calling
        assert len(fleet.sent(CONTROLLERS[0], "/generate")) == asked
        # the other controller is not affected
        call(client, partial(background.poll_trng, 1))
        assert background.controllers[1].breaker.state is BreakerState.CLOSED
        fleet.down.clear()
        clock.advance(INSTANCE_BREAKER_OPEN_S)
        assert call(client, background.poll_trng) == 0.1  # the trial works: closed again
    assert delays == [0.1] * BREAKER_THRESHOLD
    assert 0.1 < waited <= INSTANCE_BREAKER_OPEN_S
    assert breaker.snapshot().state is BreakerState.CLOSED
    assert background.counters["trng_poll_failed"] == BREAKER_THRESHOLD


# -- several Fortunas -----------------------------------------------------------------------------


def test_no_seed_sample_ever_goes_to_two_fortuna_instances(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    env = {"FORTUNA_SEED_SAMPLES": "8", "FORTUNA_SEED_INTERVAL_SECONDS": "5"}
    with fleet_api(tmp_path, fleet, clock, **env) as client:
        background = api_service(client).background
        for _ in range(6):
            for index in range(len(FORTUNAS)):
                call(client, partial(background.seed_fortuna, index))
            clock.advance(5)
        seeded = [f.seeded for f in background.fortunas]
    per_fortuna = {url: fleet.seeds(url) for url in FORTUNAS}
    every = [seed for seeds in per_fortuna.values() for seed in seeds]
    assert seeded == [True, True]
    assert [len(per_fortuna[url]) for url in FORTUNAS] == [6 * 8, 6 * 8]
    assert len(set(every)) == len(every)  # distinct across rounds and across instances
    # the rounds' samples came from both controllers, in turns
    assert [len(fleet.sent(url, "/generate")) for url in CONTROLLERS] == [6, 6]


def test_seeding_takes_its_samples_from_a_controller_whose_breaker_is_closed(
    tmp_path: Path,
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    fleet.down[CONTROLLERS[0]] = 500
    with fleet_api(tmp_path, fleet, clock) as client:
        background = api_service(client).background
        for _ in range(BREAKER_THRESHOLD):
            call(client, background.poll_trng)  # the poll loop opens the first one's breaker
        asked = len(fleet.sent(CONTROLLERS[0], "/generate"))
        for index in range(len(FORTUNAS)):
            call(client, partial(background.seed_fortuna, index))
        seeded = [f.seeded for f in background.fortunas]
    assert len(fleet.sent(CONTROLLERS[0], "/generate")) == asked
    assert len(fleet.sent(CONTROLLERS[1], "/generate")) == 2
    assert seeded == [True, True]


def test_a_seeding_round_moves_on_to_the_next_controller_when_one_fails(
    tmp_path: Path,
) -> None:
    """On an instance that does not poll a dead controller its breaker never opens: the
    round itself must not be lost to it."""
    fleet, clock = Fleet(), VirtualClock()
    fleet.down[CONTROLLERS[0]] = 0  # refuses connections; its breaker here is still closed
    with fleet_api(tmp_path, fleet, clock) as client:
        background = api_service(client).background
        for index in range(len(FORTUNAS)):
            call(client, partial(background.seed_fortuna, index))
        seeded = [f.seeded for f in background.fortunas]
        breaker = background.controllers[0].breaker.state
    assert seeded == [True, True]  # in their first rounds, despite the dead controller
    assert len(fleet.sent(CONTROLLERS[1], "/generate")) == 2
    assert breaker is BreakerState.CLOSED


def test_concurrent_seeding_rounds_each_try_every_controller_once(tmp_path: Path) -> None:
    """Two Fortunas' rounds at once share the round-robin position: a round that waits on a
    dead controller must still go on to the live one, not back to the dead one."""
    fleet, clock = Fleet(), VirtualClock()
    dead = CONTROLLERS[0]

    async def handler(request: httpx.Request) -> httpx.Response:
        if _origin(request.url) == dead:
            fleet.requests.append(request)
            for _ in range(50):  # a dead host takes a while to fail: the other round runs
                await asyncio.sleep(0)
            raise httpx.ConnectError("timed out", request=request)
        return fleet(request)

    settings = api_settings(tmp_path, **fleet_env())
    with running_api(settings, transport=httpx.MockTransport(handler), clock=clock) as client:
        background = api_service(client).background

        async def both() -> list[float]:
            return list(await asyncio.gather(*map(background.seed_fortuna, (0, 1))))

        call(client, both)
        seeded = [f.seeded for f in background.fortunas]
    assert seeded == [True, True]
    assert len(fleet.sent(dead, "/generate")) == 1  # tried once, by one round


def test_one_fortuna_down_leaves_the_other_seeded_on_its_own_schedule(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    fleet.down[FORTUNAS[0]] = 0
    with fleet_api(tmp_path, fleet, clock, FORTUNA_SEED_INTERVAL_SECONDS="30") as client:
        background = api_service(client).background
        first = call(client, partial(background.seed_fortuna, 0))
        second = call(client, partial(background.seed_fortuna, 1))
        views = client.get("/api/v1/status").json()["instances"]["fortuna"]
        seeding = client.get("/api/v1/status").json()["seeding"]["fortuna"]
    assert (first, second) == (1, 30)  # a first round's retry, and the interval
    assert (views[FORTUNAS[0]]["seeded"], views[FORTUNAS[1]]["seeded"]) == (False, True)
    assert views[FORTUNAS[1]]["last_round_age_s"] == 0
    assert seeding["seeded"] is False  # not every Fortuna is


def test_the_fortuna_poller_takes_turns_and_skips_an_unseeded_instance(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    env = {"LOKEY_FORTUNA_LOW_WATER_BYTES": "0", "FORTUNA_POLL_INTERVAL_MS": "100"}
    with fleet_api(tmp_path, fleet, clock, **env) as client:
        background = api_service(client).background
        for index in range(len(FORTUNAS)):
            call(client, partial(background.seed_fortuna, index))
        for _ in range(4):
            call(client, background.poll_fortuna)
            clock.advance(0.1)
        turns = [len(fleet.sent(url, "/generate")) for url in FORTUNAS]
        fleet.unseeded.add(FORTUNAS[0])  # restarted without a seed file
        for _ in range(4):
            call(client, background.poll_fortuna)
            clock.advance(0.1)
        after = [len(fleet.sent(url, "/generate")) for url in FORTUNAS]
        lost = background.fortunas[0]
        wake = lost.seed_wake.is_set()
        seeded = lost.seeded
        call(client, partial(background.seed_fortuna, 0))  # seeded again at once
        clock.advance(1.0)
        call(client, background.poll_fortuna)
        clock.advance(0.1)
        call(client, background.poll_fortuna)
        final = [len(fleet.sent(url, "/generate")) for url in FORTUNAS]
    assert turns == [2, 2]
    # one poll meets "not seeded"; the rest go to the other instance until it is seeded
    assert after[0] - turns[0] <= 2
    assert after[1] - turns[1] >= 3
    assert (wake, seeded) == (True, False)
    assert final[0] > after[0]  # asked again once seeded


def test_a_failing_fortuna_is_skipped_by_the_poller(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    env = {"LOKEY_FORTUNA_LOW_WATER_BYTES": "0", "FORTUNA_POLL_INTERVAL_MS": "100"}
    fleet.down[FORTUNAS[1]] = 500
    with fleet_api(tmp_path, fleet, clock, **env) as client:
        background = api_service(client).background
        for _ in range(20):
            call(client, background.poll_fortuna)
            clock.advance(0.1)
        stats = api_service(client).store.stats("fortuna")
        breaker = background.fortunas[1].poll_breaker.state
    assert stats.items >= 15  # at most the failed turns missed an item
    assert len(fleet.sent(FORTUNAS[1], "/generate")) <= BREAKER_THRESHOLD
    assert breaker is BreakerState.OPEN


# -- health, status, metrics ----------------------------------------------------------------------


def test_health_shows_every_instance_and_is_degraded_when_one_is_down(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    fleet.down[CONTROLLERS[1]] = 0
    with fleet_api(tmp_path, fleet, clock) as client:
        body = client.get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["details"]["controller"] is False
    assert body["details"]["fortuna"] is True
    assert body["instances"] == {
        "controller": {CONTROLLERS[0]: True, CONTROLLERS[1]: False},
        "fortuna": dict.fromkeys(FORTUNAS, True),
    }


def test_metrics_label_each_instance_and_the_leases(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    fleet.down[CONTROLLERS[1]] = 0
    with fleet_api(tmp_path, fleet, clock, LOKEY_TRNG_POLL_SAMPLES="8") as client:
        background = api_service(client).background
        for _ in range(STARTUP_SAMPLES // 8 + 1):
            call(client, background.poll_trng)
        call(client, partial(background.poll_trng, 1))
        text = client.get("/metrics").text
    a, b = CONTROLLERS
    assert f'lokey_api_instance_up{{instance="{a}",peer="controller"}} 1.0' in text
    assert f'lokey_api_instance_up{{instance="{b}",peer="controller"}} 0.0' in text
    assert f'lokey_api_trng_samples_stored_total{{instance="{a}"}} 8.0' in text
    assert re.search(
        rf'lokey_api_instance_breaker_state\{{breaker="seed",instance="{FORTUNAS[0]}",'
        r'peer="fortuna"\} 0\.0',
        text,
    )
    assert f'lokey_api_lease_held{{job="trng-poll {a}"}} 1.0' in text
    assert 'lokey_api_seeding_breaker_state{target="fortuna"}' in text  # the old name stays


def test_status_scale_names_the_store_and_this_instance_for_an_unshared_store(
    tmp_path: Path,
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    with fleet_api(tmp_path, fleet, clock, LOKEY_LEASE_SECONDS="2") as client:
        scale = client.get("/api/v1/status").json()["scale"]
    assert scale["store"] == "memory://"
    assert scale["shared"] is False
    assert scale["lease_seconds"] == 2
    assert re.fullmatch(r".+:[0-9]+:[0-9a-f]{6}", scale["instance_id"])
    names = {
        *(trng_poll_lease(url) for url in CONTROLLERS),
        FORTUNA_POLL,
        *(fortuna_seed_lease(url) for url in FORTUNAS),
        virtio_seed_lease(VIRTIO),
    }
    assert scale["leases"] == dict.fromkeys(names, True)  # nobody else could hold them


# -- leases ---------------------------------------------------------------------------------------


def test_two_keepers_on_one_lease_table_never_hold_a_lease_at_once_and_one_takes_over() -> None:
    clock = VirtualClock()
    table = LeaseTable(clock)
    store = SharedMemoryStore(MemoryStore(), table)
    first = LeaseKeeper(store, "a", 3.0, clock, ["job"])
    second = LeaseKeeper(store, "b", 3.0, clock, ["job"])
    for _ in range(10):  # both renewing every ttl/3: the first keeps it
        renew(first)
        renew(second)
        assert first.held("job")
        assert not second.held("job")
        clock.advance(first.renew_every_s)
    # the first stops renewing (its process hangs): it stops trusting the lease at 80 % ...
    clock.advance(3.0 * LEASE_SAFETY - first.renew_every_s)
    assert not first.held("job")
    renew(second)
    assert not second.held("job")  # ... before the store lets anyone else take it
    clock.advance(3.0 * (1 - LEASE_SAFETY))
    renew(second)
    assert second.held("job")
    assert not first.held("job")
    renew(first)  # back again: it finds the lease taken
    assert not first.held("job")


def test_the_local_deadline_counts_from_when_the_renew_call_started() -> None:
    clock = VirtualClock()
    table = LeaseTable(clock)

    class SlowStore(SharedMemoryStore):
        def lease(self, name: str, holder: str, ttl_s: float) -> bool:
            clock.advance(1.0)  # the call takes a second
            return super().lease(name, holder, ttl_s)

    keeper = LeaseKeeper(SlowStore(MemoryStore(), table), "a", 5.0, clock, ["job"])
    renew(keeper)
    clock.advance(5.0 * LEASE_SAFETY - 1.0 - 0.01)
    assert keeper.held("job")
    clock.advance(0.02)
    assert not keeper.held("job")


def test_a_keeper_on_an_unshared_store_holds_everything_without_calling_the_store() -> None:
    store = MemoryStore()
    keeper = LeaseKeeper(store, holder_id(), 5.0, VirtualClock(), ["x"])
    asyncio.run(keeper.run())  # returns at once: nothing to renew
    assert keeper.held("x")
    assert keeper.held("anything")
    assert keeper.shared is False


def test_a_job_whose_lease_another_instance_holds_waits_and_calls_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    table = LeaseTable(clock)
    table.refuse = True
    store = SharedMemoryStore(MemoryStore(), table)
    with opening(monkeypatch, store), fleet_api(tmp_path, fleet, clock) as client:
        service = api_service(client)
        background = service.background
        call(client, service.leases.renew)
        delays = [
            call(client, background.poll_trng),
            call(client, background.poll_fortuna),
            call(client, background.seed_fortuna),
            call(client, background.seed_virtio),
        ]
        scale = client.get("/api/v1/status").json()["scale"]
        metrics = client.get("/metrics").text
        table.refuse = False
        call(client, service.leases.renew)
        call(client, background.poll_trng)
    assert delays == [pytest.approx(5.0 / 3)] * 4
    assert [r.url.path for r in fleet.requests if r.url.path != "/config/queue"][:1] == [
        "/generate"
    ]  # nothing before the lease came: the first request is the poll after it
    assert scale["shared"] is True
    assert not any(scale["leases"].values())
    assert f'lokey_api_lease_held{{job="{FORTUNA_POLL}"}} 0.0' in metrics
    assert "lokey_api_instance_up{" not in metrics  # not "down": another instance asks them


def test_of_two_api_instances_on_one_shared_store_only_one_runs_each_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    table = LeaseTable(clock)
    store = SharedMemoryStore(MemoryStore(), table)
    with (
        opening(monkeypatch, store),
        fleet_api(tmp_path / "a", fleet, clock) as first,
        fleet_api(tmp_path / "b", fleet, clock) as second,
    ):
        one, two = api_service(first), api_service(second)
        call(first, one.leases.renew)
        call(second, two.leases.renew)
        call(first, one.background.seed_fortuna)
        call(second, two.background.seed_fortuna)
        seeds_while_first_holds = len(fleet.sent(FORTUNAS[0], "/seed"))
        views = [c.get("/api/v1/status").json()["scale"] for c in (first, second)]
        # the first instance stops (its leases released): the second takes over at once
        call(first, one.leases.release)
        call(second, two.leases.renew)
        call(second, two.background.seed_fortuna)
        held_after = two.leases.view()
    assert seeds_while_first_holds == 1
    assert all(views[0]["leases"].values())
    assert not any(views[1]["leases"].values())
    assert views[0]["instance_id"] != views[1]["instance_id"]
    assert all(held_after.values())
    assert len(fleet.sent(FORTUNAS[0], "/seed")) == 2
    assert two.background.fortunas[0].seeded


def test_a_regained_seeding_lease_starts_with_a_first_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    table = LeaseTable(clock)
    store = SharedMemoryStore(MemoryStore(), table)
    env = {"FORTUNA_SEED_INTERVAL_SECONDS": "30", "FORTUNA_SEED_SAMPLES": "8"}
    with opening(monkeypatch, store), fleet_api(tmp_path, fleet, clock, **env) as client:
        service = api_service(client)
        background = service.background
        call(client, service.leases.renew)
        assert call(client, background.seed_fortuna) == 30
        table.refuse = True
        clock.advance(30)
        call(client, service.leases.renew)
        call(client, background.seed_fortuna)  # lost: waits
        table.refuse = False
        call(client, service.leases.renew)
        assert call(client, background.seed_fortuna) == 30
    # the round after the lease came back was a first round again (an unknown state)
    assert [len(json.loads(r.content)["seeds"]) for r in fleet.sent(FORTUNAS[0], "/seed")] == [
        8,
        8,
    ]
    assert background.fortunas[0].counters["seed_rounds_ok"] == 2


# -- shared configuration -------------------------------------------------------------------------


def test_a_config_change_on_one_instance_reaches_another_through_the_shared_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    store = SharedMemoryStore(MemoryStore(), LeaseTable(clock))
    with (
        opening(monkeypatch, store),
        fleet_api(tmp_path / "a", fleet, clock, ALLOW_PEEK="true") as first,
        fleet_api(tmp_path / "b", fleet, clock) as second,
    ):
        virtio = {"seeding_source": "both", "queue_size": 4000, "seed_interval_seconds": 60}
        assert first.put("/api/v1/config/virtio", json=virtio).status_code == 200
        assert first.put("/api/v1/config/consume", json={"consume": False}).status_code == 200
        other = api_service(second)
        assert call(second, other.reload_config) == api_app.CONFIG_RELOAD_S
        answer = second.get("/api/v1/config/virtio").json()
        consume = second.get("/api/v1/config/consume").json()
        third = api_service(first)
        call(first, third.reload_config)
        own = first.get("/api/v1/config/consume").json()
    assert answer["seeding_source"] == "both"
    assert answer["seed_interval_seconds"] == 60
    assert other.virtio_size == 4000
    # the ALLOW_PEEK rule: the second instance does not allow peeking, so it keeps consuming
    assert consume == {"consume": True}
    assert own == {"consume": False}


class SlowConfigStore(SharedMemoryStore):
    """``config()`` waits for ``go``; ``entered`` says a read has begun; writes recorded."""

    def __init__(self, inner: MemoryStore, table: LeaseTable) -> None:
        super().__init__(inner, table)
        self.entered = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.updates: list[dict[str, object]] = []

    def config(self) -> dict[str, object]:
        self.entered.set()
        self.go.wait(10)
        return self._inner.config()

    def update_config(self, values: Mapping[str, object]) -> None:
        self.updates.append(dict(values))
        self._inner.update_config(values)


def test_a_reload_in_progress_never_undoes_a_change_made_through_this_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that read the store before a PUT must not apply what it read after it (with
    ALLOW_PEEK a lost consume=true would serve the same bytes again)."""
    fleet, clock = Fleet(), VirtualClock()
    store = SlowConfigStore(MemoryStore(), LeaseTable(clock))
    with (
        opening(monkeypatch, store),
        fleet_api(tmp_path, fleet, clock, ALLOW_PEEK="true") as client,
    ):
        service = api_service(client)
        assert client.put("/api/v1/config/consume", json={"consume": False}).status_code == 200
        written = len(store.updates)
        store.go.clear()
        store.entered.clear()
        assert client.portal is not None
        reload = client.portal.start_task_soon(service.reload_config)
        assert store.entered.wait(10)  # the reload is reading the old consume=false
        put = threading.Thread(
            target=lambda: client.put("/api/v1/config/consume", json={"consume": True})
        )
        put.start()
        deadline = time.monotonic() + 10
        # either the PUT waits for the reload (right) or it writes meanwhile (the defect)
        while not service.config_lock._waiters and len(store.updates) == written:
            assert time.monotonic() < deadline, "the PUT neither waited nor wrote"
            time.sleep(0.001)
        wrote_meanwhile = len(store.updates) > written
        store.go.set()
        reload.result(10)
        put.join(10)
        consume = client.get("/api/v1/config/consume").json()
    assert not wrote_meanwhile
    assert consume == {"consume": True}


def test_an_instance_without_virtio_never_takes_a_virtio_lease(tmp_path: Path) -> None:
    fleet, clock = Fleet(), VirtualClock()
    with fleet_api(tmp_path, fleet, clock, VIRTIO_ADDR="") as client:
        names = api_service(client).leases.names
    assert not [name for name in names if name.startswith("virtio-seed")]
    assert virtio_seed_lease(VIRTIO) == f"virtio-seed {VIRTIO}"  # one lease per VirtIO peer


class StuckLeaseStore(SharedMemoryStore):
    """Lease calls that never answer (a store that stopped responding)."""

    def __init__(self, inner: MemoryStore, table: LeaseTable) -> None:
        super().__init__(inner, table)
        self.stuck = threading.Event()
        self.unblock = threading.Event()

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        if self.stuck.is_set():
            self.unblock.wait(30)
        return super().lease(name, holder, ttl_s)

    def release_lease(self, name: str, holder: str) -> None:
        self.unblock.wait(30)


def test_a_store_that_stops_answering_holds_neither_a_renewal_round_nor_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every lease at once under one deadline: 20 leases on a silent store cost one deadline,
    not 20 call timeouts (with 64 + 64 peers that was minutes at shutdown)."""
    monkeypatch.setattr(leases_module, "RELEASE_DEADLINE_S", 0.2)
    clock = VirtualClock()
    store = StuckLeaseStore(MemoryStore(), LeaseTable(clock))
    keeper = LeaseKeeper(store, "a", 0.5, clock, [f"job {n}" for n in range(20)])
    try:
        renew(keeper)
        assert all(keeper.view().values())
        store.stuck.set()
        started = time.monotonic()
        renew(keeper)  # at most half a lease (0.25 s), whatever the store does
        asyncio.run(keeper.release())  # at most RELEASE_DEADLINE_S
        took = time.monotonic() - started
    finally:
        store.unblock.set()
    assert took < 2.0
    assert not any(keeper.view().values())  # released (or expired): never assumed held


def test_a_fortuna_that_lost_its_seed_is_seeded_at_once_by_the_instance_seeding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One instance polls Fortuna, another seeds it: the poller's "not seeded" reaches the
    seeder through the shared store at its next reload, not at its next seeding interval."""
    fleet, clock = Fleet(), VirtualClock()
    table = LeaseTable(clock)
    store = SharedMemoryStore(MemoryStore(), table)
    fortuna = FORTUNAS[0]
    env = {"FORTUNA_ADDR": fortuna, "FORTUNA_SEED_INTERVAL_SECONDS": "600"}
    with (
        opening(monkeypatch, store),
        fleet_api(tmp_path / "a", fleet, clock, **env) as seeder_client,
        fleet_api(tmp_path / "b", fleet, clock, **env) as poller_client,
    ):
        seeder, poller = api_service(seeder_client), api_service(poller_client)
        far = clock.monotonic() + 1_000
        table.holders[FORTUNA_POLL] = (poller.leases.holder, far)
        table.holders[fortuna_seed_lease(fortuna)] = (seeder.leases.holder, far)
        call(seeder_client, seeder.leases.renew)
        call(poller_client, poller.leases.renew)
        assert call(seeder_client, seeder.background.seed_fortuna) == 600
        call(seeder_client, seeder.reload_config)  # the hints already there are known
        fleet.unseeded.add(fortuna)  # Fortuna restarted without its seed file
        call(poller_client, poller.background.poll_fortuna)
        assert seeder.background.fortunas[0].seeded  # it cannot know yet
        call(seeder_client, seeder.reload_config)
        told = not seeder.background.fortunas[0].seeded
        assert call(seeder_client, seeder.background.seed_fortuna) == 600
        call(poller_client, poller.background.poll_fortuna)
        call(seeder_client, seeder.reload_config)  # the same hint again: nothing more to do
    assert told
    assert len(fleet.sent(fortuna, "/seed")) == 2  # seeded, then again once told
    assert fortuna not in fleet.unseeded


def test_an_instance_that_seeds_the_fortuna_it_polls_reseeds_once_and_leaves_no_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    store = SharedMemoryStore(MemoryStore(), LeaseTable(clock))
    fortuna = FORTUNAS[0]
    env = {"FORTUNA_ADDR": fortuna, "FORTUNA_SEED_INTERVAL_SECONDS": "600"}
    with opening(monkeypatch, store), fleet_api(tmp_path, fleet, clock, **env) as client:
        service = api_service(client)
        background = service.background
        call(client, service.leases.renew)  # the only instance: every lease is its own
        call(client, background.seed_fortuna)
        call(client, service.reload_config)
        fleet.unseeded.add(fortuna)
        call(client, background.poll_fortuna)  # "not seeded": handled here, at once
        call(client, background.seed_fortuna)
        call(client, service.reload_config)
        seeded = background.fortunas[0].seeded
        hints = [key for key in store.config() if key.startswith("fortuna_unseeded")]
    assert seeded
    assert hints == []
    assert len(fleet.sent(fortuna, "/seed")) == 2


class LateLeaseStore(SharedMemoryStore):
    """A lease call that answers only once ``answer`` is set (a slow store)."""

    def __init__(self, inner: MemoryStore, table: LeaseTable) -> None:
        super().__init__(inner, table)
        self.answer = threading.Event()
        self.answered = threading.Event()

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        self.answer.wait(10)
        try:
            return super().lease(name, holder, ttl_s)
        finally:
            self.answered.set()


def test_a_renewal_cut_off_by_shutdown_cannot_take_its_lease_back_after_the_release() -> None:
    clock = VirtualClock()
    table = LeaseTable(clock)
    store = LateLeaseStore(MemoryStore(), table)
    keeper = LeaseKeeper(store, "a", 0.5, clock, ["job"])

    async def shutdown() -> None:
        with anyio.move_on_after(0.01):  # the renewal task is cancelled mid-call
            await keeper.renew()
        threading.Timer(0.05, store.answer.set).start()  # the store answers a moment later
        await keeper.release()

    asyncio.run(shutdown())
    assert store.answered.wait(10)
    assert table.holders == {}  # released after the late renewal reached the store


def test_stopping_an_api_instance_releases_the_leases_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    table = LeaseTable(clock)
    store = SharedMemoryStore(MemoryStore(), table)
    with opening(monkeypatch, store):
        with fleet_api(tmp_path, fleet, clock) as client:
            service = api_service(client)
            call(client, service.leases.renew)
            holder = service.leases.holder
            held = {name for name, (who, _) in table.holders.items() if who == holder}
        after = dict(table.holders)
    assert held == set(service.leases.names)
    assert after == {}  # another instance can take them at once, not after the lease time


def test_the_running_api_polls_every_controller_and_seeds_every_fortuna(tmp_path: Path) -> None:
    fleet = Fleet()
    settings = api_settings(tmp_path, **fleet_env(TRNG_POLL_INTERVAL_MS="10"))
    transport = httpx.MockTransport(fleet)
    with running_api(settings, transport=transport, start_background=True) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            polled = all(len(fleet.sent(url, "/generate")) >= 3 for url in CONTROLLERS)
            if polled and all(fleet.sent(url, "/seed") for url in FORTUNAS):
                break
            time.sleep(0.02)
        status = client.get("/api/v1/status").json()
    assert all(len(fleet.sent(url, "/generate")) >= 3 for url in CONTROLLERS)
    assert all(fleet.sent(url, "/seed") for url in FORTUNAS)
    assert all(view["seeded"] for view in status["instances"]["fortuna"].values())


def test_lease_names_are_the_job_and_the_url_and_always_fit_the_store() -> None:
    assert trng_poll_lease(CONTROLLERS[0]) == f"trng-poll {CONTROLLERS[0]}"
    assert fortuna_seed_lease(FORTUNAS[0]) == f"fortuna-seed {FORTUNAS[0]}"
    long = "http://" + "a" * 240 + ".lan:8081"
    names = {trng_poll_lease(long), fortuna_seed_lease(long)}
    assert all(len(name) <= 200 for name in names)  # lokey.store.base.check_lease's limit
    assert trng_poll_lease(long) == trng_poll_lease(long)  # every instance names it alike


def test_one_controller_keeps_the_status_fields_and_adds_instances_and_scale(
    tmp_path: Path,
) -> None:
    fleet, clock = Fleet(), VirtualClock()
    env = {"CONTROLLER_ADDR": CONTROLLERS[0], "FORTUNA_ADDR": FORTUNAS[0]}
    with fleet_api(tmp_path, fleet, clock, **env) as client:
        call(client, api_service(client).background.seed_fortuna)
        body = client.get("/api/v1/status").json()
    assert list(body) == [
        *("trng", "fortuna", "virtio", "database", "trng_quality", "health_tests"),
        *("seeding", "usage", "instances", "scale"),
    ]
    assert list(body["seeding"]["fortuna"]) == [
        *("seeded", "last_round_age_s", "last_status", "interval_s", "samples_per_round"),
        "breaker",
    ]
    assert body["seeding"]["fortuna"]["seeded"] is True
    only = body["instances"]["controller"][CONTROLLERS[0]]
    assert only["health_tests"] == body["health_tests"]
    assert only["trng_quality"] == body["trng_quality"]
    assert (
        body["instances"]["fortuna"][FORTUNAS[0]]["breaker"]
        == (body["seeding"]["fortuna"]["breaker"])
    )

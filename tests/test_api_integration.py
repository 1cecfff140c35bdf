"""The API with its background jobs running against the real services (spec/service-api.md §0,
§1.2, §1.5, §1.7, §1.9; design.md "No byte twice").

Controller (emulator), Fortuna and VirtIO run as ``lokey serve`` processes; the API runs
in-process with its jobs started and short intervals, or, for the concurrency test, as a
process too. Waits are bounded real-time polls (:func:`wait_for`); nothing is faked.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lokey.services.settings import API_ENV, FORTUNA_ENV
from lokey.store import Source
from tests.api_helpers import (
    PeerStack,
    api_service,
    api_settings,
    dead_address,
    running_api,
    shared_stack,
)
from tests.service_helpers import Served, TestClient, serve, wait_for

BLOCK = 16  # every item (32 B, 256 B, 64 KiB) and every request below is a multiple of 16 bytes
LOW_WATER = 256 << 10
#: Short intervals, so that the stack fills in well under a second.
FAST = {
    "TRNG_POLL_INTERVAL_MS": "10",
    "FORTUNA_POLL_INTERVAL_MS": "10",
    "VIRTIO_POLL_INTERVAL_MS": "20",
    "LOKEY_FORTUNA_LOW_WATER_BYTES": str(LOW_WATER),
    "LOKEY_HTTP_TIMEOUT_S": "1",
}
#: VirtIO seeding that leaves the TRNG queue to the clients (32 bytes a second).
SLOW_VIRTIO = {
    "VIRTIO_SEEDING_SOURCE": "trng",
    "VIRTIO_POLL_INTERVAL_MS": "1000",
    "LOKEY_VIRTIO_SEED_BYTES": "32",
}
PROMPT_S = 5.0  # spec §0: a dead dependency degrades the caller, never hangs it (timeout: 1 s)
FILL_S = 30.0  # bound on the waits for queues to fill (generous: CI machines can be busy)


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PeerStack:
    """Real controller, Fortuna and VirtIO processes (Fortuna seeded by whichever API ran)."""
    return shared_stack(request.config, tmp_path_factory)


@pytest.fixture
def own_fortuna(tmp_path: Path) -> Iterator[Served]:
    """A Fortuna process of the test's own: unseeded at first, and free to be stopped."""
    directory = tmp_path / "fortuna"
    directory.mkdir()
    with serve("fortuna", directory, settings_names=FORTUNA_ENV) as fortuna:
        yield fortuna


@contextmanager
def live_api(tmp_path: Path, stack: PeerStack, **env: str) -> Iterator[TestClient]:
    """The API in-process with its four background jobs running."""
    directory = tmp_path / "api"
    directory.mkdir()
    settings = api_settings(directory, **{**stack.env(), **FAST, **env})
    with running_api(settings, start_background=True) as client:
        yield client


def until(predicate: Callable[[], bool], what: str) -> None:
    wait_for(predicate, what, timeout_s=FILL_S, interval_s=0.05)


def ring(stack: PeerStack) -> dict[str, int]:
    level: dict[str, int] = httpx.get(f"{stack.virtio}/config/queue", timeout=5).json()
    return level


def drain_ring(stack: PeerStack) -> None:
    """Empty VirtIO's ring (``GET /stream`` consumes), so that the API refills it."""
    count = ring(stack)["queue_bytes"]
    if count:
        params = {"chunk_size": 65536, "max_bytes": count}
        assert httpx.get(f"{stack.virtio}/stream", params=params, timeout=10).status_code == 200


def status(client: TestClient | httpx.Client) -> dict[str, Any]:
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def queued(client: TestClient | httpx.Client, source: str) -> int:
    return int(status(client)[source]["queue_bytes"])


def fetch(client: TestClient, source: str, limit: int) -> httpx.Response:
    body = {"format": "binary", "limit": limit, "source": source}
    response: httpx.Response = client.post("/api/v1/data", json=body)
    return response


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


def blocks(data: bytes) -> list[bytes]:
    return [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]


# -- the stack fills -------------------------------------------------------------------------------


def test_the_stack_fills_from_a_fresh_start_and_reports_ok(
    tmp_path: Path, stack: PeerStack, own_fortuna: Served
) -> None:
    assert own_fortuna.health.status_code == 503  # not seeded yet
    virtio_before = ring(stack)["generated_bytes"]
    drain_ring(stack)
    with live_api(tmp_path, stack, FORTUNA_ADDR=own_fortuna.base) as client:
        until(
            lambda: httpx.get(f"{own_fortuna.base}/health", timeout=2).status_code == 200,
            "Fortuna seeded by the API",
        )
        until(lambda: status(client)["trng"]["total_generated"] > 0, "TRNG samples stored")
        until(lambda: queued(client, "fortuna") >= LOW_WATER, "the Fortuna queue filled")
        until(
            lambda: ring(stack)["generated_bytes"] > virtio_before, "VirtIO's ring receiving bytes"
        )
        health = client.get("/api/v1/health")
        body = status(client)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["details"] == {
        "api": True,
        "controller": True,
        "fortuna": True,
        "virtio": True,
        "database": True,
    }
    assert body["trng"]["polling_count"] > 0
    assert body["fortuna"]["polling_count"] > 0
    assert body["seeding"]["fortuna"]["seeded"] is True


def test_data_is_served_from_both_sources_and_differs_between_requests(
    tmp_path: Path, stack: PeerStack
) -> None:
    # VirtIO seeding off: it would consume the TRNG queue as fast as it fills.
    with live_api(tmp_path, stack, VIRTIO_ADDR="", LOKEY_TRNG_POLL_SAMPLES="16") as client:
        until(lambda: queued(client, "trng") >= 4 * 128, "TRNG bytes queued")
        until(lambda: queued(client, "fortuna") >= 4 * 128, "Fortuna bytes queued")
        answers = {
            source: [fetch(client, source, 128) for _ in range(4)] for source in ("trng", "fortuna")
        }
        values = client.post(
            "/api/v1/data", json={"format": "uint32", "limit": 50, "source": "fortuna"}
        )
    for responses in answers.values():
        assert [r.status_code for r in responses] == [200] * 4
        assert [len(r.content) for r in responses] == [128] * 4
        assert len({r.content for r in responses}) == 4
    assert {r.content for r in answers["trng"]}.isdisjoint(r.content for r in answers["fortuna"])
    assert values.status_code == 200
    assert len(values.json()) == 50


# -- concurrency -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    source: str
    limit: int
    status: int
    body: bytes
    error: str | None
    retry_after: str | None
    elapsed: float


def _client_run(base: str, seed: int, requests: int, outcomes: list[Outcome]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(requests):
            source = rng.choice(["trng", "fortuna"])
            limit = BLOCK * rng.randint(1, 64 if source == "fortuna" else 8)
            body = {"format": "binary", "limit": limit, "source": source}
            response, elapsed = timed(http.post, "/api/v1/data", json=body)
            error = None
            if response.headers.get("content-type", "").startswith("application/json"):
                error = response.json().get("error")
            outcomes.append(
                Outcome(
                    source,
                    limit,
                    response.status_code,
                    response.content,
                    error,
                    response.headers.get("retry-after"),
                    elapsed,
                )
            )


@pytest.mark.slow
def test_concurrent_clients_never_receive_the_same_bytes_while_the_pollers_refill(
    tmp_path: Path, stack: PeerStack
) -> None:
    directory = tmp_path / "api"
    directory.mkdir()
    env: dict[str, Any] = {
        **stack.env(),
        **FAST,
        "DB_PATH": str(directory / "api.db"),
        "DB_SYNC": "false",
        "LOKEY_TRNG_POLL_SAMPLES": "32",
        "VIRTIO_SEEDING_SOURCE": "fortuna",  # VirtIO competes with the clients for Fortuna
    }
    with serve("api", directory, settings_names=API_ENV, **env) as api_process:
        with httpx.Client(base_url=api_process.base, timeout=5) as http:
            until(lambda: queued(http, "trng") >= 2048, "TRNG bytes queued")
            until(lambda: queued(http, "fortuna") >= LOW_WATER, "Fortuna bytes queued")
        outcomes: list[Outcome] = []
        threads = [
            threading.Thread(target=_client_run, args=(api_process.base, seed, 30, outcomes))
            for seed in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

    assert len(outcomes) == 8 * 30
    refused = [o for o in outcomes if o.status != 200]
    assert all(o.status == 503 for o in refused), {o.status for o in refused}
    assert all(o.error == "No data available" and o.retry_after for o in refused)
    served = [o for o in outcomes if o.status == 200]
    assert all(len(o.body) == o.limit for o in served)
    for source in ("trng", "fortuna"):
        assert sum(o.source == source for o in served) >= 20, f"too few {source} answers"
    every = [block for o in served for block in blocks(o.body)]
    repeated = len(every) - len(set(every))
    assert repeated == 0, f"{repeated} of {len(every)} 16-byte blocks were served twice"


# -- run-time configuration ------------------------------------------------------------------------


def test_the_virtio_seeding_source_switches_at_run_time_without_a_restart(
    tmp_path: Path, stack: PeerStack
) -> None:
    drain_ring(stack)
    size = ring(stack)["queue_size"]
    env = {
        "VIRTIO_SEEDING_SOURCE": "trng",
        "LOKEY_VIRTIO_SEED_BYTES": "512",
        "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "0",  # not the reserve: VirtIO may take every byte
    }
    with live_api(tmp_path, stack, **env) as client:
        store = api_service(client).store

        def consumed(source: Source) -> int:
            return store.stats(source).consumed_bytes

        until(lambda: consumed("trng") > 0, "VirtIO seeded from the TRNG queue")
        assert consumed("fortuna") == 0  # no client reads: only VirtIO seeding consumes

        body = {"seeding_source": "fortuna", "queue_size": size}
        assert client.put("/api/v1/config/virtio", json=body).status_code == 200
        until(lambda: consumed("fortuna") > 0, "VirtIO seeded from the Fortuna queue")
        trng_after_switch = consumed("trng")  # a round that had started before has ended
        fortuna_then = consumed("fortuna")
        until(lambda: consumed("fortuna") >= fortuna_then + 4 * 512, "more Fortuna rounds")
        assert consumed("trng") == trng_after_switch

        body = {"seeding_source": "both", "queue_size": size}
        assert client.put("/api/v1/config/virtio", json=body).status_code == 200
        trng_then, fortuna_then = consumed("trng"), consumed("fortuna")
        until(
            lambda: consumed("trng") > trng_then and consumed("fortuna") > fortuna_then,
            "VirtIO seeded from both queues",
        )
        assert client.get("/api/v1/config/virtio").json()["seeding_source"] == "both"


def test_virtio_seeding_from_the_trng_queue_leaves_the_reserve_to_api_clients(
    tmp_path: Path, stack: PeerStack
) -> None:
    drain_ring(stack)
    reserve = 2048
    env = {
        "VIRTIO_SEEDING_SOURCE": "trng",
        "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": str(reserve),
        "LOKEY_TRNG_POLL_SAMPLES": "16",
    }
    with live_api(tmp_path, stack, **env) as client:
        store = api_service(client).store
        until(lambda: store.stats("trng").consumed_bytes > 0, "VirtIO seeded from the surplus")
        levels: list[int] = []

        def observed(count: int) -> bool:
            levels.append(store.stats("trng").bytes)
            return len(levels) >= count

        until(lambda: observed(20), "20 looks at the TRNG queue while VirtIO seeds")
        response = fetch(client, "trng", reserve)
    # VirtIO polls every 20 ms and would take every queued byte: only the reserve stops it.
    assert min(levels) >= reserve, levels
    assert (response.status_code, len(response.content)) == (200, reserve)


def test_a_fortuna_restarted_without_a_seed_file_is_seeded_again_at_once(
    tmp_path: Path, stack: PeerStack, own_fortuna: Served
) -> None:
    """Fortuna answering "Generator not seeded" makes the API seed it again right away, not
    after FORTUNA_SEED_INTERVAL_SECONDS (an hour here). The restart is a second, fresh Fortuna
    process put in the first one's place (the API's peer address is switched to it)."""
    env = {"FORTUNA_ADDR": own_fortuna.base, "FORTUNA_SEED_INTERVAL_SECONDS": "3600"}
    with live_api(tmp_path, stack, **env) as client:
        until(lambda: status(client)["seeding"]["fortuna"]["seeded"], "Fortuna seeded")
        directory = tmp_path / "fortuna-restarted"
        directory.mkdir()
        with serve("fortuna", directory, settings_names=FORTUNA_ENV) as restarted:
            assert restarted.health.status_code == 503  # no seed file: not seeded
            service = api_service(client)
            service.peers.fortunas = (restarted.base,)
            service.background.fortunas[0].url = restarted.base
            until(
                lambda: httpx.get(f"{restarted.base}/health", timeout=2).status_code == 200,
                "the restarted Fortuna seeded by the API",
            )
            until(lambda: status(client)["seeding"]["fortuna"]["seeded"], "seeded again")
            served = httpx.get(f"{restarted.base}/generate", params={"size": 32}, timeout=5)
    assert served.status_code == 200


def test_first_seeding_rounds_back_off_even_while_an_unseeded_fortuna_answers_every_poll(
    tmp_path: Path, stack: PeerStack, own_fortuna: Served
) -> None:
    """Until the first success, seeding rounds are 1, 2, 4 ... s apart: at about 0, 1, 3 and
    7 s. The Fortuna poller meets "Generator not seeded" all along (that is why the rounds
    are first rounds); that must not turn the back-off into a retry every poll."""
    env = {
        "FORTUNA_ADDR": own_fortuna.base,
        "CONTROLLER_ADDR": dead_address(),  # every round fails at once
        "VIRTIO_ADDR": "",
        "FORTUNA_SEED_INTERVAL_SECONDS": "60",
    }
    with live_api(tmp_path, stack, **env) as client:
        started = time.monotonic()
        counters = api_service(client).background.counters
        until(lambda: counters["fortuna_seed_failed"] >= 4, "four first seeding rounds")
        elapsed = time.monotonic() - started
    assert elapsed >= 5.0, f"the fourth round came after {elapsed:.1f} s, not about 7 s"


# -- dead dependencies -----------------------------------------------------------------------------


def _fill_then(client: TestClient) -> None:
    until(lambda: client.get("/api/v1/health").json()["status"] == "ok", "health ok")
    until(lambda: queued(client, "fortuna") >= LOW_WATER, "the Fortuna queue filled")
    until(lambda: queued(client, "trng") >= 256, "TRNG bytes queued")


def _drain_fortuna(client: TestClient) -> int:
    """Read the Fortuna queue to its end; every answer prompt; the bytes read."""
    total = 0
    for _ in range(100):
        remaining = queued(client, "fortuna")
        if remaining == 0:
            break
        response, elapsed = timed(fetch, client, "fortuna", min(remaining, 100_000))
        assert elapsed < PROMPT_S
        assert response.status_code == 200
        total += len(response.content)
    return total


def test_a_stopped_fortuna_degrades_health_while_queued_data_is_still_served(
    tmp_path: Path, stack: PeerStack, own_fortuna: Served
) -> None:
    env = {"FORTUNA_ADDR": own_fortuna.base, **SLOW_VIRTIO}
    with live_api(tmp_path, stack, **env) as client:
        _fill_then(client)
        assert own_fortuna.stop() == 0  # SIGTERM, as docker stop

        health, elapsed = timed(client.get, "/api/v1/health")
        assert elapsed < PROMPT_S
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["details"]["fortuna"] is False
        assert health.json()["details"]["controller"] is True

        trng, elapsed = timed(fetch, client, "trng", 64)
        assert (trng.status_code, len(trng.content)) == (200, 64)
        assert elapsed < PROMPT_S

        assert _drain_fortuna(client) >= LOW_WATER
        empty, elapsed = timed(fetch, client, "fortuna", 16)
        assert elapsed < PROMPT_S
        assert empty.status_code == 503
        assert empty.json() == {"error": "No data available"}
        assert empty.headers["retry-after"]
        counters = status(client)["seeding"]["counters"]
    assert counters.get("fortuna_poll_failed", 0) > 0


def test_a_frozen_fortuna_is_given_up_after_the_timeout_and_never_stalls_the_api(
    tmp_path: Path, stack: PeerStack, own_fortuna: Served
) -> None:
    env = {"FORTUNA_ADDR": own_fortuna.base, **SLOW_VIRTIO}
    with live_api(tmp_path, stack, **env) as client:
        _fill_then(client)
        os.kill(own_fortuna.process.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            polls = status(client)["trng"]["polling_count"]
            for _ in range(3):
                health, elapsed = timed(client.get, "/api/v1/health")
                assert elapsed < PROMPT_S
                assert health.json()["status"] == "degraded"
                assert health.json()["details"]["fortuna"] is False
            fortuna, elapsed = timed(fetch, client, "fortuna", 4096)
            assert (fortuna.status_code, elapsed < PROMPT_S) == (200, True)
            trng, elapsed = timed(fetch, client, "trng", 64)
            assert (trng.status_code, elapsed < PROMPT_S) == (200, True)
            # The TRNG poller goes on while the Fortuna jobs wait for their timeouts.
            until(lambda: status(client)["trng"]["polling_count"] > polls + 10, "TRNG polls")
        finally:
            os.kill(own_fortuna.process.pid, signal.SIGCONT)

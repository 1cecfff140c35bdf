"""The API's background jobs, one step at a time (spec/service-api.md §0 "Outbound calls", §1.9;
design.md "No byte twice", "Fortuna start-up").

The steps run on the app's event loop (``client.portal.call``) against the **real** controller
(emulator), Fortuna and VirtIO processes of one shared :func:`peer_stack`. A peer's failure
or a malformed answer is injected by :class:`FaultTransport`, which otherwise passes every
request to the real network. The seeding breakers run on a :class:`VirtualClock`: no test
waits for them in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from lokey.controller.breaker import BreakerState
from lokey.errors import StoreError
from lokey.quality.health import HealthState
from lokey.services.api.background import TrngQuality, run_loop
from lokey.services.api.peers import PeerError, Peers
from lokey.services.settings import FORTUNA_ENV
from sim.clock import VirtualClock
from tests.api_helpers import (
    PeerStack,
    api_service,
    api_settings,
    dead_address,
    running_api,
    shared_stack,
)
from tests.service_helpers import TestClient, serve

SAMPLE = 32  # bytes per TRNG sample (spec §1.2, §2)
STARTUP_SAMPLES = 32  # SP 800-90B start-up: 1,024 bytes = 32 samples (health-tests.md §1)
BREAKER_OPEN_S = 300.0  # spec §1.9 / §6.1: seeding breakers open for 5 min
BREAKER_THRESHOLD = 5  # ... after 5 consecutive failures
MIB = 1 << 20
#: VirtIO may take every TRNG byte: for the tests of VirtIO behaviour other than the reserve.
NO_RESERVE = {"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "0"}
UNSEEDED = {"error": "Generator not seeded"}  # the Fortuna service's 503 (spec §3, LoKey)

#: A peer's answer to one request, or a coroutine producing it (a peer that hangs).
Fault = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


# -- helpers ---------------------------------------------------------------------------------------


def random_samples(count: int, seed: int) -> list[bytes]:
    """``count`` 32-byte samples from a seeded PRNG: reproducible, and (checked once, hence
    always) free of anything the SP 800-90B tests or the seed gate would flag."""
    data = random.Random(seed).randbytes(count * SAMPLE)
    return [data[i : i + SAMPLE] for i in range(0, len(data), SAMPLE)]


def items_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class FaultTransport(httpx.AsyncBaseTransport):
    """The real network, except for requests that a test made fail (a peer's failure).

    A fault is keyed by a peer's base URL and optionally a path; every request is recorded.
    """

    def __init__(self) -> None:
        self._network = httpx.AsyncHTTPTransport()
        self._faults: dict[tuple[str, str | None], Fault] = {}
        self.requests: list[httpx.Request] = []

    def fail(self, base: str, fault: Fault, path: str | None = None) -> None:
        self._faults[(base, path)] = fault

    def heal(self) -> None:
        self._faults.clear()

    def sent(self, base: str, path: str | None = None) -> list[httpx.Request]:
        return [
            r for r in self.requests if _origin(r) == base and (path is None or r.url.path == path)
        ]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        origin = _origin(request)
        fault = self._faults.get((origin, request.url.path)) or self._faults.get((origin, None))
        if fault is None:
            return await self._network.handle_async_request(request)
        outcome = fault(request)
        if inspect.isawaitable(outcome):
            return await outcome
        return outcome

    async def aclose(self) -> None:
        await self._network.aclose()


def _origin(request: httpx.Request) -> str:
    return f"{request.url.scheme}://{request.url.host}:{request.url.port}"


def answer(status: int, body: object = None, *, headers: dict[str, str] | None = None) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        content = body if body is not None else {"error": "injected failure"}
        return httpx.Response(status, json=content, headers=headers)

    return fault


def raw_answer(status: int, content: bytes) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content)

    return fault


def raising(exc_type: type[httpx.TransportError]) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        raise exc_type("injected", request=request)

    return fault


def controller_answering(make: Callable[[int], list[bytes]]) -> Fault:
    """A controller whose ``/generate?count=n`` answers ``make(n)`` (hex, the spec's shape)."""

    def fault(request: httpx.Request) -> httpx.Response:
        count = int(request.url.params.get("count", "1"))
        texts = [sample.hex() for sample in make(count)]
        return httpx.Response(200, json={"data": texts[0] if count == 1 else texts})

    return fault


def seed_bodies(transport: FaultTransport, fortuna: str) -> list[list[bytes]]:
    """The seeds of every ``POST /seed`` the API sent to Fortuna, decoded."""
    bodies = []
    for request in transport.sent(fortuna, "/seed"):
        seeds = json.loads(request.content)["seeds"]
        bodies.append([bytes.fromhex(seed) for seed in seeds])
    return bodies


def step(client: TestClient, job: Callable[[], Awaitable[float]]) -> float:
    """Run one step of a background job on the app's event loop; the delay it asks for."""
    assert client.portal is not None
    return client.portal.call(job)


def ring(stack: PeerStack) -> dict[str, int]:
    level: dict[str, int] = httpx.get(f"{stack.virtio}/config/queue", timeout=5).json()
    return level


def read_ring(stack: PeerStack, count: int) -> bytes:
    """Exactly ``count`` bytes consumed from VirtIO's ring (``GET /stream``)."""
    if count == 0:
        return b""
    params = {"chunk_size": 65536, "max_bytes": count}
    response = httpx.get(f"{stack.virtio}/stream", params=params, timeout=10)
    assert response.status_code == 200
    return response.content


def resize_ring(stack: PeerStack, items: int) -> None:
    response = httpx.put(f"{stack.virtio}/config/queue", json={"queue_size": items}, timeout=5)
    assert response.status_code == 200, response.text


def fill_ring(stack: PeerStack, data: bytes) -> None:
    response = httpx.post(f"{stack.virtio}/seed", json={"seeds": [data.hex()]}, timeout=5)
    assert response.status_code == 200, response.text


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PeerStack:
    """Real controller, Fortuna and VirtIO processes; Fortuna seeded (through its own
    ``/seed``) so that the polling tests find it serving."""
    peers = shared_stack(request.config, tmp_path_factory)
    samples = httpx.get(f"{peers.controller}/generate?count=2", timeout=5).json()["data"]
    seeded = httpx.post(f"{peers.fortuna}/seed", json={"seeds": samples}, timeout=5)
    assert seeded.status_code == 200, seeded.text
    return peers


@pytest.fixture
def virtio_ring(stack: PeerStack) -> Iterator[PeerStack]:
    """VirtIO's ring empty at the start; its size restored and the ring emptied afterwards."""
    size = ring(stack)["queue_size"]
    read_ring(stack, ring(stack)["queue_bytes"])
    yield stack
    resize_ring(stack, size)
    read_ring(stack, ring(stack)["queue_bytes"])


@contextmanager
def api(
    tmp_path: Path,
    stack: PeerStack,
    env: Mapping[str, str] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: VirtualClock | None = None,
) -> Iterator[TestClient]:
    """The API on the real peers (``env`` on top), background jobs off (the tests run them)."""
    settings = api_settings(tmp_path, **{**stack.env(), **(env or {})})
    with running_api(settings, transport=transport, clock=clock) as client:
        yield client


# -- the TRNG quality gate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batches",
    [[32, 8], [30, 10], [40], [1] * 40, [4] * 10, [31, 1, 8]],
    ids=["exact", "straddling", "one-batch", "one-by-one", "fours", "one-short"],
)
def test_the_first_1024_bytes_are_the_startup_and_are_never_released(batches: list[int]) -> None:
    quality = TrngQuality(512)
    samples = random_samples(sum(batches), seed=1)
    released: list[bytes] = []
    position = 0
    for size in batches:
        released += quality.admit(samples[position : position + size])
        position += size
    assert released == samples[STARTUP_SAMPLES:]
    assert quality.batches_rejected == 0


def test_after_the_startup_every_passing_batch_is_released_whole() -> None:
    quality = TrngQuality(512)
    samples = random_samples(STARTUP_SAMPLES + 12, seed=2)
    assert quality.admit(samples[:STARTUP_SAMPLES]) == []
    for start in range(STARTUP_SAMPLES, len(samples), 4):
        batch = samples[start : start + 4]
        assert quality.admit(batch) == batch
    assert quality.health().state is HealthState.STEADY


def test_a_batch_with_a_stuck_run_is_rejected_whole_and_the_startup_runs_again() -> None:
    quality = TrngQuality(512)
    good = random_samples(STARTUP_SAMPLES + 4 + 2 + STARTUP_SAMPLES + 4, seed=3)
    assert quality.admit(good[:32]) == []
    assert quality.admit(good[32:36]) == good[32:36]

    stuck = [good[36], bytes(SAMPLE), good[37]]  # 32 identical bytes between two good samples
    assert quality.admit(stuck) == []  # not even the good sample before the run
    assert quality.batches_rejected == 1
    assert quality.last_failure is not None
    assert "repetition count" in quality.last_failure

    # The tracker restarted: the next 32 samples are a fresh start-up, then batches pass again.
    assert quality.health().state is HealthState.STARTUP
    assert quality.admit(good[38:70]) == []
    assert quality.admit(good[70:74]) == good[70:74]
    assert quality.batches_rejected == 1


def test_a_batch_failing_the_adaptive_proportion_test_is_rejected() -> None:
    quality = TrngQuality(512)
    assert quality.admit(random_samples(STARTUP_SAMPLES, seed=4)) == []
    # One value in every other byte of a 512-byte window: no run of 4 (the RCT stays quiet),
    # but 256 occurrences in the window, far above the APT cut-off.
    others = [b for b in random.Random(5).randbytes(600) if b != 0xAB][:256]
    window = bytes(v for other in others for v in (0xAB, other))
    assert quality.admit(items_of(window, SAMPLE)) == []
    assert quality.batches_rejected == 1
    assert quality.last_failure is not None
    assert "adaptive proportion" in quality.last_failure


def test_the_legacy_metrics_see_every_byte_fed_including_startup_and_rejected_ones() -> None:
    quality = TrngQuality(512)
    good = random_samples(STARTUP_SAMPLES + 4, seed=6)
    stuck = [bytes(SAMPLE)] * 3
    fed = [good[:32], good[32:], stuck]
    for batch in fed:
        quality.admit(batch)
    data = b"".join(b"".join(batch) for batch in fed)
    monobit = quality.legacy().monobit
    assert monobit.total == 8 * len(data)
    assert monobit.ones == sum(bin(byte).count("1") for byte in data)


# -- TRNG polling ----------------------------------------------------------------------------------


def test_poll_trng_stores_32_byte_samples_from_the_controller_after_the_startup(
    tmp_path: Path, stack: PeerStack
) -> None:
    env = {"LOKEY_TRNG_POLL_SAMPLES": "8", "TRNG_POLL_INTERVAL_MS": "50"}
    clock = VirtualClock()
    with api(tmp_path, stack, env, clock=clock) as client:
        service = api_service(client)
        for poll in range(1, STARTUP_SAMPLES // 8 + 1):
            assert step(client, service.background.poll_trng) == 0.05
            clock.advance(0.05)
            stats = service.store.stats("trng")
            assert (stats.items, stats.polling_count) == (0, poll)
        assert step(client, service.background.poll_trng) == 0.05
        stats = service.store.stats("trng")
        assert (stats.items, stats.bytes, stats.polling_count) == (8, 8 * SAMPLE, 5)
        stored = items_of(service.store.take("trng", 8 * SAMPLE), SAMPLE)
    assert len(set(stored)) == 8


def test_poll_trng_rejects_a_batch_the_health_tests_flag_and_restarts_the_startup(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    env = {"LOKEY_TRNG_POLL_SAMPLES": "8"}
    clock = VirtualClock()
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)

        def poll(times: int) -> int:
            for _ in range(times):
                clock.advance(step(client, service.background.poll_trng))
            return service.store.stats("trng").items

        assert poll(5) == 8  # the start-up, then one stored batch
        # A controller handing out a stuck sample (the real one never would).
        transport.fail(
            stack.controller,
            controller_answering(lambda n: [*random_samples(n - 1, seed=7), bytes(SAMPLE)]),
        )
        assert poll(1) == 8
        assert service.quality.batches_rejected == 1
        transport.heal()
        assert poll(4) == 8  # a fresh start-up: 32 more samples, none stored
        assert poll(1) == 16


def test_poll_trng_waits_for_a_controller_answering_503_without_counting_a_failure(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    unavailable = {"error": "Failed to generate random data"}
    transport.fail(stack.controller, answer(503, unavailable, headers={"Retry-After": "7"}))
    with api(tmp_path, stack, {"TRNG_POLL_INTERVAL_MS": "100"}, transport=transport) as client:
        service = api_service(client)
        delay = step(client, service.background.poll_trng)
        stats = service.store.stats("trng")
        counters = service.background.counters
    assert delay >= 7
    assert counters["trng_poll_failed"] == 0
    assert (stats.total_generated, stats.polling_count) == (0, 0)


def _hex_of(count: int, size: int = SAMPLE) -> list[str]:
    return [sample[:size].hex() for sample in random_samples(count, seed=8)]


MALFORMED_CONTROLLER_ANSWERS: dict[str, Fault] = {
    "a-31-byte-sample": answer(200, {"data": [*_hex_of(7), _hex_of(1, 31)[0]]}),
    "all-31-byte-samples": answer(200, {"data": _hex_of(8, 31)}),
    "not-hex": answer(200, {"data": [*_hex_of(7), "zz" * SAMPLE]}),
    "too-few-samples": answer(200, {"data": _hex_of(7)}),
    "too-many-samples": answer(200, {"data": _hex_of(9)}),
    "one-string-for-eight": answer(200, {"data": _hex_of(1)[0]}),
    "no-data-field": answer(200, {"samples": _hex_of(8)}),
    "not-json": raw_answer(200, b"<html>gateway</html>"),
    "http-500": answer(500, {"error": "Failed to generate random data"}),
}


@pytest.mark.parametrize(
    "fault", MALFORMED_CONTROLLER_ANSWERS.values(), ids=list(MALFORMED_CONTROLLER_ANSWERS)
)
def test_poll_trng_stores_nothing_from_a_malformed_answer_and_counts_a_failure(
    tmp_path: Path, stack: PeerStack, fault: Fault
) -> None:
    transport = FaultTransport()
    transport.fail(stack.controller, fault)
    env = {"LOKEY_TRNG_POLL_SAMPLES": "8", "TRNG_POLL_INTERVAL_MS": "100"}
    with api(tmp_path, stack, env, transport=transport) as client:
        service = api_service(client)
        delay = step(client, service.background.poll_trng)
        stats = service.store.stats("trng")
        legacy = service.quality.legacy()
    assert delay == 0.1
    assert service.background.counters["trng_poll_failed"] == 1
    assert (stats.total_generated, stats.polling_count) == (0, 0)
    assert legacy.monobit.total == 0  # the bytes were not even looked at


def test_poll_trng_returns_promptly_when_the_controller_refuses_connections(
    tmp_path: Path, stack: PeerStack
) -> None:
    env = {"CONTROLLER_ADDR": dead_address(), "LOKEY_HTTP_TIMEOUT_S": "5"}
    with api(tmp_path, stack, env) as client:
        service = api_service(client)
        started = time.monotonic()
        step(client, service.background.poll_trng)
        elapsed = time.monotonic() - started
        assert service.background.counters["trng_poll_failed"] == 1
        assert service.store.stats("trng").total_generated == 0
    assert elapsed < 2.5  # a refusal is a failure at once, not after the 5 s timeout


# -- Fortuna polling -------------------------------------------------------------------------------


def test_poll_fortuna_tops_up_a_low_queue_with_1_mib_in_64_kib_items_and_asks_to_continue(
    tmp_path: Path, stack: PeerStack
) -> None:
    env = {"LOKEY_FORTUNA_LOW_WATER_BYTES": str(256 << 10), "FORTUNA_POLL_INTERVAL_MS": "50"}
    with api(tmp_path, stack, env, clock=VirtualClock()) as client:
        service = api_service(client)
        assert step(client, service.background.poll_fortuna) == 0.0
        stats = service.store.stats("fortuna")
        assert (stats.items, stats.bytes) == (16, MIB)
        # Above the mark: one reference-sized 256-byte item per poll, at the poll interval.
        assert step(client, service.background.poll_fortuna) == 0.05
        stats = service.store.stats("fortuna")
        assert (stats.items, stats.bytes, stats.polling_count) == (17, MIB + 256, 2)


def test_poll_fortuna_repeats_top_ups_without_delay_until_the_queue_is_above_the_mark(
    tmp_path: Path, stack: PeerStack
) -> None:
    env = {"LOKEY_FORTUNA_LOW_WATER_BYTES": str(2 * MIB), "FORTUNA_POLL_INTERVAL_MS": "50"}
    with api(tmp_path, stack, env, clock=VirtualClock()) as client:
        service = api_service(client)
        delays = [step(client, service.background.poll_fortuna) for _ in range(3)]
        stats = service.store.stats("fortuna")
    assert delays == [0.0, 0.0, 0.05]
    assert (stats.items, stats.bytes) == (33, 2 * MIB + 256)


def test_poll_fortuna_keeps_the_poll_interval_even_when_stepped_early(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"LOKEY_FORTUNA_LOW_WATER_BYTES": "0", "FORTUNA_POLL_INTERVAL_MS": "100"}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        poll = api_service(client).background.poll_fortuna
        assert step(client, poll) == pytest.approx(0.1)
        clock.advance(0.04)  # e.g. woken by a client's request: no poll before it is due
        assert step(client, poll) == pytest.approx(0.06)
        assert len(transport.sent(stack.fortuna, "/generate")) == 1
        clock.advance(0.06)
        assert step(client, poll) == pytest.approx(0.1)
        assert len(transport.sent(stack.fortuna, "/generate")) == 2


def test_poll_fortuna_does_not_ask_fortuna_when_the_queue_is_full(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    env = {
        "FORTUNA_QUEUE_SIZE": "10",
        "LOKEY_FORTUNA_LOW_WATER_BYTES": "0",
        "FORTUNA_POLL_INTERVAL_MS": "50",
    }
    clock = VirtualClock()
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        for _ in range(10):
            assert step(client, service.background.poll_fortuna) == 0.05
            clock.advance(0.05)
        asked = len(transport.sent(stack.fortuna, "/generate"))
        assert service.store.stats("fortuna").items == 10
        assert step(client, service.background.poll_fortuna) == 0.05
        stats = service.store.stats("fortuna")
    assert asked == 10
    assert len(transport.sent(stack.fortuna, "/generate")) == asked  # no request at all
    assert (stats.items, stats.dropped) == (10, 0)


def test_poll_fortuna_treats_an_unseeded_fortuna_503_as_not_ready_not_as_a_failure(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    unseeded = {"error": "Generator not seeded"}
    transport.fail(stack.fortuna, answer(503, unseeded, headers={"Retry-After": "1"}))
    with api(tmp_path, stack, {"FORTUNA_POLL_INTERVAL_MS": "50"}, transport=transport) as client:
        service = api_service(client)
        delay = step(client, service.background.poll_fortuna)
        stats = service.store.stats("fortuna")
        counters = service.background.counters
    assert delay >= 0.05
    assert counters["fortuna_poll_failed"] == 0
    assert (stats.total_generated, stats.polling_count) == (0, 0)


@pytest.mark.parametrize(
    "fault",
    [raw_answer(200, bytes(100)), answer(500, {"error": "Failed to generate data"})],
    ids=["short-body", "http-500"],
)
def test_poll_fortuna_stores_nothing_from_a_bad_answer_and_counts_a_failure(
    tmp_path: Path, stack: PeerStack, fault: Fault
) -> None:
    transport = FaultTransport()
    transport.fail(stack.fortuna, fault)
    with api(tmp_path, stack, transport=transport) as client:
        service = api_service(client)
        step(client, service.background.poll_fortuna)
        stats = service.store.stats("fortuna")
    assert service.background.counters["fortuna_poll_failed"] == 1
    assert (stats.total_generated, stats.polling_count) == (0, 0)


# -- Fortuna seeding -------------------------------------------------------------------------------


def test_the_first_seeding_round_seeds_a_fresh_fortuna_and_later_rounds_send_the_setting(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    with serve("fortuna", tmp_path, settings_names=FORTUNA_ENV) as fortuna:
        assert fortuna.health.status_code == 503  # unseeded
        env = {
            "FORTUNA_ADDR": fortuna.base,
            "FORTUNA_SEED_SAMPLES": "5",
            "FORTUNA_SEED_INTERVAL_SECONDS": "7",
        }
        with api(tmp_path, stack, env, transport=transport) as client:
            background = api_service(client).background
            assert step(client, background.seed_fortuna) == 7
            health = httpx.get(f"{fortuna.base}/health", timeout=5)
            info = httpx.get(f"{fortuna.base}/info", timeout=5).json()
            assert step(client, background.seed_fortuna) == 7
            assert step(client, background.seed_fortuna) == 7
        first, *later = seed_bodies(transport, fortuna.base)
    # design.md "Fortuna start-up": at least 2 x 32 bytes, enough for the direct reseed ...
    assert len(first) >= 2
    assert all(len(seed) == SAMPLE for seed in first)
    assert health.status_code == 200
    assert info["seeded"] is True
    assert info["direct_reseeds"] == 1
    # ... and every later round sends FORTUNA_SEED_SAMPLES fresh samples.
    assert [len(seeds) for seeds in later] == [5, 5]
    every = [seed for seeds in (first, *later) for seed in seeds]
    assert len(set(every)) == len(every)


def test_fortuna_seed_samples_are_fresh_and_never_enter_the_trng_queue(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    env = {"LOKEY_TRNG_POLL_SAMPLES": "8"}
    clock = VirtualClock()
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        for _ in range(3):
            clock.advance(step(client, service.background.seed_fortuna))
        assert service.store.stats("trng").total_generated == 0
        for _ in range(8):  # the start-up, then 32 stored samples
            clock.advance(step(client, service.background.poll_trng))
        stats = service.store.stats("trng")
        queued = set(items_of(service.store.take("trng", stats.bytes), SAMPLE))
    seeds = {seed for seeds in seed_bodies(transport, stack.fortuna) for seed in seeds}
    assert len(seeds) == 3 * 32  # FORTUNA_SEED_SAMPLES defaults to 32 (design.md)
    assert len(queued) == 32
    assert not seeds & queued


BAD_SEEDS = [
    b"\xff" * SAMPLE,  # all 0xFF (fortuna.md §7)
    bytes(SAMPLE),  # all equal
    b"\xff" * 30 + b"\x01\x02",  # more than 90 % 0xFF
    bytes.fromhex("ffff0000") * 8,  # the unlocked-chip pattern: low entropy
]


def test_seed_fortuna_never_sends_samples_that_fail_the_seed_gate(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    good = random_samples(16, seed=9)

    def mixed(count: int) -> list[bytes]:
        out = [*good, *(BAD_SEEDS * 4)]
        return out[:count]

    transport.fail(stack.controller, controller_answering(mixed))
    with api(tmp_path, stack, {"FORTUNA_SEED_SAMPLES": "32"}, transport=transport) as client:
        background = api_service(client).background
        step(client, background.seed_fortuna)
    (sent,) = seed_bodies(transport, stack.fortuna)
    assert sent == good
    assert background.fortuna_seeded
    assert background.counters["fortuna_seed_gated_out"] == 16


def test_seed_fortuna_sends_nothing_when_every_sample_fails_the_gate(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    transport.fail(stack.controller, controller_answering(lambda n: [b"\xff" * SAMPLE] * n))
    with api(tmp_path, stack, transport=transport) as client:
        background = api_service(client).background
        step(client, background.seed_fortuna)
    assert transport.sent(stack.fortuna, "/seed") == []
    assert not background.fortuna_seeded
    assert background.counters["fortuna_seed_failed"] == 1


@pytest.mark.parametrize(
    ("interval", "delays"),
    [
        ("30", [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]),
        ("5", [1, 2, 4, 5, 5, 5, 5, 5, 5, 5, 5]),
        ("1", [1] * 11),
    ],
    ids=["interval-30", "interval-5", "interval-1"],
)
def test_first_seeding_rounds_back_off_1_2_4_s_up_to_the_interval_and_never_open_the_breaker(
    tmp_path: Path, stack: PeerStack, interval: str, delays: list[float]
) -> None:
    transport = FaultTransport()
    transport.fail(stack.controller, raising(httpx.ConnectError))
    clock = VirtualClock()
    env = {"FORTUNA_SEED_INTERVAL_SECONDS": interval}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        background = api_service(client).background
        got = []
        for _ in delays:  # more than twice the breaker's threshold
            got.append(step(client, background.seed_fortuna))
            clock.advance(got[-1])
        assert got == delays
        snapshot = background.fortuna_breaker.snapshot()
        assert (snapshot.state, snapshot.consecutive_failures, snapshot.opened) == (
            BreakerState.CLOSED,
            0,
            0,
        )
        assert background.counters["fortuna_seed_failed"] == len(delays)
        transport.heal()
        assert step(client, background.seed_fortuna) == float(interval)
    assert background.fortuna_seeded
    assert len(seed_bodies(transport, stack.fortuna)) == 1


def test_a_success_resets_the_first_round_back_off(tmp_path: Path, stack: PeerStack) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"FORTUNA_SEED_INTERVAL_SECONDS": "30"}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        background = api_service(client).background

        def rounds(count: int) -> list[float]:
            delays = []
            for _ in range(count):
                delays.append(step(client, background.seed_fortuna))
                clock.advance(delays[-1])
            return delays

        transport.fail(stack.controller, raising(httpx.ConnectError))
        assert rounds(3) == [1, 2, 4]
        transport.heal()
        assert rounds(1) == [30]
        # Fortuna restarts without a seed file: seeding starts over with a first round, whose
        # retries begin again at one second.
        transport.fail(stack.fortuna, answer(503, UNSEEDED, headers={"Retry-After": "1"}))
        step(client, background.poll_fortuna)
        transport.heal()
        transport.fail(stack.controller, raising(httpx.ConnectError))
        assert rounds(3) == [1, 2, 4]


@pytest.mark.parametrize("trial_succeeds", [True, False], ids=["trial-succeeds", "trial-fails"])
def test_after_the_first_success_five_failures_open_the_fortuna_breaker_for_300_s(
    tmp_path: Path, stack: PeerStack, trial_succeeds: bool
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"FORTUNA_SEED_INTERVAL_SECONDS": "30"}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        background = api_service(client).background
        assert step(client, background.seed_fortuna) == 30  # the first success
        transport.fail(stack.fortuna, answer(500, {"error": "Failed to reseed generator"}), "/seed")
        for failure in range(1, BREAKER_THRESHOLD):
            step(client, background.seed_fortuna)
            assert background.fortuna_breaker.state is BreakerState.CLOSED, failure
        step(client, background.seed_fortuna)
        assert background.fortuna_breaker.state is BreakerState.OPEN

        # Open: the next round sends nothing (not even a controller request) and waits 300 s.
        asked = len(transport.requests)
        assert step(client, background.seed_fortuna) >= BREAKER_OPEN_S
        clock.advance(BREAKER_OPEN_S - 1)
        step(client, background.seed_fortuna)
        assert len(transport.requests) == asked

        # After 300 s: one half-open trial decides.
        clock.advance(1)
        if trial_succeeds:
            transport.heal()
        delay = step(client, background.seed_fortuna)
        trial = transport.sent(stack.fortuna, "/seed")[-1]
        snapshot = background.fortuna_breaker.snapshot()
        after_trial = len(transport.requests)
        next_delay = step(client, background.seed_fortuna)
        sent_next = len(transport.requests) - after_trial
    assert transport.requests.index(trial) >= asked  # the trial really reached Fortuna
    if trial_succeeds:
        assert snapshot.state is BreakerState.CLOSED
        assert snapshot.consecutive_failures == 0
        assert delay == next_delay == 30
        assert sent_next > 0
    else:  # re-opened for another 300 s: the next round sends nothing
        assert snapshot.state is BreakerState.OPEN
        assert snapshot.opened == 2
        assert next_delay >= BREAKER_OPEN_S
        assert sent_next == 0


@pytest.mark.parametrize("peer", ["controller", "fortuna"])
@pytest.mark.parametrize("seeded_before", [False, True], ids=["first-round", "later-round"])
def test_a_peer_answering_503_is_not_a_seeding_failure(
    tmp_path: Path, stack: PeerStack, peer: str, seeded_before: bool
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    base = stack.controller if peer == "controller" else stack.fortuna
    with api(tmp_path, stack, transport=transport, clock=clock) as client:
        background = api_service(client).background
        if seeded_before:
            step(client, background.seed_fortuna)
        transport.fail(base, answer(503, {"error": "not ready"}, headers={"Retry-After": "2"}))
        for _ in range(2 * BREAKER_THRESHOLD):
            delay = step(client, background.seed_fortuna)
            assert delay >= (2 if seeded_before else 1)  # at least a second, never a spin
        snapshot = background.fortuna_breaker.snapshot()
    assert background.counters["fortuna_seed_failed"] == 0
    assert (snapshot.state, snapshot.consecutive_failures) == (BreakerState.CLOSED, 0)


CONTROLLER_FAULTS: dict[str, Fault] = {
    "refused": raising(httpx.ConnectError),
    "http-500": answer(500, {"error": "Failed to generate random data"}),
    "malformed": answer(200, {"data": "not samples"}),
    "gate-shortfall": controller_answering(lambda n: [b"\xff" * SAMPLE] * n),
}


@pytest.mark.parametrize("fault", CONTROLLER_FAULTS.values(), ids=list(CONTROLLER_FAULTS))
def test_controller_failures_and_gate_shortfalls_never_count_against_the_fortuna_breaker(
    tmp_path: Path, stack: PeerStack, fault: Fault
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"FORTUNA_SEED_INTERVAL_SECONDS": "30"}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        background = api_service(client).background
        assert step(client, background.seed_fortuna) == 30  # the first success
        transport.fail(stack.controller, fault)
        for _ in range(2 * BREAKER_THRESHOLD):
            assert step(client, background.seed_fortuna) == 30
            clock.advance(30)
        snapshot = background.fortuna_breaker.snapshot()
    assert (snapshot.state, snapshot.consecutive_failures, snapshot.opened) == (
        BreakerState.CLOSED,
        0,
        0,
    )
    assert background.counters["fortuna_seed_failed"] == 2 * BREAKER_THRESHOLD
    assert len(seed_bodies(transport, stack.fortuna)) == 1  # nothing reached Fortuna


def _open_the_fortuna_breaker(
    client: TestClient, transport: FaultTransport, stack: PeerStack
) -> None:
    """A first success, then Fortuna's /seed failing until the breaker opens."""
    background = api_service(client).background
    step(client, background.seed_fortuna)
    assert background.fortuna_seeded
    transport.fail(stack.fortuna, answer(500, {"error": "Failed to reseed generator"}), "/seed")
    for _ in range(BREAKER_THRESHOLD):
        step(client, background.seed_fortuna)
    assert background.fortuna_breaker.state is BreakerState.OPEN
    transport.heal()


def test_while_the_fortuna_breaker_is_open_no_controller_samples_are_fetched(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    with api(tmp_path, stack, transport=transport, clock=clock) as client:
        background = api_service(client).background
        _open_the_fortuna_breaker(client, transport, stack)
        fetched = len(transport.sent(stack.controller, "/generate"))
        for _ in range(3):
            assert step(client, background.seed_fortuna) >= 100
            clock.advance(100)
        assert len(transport.sent(stack.controller, "/generate")) == fetched
        assert background.counters["fortuna_seed_refused"] == 3


def test_a_controller_failure_in_half_open_leaves_the_fortuna_trial_to_the_next_round(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    with api(tmp_path, stack, transport=transport, clock=clock) as client:
        background = api_service(client).background
        _open_the_fortuna_breaker(client, transport, stack)
        clock.advance(BREAKER_OPEN_S)
        transport.fail(stack.controller, raising(httpx.ConnectError))
        seeds_before = len(seed_bodies(transport, stack.fortuna))
        step(client, background.seed_fortuna)
        waiting = background.fortuna_breaker.snapshot()
        transport.heal()
        step(client, background.seed_fortuna)  # the trial, with samples this time
        after = background.fortuna_breaker.snapshot()
    assert (waiting.state, waiting.trial_in_flight, waiting.trials) == (
        BreakerState.HALF_OPEN,
        False,
        0,
    )
    assert waiting.opened == 1
    assert len(seed_bodies(transport, stack.fortuna)) == seeds_before + 1
    assert (after.state, after.consecutive_failures, after.opened) == (BreakerState.CLOSED, 0, 1)


def test_an_unseeded_answer_to_a_fortuna_poll_makes_the_next_seeding_round_a_first_round(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"FORTUNA_SEED_INTERVAL_SECONDS": "30"}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        background = api_service(client).background
        assert step(client, background.seed_fortuna) == 30
        assert background.fortuna_seeded
        assert not background.fortuna_seed_wake.is_set()

        transport.fail(stack.fortuna, answer(503, UNSEEDED, headers={"Retry-After": "1"}))
        step(client, background.poll_fortuna)
        assert background.fortuna_seeded is False
        assert background.fortuna_seed_wake.is_set()  # the seeding job runs again at once
        assert client.get("/api/v1/status").json()["seeding"]["fortuna"]["seeded"] is False

        # A first round: Fortuna's /seed failing is retried after 1, 2, 4 ... s and never
        # counts against the breaker (a later round would wait 30 s and count a failure).
        transport.heal()
        transport.fail(stack.fortuna, answer(500, {"error": "Failed to reseed generator"}), "/seed")
        delays = []
        for _ in range(BREAKER_THRESHOLD + 1):
            delays.append(step(client, background.seed_fortuna))
            clock.advance(delays[-1])
        snapshot = background.fortuna_breaker.snapshot()
        transport.heal()
        assert step(client, background.seed_fortuna) == 30
    assert delays == [1, 2, 4, 8, 16, 30]
    assert (snapshot.state, snapshot.consecutive_failures) == (BreakerState.CLOSED, 0)
    assert background.fortuna_seeded


def test_a_fortuna_that_lost_its_seed_is_seeded_at_once_even_while_its_breaker_is_open(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    with api(tmp_path, stack, transport=transport, clock=clock) as client:
        background = api_service(client).background
        _open_the_fortuna_breaker(client, transport, stack)
        sent = len(seed_bodies(transport, stack.fortuna))
        transport.fail(stack.fortuna, answer(503, UNSEEDED, headers={"Retry-After": "1"}))
        step(client, background.poll_fortuna)
        transport.heal()
        step(client, background.seed_fortuna)  # long before the breaker's 300 s are over
    assert len(seed_bodies(transport, stack.fortuna)) == sent + 1
    assert background.fortuna_seeded


def test_a_fortuna_503_other_than_not_seeded_leaves_the_seeding_state_alone(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    with api(tmp_path, stack, transport=transport, clock=VirtualClock()) as client:
        background = api_service(client).background
        step(client, background.seed_fortuna)
        assert background.fortuna_seeded
        busy = {"error": "Service temporarily overloaded"}
        transport.fail(stack.fortuna, answer(503, busy, headers={"Retry-After": "1"}))
        step(client, background.poll_fortuna)
    assert background.fortuna_seeded is True
    assert not background.fortuna_seed_wake.is_set()
    assert background.counters["fortuna_poll_unavailable"] == 1


# -- VirtIO seeding --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["trng", "fortuna", "both"])
def test_seed_virtio_consumes_from_the_configured_source_exactly_what_virtio_receives(
    tmp_path: Path, virtio_ring: PeerStack, source: str
) -> None:
    stack = virtio_ring
    trng = random_samples(10, seed=10)
    fortuna = items_of(random.Random(11).randbytes(10 * 256), 256)
    before = ring(stack)
    env = {"VIRTIO_SEEDING_SOURCE": source, **NO_RESERVE}
    with api(tmp_path, stack, env, clock=VirtualClock()) as client:
        service = api_service(client)
        service.store.push("trng", trng)
        service.store.push("fortuna", fortuna)
        step(client, service.background.seed_virtio)
        consumed = {s: service.store.stats(s).consumed_bytes for s in ("trng", "fortuna")}
        counted = service.background.counters["virtio_seed_bytes"]
    after = ring(stack)
    received = read_ring(stack, after["queue_bytes"])
    arrived = after["generated_bytes"] - before["generated_bytes"]
    assert arrived == len(received) == consumed["trng"] + consumed["fortuna"] == counted > 0
    if source == "trng":
        assert received == b"".join(trng)
        assert consumed["fortuna"] == 0
    elif source == "fortuna":
        assert received == b"".join(fortuna)
        assert consumed["trng"] == 0
    else:
        assert b"".join(trng) in received
        assert b"".join(fortuna) in received


@pytest.mark.parametrize(
    ("level", "at_once"),
    [(0, True), (159, True), (160, False), (320, False)],
    ids=["empty", "just-below-half", "half", "full"],
)
def test_seed_virtio_refills_a_ring_below_half_and_otherwise_only_after_the_interval(
    tmp_path: Path, virtio_ring: PeerStack, level: int, at_once: bool
) -> None:
    stack = virtio_ring
    resize_ring(stack, 10)  # 320 bytes
    if level:
        fill_ring(stack, random.Random(12).randbytes(level))
    clock = VirtualClock()
    env = {"VIRTIO_SEED_INTERVAL_SECONDS": "10", "VIRTIO_SEEDING_SOURCE": "trng", **NO_RESERVE}
    with api(tmp_path, stack, env, clock=clock) as client:
        service = api_service(client)
        service.store.push("trng", random_samples(20, seed=13))
        step(client, service.background.seed_virtio)
        first = service.store.stats("trng").consumed_bytes
        clock.advance(10)  # the seeding interval has passed: refill whatever the level
        step(client, service.background.seed_virtio)
        second = service.store.stats("trng").consumed_bytes
    room = 320 - level
    assert first == (room if at_once else 0)
    assert second == room
    assert ring(stack)["queue_bytes"] == 320


def test_seed_virtio_switches_source_on_the_very_next_step(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_SEED_BYTES": "64", **NO_RESERVE}
    with api(tmp_path, stack, env, clock=VirtualClock()) as client:
        service = api_service(client)
        service.store.push("trng", random_samples(10, seed=14))
        service.store.push("fortuna", random_samples(10, seed=15))

        def consumed() -> tuple[int, int]:
            return (
                service.store.stats("trng").consumed_bytes,
                service.store.stats("fortuna").consumed_bytes,
            )

        step(client, service.background.seed_virtio)
        assert consumed() == (64, 0)

        service.runtime.virtio_source = "fortuna"
        step(client, service.background.seed_virtio)
        assert consumed() == (64, 64)

        size = ring(stack)["queue_size"]
        body = {"seeding_source": "trng", "queue_size": size}
        assert client.put("/api/v1/config/virtio", json=body).status_code == 200
        step(client, service.background.seed_virtio)
        assert consumed() == (128, 64)

        body = {"seeding_source": "both", "queue_size": size}
        assert client.put("/config/virtio", json=body).status_code == 200
        step(client, service.background.seed_virtio)
        trng, fortuna = consumed()
    assert trng > 128
    assert fortuna > 64
    assert (trng - 128) + (fortuna - 64) == 64


def test_bytes_of_a_failed_virtio_seed_are_counted_lost_and_never_sent_or_served_again(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    transport.fail(stack.virtio, answer(500, {"error": "Failed to seed any data"}), "/seed")
    samples = random_samples(12, seed=16)
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_SEED_BYTES": "64", **NO_RESERVE}
    with api(tmp_path, stack, env, transport=transport, clock=VirtualClock()) as client:
        service = api_service(client)
        service.store.push("trng", samples)
        step(client, service.background.seed_virtio)
        (attempt,) = transport.sent(stack.virtio, "/seed")
        lost = b"".join(bytes.fromhex(s) for s in json.loads(attempt.content)["seeds"])
        assert lost == b"".join(samples[:2])
        assert service.background.counters["virtio_seed_lost_bytes"] == 64
        assert service.store.stats("trng").consumed_bytes == 64
        assert ring(stack)["queue_bytes"] == 0

        served = client.post(
            "/api/v1/data", json={"format": "binary", "limit": 128, "source": "trng"}
        )
        assert served.status_code == 200
        transport.heal()
        step(client, service.background.seed_virtio)
    received = read_ring(stack, ring(stack)["queue_bytes"])
    assert served.content == b"".join(samples[2:6])
    assert received == b"".join(samples[6:8])


def test_five_virtio_failures_open_its_breaker_and_nothing_is_consumed_while_open(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    transport.fail(stack.virtio, answer(500, {"error": "Failed to seed any data"}), "/seed")
    samples = random_samples(40, seed=17)
    clock = VirtualClock()
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_SEED_BYTES": "64", **NO_RESERVE}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        background = service.background
        service.store.push("trng", samples)
        for _ in range(BREAKER_THRESHOLD):
            step(client, background.seed_virtio)
        assert background.virtio_breaker.state is BreakerState.OPEN
        lost = service.store.stats("trng").consumed_bytes
        assert lost == background.counters["virtio_seed_lost_bytes"] == 5 * 64

        asked = len(transport.sent(stack.virtio))
        assert step(client, background.seed_virtio) >= BREAKER_OPEN_S
        clock.advance(BREAKER_OPEN_S - 1)
        step(client, background.seed_virtio)
        assert service.store.stats("trng").consumed_bytes == lost
        assert len(transport.sent(stack.virtio)) == asked

        clock.advance(1)
        transport.heal()
        step(client, background.seed_virtio)  # the half-open trial
        assert background.virtio_breaker.snapshot().state is BreakerState.CLOSED
    assert read_ring(stack, ring(stack)["queue_bytes"]) == b"".join(samples[10:12])


def test_an_unexpected_error_in_the_half_open_trial_does_not_wedge_the_virtio_breaker(
    tmp_path: Path, virtio_ring: PeerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    transport.fail(stack.virtio, answer(500, {"error": "Failed to seed any data"}), "/seed")
    samples = random_samples(40, seed=24)
    clock = VirtualClock()
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_SEED_BYTES": "64", **NO_RESERVE}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        background = service.background
        service.store.push("trng", samples)
        for _ in range(BREAKER_THRESHOLD):
            step(client, background.seed_virtio)
        assert background.virtio_breaker.state is BreakerState.OPEN
        clock.advance(BREAKER_OPEN_S)
        transport.heal()

        take = service.store.take
        failures = iter([StoreError("injected: the disk said no")])

        def flaky_take(*args: Any, **kwargs: Any) -> bytes:
            error = next(failures, None)
            if error is not None:
                raise error
            return take(*args, **kwargs)

        monkeypatch.setattr(service.store, "take", flaky_take)
        with contextlib.suppress(StoreError):  # run_loop logs such an error and goes on
            step(client, background.seed_virtio)  # the trial meets the store's failure
        for _ in range(3):
            step(client, background.seed_virtio)
        breaker = background.virtio_breaker.snapshot()
    # The job goes on: the next trial seeds VirtIO and closes the breaker (spec §1.9), and the
    # two rounds after it refill the still nearly empty ring: 3 x 64 bytes, in queue order.
    assert breaker.state is BreakerState.CLOSED, breaker
    assert read_ring(stack, ring(stack)["queue_bytes"]) == b"".join(samples[10:16])


def test_seed_virtio_with_a_blank_virtio_addr_consumes_nothing(
    tmp_path: Path, stack: PeerStack
) -> None:
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"VIRTIO_ADDR": "", **NO_RESERVE}  # not the reserve: no VirtIO to send to
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        service.store.push("trng", random_samples(10, seed=18))
        service.store.push("fortuna", random_samples(10, seed=19))
        for _ in range(3):
            assert step(client, service.background.seed_virtio) > 0
            clock.advance(3600)  # even when the interval passes
        consumed = [service.store.stats(s).consumed_bytes for s in ("trng", "fortuna")]
    assert consumed == [0, 0]
    assert transport.requests == []


def test_seed_virtio_from_both_sources_with_one_byte_of_room_consumes_what_virtio_receives(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    resize_ring(stack, 10)  # 320 bytes
    fill_ring(stack, random.Random(20).randbytes(319))
    clock = VirtualClock()
    env = {"VIRTIO_SEED_INTERVAL_SECONDS": "10", "VIRTIO_SEEDING_SOURCE": "both", **NO_RESERVE}
    with api(tmp_path, stack, env, clock=clock) as client:
        service = api_service(client)
        service.store.push("trng", random_samples(4, seed=21))
        service.store.push("fortuna", random_samples(4, seed=22))
        clock.advance(10)  # a periodic round: the ring is not below half full
        step(client, service.background.seed_virtio)
        consumed = sum(service.store.stats(s).consumed_bytes for s in ("trng", "fortuna"))
    received = ring(stack)["queue_bytes"] - 319
    assert consumed == received <= 1


# -- VirtIO seeding: the TRNG reserve --------------------------------------------------------------

RESERVE = 8 * SAMPLE  # LOKEY_VIRTIO_TRNG_RESERVE_BYTES in the tests below


@pytest.mark.parametrize("queued", [0, 4, 8], ids=["empty", "below-the-reserve", "at-the-reserve"])
def test_seed_virtio_takes_nothing_from_a_trng_queue_not_above_the_reserve(
    tmp_path: Path, virtio_ring: PeerStack, queued: int
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    clock = VirtualClock()
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": str(RESERVE)}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        service.store.push("trng", random_samples(queued, seed=30))
        for _ in range(3):  # the ring is empty, and every round after the first is periodic
            step(client, service.background.seed_virtio)
            clock.advance(3600)
        stats = service.store.stats("trng")
        breaker = service.background.virtio_breaker.snapshot()
    assert (stats.consumed_bytes, stats.bytes) == (0, queued * SAMPLE)
    assert transport.sent(stack.virtio, "/seed") == []
    assert ring(stack)["queue_bytes"] == 0
    assert (breaker.state, breaker.consecutive_failures, breaker.trial_in_flight) == (
        BreakerState.CLOSED,
        0,
        False,
    )


def test_seed_virtio_takes_only_the_trng_bytes_beyond_the_reserve(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    samples = random_samples(20, seed=31)  # 640 bytes: 384 beyond the 256-byte reserve
    env = {
        "VIRTIO_SEEDING_SOURCE": "trng",
        "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": str(RESERVE),
        "LOKEY_VIRTIO_SEED_BYTES": "160",
    }
    with api(tmp_path, stack, env, clock=VirtualClock()) as client:
        service = api_service(client)
        service.store.push("trng", samples)
        taken = []
        for _ in range(5):
            step(client, service.background.seed_virtio)
            taken.append(service.store.stats("trng").consumed_bytes)
        # The reserve is the API clients': served in full, as it was queued.
        served = client.post(
            "/api/v1/data", json={"format": "binary", "limit": RESERVE, "source": "trng"}
        )
    assert taken == [160, 320, 384, 384, 384]
    assert read_ring(stack, ring(stack)["queue_bytes"]) == b"".join(samples[:12])
    assert served.status_code == 200
    assert served.content == b"".join(samples[12:])


def test_the_default_trng_reserve_is_32_kib(tmp_path: Path, virtio_ring: PeerStack) -> None:
    stack = virtio_ring
    samples = random_samples(1024 + 1, seed=32)  # 32 KiB and one sample more
    with api(tmp_path, stack, {"VIRTIO_SEEDING_SOURCE": "trng"}, clock=VirtualClock()) as client:
        service = api_service(client)
        service.store.push("trng", samples[:1024])
        step(client, service.background.seed_virtio)
        at_the_reserve = service.store.stats("trng").consumed_bytes
        service.store.push("trng", samples[1024:])
        step(client, service.background.seed_virtio)
        stats = service.store.stats("trng")
    assert at_the_reserve == 0
    assert (stats.consumed_bytes, stats.bytes) == (SAMPLE, 32 << 10)
    assert read_ring(stack, ring(stack)["queue_bytes"]) == samples[0]


@pytest.mark.parametrize(
    ("trng_samples", "from_trng"),
    [(4, 0), (8, 0), (9, 32), (12, 64), (20, 64)],
    ids=[
        "trng-below-the-reserve",
        "trng-at-the-reserve",
        "surplus-short-of-the-trng-half",
        "surplus-exactly-the-trng-half",
        "surplus-beyond-the-trng-half",
    ],
)
def test_seed_virtio_from_both_takes_from_fortuna_what_the_trng_share_cannot_supply(
    tmp_path: Path, virtio_ring: PeerStack, trng_samples: int, from_trng: int
) -> None:
    stack = virtio_ring
    trng = b"".join(random_samples(trng_samples, seed=33))
    fortuna = random.Random(34).randbytes(4 * 256)
    env = {
        "VIRTIO_SEEDING_SOURCE": "both",
        "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": str(RESERVE),
        "LOKEY_VIRTIO_SEED_BYTES": "128",
    }
    with api(tmp_path, stack, env, clock=VirtualClock()) as client:
        service = api_service(client)
        service.store.push("trng", items_of(trng, SAMPLE))
        service.store.push("fortuna", items_of(fortuna, 256))
        step(client, service.background.seed_virtio)
        consumed = {s: service.store.stats(s).consumed_bytes for s in ("trng", "fortuna")}
    received = read_ring(stack, ring(stack)["queue_bytes"])
    assert consumed == {"trng": from_trng, "fortuna": 128 - from_trng}
    parts = (trng[:from_trng], fortuna[: 128 - from_trng])
    assert received in (parts[0] + parts[1], parts[1] + parts[0])


# -- VirtIO seeding: interval, 503s and the breaker's permit ---------------------------------------


@pytest.mark.parametrize(("old", "new"), [(10, 60), (3600, 10)], ids=["lengthened", "shortened"])
def test_a_new_virtio_seed_interval_counts_from_the_moment_it_is_set(
    tmp_path: Path, virtio_ring: PeerStack, old: int, new: int
) -> None:
    stack = virtio_ring
    resize_ring(stack, 10)  # 320 bytes
    fill_ring(stack, random.Random(35).randbytes(160))  # half full: only a periodic round refills
    clock = VirtualClock()
    env = {
        "VIRTIO_SEED_INTERVAL_SECONDS": str(old),
        "VIRTIO_SEEDING_SOURCE": "trng",
        **NO_RESERVE,
    }
    with api(tmp_path, stack, env, clock=clock) as client:
        service = api_service(client)
        service.store.push("trng", random_samples(20, seed=36))
        clock.advance(5)
        body = {"seeding_source": "trng", "queue_size": 10, "seed_interval_seconds": new}
        assert client.put("/api/v1/config/virtio", json=body).status_code == 200
        due = 5.0 + new

        def consumed_at(when: float) -> int:
            clock.advance(when - clock.monotonic())
            step(client, service.background.seed_virtio)
            return service.store.stats("trng").consumed_bytes

        before = {when: consumed_at(when) for when in sorted({float(old), due - 0.5}) if when < due}
        at_due = consumed_at(due)
    assert before == dict.fromkeys(before, 0)  # not the old schedule, not early
    assert at_due == 160


def test_virtio_answering_503_to_the_seed_post_counts_as_a_breaker_failure(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    """The bytes were consumed and are lost: a VirtIO refusing only POSTs must not drain the
    queues unnoticed."""
    stack = virtio_ring
    transport = FaultTransport()
    refusing = answer(503, {"error": "Ring unavailable"}, headers={"Retry-After": "1"})
    transport.fail(stack.virtio, refusing, "/seed")
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_SEED_BYTES": "64", **NO_RESERVE}
    with api(tmp_path, stack, env, transport=transport, clock=VirtualClock()) as client:
        service = api_service(client)
        background = service.background
        service.store.push("trng", random_samples(40, seed=37))
        for _ in range(BREAKER_THRESHOLD):
            step(client, background.seed_virtio)
        breaker = background.virtio_breaker.snapshot()
        consumed = service.store.stats("trng").consumed_bytes
    assert (breaker.state, breaker.opened) == (BreakerState.OPEN, 1)
    assert consumed == background.counters["virtio_seed_lost_bytes"] == BREAKER_THRESHOLD * 64
    assert background.counters["virtio_seed_failed"] == BREAKER_THRESHOLD


def test_virtio_answering_503_to_its_level_query_is_not_a_failure_and_consumes_nothing(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    starting = answer(503, {"error": "starting"}, headers={"Retry-After": "3"})
    transport.fail(stack.virtio, starting, "/config/queue")
    clock = VirtualClock()
    env = {"VIRTIO_SEEDING_SOURCE": "trng", **NO_RESERVE}
    with api(tmp_path, stack, env, transport=transport, clock=clock) as client:
        service = api_service(client)
        background = service.background
        service.store.push("trng", random_samples(40, seed=38))
        delays = []
        for _ in range(2 * BREAKER_THRESHOLD):
            delays.append(step(client, background.seed_virtio))
            clock.advance(delays[-1])
        breaker = background.virtio_breaker.snapshot()
        consumed = service.store.stats("trng").consumed_bytes
    assert all(delay >= 3 for delay in delays)  # its Retry-After is honoured
    assert (breaker.state, breaker.consecutive_failures) == (BreakerState.CLOSED, 0)
    assert consumed == 0
    assert transport.sent(stack.virtio, "/seed") == []
    assert background.counters["virtio_seed_failed"] == 0


def _open_the_virtio_breaker(
    client: TestClient, transport: FaultTransport, stack: PeerStack
) -> None:
    """Five failing rounds of 64 bytes (320 bytes consumed and lost); healed afterwards."""
    background = api_service(client).background
    transport.fail(stack.virtio, answer(500, {"error": "Failed to seed any data"}), "/seed")
    for _ in range(BREAKER_THRESHOLD):
        step(client, background.seed_virtio)
    assert background.virtio_breaker.state is BreakerState.OPEN
    transport.heal()


VIRTIO_TRIAL_ENV = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_SEED_BYTES": "64", **NO_RESERVE}


@pytest.mark.parametrize("reason", ["nothing-queued", "level-503"])
def test_a_half_open_virtio_round_without_a_verdict_hands_its_trial_back(
    tmp_path: Path, virtio_ring: PeerStack, reason: str
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    clock = VirtualClock()
    later = random_samples(2, seed=40)
    with api(tmp_path, stack, VIRTIO_TRIAL_ENV, transport=transport, clock=clock) as client:
        service = api_service(client)
        background = service.background
        service.store.push("trng", random_samples(10, seed=39))  # what the failures consume
        _open_the_virtio_breaker(client, transport, stack)
        clock.advance(BREAKER_OPEN_S)
        if reason == "level-503":
            service.store.push("trng", later)
            starting = answer(503, {"error": "starting"}, headers={"Retry-After": "1"})
            transport.fail(stack.virtio, starting, "/config/queue")
        step(client, background.seed_virtio)  # half-open: the trial, without a verdict
        waiting = background.virtio_breaker.snapshot()
        transport.heal()
        if reason == "nothing-queued":
            service.store.push("trng", later)
        step(client, background.seed_virtio)  # the next round may take the trial
        closed = background.virtio_breaker.snapshot()
    assert (waiting.state, waiting.trial_in_flight) == (BreakerState.HALF_OPEN, False)
    assert closed.state is BreakerState.CLOSED
    assert read_ring(stack, ring(stack)["queue_bytes"]) == b"".join(later)


def test_a_cancelled_half_open_virtio_trial_hands_its_permit_back(
    tmp_path: Path, virtio_ring: PeerStack
) -> None:
    stack = virtio_ring
    transport = FaultTransport()
    clock = VirtualClock()
    later = random_samples(2, seed=42)
    with api(tmp_path, stack, VIRTIO_TRIAL_ENV, transport=transport, clock=clock) as client:
        service = api_service(client)
        background = service.background
        service.store.push("trng", random_samples(12, seed=41))
        _open_the_virtio_breaker(client, transport, stack)
        clock.advance(BREAKER_OPEN_S)
        sending = asyncio.Event()

        async def hang(request: httpx.Request) -> httpx.Response:
            sending.set()
            await asyncio.Event().wait()  # never set: the POST hangs until cancelled
            raise AssertionError("unreachable")

        transport.fail(stack.virtio, hang, "/seed")

        async def cancelled_trial() -> bool:
            task = asyncio.create_task(background.seed_virtio())
            async with asyncio.timeout(10):  # a bound, should the trial never reach the POST
                await sending.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return task.cancelled()

        assert client.portal is not None
        assert client.portal.call(cancelled_trial)
        waiting = background.virtio_breaker.snapshot()
        transport.heal()
        service.store.push("trng", later)
        step(client, background.seed_virtio)
        closed = background.virtio_breaker.snapshot()
    assert (waiting.state, waiting.trial_in_flight) == (BreakerState.HALF_OPEN, False)
    assert closed.state is BreakerState.CLOSED
    assert read_ring(stack, ring(stack)["queue_bytes"]) == b"".join(later)


# -- timeouts --------------------------------------------------------------------------------------

JOBS = ["poll_trng", "poll_fortuna", "seed_fortuna", "seed_virtio"]
FAILED_COUNTER = {
    "poll_trng": "trng_poll_failed",
    "poll_fortuna": "fortuna_poll_failed",
    "seed_fortuna": "fortuna_seed_failed",
    "seed_virtio": "virtio_seed_failed",
}


@pytest.mark.parametrize("job", JOBS)
def test_a_timed_out_call_is_a_failure_and_the_step_returns(
    tmp_path: Path, stack: PeerStack, job: str
) -> None:
    transport = FaultTransport()
    for base in (stack.controller, stack.fortuna, stack.virtio):
        transport.fail(base, raising(httpx.ReadTimeout))
    with api(tmp_path, stack, transport=transport, clock=VirtualClock()) as client:
        background = api_service(client).background
        delay = step(client, getattr(background, job))
    assert delay > 0
    assert background.counters[FAILED_COUNTER[job]] == 1


@contextmanager
def black_hole() -> Iterator[str]:
    """A peer that accepts connections and never answers (a hung process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("job", JOBS)
def test_a_hung_peer_is_given_up_after_the_configured_timeout(tmp_path: Path, job: str) -> None:
    with black_hole() as hung:
        env = {
            "CONTROLLER_ADDR": hung,
            "FORTUNA_ADDR": hung,
            "VIRTIO_ADDR": hung,
            "LOKEY_HTTP_TIMEOUT_S": "0.3",
        }
        with running_api(api_settings(tmp_path, **env), clock=VirtualClock()) as client:
            background = api_service(client).background
            started = time.monotonic()
            step(client, getattr(background, job))
            elapsed = time.monotonic() - started
            health_started = time.monotonic()
            health = client.get("/api/v1/health")
            health_elapsed = time.monotonic() - health_started
    assert 0.25 <= elapsed < 3.0  # it did wait for the peer, and gave up after the timeout
    assert background.counters[FAILED_COUNTER[job]] == 1
    assert health_elapsed < 3.0
    assert health.json()["status"] == "degraded"


#: 200 with a large body; :func:`trickling_peer` sends it one byte at a time, status line first.
TRICKLED_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    + b" " * 100_000
)


@contextmanager
def trickling_peer(byte_every_s: float = 0.05, give_up_s: float = 8.0) -> Iterator[str]:
    """A peer (a raw asyncio server on a free port, in its own thread) that answers every
    request one byte every ``byte_every_s``: far inside any read timeout, so only a deadline
    on the whole call ends the wait. After ``give_up_s`` it closes the connection, so that a
    client without such a deadline fails the test instead of hanging it."""
    started = threading.Event()
    control: dict[str, Callable[[], object]] = {}
    port: list[int] = []

    async def answer_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            deadline = time.monotonic() + give_up_s
            for byte in TRICKLED_ANSWER:
                if time.monotonic() > deadline:
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(byte_every_s)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(answer_slowly, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        control["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the trickling peer did not start"
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        control["stop"]()
        thread.join(10)


def _everyone_at(address: str, **env: str) -> dict[str, str]:
    return {"CONTROLLER_ADDR": address, "FORTUNA_ADDR": address, "VIRTIO_ADDR": address, **env}


@pytest.mark.parametrize("job", JOBS)
def test_a_peer_trickling_its_answer_is_given_up_at_the_whole_call_deadline(
    tmp_path: Path, job: str
) -> None:
    with trickling_peer() as slow:
        settings = api_settings(tmp_path, **_everyone_at(slow, LOKEY_HTTP_TIMEOUT_S="0.5"))
        with running_api(settings, clock=VirtualClock()) as client:
            background = api_service(client).background
            started = time.monotonic()
            delay = step(client, getattr(background, job))
            elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.0  # it waited for the peer, and gave up at the 0.5 s deadline
    assert delay > 0
    assert background.counters[FAILED_COUNTER[job]] == 1


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/status", "/metrics"])
def test_status_reads_of_a_trickling_peer_end_within_2_s(tmp_path: Path, path: str) -> None:
    """spec §0: /health must answer within Docker's 3 s HEALTHCHECK timeout, whatever the
    peers do; LOKEY_HTTP_TIMEOUT_S (5 s here) bounds only the background calls."""
    with trickling_peer() as slow:
        settings = api_settings(tmp_path, **_everyone_at(slow, LOKEY_HTTP_TIMEOUT_S="5"))
        with running_api(settings) as client:
            started = time.monotonic()
            response = client.get(path)
            elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 2.5
    if path == "/api/v1/health":
        body = response.json()
        assert body["status"] == "degraded"
        assert body["details"] == {
            "api": True,
            "controller": False,
            "fortuna": False,
            "virtio": False,
            "database": True,
        }


def test_an_unusable_peer_url_is_a_peer_error() -> None:
    async def scenario() -> dict[str, bool]:
        async with httpx.AsyncClient(timeout=1) as client:
            bad = "http://[::1"  # httpx.InvalidURL, which is no httpx.HTTPError
            peers = Peers(client, controller=bad, fortuna=bad, virtio=bad)
            with pytest.raises(PeerError):
                await peers.samples(1)
            with pytest.raises(PeerError):
                await peers.fortuna_bytes(256)
            with pytest.raises(PeerError):
                await peers.seed_virtio(bytes(32))
            return await peers.health()

    assert asyncio.run(scenario()) == {"controller": False, "fortuna": False, "virtio": False}


# -- run_loop --------------------------------------------------------------------------------------


def test_run_loop_logs_an_exception_from_a_step_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> int:
        calls = 0
        again = asyncio.Event()
        wake = asyncio.Event()

        async def job() -> float:
            nonlocal calls
            calls += 1
            if calls == 1:
                wake.set()  # spare the test the loop's one-second pause after an error
                raise RuntimeError("step exploded")
            again.set()
            return 3600.0

        task = asyncio.create_task(run_loop("exploding job", job, wake))
        try:
            await asyncio.wait_for(again.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return calls

    with caplog.at_level(logging.ERROR, logger="lokey.services.api"):
        calls = asyncio.run(scenario())
    assert calls == 2
    (record,) = [r for r in caplog.records if "exploding job" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


FAILING_STEPS = 201


@pytest.mark.parametrize(
    ("error", "level", "traceback"),
    [
        (StoreError("the disk said no"), logging.WARNING, False),
        (RuntimeError("step exploded"), logging.ERROR, True),
    ],
    ids=["lokey-error", "unexpected-exception"],
)
def test_run_loop_logs_a_persistent_failure_on_its_1st_101st_201st_occurrence_and_goes_on(
    caplog: pytest.LogCaptureFixture, error: Exception, level: int, traceback: bool
) -> None:
    calls = 0
    logged: list[tuple[int, logging.LogRecord]] = []  # (the step's occurrence, its record)

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "flaky job" in record.getMessage():
                logged.append((calls, record))

    async def scenario() -> None:
        done = asyncio.Event()
        wake = asyncio.Event()

        async def job() -> float:
            nonlocal calls
            calls += 1
            if calls <= FAILING_STEPS:
                wake.set()  # spare the test the loop's one-second pause after an error
                raise error
            done.set()
            return 3600.0

        task = asyncio.create_task(run_loop("flaky job", job, wake))
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    caplog.set_level(logging.DEBUG, logger="lokey.services.api")
    recorder = Recorder()
    logging.getLogger("lokey.services.api").addHandler(recorder)
    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("lokey.services.api").removeHandler(recorder)
    assert calls == FAILING_STEPS + 1  # the loop went on after every failure
    assert [occurrence for occurrence, _ in logged] == [1, 101, 201]
    for _, record in logged:
        assert record.levelno == level
        if traceback:
            assert record.exc_info is not None
            assert record.exc_info[1] is error
        else:
            assert not record.exc_info  # a known failure: one line, no traceback
            assert str(error) in record.getMessage()


def test_run_loop_logs_the_first_unexpected_exception_even_after_a_store_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store error long ago must not swallow the traceback of the first real bug."""
    errors: list[Exception] = [StoreError("the disk said no"), TypeError("a bug")]

    async def scenario() -> None:
        done = asyncio.Event()
        wake = asyncio.Event()

        async def job() -> float:
            if errors:
                wake.set()
                raise errors.pop(0)
            done.set()
            return 3600.0

        task = asyncio.create_task(run_loop("mixed job", job, wake))
        try:
            await asyncio.wait_for(done.wait(), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.DEBUG, logger="lokey.services.api"):
        asyncio.run(scenario())
    records = [r for r in caplog.records if "mixed job" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING, logging.ERROR]
    assert not records[0].exc_info
    assert records[1].exc_info is not None
    assert isinstance(records[1].exc_info[1], TypeError)


def test_run_loop_wakes_early_when_its_event_is_set() -> None:
    async def scenario() -> None:
        calls = 0
        again = asyncio.Event()
        wake = asyncio.Event()

        async def job() -> float:
            nonlocal calls
            calls += 1
            if calls == 2:
                again.set()
            return 3600.0  # an hour: only the wake event can bring the second call

        task = asyncio.create_task(run_loop("sleepy job", job, wake))
        try:
            for _ in range(20):
                await asyncio.sleep(0)
            assert calls == 1
            wake.set()
            await asyncio.wait_for(again.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_run_loop_runs_a_step_again_at_once_when_it_asks_for_no_delay() -> None:
    async def scenario() -> int:
        calls = 0
        done = asyncio.Event()

        async def job() -> float:
            nonlocal calls
            calls += 1
            if calls == 4:
                done.set()
                return 3600.0
            return 0.0  # a top-up that should continue without delay

        task = asyncio.create_task(run_loop("eager job", job))
        try:
            await asyncio.wait_for(done.wait(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return calls

    assert asyncio.run(scenario()) == 4

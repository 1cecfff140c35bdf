"""Two API instances on one Redis (issue 11, "Proof"), as real processes.

One controller (emulated chip, instant timing) and one Fortuna feed two ``lokey serve api``
processes that share their queues through ``STORE_URL=redis://...`` (a private prefix on this
worker's test Redis, tests/redis_helpers.py). Consumer threads spread TRNG and Fortuna requests
of random sizes over both instances, like clients behind a load balancer that drops a dead
backend. Mid-load, the instance holding the Fortuna poller's lease is killed with SIGKILL:

* the survivor keeps serving, and takes over every poller and seeding lease within the lease
  time (``LOKEY_LEASE_SECONDS``) plus one renewal round;
* its pollers run again (the queues are refilled by it);
* across both instances and the whole run no 16-byte window is served twice
  (:func:`lokey.verify.find_duplicates`, any offset, across every answer).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from lokey.services.settings import API_ENV, CONTROLLER_ENV, FORTUNA_ENV
from lokey.verify import find_duplicates
from tests.redis_helpers import new_prefix, redis_url
from tests.service_helpers import Served, serve, wait_for

LEASE_S = 1.0
# The keeper renews every lease_s / 3 (lokey.services.api.leases); a lease outlives its dead
# holder by at most LEASE_S; scheduling on a loaded 2-core CI machine gets the rest.
TAKEOVER_BOUND_S = LEASE_S + LEASE_S / 3 + 1.5
CONSUMERS = 8
MAX_REQUEST = 4096
INSTANT_CHIP = "sim://atecc608a?lock=config-locked&timing=instant"
PHASE_S = 2.0


@dataclass
class Recorder:
    """Every answer's bytes, in one list shared by the consumer threads."""

    chunks: list[bytes] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, label: str, data: bytes) -> None:
        with self.lock:
            self.chunks.append(data)
            self.labels.append(label)

    def served(self, label_prefix: str, since: int = 0) -> int:
        with self.lock:
            return sum(
                len(chunk)
                for chunk, label in zip(self.chunks[since:], self.labels[since:], strict=True)
                if label.startswith(label_prefix)
            )


def _consume(apis: list[str], dead: set[str], recorder: Recorder, stop: threading.Event) -> None:
    """Requests of random size and source, over the instances still alive, in turn."""
    rng = random.Random()
    clients = {api: httpx.Client(base_url=api, timeout=5.0) for api in apis}
    try:
        turn = rng.randrange(len(apis))
        while not stop.is_set():
            alive = [api for api in apis if api not in dead]
            api = alive[turn % len(alive)]
            turn += 1
            source = rng.choice(("trng", "fortuna"))
            body = {"format": "binary", "limit": rng.randint(16, MAX_REQUEST), "source": source}
            try:
                response = clients[api].post("/api/v1/data", json=body)
            except httpx.TransportError:
                continue  # the killed instance: a load balancer would stop sending to it
            if response.status_code == 200:
                recorder.record(f"{source}@{api}", response.content)
            elif response.status_code == 503:
                time.sleep(0.01)
            else:
                recorder.errors.append(f"{api}: HTTP {response.status_code} {response.text}")
    finally:
        for client in clients.values():
            client.close()


def _scale(api: str) -> dict[str, object]:
    scale: dict[str, object] = httpx.get(f"{api}/api/v1/status", timeout=5).json()["scale"]
    return scale


def _leases(api: str) -> dict[str, bool]:
    leases = _scale(api)["leases"]
    assert isinstance(leases, dict)
    return {str(name): bool(held) for name, held in leases.items()}


def _trng_generated(api: str) -> int:
    generated: int = httpx.get(f"{api}/api/v1/status", timeout=5).json()["trng"]["total_generated"]
    return generated


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    store = f"{redis_url()}?prefix={new_prefix()}"
    names = (*API_ENV, *CONTROLLER_ENV, *FORTUNA_ENV)
    with ExitStack() as started:

        def start(service: str, name: str, **env: str) -> Served:
            directory = tmp_path / name
            directory.mkdir()
            return started.enter_context(
                serve(service, directory, settings_names=names, **env)  # type: ignore[arg-type]
            )

        controller = start("controller", "controller", LOKEY_BUS_URL=INSTANT_CHIP)
        fortuna = start("fortuna", "fortuna")
        common = {
            "STORE_URL": store,
            "CONTROLLER_ADDR": controller.base,
            "FORTUNA_ADDR": fortuna.base,
            "VIRTIO_ADDR": "",
            "LOKEY_LEASE_SECONDS": str(LEASE_S),
            "LOKEY_TRNG_POLL_SAMPLES": "16",
            "TRNG_POLL_INTERVAL_MS": "5",
            "LOKEY_FORTUNA_LOW_WATER_BYTES": str(1 << 20),
        }
        yield start("api", "api-a", **common), start("api", "api-b", **common)


@pytest.mark.slow
def test_two_api_instances_on_one_redis_serve_no_byte_twice_and_survive_a_sigkill(
    stack: tuple[Served, Served],
) -> None:
    a, b = stack
    apis = [a.base, b.base]
    ids = {api: _scale(api)["instance_id"] for api in apis}
    assert ids[a.base] != ids[b.base]
    assert all(_scale(api)["shared"] is True for api in apis)

    def one_holder_each() -> bool:
        held = [_leases(api) for api in apis]
        names = set(held[0]) | set(held[1])
        return bool(names) and all(held[0].get(n, False) != held[1].get(n, False) for n in names)

    wait_for(one_holder_each, "every lease held by exactly one instance", timeout_s=15)
    wait_for(
        lambda: httpx.get(f"{a.base}/api/v1/ready", timeout=5).status_code == 200,
        "data in the shared queues",
        timeout_s=30,
    )

    recorder, dead, stop = Recorder(), set[str](), threading.Event()
    consumers = [
        threading.Thread(target=_consume, args=(apis, dead, recorder, stop), daemon=True)
        for _ in range(CONSUMERS)
    ]
    for consumer in consumers:
        consumer.start()
    try:
        time.sleep(PHASE_S)
        served_by = {api: recorder.served(f"fortuna@{api}") for api in apis}
        assert all(served_by.values()), f"both instances serve: {served_by}"

        victim = next(s for s in stack if _leases(s.base).get("fortuna-poll"))
        survivor = b if victim is a else a
        dead.add(victim.base)
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        mark = len(recorder.chunks)

        wait_for(
            lambda: all(_leases(survivor.base).values()),
            "the survivor to hold every lease",
            timeout_s=TAKEOVER_BOUND_S + 5,
            interval_s=0.05,
        )
        takeover_s = time.monotonic() - killed_at
        assert takeover_s <= TAKEOVER_BOUND_S, f"takeover took {takeover_s:.2f} s"

        generated = _trng_generated(survivor.base)
        time.sleep(PHASE_S)
        assert _trng_generated(survivor.base) > generated, "the survivor's TRNG poller runs"
        for source in ("trng", "fortuna"):
            after = recorder.served(f"{source}@{survivor.base}", since=mark)
            assert after > 0, f"the survivor served no {source} after the kill"
    finally:
        stop.set()
        for consumer in consumers:
            consumer.join(timeout=10)

    assert recorder.errors == []
    assert victim.process.wait(timeout=5) == -signal.SIGKILL
    check = find_duplicates(recorder.chunks, recorder.labels)
    print(  # shown with -s: the figures of the closing note
        f"takeover {takeover_s:.2f} s; served {sum(map(len, recorder.chunks)):,} bytes in"
        f" {len(recorder.chunks):,} answers ({len(recorder.chunks) - mark:,} after the kill);"
        f" {check.windows_checked:,} windows, {check.duplicates} duplicates"
    )
    assert check.windows_checked > 100_000
    assert check.duplicates == 0, check.examples

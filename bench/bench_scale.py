"""Scale-out (issue 11): two chips against one, and two API instances on Redis against one on LMDB.

Everything runs as real processes (``python -m lokey.services ...``), as in :mod:`bench.bench_api`.

**TRNG rate with two controllers.** Each controller drives its own emulated chip on the chip's
typical timing (``sim://atecc608a?lock=config-locked``, no ``timing=instant``), so a chip's own
Random command time is what limits it, as on a Pi. The API polls every controller in its own
loop (``TRNG_POLL_INTERVAL_MS=1``, :data:`POLL_SAMPLES` samples per call), so the chip, not the
poll interval, sets the pace. The figure is the rate at which the API's TRNG queue grows (items
stored x 32 bytes, after the start-up health tests) with two controllers; its limit is the same
with one controller, measured in the same run. Target: a ratio of at least
:data:`TRNG_RATIO_TARGET` ("two controllers double the TRNG rate").

**Two API instances on Redis.** The same four client threads as bench_api post
``{"format": "binary", "limit": 100000, "source": "fortuna"}``: first against one API on LMDB
(``DB_SYNC=true``, every consumption fsynced), then spread over two API instances sharing one
Redis server with ``appendfsync always`` (the same durability: no byte twice across a crash).
The figure is the Redis pair's MB/s of consumed bytes; its limit is the single LMDB instance.
No target: on a 2-core machine both set-ups share the same two cores (and the load generator
runs on them too), so the ratio shows what the shared store costs, not what more machines buy.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import httpx

from bench._http import spawned
from bench._redis import redis_server
from bench._report import Direction, Figure, Target, all_met
from bench.bench_api import BULK, CLIENTS, Load, load

NAME = "bench_scale"
TRNG_RATIO_TARGET = 1.8
SAMPLE_BYTES = 32  # one ATECC608A Random response (atecc608a.md §9)
POLL_SAMPLES = 16
TYPICAL_CHIP = "sim://atecc608a?lock=config-locked"
INSTANT_CHIP = TYPICAL_CHIP + "&timing=instant"
LOW_WATER = 32 << 20
TRNG_WINDOW_S = 6.0
LOAD_S = 5.0
START_TIMEOUT_S = 60.0


def _status(api: str) -> dict[str, object]:
    body: dict[str, object] = httpx.get(f"{api}/api/v1/status", timeout=10).json()
    return body


def _queue(api: str, source: str, field: str) -> int:
    queue = _status(api)[source]
    assert isinstance(queue, dict)
    value: int = queue[field]
    return value


def _healthy(base: str) -> bool:
    return httpx.get(f"{base}/health", timeout=5).status_code == 200


def _wait(what: str, ready: Callable[[], bool], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _start(
    stack: ExitStack,
    *,
    chips: int,
    chip_url: str,
    apis: int,
    store: Mapping[str, str],
    extra: Mapping[str, str],
) -> list[str]:
    """``chips`` controllers, one Fortuna, ``apis`` API instances on ``store`` (stopped when
    ``stack`` closes); the API URLs."""
    controllers = [
        stack.enter_context(spawned(["lokey.services", "controller"], {"LOKEY_BUS_URL": chip_url}))
        for _ in range(chips)
    ]
    for controller in controllers:  # validated its chip: a 503 now would delay the first polls
        _wait(f"{controller} to be healthy", partial(_healthy, controller))
    fortuna = stack.enter_context(spawned(["lokey.services", "fortuna"], {}))
    env = {
        "CONTROLLER_ADDR": ",".join(controllers),
        "FORTUNA_ADDR": fortuna,
        "VIRTIO_ADDR": "",
        **store,
        **extra,
    }
    return [
        stack.enter_context(spawned(["lokey.services", "api"], env, health="/api/v1/health"))
        for _ in range(apis)
    ]


def trng_rate(chips: int, window_s: float) -> float:
    """Bytes per second stored in the API's TRNG queue, fed by ``chips`` emulated chips."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        poll = {"TRNG_POLL_INTERVAL_MS": "1", "LOKEY_TRNG_POLL_SAMPLES": str(POLL_SAMPLES)}
        (api,) = _start(
            stack,
            chips=chips,
            chip_url=TYPICAL_CHIP,
            apis=1,
            store={"STORE_URL": f"lmdb://{Path(tmp) / 'api.db'}"},
            extra=poll,
        )
        # the start-up health tests have passed: samples are arriving
        _wait("TRNG samples", lambda: _queue(api, "trng", "total_generated") > 0)
        time.sleep(window_s / 3)  # let every poll loop reach its pace
        start, t0 = _queue(api, "trng", "total_generated"), time.perf_counter()
        time.sleep(window_s)
        end, t1 = _queue(api, "trng", "total_generated"), time.perf_counter()
        instances = _status(api)["instances"]
        assert isinstance(instances, dict)
        opened = sum(view["breaker"]["opened"] for view in instances["controller"].values())
        if opened:  # a stalled poll loop: say so, the figure alone would be a mystery
            print(f"  ({chips} chips: a controller breaker opened {opened} times)")
    return (end - start) * SAMPLE_BYTES / (t1 - t0)


def serving(store: str, duration_s: float) -> Load:
    """The four clients' bulk Fortuna load on one API on LMDB or two on one Redis."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        if store == "redis":
            url = stack.enter_context(redis_server(durable=True))
            settings, apis = {"STORE_URL": url}, 2
        else:
            settings, apis = {"STORE_URL": f"lmdb://{Path(tmp) / 'api.db'}"}, 1
        extra = {"LOKEY_FORTUNA_LOW_WATER_BYTES": str(LOW_WATER)}
        urls = _start(stack, chips=1, chip_url=INSTANT_CHIP, apis=apis, store=settings, extra=extra)
        _wait(
            "the Fortuna queue to fill",
            lambda: _queue(urls[0], "fortuna", "queue_bytes") >= LOW_WATER,
        )
        return load([f"{api}/api/v1/data" for api in urls], BULK, duration_s=duration_s)


def measure(window_s: float = TRNG_WINDOW_S, load_s: float = LOAD_S) -> list[Figure]:
    one_chip = trng_rate(1, window_s)
    two_chips = trng_rate(2, window_s)
    lmdb = serving("lmdb", load_s)
    redis = serving("redis", load_s)
    chip_ratio = two_chips / one_chip if one_chip else 0.0
    serve_ratio = redis.mb_per_s / lmdb.mb_per_s if lmdb.mb_per_s else 0.0
    print(f"scale-out benchmark (cpus={os.cpu_count()})")
    print(
        f"  TRNG into the API's queue: 1 chip {one_chip:8.0f} B/s   2 chips {two_chips:8.0f} B/s"
        f"   ratio {chip_ratio:.2f} (target >= {TRNG_RATIO_TARGET})"
    )
    print(
        f"  binary 100 kB fortuna, {CLIENTS} clients: 1 API on LMDB {lmdb.mb_per_s:7.1f} MB/s"
        f" ({lmdb.refused} x 503)   2 APIs on Redis {redis.mb_per_s:7.1f} MB/s"
        f" ({redis.refused} x 503)   ratio {serve_ratio:.2f}"
    )
    return [
        Figure(
            NAME,
            "TRNG into the API, 2 controllers",
            two_chips,
            "B/s",
            limit=one_chip,
            limit_what="1 controller",
            target=Target(TRNG_RATIO_TARGET, Direction.AT_LEAST, on_ratio=True),
        ),
        Figure(
            NAME,
            "binary 100 kB fortuna, 2 APIs on Redis",
            redis.mb_per_s,
            "MB/s",
            limit=lmdb.mb_per_s,
            limit_what="1 API on LMDB",
        ),
    ]


def main() -> bool:
    return all_met(measure())


def run(quick: bool = False) -> list[Figure]:
    return measure(window_s=3.0, load_s=1.5) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

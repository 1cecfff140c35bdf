"""The API service under load: Fortuna bytes in bulk and single uint32 values, against the
same-run limit of a trivial endpoint.

The whole stack runs as real processes: the controller on the emulator (instant timing), the
Fortuna service, and the API (``lokey serve api``, LMDB with the default ``DB_SYNC=true``,
VirtIO seeding off so nothing else drains the Fortuna queue). Once the API has seeded Fortuna
and its pollers have filled the queue to the low-water mark, four client threads (one
keep-alive connection each) send requests for :data:`DURATION_S` while the pollers refill:

* ``POST /api/v1/data {"format": "binary", "limit": 100000, "source": "fortuna"}``: MB/s of
  consumed (committed, never-again-served) bytes. Target (API issue): at least 50 MB/s on a
  2-core machine; the reference's design ceiling is 2.56 kB/s (10 polls/s x 256 B).
* ``{"format": "uint32", "limit": 1, "source": "fortuna"}``: requests per second.

The limit for both is a trivial endpoint (``bench._trivial``: the same uvicorn + FastAPI stack
answering prepared bytes) in its own process, hit by the same four clients in the same run.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._http import spawned
from bench._report import Direction, Figure, Target, all_met

NAME = "bench_api"
TARGET_MB_S = 50.0
REFERENCE_CEILING_B_S = 2_560.0  # service-api.md §1.9: 10 polls/s x 256 B
CLIENTS = 4
DURATION_S = 5.0
LIMIT = 100_000
BULK = {"format": "binary", "limit": LIMIT, "source": "fortuna"}
SINGLE = {"format": "uint32", "limit": 1, "source": "fortuna"}
LOW_WATER = 32 << 20


@dataclass(frozen=True)
class Load:
    ok: int
    refused: int  # 503 "No data available": the pollers did not keep up
    nbytes: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def load(
    url: str | Sequence[str],
    body: dict[str, object],
    clients: int = CLIENTS,
    duration_s: float = DURATION_S,
) -> Load:
    """``clients`` threads posting ``body`` for ``duration_s``; with several URLs (API
    instances behind one store) the clients are spread over them in turn."""
    urls = [url] if isinstance(url, str) else list(url)
    counts = [[0, 0, 0] for _ in range(clients)]
    stop = time.perf_counter() + duration_s

    def client(index: int) -> None:
        slot, target = counts[index], urls[index % len(urls)]
        with httpx.Client(timeout=30) as http:
            while time.perf_counter() < stop:
                response = http.post(target, json=body)
                if response.status_code == 200:
                    slot[0] += 1
                    slot[2] += len(response.content)
                elif response.status_code == 503:
                    slot[1] += 1
                    time.sleep(0.001)
                else:
                    raise RuntimeError(f"{target}: HTTP {response.status_code} {response.text}")

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return Load(
        ok=sum(c[0] for c in counts),
        refused=sum(c[1] for c in counts),
        nbytes=sum(c[2] for c in counts),
        seconds=seconds,
    )


def _wait(what: str, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _fortuna_bytes(api: str) -> int:
    status = httpx.get(f"{api}/api/v1/status", timeout=10).json()
    queued: int = status["fortuna"]["queue_bytes"]
    return queued


def measure(duration_s: float = DURATION_S) -> list[Figure]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        spawned(["bench._trivial"], {}) as trivial,
        spawned(
            ["lokey.services", "controller"],
            {"LOKEY_BUS_URL": "sim://atecc608a?lock=config-locked&timing=instant"},
        ) as controller,
        spawned(["lokey.services", "fortuna"], {}) as fortuna,
        spawned(
            ["lokey.services", "api"],
            {
                "DB_PATH": str(Path(tmp) / "api.db"),
                "CONTROLLER_ADDR": controller,
                "FORTUNA_ADDR": fortuna,
                "VIRTIO_ADDR": "",
                "LOKEY_FORTUNA_LOW_WATER_BYTES": str(LOW_WATER),
            },
            health="/api/v1/health",
        ) as api,
    ):
        _wait("the Fortuna queue to fill", lambda: _fortuna_bytes(api) >= LOW_WATER)
        limit_bulk = load(f"{trivial}/bytes", BULK, duration_s=duration_s)
        bulk = load(f"{api}/api/v1/data", BULK, duration_s=duration_s)
        limit_single = load(f"{trivial}/value", SINGLE, duration_s=duration_s)
        single = load(f"{api}/api/v1/data", SINGLE, duration_s=duration_s)
    bulk_ratio = bulk.mb_per_s / limit_bulk.mb_per_s
    single_ratio = single.per_s / limit_single.per_s
    print(f"API benchmark ({CLIENTS} clients, {duration_s:g} s each, cpus={os.cpu_count()})")
    print(
        f"  binary limit={LIMIT} fortuna: {bulk.mb_per_s:8.1f} MB/s ({bulk.ok} ok, "
        f"{bulk.refused} x 503)  trivial endpoint {limit_bulk.mb_per_s:8.1f} MB/s  "
        f"ratio {bulk_ratio:.2f}"
    )
    print(
        f"    target >= {TARGET_MB_S:.0f} MB/s; {bulk.mb_per_s * 1e6 / REFERENCE_CEILING_B_S:,.0f}"
        " x the reference's design ceiling (2.56 kB/s)"
    )
    print(
        f"  uint32 limit=1 fortuna:      {single.per_s:8.0f} req/s  trivial endpoint "
        f"{limit_single.per_s:8.0f} req/s  ratio {single_ratio:.2f}"
    )
    ok = bulk.mb_per_s >= TARGET_MB_S
    print(f"  {'PASS' if ok else 'FAIL'}: {bulk.mb_per_s:.1f} MB/s against {TARGET_MB_S:.0f} MB/s")
    return [
        Figure(
            NAME,
            "/api/v1/data binary 100 kB, fortuna",
            bulk.mb_per_s,
            "MB/s",
            limit=limit_bulk.mb_per_s,
            limit_what="trivial endpoint",
            target=Target(TARGET_MB_S, Direction.AT_LEAST),
        ),
        Figure(
            NAME,
            "/api/v1/data one uint32, fortuna",
            single.per_s,
            "requests/s",
            limit=limit_single.per_s,
            limit_what="trivial endpoint",
        ),
    ]


def main(duration_s: float = DURATION_S) -> bool:
    return all_met(measure(duration_s))


def run(quick: bool = False) -> list[Figure]:
    return measure(duration_s=1.5) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

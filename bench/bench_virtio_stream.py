"""VirtIO ``/stream`` throughput over HTTP, against a trivial static stream in the same run.

A real uvicorn server runs the VirtIO app (named pipe disabled) in a thread on a free loopback
port. Before each request the ring is filled in-process with ``TOTAL`` bytes; an httpx client
(one keep-alive connection) reads ``/stream?chunk_size=65536&max_bytes=TOTAL`` to the end. The
limit, measured on the same server and connection, is a route added to the same app that
streams the same number of prepared 64 KiB chunks with ``StreamingResponse``: everything chunked
HTTP costs with no ring at all. Target (VirtIO service issue): at least 100 MB/s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from bench._http import serving
from bench._report import Direction, Figure, Target, all_met
from lokey.services.settings import load_virtio_settings
from lokey.services.virtio import VirtioService, create_virtio_app

NAME = "bench_virtio_stream"
TARGET_MB_S = 100.0
CHUNK = 65_536
TOTAL = 16 << 20  # 16 MiB per request; the largest ring holds 32,000,000 bytes
STATIC_PATH = "/bench/static"


def stream_path(total: int = TOTAL) -> str:
    return f"/stream?chunk_size={CHUNK}&max_bytes={total}"


@dataclass(frozen=True)
class Rate:
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def bench_app(total: int = TOTAL) -> FastAPI:
    """The VirtIO app (no pipe, ring big enough for ``total``) plus the static stream."""
    queue_items = max(10, min(1_000_000, -(-total // 32)))
    app = create_virtio_app(
        load_virtio_settings({"VIRTIO_PIPE_PATH": "", "VIRTIO_QUEUE_SIZE": str(queue_items)})
    )
    prepared = os.urandom(CHUNK)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, total, CHUNK):
            yield prepared[: min(CHUNK, total - start)]

    async def static() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="application/octet-stream")

    app.add_api_route(STATIC_PATH, static, methods=["GET"])
    return app


def service_of(app: FastAPI) -> VirtioService:
    service = app.state.lokey
    assert isinstance(service, VirtioService)
    return service


def _fill(service: VirtioService, total: int) -> None:
    block = os.urandom(32 << 10)
    for start in range(0, total, len(block)):
        service.ring.push(block[: total - start])


def _read(client: httpx.Client, path: str, expect: int) -> Rate:
    started = time.perf_counter()
    got = 0
    with client.stream("GET", path) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        for piece in response.iter_raw():
            got += len(piece)
    seconds = time.perf_counter() - started
    if got != expect:
        raise RuntimeError(f"{path} sent {got} bytes, expected {expect}")
    return Rate(got, seconds)


def rates(requests: int, total: int = TOTAL) -> tuple[Rate, Rate]:
    """Best of ``requests`` for (/stream from a pre-filled ring, static stream), interleaved."""
    app = bench_app(total)
    logging.getLogger("lokey.services.virtio").setLevel(logging.WARNING)
    ring_rates: list[Rate] = []
    static_rates: list[Rate] = []
    with serving(app) as base, httpx.Client(base_url=base, timeout=60.0) as client:
        service = service_of(app)
        for round_ in range(requests + 1):  # the first round warms up
            _fill(service, total)
            ring = _read(client, stream_path(total), total)
            static = _read(client, STATIC_PATH, total)
            if round_:
                ring_rates.append(ring)
                static_rates.append(static)
        if service.ring.available:
            raise RuntimeError("the ring was not drained exactly")
    return best(ring_rates), best(static_rates)


def best(found: list[Rate]) -> Rate:
    return max(found, key=lambda r: r.mb_per_s)


def measure(requests: int = 5, total: int = TOTAL) -> list[Figure]:
    ring, static = rates(requests, total)
    ok = ring.mb_per_s >= TARGET_MB_S
    print(
        f"virtio /stream over HTTP: {total / 2**20:.0f} MiB per request, chunk_size={CHUNK}, "
        "uvicorn on loopback, one httpx connection"
    )
    verdict = "meets" if ok else "MISSES"
    target = f"{verdict} the {TARGET_MB_S:.0f} MB/s target"
    print(f"  /stream (ring)      {ring.mb_per_s:>8,.0f} MB/s ({target})")
    print(f"  static stream       {static.mb_per_s:>8,.0f} MB/s (same server, same chunks)")
    print(f"  ratio to static     {ring.mb_per_s / static.mb_per_s:>8.2f}")
    return [
        Figure(
            NAME,
            "GET /stream from the ring",
            ring.mb_per_s,
            "MB/s",
            limit=static.mb_per_s,
            limit_what="static stream, same server",
            target=Target(TARGET_MB_S, Direction.AT_LEAST),
        )
    ]


def main(requests: int = 5, total: int = TOTAL) -> bool:
    return all_met(measure(requests, total))


def run(quick: bool = False) -> list[Figure]:
    return measure(requests=2, total=4 << 20) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

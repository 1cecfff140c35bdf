"""Fortuna output over HTTP: ``/generate?size=1048576&format=binary`` against a static 1 MiB.

A real uvicorn server runs the Fortuna app in a thread on a free loopback port; an httpx client
(one keep-alive connection) fetches 1 MiB of generator output per request. The limit, measured
in the same run on the same server and connection, is a trivial route added to the same app
that returns 1 MiB of prepared bytes: everything HTTP costs (uvicorn, Starlette, the middleware,
the socket, httpx) with no generation at all. The ratio says how much of the transport's speed
survives generating the bytes (AES-256 over the little-endian counter, the rekey, the lock, the
thread-pool hop). Target (Fortuna service issue): at least 0.5.

For scale, two more figures from the same run: the JSON form (``{"data": hex}``, 2 MiB of hex
per request) and ``Fortuna.random_data(2^20)`` in-process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from fastapi.responses import Response

from bench._http import serving
from bench._report import Direction, Figure, Target, all_met
from lokey.clock import SystemClock
from lokey.fortuna import Fortuna
from lokey.services.fortuna import create_fortuna_app
from lokey.services.settings import load_fortuna_settings

NAME = "bench_fortuna_http"
TARGET_RATIO = 0.5
MIB = 1 << 20
STATIC_PATH = "/bench/static"
GENERATE_PATH = f"/generate?size={MIB}&format=binary"
JSON_PATH = f"/generate?size={MIB}"
JSON_BYTES = len(f'{{"data":"","size":{MIB}}}') + 2 * MIB


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: float

    @property
    def mib_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def ms_per_request(self) -> float:
        return self.seconds / self.requests * 1e3


def bench_app() -> FastAPI:
    """The Fortuna app plus the static 1 MiB route (the limit)."""
    app = create_fortuna_app(load_fortuna_settings({}))
    prepared = os.urandom(MIB)

    async def static() -> Response:
        return Response(prepared, media_type="application/octet-stream")

    app.add_api_route(STATIC_PATH, static, methods=["GET"])
    return app


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The service's start-up warning ("unseeded") is expected here: keep it off the report."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fetch(client: httpx.Client, path: str, requests: int, expect: int) -> Rate:
    started = time.perf_counter()
    for _ in range(requests):
        response = client.get(path)
        if response.status_code != 200 or len(response.content) != expect:
            raise RuntimeError(f"{path} answered {response.status_code}")
    return Rate(requests, time.perf_counter() - started)


def http_rates(requests: int, repeats: int) -> tuple[Rate, Rate, Rate]:
    """Best of ``repeats`` for (binary /generate, static 1 MiB, JSON /generate), interleaved."""
    with (
        _quiet("lokey.services.fortuna"),
        serving(bench_app()) as base,
        httpx.Client(base_url=base, timeout=30.0) as client,
    ):
        seeds = [os.urandom(32).hex() for _ in range(2)]
        if client.post("/seed", json={"seeds": seeds}).json().get("status") != "reseeded":
            raise RuntimeError("the benchmark server could not be seeded")
        _fetch(client, GENERATE_PATH, 3, MIB)  # warm-up: connection, thread pool, buffers
        _fetch(client, STATIC_PATH, 3, MIB)
        generate: list[Rate] = []
        static: list[Rate] = []
        json_form: list[Rate] = []
        for _ in range(repeats):
            generate.append(_fetch(client, GENERATE_PATH, requests, MIB))
            static.append(_fetch(client, STATIC_PATH, requests, MIB))
            json_form.append(_fetch(client, JSON_PATH, max(1, requests // 4), JSON_BYTES))
    return best(generate), best(static), best(json_form)


def in_process_rate(requests: int) -> Rate:
    fortuna = Fortuna(SystemClock())
    fortuna.seed_directly(os.urandom(64))
    fortuna.random_data(MIB)
    started = time.perf_counter()
    for _ in range(requests):
        fortuna.random_data(MIB)
    return Rate(requests, time.perf_counter() - started)


def best(rates: list[Rate]) -> Rate:
    return min(rates, key=lambda r: r.seconds / r.requests)


def measure(requests: int = 40, repeats: int = 3) -> list[Figure]:
    generate, static, json_form = http_rates(requests, repeats)
    core = in_process_rate(requests)
    ratio = generate.mib_per_s / static.mib_per_s
    ok = ratio >= TARGET_RATIO
    print("fortuna over HTTP: 1 MiB per request, uvicorn on loopback, one httpx connection")
    print(
        f"  /generate binary    {generate.mib_per_s:>8,.0f} MiB/s "
        f"({generate.ms_per_request:.2f} ms per request)"
    )
    print(
        f"  static 1 MiB        {static.mib_per_s:>8,.0f} MiB/s "
        f"({static.ms_per_request:.2f} ms per request, same server)"
    )
    verdict = "meets" if ok else "MISSES"
    print(f"  ratio to static     {ratio:>8.2f} ({verdict} the {TARGET_RATIO} target)")
    print(
        f"  /generate JSON      {json_form.mib_per_s:>8,.0f} MiB/s of output "
        f"({json_form.ms_per_request:.2f} ms per request, 2 MiB of hex)"
    )
    print(f"  in-process          {core.mib_per_s:>8,.0f} MiB/s (Fortuna.random_data(2^20))")
    return [
        Figure(
            NAME,
            "GET /generate 1 MiB binary",
            generate.mib_per_s,
            "MiB/s",
            limit=static.mib_per_s,
            limit_what="static 1 MiB route",
            target=Target(TARGET_RATIO, Direction.AT_LEAST, on_ratio=True),
        ),
        Figure(
            NAME,
            "GET /generate 1 MiB JSON (hex)",
            json_form.mib_per_s,
            "MiB/s",
            limit=static.mib_per_s,
            limit_what="static 1 MiB route",
        ),
        Figure(NAME, "Fortuna.random_data(2^20)", core.mib_per_s, "MiB/s"),
    ]


def main(requests: int = 40, repeats: int = 3) -> bool:
    return all_met(measure(requests, repeats))


def run(quick: bool = False) -> list[Figure]:
    return measure(requests=8, repeats=1) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

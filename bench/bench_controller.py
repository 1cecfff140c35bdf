"""TRNG samples through the controller, in-process and over HTTP, against same-run limits.

Three questions, each answered with a ratio against something measured in the same run:

* **In-process speed** (instant chip timing, VirtualClock): samples per wall-clock second
  through ``Controller.generate(100)``: the checks, the SP 800-90B health tests and SHA-256
  conditioning on top of the driver. Target (controller issue): at least 5,000 samples/s.
  The limit is the raw driver (``Atecc608aDriver.random()`` on the same emulator), measured in
  the same run: the ratio says what the controller's safety costs.
* **Protocol efficiency** (typical chip timing): samples per *virtual* second through the
  controller, against the datasheet ceiling 1 / (Random maximum 23 ms + tWHI 1.5 ms), the rate
  of a host that waits the full datasheet times for every sample (spec §1.3, §4).
* **HTTP overhead**: samples per second through ``GET /generate?count=100`` with httpx on the
  ASGI app (lifespan run, VirtualClock, instant timing), and the ratio of its request rate to a
  trivial endpoint of the same app (``/health``, answered from the controller's state without
  I/O) measured in the same run.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import httpx

from bench._report import Direction, Figure, Target, all_met
from lokey.backends import OpenedBus, open_bus
from lokey.controller import BorrowedBus, Controller, DeviceState, atecc_factory
from lokey.hardware.commands import Atecc608aDriver
from lokey.hardware.transport import DEFAULT_TIMING, Transport
from lokey.services.controller import ControllerService, create_controller_app
from lokey.services.settings import load_controller_settings
from sim.clock import VirtualClock

NAME = "bench_controller"
TARGET_PER_S = 5_000
RANDOM_OPCODE = 0x1B
RANDOM_MAX_S = DEFAULT_TIMING.command(RANDOM_OPCODE).max_s  # spec §4: 23 ms at M0
T_WHI_S = DEFAULT_TIMING.wake_delay_s  # spec §1.3: 1.5 ms
DATASHEET_PER_S = 1.0 / (RANDOM_MAX_S + T_WHI_S)
BATCH = 100  # /generate?count=100, the largest request
INSTANT = "sim://atecc608a?timing=instant&lock=config-locked&seed=2026"
TYPICAL = "sim://atecc608a?timing=typical&lock=config-locked&seed=2026"


@dataclass(frozen=True)
class Rate:
    samples: int
    seconds: float  # wall clock
    virtual_s: float = 0.0  # VirtualClock time the samples took

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds

    @property
    def virtual_per_second(self) -> float:
        return self.samples / self.virtual_s


def _bring_up(controller: Controller, clock: VirtualClock) -> None:
    """Step the controller to HEALTHY on virtual time (start-up test and validation)."""
    for _ in range(10_000):
        delay = controller.step()
        if controller.state is DeviceState.HEALTHY:
            return
        clock.advance(0.0 if math.isinf(delay) else delay)
    raise RuntimeError(f"the controller did not become healthy: {controller.status().last_error}")


def _controller(url: str) -> tuple[Controller, VirtualClock, OpenedBus]:
    clock = VirtualClock()
    opened = open_bus(url, clock=clock)
    controller = Controller(atecc_factory(lambda: BorrowedBus(opened.bus), clock), clock)
    _bring_up(controller, clock)
    return controller, clock, opened


def controller_rate(url: str, samples: int) -> Rate:
    controller, clock, opened = _controller(url)
    with opened:
        started, virtual = time.perf_counter(), clock.monotonic()
        for _ in range(samples // BATCH):
            controller.generate(BATCH)
        return Rate(
            samples // BATCH * BATCH,
            time.perf_counter() - started,
            clock.monotonic() - virtual,
        )


def driver_rate(url: str, samples: int) -> Rate:
    clock = VirtualClock()
    with open_bus(url, clock=clock) as opened:
        driver = Atecc608aDriver(Transport(opened.bus, clock))
        driver.random()  # the first wake, outside the timing
        started, virtual = time.perf_counter(), clock.monotonic()
        for _ in range(samples):
            driver.random()
        return Rate(samples, time.perf_counter() - started, clock.monotonic() - virtual)


async def _http_rates(requests: int) -> tuple[Rate, Rate]:
    clock = VirtualClock()
    settings = load_controller_settings({"LOKEY_BUS_URL": INSTANT})
    app = create_controller_app(settings, clock=clock, start_runner=False)
    async with app.router.lifespan_context(app):
        service = app.state.lokey
        assert isinstance(service, ControllerService)
        _bring_up(service.controller, clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            started = time.perf_counter()
            for _ in range(requests):
                response = await client.get("/generate", params={"count": BATCH})
                if response.status_code != 200:
                    raise RuntimeError(f"/generate answered {response.status_code}")
            generate = Rate(requests * BATCH, time.perf_counter() - started)
            trivial_requests = requests * 10
            started = time.perf_counter()
            for _ in range(trivial_requests):
                response = await client.get("/health")
                if response.status_code != 200:
                    raise RuntimeError(f"/health answered {response.status_code}")
            trivial = Rate(trivial_requests, time.perf_counter() - started)
    return generate, trivial


def http_rates(requests: int) -> tuple[Rate, Rate]:
    """(samples through /generate?count=100, requests through /health)."""
    return asyncio.run(_http_rates(requests))


def best(rates: list[Rate]) -> Rate:
    return max(rates, key=lambda r: r.per_second)


def measure(samples: int = 5_000, repeats: int = 3, requests: int = 40) -> list[Figure]:
    through = best([controller_rate(INSTANT, samples) for _ in range(repeats)])
    raw = best([driver_rate(INSTANT, samples) for _ in range(repeats)])
    typical = controller_rate(TYPICAL, max(BATCH, samples // 10))
    generate, trivial = http_rates(requests)

    print("controller: TRNG samples through Controller.generate(100), emulated chip")
    print(f"  in-process        {through.per_second:>10,.0f} samples/s (instant timing)")
    print(f"  raw driver        {raw.per_second:>10,.0f} samples/s (Atecc608aDriver.random)")
    print(f"  ratio to driver   {through.per_second / raw.per_second:>10.2f}")
    ok = through.per_second >= TARGET_PER_S
    verdict = "meets" if ok else "MISSES"
    print(
        f"  ratio to target   {through.per_second / TARGET_PER_S:>10.2f} "
        f"({verdict} the {TARGET_PER_S:,}/s target)"
    )
    print(f"  typical timing    {typical.virtual_per_second:>10,.1f} samples per virtual second")
    print(
        f"  datasheet ceiling {DATASHEET_PER_S:>10,.1f} samples/s "
        f"(1 / (Random max {RANDOM_MAX_S * 1e3:g} ms + tWHI {T_WHI_S * 1e3:g} ms))"
    )
    print(f"  ratio to ceiling  {typical.virtual_per_second / DATASHEET_PER_S:>10.2f}")
    print("controller over HTTP: httpx on the ASGI app (instant timing, VirtualClock)")
    print(f"  /generate?count=100 {generate.per_second:>8,.0f} samples/s")
    print(
        f"  requests/s          {generate.per_second / BATCH:>8,.0f} (/generate?count=100) vs "
        f"{trivial.per_second:,.0f} (/health)"
    )
    print(f"  ratio to /health    {generate.per_second / BATCH / trivial.per_second:>8.3f}")
    print(f"  ratio to in-process {generate.per_second / through.per_second:>8.2f}")
    return [
        Figure(
            NAME,
            "samples, in-process",
            through.per_second,
            "samples/s",
            limit=raw.per_second,
            limit_what="raw driver",
            target=Target(TARGET_PER_S, Direction.AT_LEAST),
        ),
        Figure(
            NAME,
            "samples per virtual s, typical timing",
            typical.virtual_per_second,
            "samples/s",
            limit=DATASHEET_PER_S,
            limit_what="datasheet ceiling",
        ),
        Figure(
            NAME,
            "HTTP /generate?count=100",
            generate.per_second / BATCH,
            "requests/s",
            limit=trivial.per_second,
            limit_what="/health, same app",
        ),
    ]


def main(samples: int = 5_000, repeats: int = 3, requests: int = 40) -> bool:
    return all_met(measure(samples, repeats, requests))


def run(quick: bool = False) -> list[Figure]:
    return measure(samples=1_000, repeats=1, requests=10) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

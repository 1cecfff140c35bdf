"""End to end: ``lokey up --fast`` as real processes, the API through ``lokey.client``.

One stack (controller on the emulator, Fortuna, VirtIO with its FIFO, the API on LMDB) is
started the way a user starts it. The test then:

* exercises every endpoint of every service (the API through the Python client, the other
  three over HTTP);
* reads the FIFO like QEMU and proves the bytes came from the emulated chip: with VirtIO fed
  from the TRNG queue (no reserve), every 32-byte block read is SHA-256 of the data of one
  Random response in the chip's bus trace (the controller's conditioning, lokey.controller);
* kills Fortuna: the API reports itself degraded (TRNG still served); the supervisor restarts
  Fortuna, the API seeds it again, and Fortuna data flows again.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import httpx
import pytest

from lokey.client import Client, NoDataError
from tests.service_helpers import wait_for
from tests.up_helpers import Up, lokey_up, read_fifo, wait_all_healthy

RANDOM_RESPONSE = 35  # count, 32 data bytes, CRC-16 (atecc608a.md, Random)
FORMATS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
GAUGES = ("trng_queue_current", "fortuna_queue_current", "virtio_queue_current")


def _chip_samples(up: Up) -> set[bytes]:
    """SHA-256 of the data of every Random response in the emulator's bus trace."""
    trace = httpx.get(up.url("controller", "/sim/trace?limit=10000"), timeout=10).json()
    conditioned = set()
    for record in trace["records"]:
        data = bytes.fromhex(record["data"])
        if record["dir"] == "r" and len(data) == RANDOM_RESPONSE and data[0] == RANDOM_RESPONSE:
            conditioned.add(hashlib.sha256(data[1:33]).digest())
    return conditioned


def _ints_when_ready(api: Client, fmt: str, source: str) -> list[int]:
    values: list[int] = []

    def served() -> bool:
        nonlocal values
        try:
            values = api.ints(fmt, 3, source=source)  # type: ignore[arg-type]
        except NoDataError:
            return False
        return True

    wait_for(served, f"{fmt} from {source}", timeout_s=30, interval_s=0.1)
    return values


@pytest.mark.slow
def test_the_whole_stack_end_to_end(tmp_path: Path) -> None:
    env = {"VIRTIO_SEEDING_SOURCE": "trng", "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "0"}
    with lokey_up(tmp_path, "--fast", **env) as up, Client(up.url("api")) as api:
        wait_all_healthy(up)

        # A QEMU-like reader gets bytes that began in the emulated chip.
        fifo = read_fifo(up.data_dir / "virtio-rng", timeout_s=30)
        blocks = [fifo[i : i + 32] for i in range(0, len(fifo) - len(fifo) % 32, 32)]
        assert blocks, "the FIFO gave no whole sample"
        chip = _chip_samples(up)
        assert all(block in chip for block in blocks)

        # The API, every endpoint, through the client.
        for fmt in FORMATS:
            for source in ("trng", "fortuna"):
                assert len(_ints_when_ready(api, fmt, source)) == 3
        assert len(api.random_bytes(4096, source="fortuna")) == 4096
        status = api.status()
        assert status.trng.total_generated > 0
        usage = status.raw["usage"]
        assert isinstance(usage, dict)
        taken = 4096 + 3 * 2 * (1 + 2 + 4 + 8)  # the bytes above, the signed and unsigned ints
        assert usage["fortuna"]["bytes"] == taken  # VirtIO's takes are not client usage
        assert api.health().ok
        assert api.ready()
        metrics = api.metrics()
        assert all(gauge in metrics for gauge in GAUGES)
        queue = api.queue_config()
        assert (
            api.set_queue_config(
                trng=queue.trng_queue_size, fortuna=queue.fortuna_queue_size, virtio=1000
            ).virtio_queue_size
            == 1000
        )
        assert api.queue_config().virtio_queue_size == 1000  # read back from VirtIO itself
        assert api.consume_default() is True
        assert api.set_consume_default(True) is True
        assert api.set_virtio_config("both", queue_size=1000).seeding_source == "both"
        assert api.virtio_config().seeding_source == "both"

        # The other three services, every route.
        controller = {
            "/health": 200,
            "/info": 200,
            "/generate?count=2": 200,
            "/metrics": 200,
            "/sim/faults": 200,
            "/sim/faults/kinds": 200,
            "/sim/state": 200,
            "/sim/trace?limit=5": 200,
        }
        for path, code in controller.items():
            assert httpx.get(up.url("controller", path), timeout=10).status_code == code, path
        fault = {"kind": "extra_busy", "params": {"count": 1}}  # absorbed by the driver's polling
        chaos = {
            ("POST", "/sim/faults"): (fault, 201),
            ("DELETE", "/sim/faults"): (None, 200),
            ("POST", "/sim/power-cycle"): (None, 200),
        }
        for (method, path), (body, code) in chaos.items():
            answer = httpx.request(method, up.url("controller", path), json=body, timeout=10)
            assert answer.status_code == code, (method, path, answer.text)
        # /health alone can still say healthy right after the power cycle: the controller
        # learns of it at its next transaction and re-validates (503 meanwhile)
        answers: list[httpx.Response] = []

        def sampled() -> bool:
            answers.append(httpx.get(up.url("controller", "/generate"), timeout=10))
            return answers[-1].status_code == 200

        wait_for(sampled, "a sample from the controller after the power cycle", 30, 0.1)
        sample = answers[-1].json()["data"]
        fortuna_posts = {"/seed": {"seeds": [sample]}, "/amplify": {"seed": sample, "size": 64}}
        for path, body in fortuna_posts.items():
            assert httpx.post(up.url("fortuna", path), json=body, timeout=10).status_code == 200
        for path in ("/health", "/info", "/generate?size=64", "/metrics"):
            assert httpx.get(up.url("fortuna", path), timeout=10).status_code == 200, path
        seeded = httpx.post(up.url("virtio", "/seed"), json={"seeds": [sample * 4]}, timeout=10)
        assert seeded.status_code == 200
        for path in ("/health", "/info", "/config/queue", "/metrics", "/stream?max_bytes=32"):
            assert httpx.get(up.url("virtio", path), timeout=10).status_code == 200, path
        assert httpx.get(up.url("virtio", "/generate"), timeout=10).status_code in (200, 503)

        # Kill Fortuna: the API degrades, keeps serving TRNG, and recovers when it returns.
        os.kill(up.pids()["fortuna"], signal.SIGKILL)
        wait_for(lambda: not api.health().details["fortuna"], "the API to see Fortuna gone", 15)
        assert api.health().status == "degraded"
        assert len(_ints_when_ready(api, "uint8", "trng")) == 3
        wait_for(lambda: api.health().ok, "Fortuna back and the API ok again", 45, 0.2)
        before = api.status().fortuna.total_generated
        wait_for(
            lambda: api.status().fortuna.total_generated > before,
            "Fortuna output flowing into the API again",
            30,
            0.2,
        )
        assert up.stop() == 0

"""The VirtIO service's routes (spec/service-api.md §4) through Starlette's TestClient.

Most tests disable the named pipe (``VIRTIO_PIPE_PATH=""``) so the ring has exactly one
consumer; the pipe tests put the FIFO in ``tmp_path``. Streaming with disconnects and waits
is in ``test_service_virtio_stream.py``; settings, the CLI and a real process in
``test_service_virtio_startup.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.services.settings import load_virtio_settings
from lokey.services.virtio import (
    BODY_ERROR,
    CHUNK_SIZE_ERROR,
    COUNT_ERROR,
    EMPTY_ERROR,
    MAX_BYTES_ERROR,
    MAX_OPEN_STREAMS,
    NO_SEEDS_ERROR,
    QUEUE_SIZE_ERROR,
    TOO_MANY_STREAMS_ERROR,
    VirtioService,
    create_virtio_app,
)
from lokey.virtio import release_keepers
from tests.service_helpers import TestClient, wait_for

NO_PIPE = {"VIRTIO_PIPE_PATH": ""}


@contextmanager
def running(**env: str) -> Iterator[tuple[TestClient, VirtioService]]:
    app = create_virtio_app(load_virtio_settings({**NO_PIPE, **env}))
    with TestClient(app) as client:
        service = client.app.state.lokey  # type: ignore[attr-defined]
        assert isinstance(service, VirtioService)
        yield client, service


def _seed(client: TestClient, *chunks: bytes) -> None:
    response = client.post("/seed", json={"seeds": [c.hex() for c in chunks]})
    assert response.status_code == 200, response.text


# -- /seed -----------------------------------------------------------------------------------------


def test_seed_appends_each_entry_as_one_item_in_order() -> None:
    with running() as (client, service):
        first, second = os.urandom(32), os.urandom(100)
        response = client.post("/seed", json={"seeds": [first.hex(), second.hex().upper()]})
        assert response.status_code == 200
        assert response.json() == {"status": "seeded", "count": 2, "bytes": 132, "dropped": 0}
        assert service.ring.take(1000) == first + second


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", BODY_ERROR),
        (b"[]", BODY_ERROR),
        (b'{"seed": ["00"]}', BODY_ERROR),
        (b'{"seeds": "00"}', BODY_ERROR),
        (b'{"seeds": []}', NO_SEEDS_ERROR),
    ],
)
def test_seed_refuses_bad_bodies_with_the_reference_strings(body: bytes, message: str) -> None:
    with running() as (client, service):
        response = client.post("/seed", content=body)
        assert response.status_code == 400
        assert response.json() == {"error": message}
        assert service.ring.available == 0


@pytest.mark.parametrize(
    ("entry", "why"), [("zz", "not hex"), ("abc", "not hex"), ("", "empty"), (7, "not a string")]
)
def test_a_bad_entry_is_named_and_nothing_from_the_request_is_appended(
    entry: object, why: str
) -> None:
    with running() as (client, service):
        response = client.post("/seed", json={"seeds": ["00" * 32, "11" * 32, entry]})
        assert response.status_code == 400
        assert response.json() == {"error": f"Invalid seed 2 ({why})", "seed": 2}
        assert service.ring.snapshot().generated == 0


def test_seed_body_is_bounded() -> None:
    with running() as (client, _):
        response = client.post("/seed", content=b'{"seeds": ["' + b"00" * (3 << 20) + b'"]}')
        assert response.status_code == 413
        assert response.json()["error"].startswith("Request body too large")


# -- /generate -------------------------------------------------------------------------------------


def test_generate_serves_32_byte_values_in_the_controllers_shape() -> None:
    with running() as (client, service):
        data = os.urandom(32 * 4)
        _seed(client, data)
        one = client.get("/generate").json()
        assert one == {"data": data[:32].hex()}
        three = client.get("/generate?count=3").json()["data"]
        assert three == [data[32 * i : 32 * i + 32].hex() for i in range(1, 4)]
        assert service.ring.available == 0
        assert service.bytes_served["generate"] == 128


def test_generate_takes_at_byte_granularity_and_never_pads() -> None:
    with running() as (client, _):
        _seed(client, b"\x01" * 31, b"\x02" * 31, b"\x03" * 31)  # 93 bytes, TRNG-sized items
        values = client.get("/generate?count=2").json()["data"]
        assert values == [(b"\x01" * 31 + b"\x02").hex(), (b"\x02" * 30 + b"\x03" * 2).hex()]


def test_generate_answers_503_and_consumes_nothing_when_short() -> None:
    with running() as (client, service):
        _seed(client, os.urandom(95))
        response = client.get("/generate?count=3")  # 96 bytes needed
        assert response.status_code == 503
        assert response.json() == {"error": EMPTY_ERROR}
        assert response.headers["retry-after"] == "1"
        assert service.ring.available == 95
        assert service.ring.snapshot().consumed == 0
        assert client.get("/generate?count=2").status_code == 200


@pytest.mark.parametrize("query", ["count=0", "count=101", "count=1.5", "count=", "count=a"])
def test_generate_checks_count(query: str) -> None:
    with running() as (client, service):
        _seed(client, os.urandom(64))
        response = client.get(f"/generate?{query}")
        assert response.status_code == 400
        assert response.json() == {"error": COUNT_ERROR}
        assert service.ring.available == 64


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=6), st.integers(0, 4000))
def test_generate_serves_every_byte_once_in_order(counts: list[int], seeded: int) -> None:
    with running() as (client, service):
        data = os.urandom(seeded)
        if data:
            _seed(client, data)
        served = b""
        for count in counts:
            response = client.get(f"/generate?count={count}")
            if len(data) - len(served) >= 32 * count:
                values = response.json()["data"]
                values = [values] if count == 1 else values
                assert all(len(v) == 64 for v in values)
                served += bytes.fromhex("".join(values))
            else:
                assert response.status_code == 503
        assert served == data[: len(served)]
        assert service.ring.available == len(data) - len(served)


# -- /stream (bounded, in the TestClient) ----------------------------------------------------------


@pytest.mark.parametrize(("chunk", "limit"), [(64, 1000), (1, 17), (65536, 5000), (1000, 1000)])
def test_stream_ends_exactly_at_max_bytes(chunk: int, limit: int) -> None:
    with running() as (client, service):
        data = os.urandom(6000)
        _seed(client, data)
        response = client.get(f"/stream?chunk_size={chunk}&max_bytes={limit}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == data[:limit]
        assert service.ring.available == 6000 - limit
        assert service.bytes_served["stream"] == limit


def test_stream_default_chunk_size_is_1024() -> None:
    with running() as (client, _):
        data = os.urandom(3000)
        _seed(client, data)
        assert client.get("/stream?max_bytes=3000").content == data


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("chunk_size=0", CHUNK_SIZE_ERROR),
        ("chunk_size=65537", CHUNK_SIZE_ERROR),
        ("chunk_size=x", CHUNK_SIZE_ERROR),
        ("chunk_size=1&chunk_size=2", CHUNK_SIZE_ERROR),
        ("max_bytes=0", MAX_BYTES_ERROR),
        ("max_bytes=-5", MAX_BYTES_ERROR),
        ("max_bytes=1e3", MAX_BYTES_ERROR),
        ("max_bytes=", MAX_BYTES_ERROR),
    ],
)
def test_stream_checks_its_parameters(query: str, message: str) -> None:
    with running() as (client, service):
        _seed(client, os.urandom(64))
        response = client.get(f"/stream?{query}")
        assert response.status_code == 400
        assert response.json() == {"error": message}
        assert service.ring.available == 64


# -- /config/queue ---------------------------------------------------------------------------------


def test_config_queue_reports_the_reference_fields() -> None:
    with running(VIRTIO_QUEUE_SIZE="100") as (client, _):
        _seed(client, os.urandom(64), os.urandom(64))
        client.get("/generate")
        body = client.get("/config/queue").json()
        assert {k: body[k] for k in list(body)[:5]} == {
            "queue_size": 100,
            "queue_current": 3,  # 96 bytes left = 3 items of 32
            "total_generated": 4,
            "consumed_count": 1,
            "queue_dropped": 0,
        }
        assert body["queue_bytes"] == 96
        assert body["generated_bytes"] == 128


def test_put_config_queue_resizes_keeping_data_and_statistics() -> None:
    with running(VIRTIO_QUEUE_SIZE="100") as (client, service):
        data = os.urandom(32 * 50)
        _seed(client, data)
        client.get("/generate")
        response = client.put("/config/queue", json={"queue_size": 20})
        assert response.status_code == 200
        body = response.json()
        assert body["queue_size"] == 20
        assert body["queue_current"] == 20
        assert body["total_generated"] == 50  # kept, not reset
        assert body["consumed_count"] == 1
        assert body["queue_dropped"] == 29
        assert service.ring.take(10_000) == data[-32 * 20 :]  # the newest that fit


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"queue_size": 0}, BODY_ERROR),
        ({}, BODY_ERROR),
        ({"queue_size": "20"}, BODY_ERROR),
        ({"queue_size": True}, BODY_ERROR),
        ({"queue_size": 9}, QUEUE_SIZE_ERROR),
        ({"queue_size": 1_000_001}, QUEUE_SIZE_ERROR),
        ({"queue_size": -1}, QUEUE_SIZE_ERROR),
    ],
)
def test_put_config_queue_checks_its_body(body: dict[str, object], message: str) -> None:
    with running() as (client, service):
        response = client.put("/config/queue", json=body)
        assert response.status_code == 400
        assert response.json() == {"error": message}
        assert service.ring.capacity_items == 15_000
    assert QUEUE_SIZE_ERROR == "Queue size must be between 10 and 1000000"


# -- /health, /info, /metrics, the pipe ------------------------------------------------------------


def test_health_and_info_without_a_pipe() -> None:
    with running() as (client, _):
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "healthy"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", health.json()["timestamp"])
        info = client.get("/info").json()
        assert info["status"] == "running"
        assert "pipe_path" not in info
        assert info["pipe"] is None
        assert info["queue"]["queue_size"] == 15_000


def test_the_pipe_gets_bytes_no_http_client_gets(tmp_path: Path) -> None:
    fifo = tmp_path / "virtio-rng"
    with running(VIRTIO_PIPE_PATH=str(fifo)) as (client, service):
        assert fifo.is_fifo()
        assert fifo.stat().st_mode & 0o777 == 0o660
        info = client.get("/info").json()
        assert info["pipe_path"] == str(fifo)
        assert info["pipe"]["state"] == "running"
        assert client.get("/health").status_code == 200
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            data = os.urandom(2000)
            _seed(client, data)
            got = b""

            def drained() -> bool:
                nonlocal got
                with suppress(BlockingIOError):
                    got += os.read(reader, 4096)
                return len(got) == 2000 and service.ring.available == 0

            wait_for(drained, "the FIFO to carry all 2000 bytes", timeout_s=10)
            assert got == data
            assert client.get("/generate").status_code == 503  # nothing left for HTTP
        finally:
            os.close(reader)
        wait_for(lambda: client.get("/info").json()["pipe"]["bytes_written"] == 2000, "pipe stats")


def test_health_is_503_when_the_pipe_writer_stops(tmp_path: Path) -> None:
    with running(VIRTIO_PIPE_PATH=str(tmp_path / "rng")) as (client, service):
        assert service.feeder is not None
        service.feeder.stop(2.0)
        response = client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["details"]["pipe"] is False
        assert client.get("/info").json()["pipe"]["state"] == "stopped"


def test_a_qemu_reader_never_sees_eof_across_a_shutdown_and_restart_in_one_process(
    tmp_path: Path,
) -> None:
    # The keeper descriptor outlives the app: end-of-file would make QEMU spin at 100 % CPU.
    fifo = tmp_path / "virtio-rng"
    try:
        with running(VIRTIO_PIPE_PATH=str(fifo)):
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(BlockingIOError):
                os.read(reader, 64)  # EAGAIN between the two lifespans, never b"" (EOF)
            with running(VIRTIO_PIPE_PATH=str(fifo)) as (client, _):
                _seed(client, b"\x5a" * 64)
                got = b""

                def arrived() -> bool:
                    nonlocal got
                    with suppress(BlockingIOError):
                        chunk = os.read(reader, 64)
                        assert chunk, "EOF on the FIFO"
                        got += chunk
                    return len(got) == 64

                wait_for(arrived, "bytes through the restarted service", timeout_s=10)
        finally:
            os.close(reader)
    finally:
        release_keepers(str(fifo))


def test_more_streams_than_the_cap_are_refused_with_503() -> None:
    with running() as (client, service):
        service.open_streams = MAX_OPEN_STREAMS  # as if that many clients were streaming
        response = client.get("/stream?max_bytes=32")
        assert response.status_code == 503
        assert response.json()["error"] == TOO_MANY_STREAMS_ERROR
        service.open_streams = 0
        _seed(client, b"\x11" * 32)
        assert client.get("/stream?max_bytes=32").content == b"\x11" * 32


def test_metrics_expose_ring_pipe_and_requests(tmp_path: Path) -> None:
    with running(VIRTIO_PIPE_PATH=str(tmp_path / "rng")) as (client, _):
        client.get("/generate")  # 503: empty
        client.get("/generate?count=0")  # 400
        text = client.get("/metrics").text
        assert "lokey_virtio_queue_capacity_items 15000.0" in text
        assert "lokey_virtio_pipe_running 1.0" in text
        assert 'lokey_virtio_requests_total{outcome="empty",route="generate"} 1.0' in text
        assert 'lokey_virtio_requests_total{outcome="invalid",route="generate"} 1.0' in text


def test_unknown_routes_and_methods_use_the_error_shape() -> None:
    with running() as (client, _):
        assert client.get("/nope").json() == {"error": "Not Found"}
        assert client.post("/generate").status_code == 405
        assert client.options("/stream").status_code == 204

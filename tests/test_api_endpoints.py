"""The API's HTTP endpoints (spec/service-api.md §1.1, §1.2, §1.6-§1.8, §0, §5).

Every test runs the real app in a ``TestClient`` (the lifespan opens the real store and HTTP
client; background jobs off). Queue contents are put in directly through the real store;
peers are refused addresses unless a test simulates them with an ``httpx.MockTransport``.
Where the two store back-ends must behave identically the test runs on both (LMDB, the
default, and ``DB_IMPLEMENTATION=channel``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from lokey.errors import StoreError
from lokey.services.api.views import human_size
from tests.api_helpers import api_service, api_settings, running_api, settings_for
from tests.service_helpers import TestClient

# -- helpers ---------------------------------------------------------------------------------------

WIDTHS = {
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "binary": 1,
}
INTEGER_FORMATS = tuple(fmt for fmt in WIDTHS if fmt != "binary")
BODY_ERROR = "Invalid request body"
NO_DATA = "No data available"
QUEUE_FIELDS = {
    "polling_count",
    "queue_current",
    "queue_capacity",
    "queue_percentage",
    "queue_dropped",
    "consumed_count",
    "unconsumed_count",
    "total_generated",
}
VIRTIO_FIELDS = QUEUE_FIELDS - {"polling_count"}
REFERENCE_GAUGES = {
    f"{queue}_{name}"
    for queue in ("trng", "fortuna", "virtio")
    for name in ("queue_current", "queue_capacity", "queue_percentage", "consumed", "unconsumed")
} | {"database_size_bytes"}
CONTROLLER = "http://controller.test:8081"
FORTUNA = "http://fortuna.test:8082"
VIRTIO = "http://virtio.test:8083"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the tests that only check how a request is answered (they compare the
    queue before and after, never against absolute numbers); 2 KiB of TRNG data."""
    with running_api(api_settings(tmp_path_factory.mktemp("shared"))) as the_client:
        api_service(the_client).store.push("trng", items(64))
        yield the_client


def items(count: int, size: int = 32, start: int = 0) -> list[bytes]:
    """``count`` distinct items of known bytes (high bits set often: signs matter)."""
    out = []
    for index in range(start, start + count):
        block = b"".join(
            hashlib.sha256(f"{index}/{part}".encode()).digest() for part in range(size // 32 + 1)
        )
        out.append(block[:size])
    return out


def expected(fmt: str, data: bytes) -> list[int]:
    """Big-endian values of ``data``; two's complement for the signed formats (spec §1.2)."""
    width = WIDTHS[fmt]
    signed = fmt.startswith("int")
    return [
        int.from_bytes(data[i : i + width], "big", signed=signed)
        for i in range(0, len(data), width)
    ]


def post(client: TestClient, **body: object) -> httpx.Response:
    response: httpx.Response = client.post("/api/v1/data", json=body)
    return response


def post_raw(client: TestClient, content: bytes, **headers: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/v1/data", content=content, headers={"content-type": "application/json", **headers}
    )
    return response


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) >= {"error"}
    message = body["error"]
    assert isinstance(message, str)
    return message


def queue_status(client: TestClient, source: str) -> dict[str, Any]:
    status = client.get("/api/v1/status")
    assert status.status_code == 200
    section: dict[str, Any] = status.json()[source]
    return section


def scrape(client: TestClient, path: str = "/metrics") -> dict[str, float]:
    """Every sample of an exposition as ``name{label="v",...}`` → value."""
    response = client.get(path)
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def gauge_types(client: TestClient) -> dict[str, str]:
    response = client.get("/metrics")
    return {family.name: family.type for family in text_string_to_metric_families(response.text)}


class FakePeers:
    """A MockTransport handler answering as the controller, Fortuna and VirtIO would."""

    def __init__(
        self,
        *,
        health: dict[str, int] | None = None,
        virtio_queue: dict[str, int] | None = None,
        samples: list[bytes] | None = None,
    ) -> None:
        self.health = health or {}
        self.virtio_queue = virtio_queue
        self.samples = samples or []
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        peer = request.url.host.removesuffix(".test")
        if request.url.path == "/health":
            return httpx.Response(self.health.get(peer, 200), json={"status": "healthy"})
        if peer == "virtio" and request.url.path == "/config/queue" and self.virtio_queue:
            return httpx.Response(200, json=self.virtio_queue)
        if peer == "controller" and request.url.path == "/generate" and self.samples:
            count = int(request.url.params["count"])
            taken, self.samples = self.samples[:count], self.samples[count:]
            return httpx.Response(200, json={"data": [sample.hex() for sample in taken]})
        return httpx.Response(500, json={"error": "not simulated"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def peer_env(**env: str) -> dict[str, str]:
    return {"CONTROLLER_ADDR": CONTROLLER, "FORTUNA_ADDR": FORTUNA, "VIRTIO_ADDR": VIRTIO, **env}


# -- POST /api/v1/data: the nine formats -----------------------------------------------------------


@pytest.mark.parametrize("fmt", INTEGER_FORMATS)
def test_integer_formats_return_exactly_limit_big_endian_values_spanning_items(
    client: TestClient, fmt: str
) -> None:
    # 31-byte items (the reference's size): 2-, 4- and 8-byte values straddle item boundaries
    queued = items(4, size=31)
    api_service(client).store.push("trng", queued)
    stream = b"".join(queued)
    limit = 80 // WIDTHS[fmt]  # 80 bytes: two and a half items
    response = post(client, format=fmt, limit=limit, source="trng")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-lokey-consumed"] == "true"
    values = response.json()
    assert len(values) == limit
    assert values == expected(fmt, stream[:80])


def test_int64_values_cross_32_byte_trng_items(client: TestClient) -> None:
    queued = items(2)
    api_service(client).store.push("trng", queued)
    stream = b"".join(queued)
    first = post(client, format="uint8", limit=3, source="trng")  # misalign the head by 3 bytes
    assert first.json() == list(stream[:3])
    response = post(client, format="int64", limit=5, source="trng")
    assert response.status_code == 200
    assert response.json() == [
        int.from_bytes(stream[3 + 8 * i : 11 + 8 * i], "big", signed=True) for i in range(5)
    ]
    # the value at bytes 27..34 spans the two items
    assert response.json()[3] == int.from_bytes(stream[27:35], "big", signed=True)


def test_signed_formats_are_twos_complement_of_the_stored_bytes(client: TestClient) -> None:
    api_service(client).store.push("trng", [bytes.fromhex("ff 80 7f 00 ffff 8000 ffffffff 00")])
    assert post(client, format="int8", limit=4, source="trng").json() == [-1, -128, 127, 0]
    assert post(client, format="int16", limit=2, source="trng").json() == [-1, -32768]
    assert post(client, format="uint32", limit=1, source="trng").json() == [2**32 - 1]


def test_64_bit_values_are_exact_integers_in_the_json(client: TestClient) -> None:
    value = 2**64 - 3  # not representable as a double
    api_service(client).store.push("trng", [value.to_bytes(8, "big") * 2])
    assert post(client, format="uint64", limit=1, source="trng").json() == [value]
    assert post(client, format="int64", limit=1, source="trng").json() == [value - 2**64]


def test_binary_is_an_attachment_of_exactly_limit_bytes(client: TestClient) -> None:
    queued = items(3)
    api_service(client).store.push("trng", queued)
    response = post(client, format="binary", limit=70, source="trng")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == "attachment; filename=random.bin"
    assert response.headers["x-lokey-consumed"] == "true"
    assert response.content == b"".join(queued)[:70]


def test_fortuna_source_serves_the_fortuna_queue(client: TestClient) -> None:
    service = api_service(client)
    fortuna = items(2, size=256, start=100)
    service.store.push("fortuna", fortuna)
    service.store.push("trng", items(1))
    response = post(client, format="uint32", limit=100, source="fortuna")  # 400 bytes
    assert response.status_code == 200
    assert response.json() == expected("uint32", b"".join(fortuna)[:400])
    assert queue_status(client, "trng")["queue_current"] == 1  # untouched


def test_the_largest_limit_is_served_in_full(client: TestClient) -> None:
    api_service(client).store.push("fortuna", items(400, size=256))
    response = post(client, format="uint8", limit=100_000, source="fortuna")
    assert response.status_code == 200
    assert len(response.json()) == 100_000


# -- delete-on-read and offset ---------------------------------------------------------------------


def test_reads_consume_by_default_and_the_next_request_gets_the_next_bytes(
    client: TestClient,
) -> None:
    queued = items(2)
    stream = b"".join(queued)
    api_service(client).store.push("trng", queued)
    assert client.get("/api/v1/config/consume").json() == {"consume": True}
    assert post(client, format="binary", limit=10, source="trng").content == stream[:10]
    assert post(client, format="binary", limit=10, source="trng").content == stream[10:20]
    # the remainder of the partly used first item stays at the head of the queue
    assert post(client, format="binary", limit=20, source="trng").content == stream[20:40]
    trng = queue_status(client, "trng")
    assert trng["queue_current"] == 1
    assert trng["consumed_count"] == 1
    assert post(client, format="binary", limit=24, source="trng").content == stream[40:]
    assert post(client, format="binary", limit=1, source="trng").status_code == 503


def test_a_consumed_byte_is_never_served_again(client: TestClient) -> None:
    queued = items(8)
    api_service(client).store.push("trng", queued)
    served = b""
    for fmt in ("uint16", "int64", "binary", "int8", "uint32"):
        response = post(client, format=fmt, limit=5, source="trng")
        if fmt == "binary":
            served += response.content
        else:
            width = WIDTHS[fmt]
            signed = fmt.startswith("int")
            served += b"".join(
                value.to_bytes(width, "big", signed=signed) for value in response.json()
            )
    assert served == b"".join(queued)[: len(served)]


def test_offset_counts_values_and_skipped_bytes_stay_queued(client: TestClient) -> None:
    queued = items(2)
    stream = b"".join(queued)
    api_service(client).store.push("trng", queued)
    skipped = post(client, format="uint16", limit=2, offset=3, source="trng")
    assert skipped.status_code == 200
    assert skipped.json() == expected("uint16", stream[6:10])
    # the six skipped bytes were neither returned nor consumed
    assert post(client, format="binary", limit=6, source="trng").content == stream[:6]
    assert post(client, format="binary", limit=3, source="trng").content == stream[10:13]


def test_binary_offset_counts_bytes(client: TestClient) -> None:
    queued = items(2)
    stream = b"".join(queued)
    api_service(client).store.push("trng", queued)
    response = post(client, format="binary", limit=4, offset=30, source="trng")
    assert response.content == stream[30:34]
    assert post(client, format="binary", limit=30, source="trng").content == stream[:30]


# -- not enough data -------------------------------------------------------------------------------


def _assert_no_data(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.json() == {"error": NO_DATA}
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit()
    assert int(retry_after) >= 1


@pytest.mark.parametrize("source", ["trng", "fortuna"])
def test_an_empty_queue_is_503_no_data_available_with_retry_after(
    client: TestClient, source: str
) -> None:
    _assert_no_data(post(client, format="uint8", limit=1, source=source))


@pytest.mark.parametrize(
    "body",
    [
        {"format": "binary", "limit": 65},
        {"format": "int64", "limit": 9},
        {"format": "uint16", "limit": 2, "offset": 31},
        {"format": "binary", "limit": 1, "offset": 64},
    ],
)
def test_a_request_the_queue_cannot_fill_is_503_and_consumes_nothing(
    client: TestClient, body: dict[str, object]
) -> None:
    queued = items(2)
    api_service(client).store.push("trng", queued)
    before = queue_status(client, "trng")
    _assert_no_data(post(client, source="trng", **body))
    assert queue_status(client, "trng") == before
    assert post(client, format="binary", limit=64, source="trng").content == b"".join(queued)


# -- virtio source and peeking ---------------------------------------------------------------------


def _assert_virtio_refused(response: httpx.Response) -> None:
    assert response.status_code == 400
    message = error_of(response)
    for word in ("trng", "fortuna", "/var/run/lokey/virtio-rng", "/stream"):
        assert word in message


def test_source_virtio_is_refused_with_directions_to_the_consumer_endpoints(
    shared: TestClient,
) -> None:
    _assert_virtio_refused(post(shared, format="uint8", limit=1, source="virtio"))
    _assert_virtio_refused(
        shared.get("/api/v1/data", params={"format": "uint8", "limit": 1, "source": "virtio"})
    )


def test_consume_false_is_refused_without_allow_peek(api: TestClient) -> None:
    queued = items(1)
    api_service(api).store.push("trng", queued)
    response = post(api, format="binary", limit=4, source="trng", consume=False)
    assert response.status_code == 400
    assert "ALLOW_PEEK" in error_of(response)
    query = {"format": "binary", "limit": 4, "source": "trng", "consume": "false"}
    refused = api.get("/api/v1/data", params=query)
    assert refused.status_code == 400
    assert "ALLOW_PEEK" in error_of(refused)
    assert post(api, format="binary", limit=4, source="trng").content == queued[0][:4]


def test_with_allow_peek_a_peek_returns_the_same_bytes_and_is_marked(
    tmp_path: Path, backend: str
) -> None:
    with running_api(settings_for(tmp_path, backend, ALLOW_PEEK="true")) as client:
        queued = items(2)
        api_service(client).store.push("trng", queued)
        before = queue_status(client, "trng")
        first = post(client, format="uint32", limit=10, source="trng", consume=False)
        second = post(client, format="uint32", limit=10, source="trng", consume=False)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == expected("uint32", b"".join(queued)[:40])
        assert first.headers["x-lokey-consumed"] == "false"
        assert queue_status(client, "trng") == before
        consumed = post(client, format="uint32", limit=10, source="trng", consume=True)
        assert consumed.headers["x-lokey-consumed"] == "true"
        assert consumed.json() == first.json()
        assert post(client, format="uint32", limit=1, source="trng").json() == expected(
            "uint32", b"".join(queued)[40:44]
        )


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b'{"format": "uint8", "limit": 1, "source": "trng"',
        b"",
        b"[]",
        b'[{"format": "uint8", "limit": 1, "source": "trng"}]',
        b"null",
        b'"uint8"',
        b"42",
        b"true",
        b"{'format': 'uint8'}",
    ],
)
def test_malformed_or_non_object_json_is_invalid_request_body(
    shared: TestClient, content: bytes
) -> None:
    response = post_raw(shared, content)
    assert response.status_code == 400
    assert response.json() == {"error": BODY_ERROR}


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": "\xff\xfe", "limit": 1, "source": "trng"}',  # not UTF-8
        b"[" * 20_000 + b"]" * 20_000,  # nested deeper than any parser follows
    ],
)
def test_an_unparseable_body_is_invalid_request_body(shared: TestClient, content: bytes) -> None:
    response = post_raw(shared, content)
    assert response.status_code == 400
    assert response.json() == {"error": BODY_ERROR}


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_json_body_is_read_whatever_content_type_the_client_sent(
    shared: TestClient, content_type: str | None
) -> None:
    """The reference binds the body with gin's ShouldBindJSON, which ignores Content-Type:
    ``curl -d '{...}' URL`` (sent as x-www-form-urlencoded) works there."""
    body = json.dumps({"format": "binary", "limit": 5, "source": "trng"}).encode()
    request = shared.build_request("POST", "/api/v1/data", content=body)
    request.headers.pop("content-type", None)
    if content_type is not None:
        request.headers["content-type"] = content_type
    response = shared.send(request)
    assert response.status_code == 200, response.text
    assert len(response.content) == 5


VALID = {"format": "uint8", "limit": 1, "source": "trng"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"format": None}, "format"),
        ({"limit": None}, "limit"),
        ({"source": None}, "source"),
        ({"limit": 0}, "limit"),
        ({"limit": 100_001}, "limit"),
        ({"limit": -1}, "limit"),
        ({"offset": -1}, "offset"),
        ({"limit": "5"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": 2.0}, "limit"),
        ({"limit": None, "Count": 1}, "limit"),
        ({"offset": "1"}, "offset"),
        ({"consume": "yes"}, "consume"),
        ({"consume": 1}, "consume"),
        ({"format": "int128"}, "format"),
        ({"format": "UINT8"}, "format"),
        ({"format": 8}, "format"),
        ({"source": "hwrng"}, "source"),
        ({"source": ["trng"]}, "source"),
    ],
)
def test_invalid_fields_are_400_naming_the_field_as_written(
    shared: TestClient, change: dict[str, object], field: str
) -> None:
    before = queue_status(shared, "trng")
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    response = shared.post("/api/v1/data", json=body)
    assert response.status_code == 400
    message = error_of(response)
    assert re.search(rf"\b{field}\b", message), message
    assert "Count" not in message  # never the Go struct field
    assert queue_status(shared, "trng") == before


def test_unknown_extra_fields_are_ignored(shared: TestClient) -> None:
    response = post(shared, format="uint8", limit=1, source="trng", colour="blue")
    assert response.status_code == 200


def test_bodies_over_64_kib_are_413(api: TestClient) -> None:
    api_service(api).store.push("trng", items(1))
    body = json.dumps(VALID).encode()
    padded = body + b" " * ((64 << 10) - len(body))
    assert post_raw(api, padded).status_code == 200  # exactly 64 KiB is fine
    too_big = post_raw(api, padded + b" ")
    assert too_big.status_code == 413
    assert error_of(too_big)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield body
        for _ in range(65):
            yield b" " * 1024

    streamed = api.post(
        "/api/v1/data", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert queue_status(api, "trng")["consumed_count"] == 0


def test_a_refused_oversized_body_still_carries_the_cors_headers(shared: TestClient) -> None:
    """CORS headers are on every response (spec §1.1): a browser must be able to read the 413."""
    response = post_raw(shared, b" " * ((64 << 10) + 1))
    assert response.status_code == 413
    assert response.headers.get("access-control-allow-origin") == "*"


def test_a_refused_oversized_body_is_logged(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The API logs every request (spec §0), the refused ones included."""
    caplog.set_level(logging.INFO, logger="lokey.access")
    assert api.get("/api/v1/health").status_code == 200
    assert post_raw(api, b" " * ((64 << 10) + 1)).status_code == 413
    logged = [r.getMessage() for r in caplog.records if r.name == "lokey.access"]
    assert any(line.startswith("GET /api/v1/health 200") for line in logged), logged
    assert any(line.startswith("POST /api/v1/data 413") for line in logged), logged


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
DATA_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from([*WIDTHS, "virtio"]) | JSON_VALUES,
        "limit": st.integers(-2, 100_002) | JSON_VALUES,
        "offset": st.integers(-2, 300) | JSON_VALUES,
        "source": st.sampled_from(["trng", "fortuna", "virtio"]) | JSON_VALUES,
        "consume": st.booleans() | JSON_VALUES,
    },
)


def test_no_json_body_makes_a_server_error(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path, ALLOW_PEEK="true")) as client:
        store = api_service(client).store
        store.push("trng", items(64))
        store.push("fortuna", items(8, size=256))

        @given(body=DATA_BODIES | JSON_VALUES)
        @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        def check(body: object) -> None:
            response = post_raw(client, json.dumps(body).encode())
            assert response.status_code in {200, 400, 413, 503}, response.text
            if response.status_code != 200:
                assert error_of(response)

        check()


def test_no_query_string_makes_a_server_error(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path)) as client:
        api_service(client).store.push("trng", items(64))
        names = st.sampled_from(["format", "limit", "offset", "source", "consume"]) | st.text(
            max_size=6
        )
        values = st.sampled_from(["uint8", "binary", "trng", "1", "0", "true"]) | st.text(
            max_size=12
        )

        @given(query=st.lists(st.tuples(names, values), max_size=6))
        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        def check(query: list[tuple[str, str]]) -> None:
            response = client.get("/api/v1/data", params=query)
            assert response.status_code in {200, 400, 503}, response.text
            if response.status_code != 200:
                assert error_of(response)

        check()


# -- GET /api/v1/data ------------------------------------------------------------------------------


def test_the_get_form_takes_the_same_parameters(client: TestClient) -> None:
    queued = items(2, size=31)
    stream = b"".join(queued)
    api_service(client).store.push("trng", queued)
    response = client.get(
        "/api/v1/data", params={"format": "int32", "limit": 5, "offset": 1, "source": "trng"}
    )
    assert response.status_code == 200
    assert response.headers["x-lokey-consumed"] == "true"
    assert response.json() == expected("int32", stream[4:24])
    binary = client.get("/api/v1/data", params={"format": "binary", "limit": 4, "source": "trng"})
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.headers["content-disposition"] == "attachment; filename=random.bin"
    assert binary.content == stream[:4]
    _assert_no_data(
        client.get("/api/v1/data", params={"format": "binary", "limit": 60, "source": "trng"})
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100001"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": None}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"format": "int128"}, "format"),
        ({"format": None}, "format"),
        ({"source": "hwrng"}, "source"),
        ({"source": None}, "source"),
        ({"consume": "maybe"}, "consume"),
    ],
)
def test_bad_query_values_are_400_naming_the_field(
    shared: TestClient, query: dict[str, str | None], field: str
) -> None:
    before = queue_status(shared, "trng")
    params = {
        k: v
        for k, v in {"format": "uint8", "limit": "1", "source": "trng", **query}.items()
        if v is not None
    }
    response = shared.get("/api/v1/data", params=params)
    assert response.status_code == 400
    assert re.search(rf"\b{field}\b", error_of(response))
    assert queue_status(shared, "trng") == before


@pytest.mark.parametrize("field", ["limit", "offset"])
@pytest.mark.parametrize(
    "text",
    ["5.0", "1_0", "1e1", " 5", "5 ", "+5", "-1", "0x5", "\uff15", "\u0665", "\u00b9"],
    ids=[
        "decimal-point",
        "underscore",
        "exponent",
        "leading-space",
        "trailing-space",
        "plus-sign",
        "minus-sign",
        "hex",
        "fullwidth-digit",
        "arabic-indic-digit",
        "superscript-one",
    ],
)
def test_query_integers_are_plain_ascii_digits(shared: TestClient, field: str, text: str) -> None:
    """``limit`` and ``offset`` are integers as in the POST body, where 5.0 is refused; in the
    query only the ASCII digits 0-9 (no sign, no other script's digits) make one."""
    before = queue_status(shared, "trng")
    params = {"format": "uint8", "limit": "1", "source": "trng", field: text}
    response = shared.get("/api/v1/data", params=params)
    assert response.status_code == 400, response.text
    assert re.search(rf"\b{field}\b", error_of(response))
    assert queue_status(shared, "trng") == before


@pytest.mark.parametrize(
    "offset", [10**18 + 1, 2**64, 10**39], ids=["above-10^18", "2^64", "40-digits"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_any_offset_is_accepted_and_one_beyond_the_queue_is_503(
    shared: TestClient, offset: int, method: str
) -> None:
    """``offset`` has no upper bound: one beyond what is queued is "No data available"."""
    before = queue_status(shared, "trng")
    fields = {"format": "uint8", "limit": 1, "offset": offset, "source": "trng"}
    if method == "GET":
        response = shared.get("/api/v1/data", params={k: str(v) for k, v in fields.items()})
    else:
        response = shared.post("/api/v1/data", json=fields)
    _assert_no_data(response)
    assert queue_status(shared, "trng") == before


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("format", ["uint8", "binary"]),
        ("limit", ["1", "2"]),
        ("limit", ["1", "1"]),
        ("offset", ["0", "3"]),
        ("source", ["trng", "fortuna"]),
        ("consume", ["true", "true"]),
    ],
)
def test_a_query_field_given_more_than_once_is_400(
    shared: TestClient, field: str, values: list[str]
) -> None:
    before = queue_status(shared, "trng")
    single = {"format": "uint8", "limit": "1", "source": "trng"}
    query = [(k, v) for k, v in single.items() if k != field] + [(field, v) for v in values]
    response = shared.get("/api/v1/data", params=query)
    assert response.status_code == 400
    assert response.json() == {"error": f"{field}: given more than once"}
    assert queue_status(shared, "trng") == before


# -- Cache-Control ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peeking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app with ALLOW_PEEK=true and plenty of TRNG data (the answers only are checked)."""
    settings_ = api_settings(tmp_path_factory.mktemp("peeking"), ALLOW_PEEK="true")
    with running_api(settings_) as the_client:
        api_service(the_client).store.push("trng", items(256))
        yield the_client


DATA_ANSWERS: dict[str, tuple[str, dict[str, Any], int]] = {
    # name: (method, request, expected status)
    "post-values": ("POST", {"format": "uint16", "limit": 2, "source": "trng"}, 200),
    "post-binary": ("POST", {"format": "binary", "limit": 4, "source": "trng"}, 200),
    "post-peek": ("POST", {"format": "uint8", "limit": 4, "source": "trng", "consume": False}, 200),
    "get-values": ("GET", {"format": "int32", "limit": "2", "source": "trng"}, 200),
    "get-binary": ("GET", {"format": "binary", "limit": "4", "source": "trng"}, 200),
    "get-peek": (
        "GET",
        {"format": "binary", "limit": "4", "source": "trng", "consume": "false"},
        200,
    ),
    "post-no-data": ("POST", {"format": "binary", "limit": 100_000, "source": "trng"}, 503),
    "get-no-data": ("GET", {"format": "binary", "limit": "100000", "source": "trng"}, 503),
    "post-virtio": ("POST", {"format": "uint8", "limit": 1, "source": "virtio"}, 400),
    "get-virtio": ("GET", {"format": "uint8", "limit": "1", "source": "virtio"}, 400),
    "post-invalid-field": ("POST", {"format": "uint8", "limit": 0, "source": "trng"}, 400),
    "get-invalid-field": ("GET", {"format": "uint8", "limit": "x", "source": "trng"}, 400),
    "get-repeated-field": ("GET", {"format": "uint8", "limit": ["1", "2"], "source": "trng"}, 400),
}


@pytest.mark.parametrize("case", DATA_ANSWERS.values(), ids=list(DATA_ANSWERS))
def test_every_answer_to_a_data_request_says_cache_control_no_store(
    peeking: TestClient, case: tuple[str, dict[str, Any], int]
) -> None:
    """A cache replaying a data answer would serve the same bytes twice (README "Data")."""
    method, fields, status = case
    if method == "GET":
        response = peeking.get("/api/v1/data", params=fields)
    else:
        response = peeking.post("/api/v1/data", json=fields)
    assert response.status_code == status, response.text
    assert response.headers.get("cache-control") == "no-store"


def test_a_refused_peek_says_cache_control_no_store(shared: TestClient) -> None:
    response = post(shared, format="uint8", limit=1, source="trng", consume=False)
    assert response.status_code == 400
    assert response.headers.get("cache-control") == "no-store"


# -- GET /api/v1/status ----------------------------------------------------------------------------


def test_status_has_the_reference_shape_and_types(client: TestClient) -> None:
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"trng", "fortuna", "virtio", "database", "trng_quality", "health_tests"}
    for source in ("trng", "fortuna"):
        section = body[source]
        assert set(section) >= QUEUE_FIELDS
        for name in QUEUE_FIELDS - {"queue_percentage"}:
            assert type(section[name]) is int, name
        assert isinstance(section["queue_percentage"], int | float)
    assert set(body["virtio"]) >= VIRTIO_FIELDS
    assert {name: body["virtio"][name] for name in VIRTIO_FIELDS} == dict.fromkeys(VIRTIO_FIELDS, 0)
    database = body["database"]
    assert set(database) == {"size_bytes", "size_human", "path"}
    assert type(database["size_bytes"]) is int
    assert isinstance(database["size_human"], str)
    assert isinstance(database["path"], str)
    quality = body["trng_quality"]
    assert quality.keys() == {"monobit", "repetition_count", "apt"}
    assert quality["monobit"].keys() == {"zeros", "ones", "total", "average"}
    assert quality["repetition_count"].keys() == {"failures", "current_run", "last_value"}
    assert quality["apt"].keys() == {"window_size", "cutoff", "bias_count", "samples_processed"}
    for group in ("repetition_count", "apt"):
        assert all(type(value) is int for value in quality[group].values())
    assert isinstance(body["health_tests"], dict)
    assert body["health_tests"]


def test_lmdb_status_reports_the_database_file(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path)) as client:
        database = client.get("/api/v1/status").json()["database"]
    assert database["path"] == str(tmp_path / "api.db")
    assert database["size_bytes"] > 0
    assert database["size_human"] == human_size(database["size_bytes"])


def test_a_db_path_directory_gets_database_db_appended(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    with running_api(api_settings(tmp_path, DB_PATH=str(directory))) as client:
        database = client.get("/api/v1/status").json()["database"]
    assert database["path"] == str(directory / "database.db")
    assert (directory / "database.db").is_file()


def test_channel_status_reports_the_in_memory_database(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path, DB_IMPLEMENTATION="channel")) as client:
        api_service(client).store.push("trng", items(5))
        database = client.get("/api/v1/status").json()["database"]
    assert database == {
        "size_bytes": 0,
        "size_human": "0 B (in-memory)",
        "path": "memory://channels",
    }
    assert not (tmp_path / "api.db").exists()


def test_status_fields_mean_items_capacity_fill_and_lifetime_counts(
    tmp_path: Path, backend: str
) -> None:
    with running_api(settings_for(tmp_path, backend, TRNG_QUEUE_SIZE="10")) as client:
        store = api_service(client).store
        store.push("trng", items(12), polls=3)
        trng = queue_status(client, "trng")
        assert trng == {
            **trng,
            "polling_count": 3,
            "queue_current": 10,
            "queue_capacity": 10,
            "queue_percentage": 100.0,
            "queue_dropped": 2,
            "consumed_count": 0,
            "unconsumed_count": 10,
            "total_generated": 12,
        }
        assert post(client, format="binary", limit=48, source="trng").status_code == 200
        trng = queue_status(client, "trng")
        # one item fully consumed; the partly consumed one still counts as queued
        assert trng["queue_current"] == trng["unconsumed_count"] == 9
        assert trng["consumed_count"] == 1
        assert trng["queue_percentage"] == pytest.approx(90.0)
        assert trng["total_generated"] == 12
        assert trng["queue_dropped"] == 2
        fortuna = queue_status(client, "fortuna")
        assert fortuna["queue_current"] == fortuna["total_generated"] == 0


def test_status_reads_the_virtio_ring_from_the_virtio_service(tmp_path: Path) -> None:
    peers = FakePeers(
        virtio_queue={
            "queue_size": 200,
            "queue_current": 50,
            "total_generated": 70,
            "consumed_count": 20,
            "queue_dropped": 3,
        }
    )
    with running_api(api_settings(tmp_path, **peer_env()), transport=peers.transport()) as client:
        virtio = client.get("/api/v1/status").json()["virtio"]
    assert {name: virtio[name] for name in VIRTIO_FIELDS} == {
        "queue_current": 50,
        "queue_capacity": 200,
        "queue_percentage": 25.0,
        "queue_dropped": 3,
        "consumed_count": 20,
        "unconsumed_count": 50,
        "total_generated": 70,
    }
    assert any(r.url.host == "virtio.test" and r.url.path == "/config/queue" for r in peers.seen)


def test_trng_quality_counts_the_polled_bytes(tmp_path: Path) -> None:
    samples = items(4)
    peers = FakePeers(samples=list(samples))
    env = peer_env(LOKEY_TRNG_POLL_SAMPLES="4")
    with running_api(api_settings(tmp_path, **env), transport=peers.transport()) as client:
        assert client.portal is not None
        client.portal.call(api_service(client).background.poll_trng)
        quality = client.get("/api/v1/status").json()["trng_quality"]
    ones = sum(bin(byte).count("1") for byte in b"".join(samples))
    assert quality["monobit"]["total"] == 4 * 32 * 8
    assert quality["monobit"]["ones"] == ones
    assert quality["monobit"]["zeros"] == 4 * 32 * 8 - ones
    assert quality["apt"]["samples_processed"] == 4 * 32


@pytest.mark.parametrize(("setting", "window"), [("1024", 1024), ("256", 256), ("5000", 512)])
def test_trng_apt_window_size_is_used_only_within_256_to_2048(
    tmp_path: Path, setting: str, window: int
) -> None:
    with running_api(api_settings(tmp_path, TRNG_APT_WINDOW_SIZE=setting)) as client:
        apt = client.get("/api/v1/status").json()["trng_quality"]["apt"]
    assert apt["window_size"] == window


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (1 << 20, "1.0 MB"),
        (5 * (1 << 30) // 2, "2.5 GB"),
        (1 << 40, "1.0 TB"),
        (1 << 50, "1.0 PB"),
        (1 << 60, "1.0 EB"),
    ],
)
def test_human_size_steps_by_1024(size: int, text: str) -> None:
    assert human_size(size) == text


def test_a_failing_store_gives_the_reference_error_strings(client: TestClient) -> None:
    api_service(client).store.push("trng", items(1))
    api_service(client).store.close()  # every store call now fails
    data = post(client, format="uint8", limit=1, source="trng")
    assert data.status_code == 500
    assert data.json() == {"error": "Failed to retrieve data"}
    status = client.get("/api/v1/status")
    assert status.status_code == 500
    assert status.json() == {"error": "Failed to get system status"}
    queue = client.get("/api/v1/config/queue")
    assert queue.status_code == 500
    assert queue.json() == {"error": "Database is not healthy"}
    health = client.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["details"]["database"] is False
    assert client.get("/api/v1/ready").status_code == 503


# -- GET /api/v1/health and /api/v1/ready ----------------------------------------------------------


def test_health_is_200_degraded_when_peers_refuse(api: TestClient) -> None:
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["details"] == {
        "api": True,
        "controller": False,
        "fortuna": False,
        "virtio": False,
        "database": True,
    }
    stamp = datetime.fromisoformat(body["timestamp"])
    assert stamp.utcoffset() is not None  # RFC 3339 carries its offset


def test_health_is_ok_only_when_every_dependency_answers_200(tmp_path: Path) -> None:
    peers = FakePeers()
    with running_api(api_settings(tmp_path, **peer_env()), transport=peers.transport()) as client:
        body = client.get("/api/v1/health").json()
        assert body["status"] == "ok"
        assert body["details"] == dict.fromkeys(
            ("api", "controller", "fortuna", "virtio", "database"), True
        )
        checked = {(r.url.host, r.url.path) for r in peers.seen}
        assert {("controller.test", "/health"), ("fortuna.test", "/health")} <= checked
        assert ("virtio.test", "/health") in checked
        peers.health["fortuna"] = 503
        degraded = client.get("/api/v1/health")
        assert degraded.status_code == 200
        assert degraded.json()["status"] == "degraded"
        assert degraded.json()["details"]["fortuna"] is False
        assert degraded.json()["details"]["controller"] is True


def test_health_reports_virtio_false_when_virtio_addr_is_blank(tmp_path: Path) -> None:
    peers = FakePeers()
    settings_ = api_settings(tmp_path, **peer_env(VIRTIO_ADDR=""))
    with running_api(settings_, transport=peers.transport()) as client:
        body = client.get("/api/v1/health").json()
    assert body["details"]["virtio"] is False
    assert body["details"]["controller"] is True
    assert body["status"] == "degraded"
    assert all(r.url.host != "virtio.test" for r in peers.seen)


def test_health_answers_within_2_5_s_with_database_false_when_the_store_stalls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled disk must not hold the probe past Docker's 3 s HEALTHCHECK timeout (spec §0)."""
    peers = FakePeers()
    with running_api(api_settings(tmp_path, **peer_env()), transport=peers.transport()) as client:
        store = api_service(client).store
        released = threading.Event()

        def stalled() -> bool:
            released.wait(30)
            return True

        monkeypatch.setattr(store, "healthy", stalled)
        try:
            started = time.monotonic()
            response = client.get("/api/v1/health")
            elapsed = time.monotonic() - started
        finally:
            released.set()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["details"] == {
        "api": True,
        "controller": True,
        "fortuna": True,
        "virtio": True,
        "database": False,
    }
    assert 1.5 <= elapsed < 2.5  # it gave the store its 2 s, and no more


def test_ready_is_503_not_500_when_the_store_fails(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = api_service(api).store
    store.push("trng", items(1))
    assert api.get("/api/v1/ready").status_code == 200

    def failing(source: object) -> object:
        raise StoreError("injected: the disk said no")

    monkeypatch.setattr(store, "stats", failing)
    response = api.get("/api/v1/ready")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "database": False, "sources": {}}
    assert int(response.headers["retry-after"]) >= 1


def test_ready_is_503_until_a_queue_has_data(client: TestClient) -> None:
    empty = client.get("/api/v1/ready")
    assert empty.status_code == 503
    assert int(empty.headers["retry-after"]) >= 1
    api_service(client).store.push("fortuna", items(1, size=256))
    assert client.get("/api/v1/ready").status_code == 200


# -- metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/api/v1/metrics"])
def test_the_sixteen_reference_gauges_are_exposed_without_labels(
    shared: TestClient, path: str
) -> None:
    samples = scrape(shared, path)
    assert samples.keys() >= REFERENCE_GAUGES
    types = gauge_types(shared)
    assert all(types[name] == "gauge" for name in REFERENCE_GAUGES)


def test_gauges_are_computed_at_scrape_time(tmp_path: Path, backend: str) -> None:
    with running_api(settings_for(tmp_path, backend, FORTUNA_QUEUE_SIZE="20")) as client:
        store = api_service(client).store
        store.push("fortuna", items(5, size=256))
        samples = scrape(client)  # no /status call in between
        assert samples["fortuna_queue_current"] == 5
        assert samples["fortuna_queue_capacity"] == 20
        assert samples["fortuna_queue_percentage"] == pytest.approx(25.0)
        assert samples["fortuna_unconsumed"] == 5
        assert samples["fortuna_consumed"] == 0
        assert samples["database_size_bytes"] == store.database().size_bytes
        assert post(client, format="binary", limit=512, source="fortuna").status_code == 200
        samples = scrape(client)
        assert samples["fortuna_queue_current"] == 3
        assert samples["fortuna_consumed"] == 2
        assert samples["fortuna_unconsumed"] == 3


def test_virtio_gauges_come_from_the_virtio_service(tmp_path: Path) -> None:
    peers = FakePeers(virtio_queue={"queue_size": 400, "queue_current": 100, "consumed_count": 7})
    with running_api(api_settings(tmp_path, **peer_env()), transport=peers.transport()) as client:
        samples = scrape(client)
    assert samples["virtio_queue_capacity"] == 400
    assert samples["virtio_queue_current"] == 100
    assert samples["virtio_queue_percentage"] == pytest.approx(25.0)
    assert samples["virtio_consumed"] == 7


def test_request_and_byte_counters_move_after_a_data_request(api: TestClient) -> None:
    api_service(api).store.push("trng", items(2))

    def totals() -> tuple[float, float]:
        samples = scrape(api)
        requests = sum(v for k, v in samples.items() if k.startswith("lokey_api_requests_total"))
        served = samples.get('lokey_api_bytes_served_total{source="trng"}', 0.0)
        return requests, served

    requests, served = totals()
    assert post(api, format="uint16", limit=5, source="trng").status_code == 200
    assert totals() == (requests + 1, served + 10)


# -- OPTIONS, CORS, documentation ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/data", "/api/v1/status", "/metrics", "/no/such/path"])
def test_options_anywhere_is_204_without_a_body(shared: TestClient, path: str) -> None:
    response = shared.options(path)
    assert response.status_code == 204
    assert response.content == b""


def test_every_response_carries_the_reference_cors_headers(shared: TestClient) -> None:
    responses = [
        shared.get("/api/v1/health"),
        post(shared, format="uint8", limit=1, source="trng"),
        post(shared, format="uint8", limit=0, source="trng"),
        post(shared, format="binary", limit=100_000, source="trng"),  # more than queued
        shared.options("/api/v1/data"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 400, 503, 204]
    for response in responses:
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
        assert (
            response.headers["access-control-allow-headers"]
            == "Content-Type, Authorization, Accept"
        )


def test_the_cors_origin_is_configurable(tmp_path: Path) -> None:
    origin = "https://ops.example.org"
    with running_api(api_settings(tmp_path, LOKEY_CORS_ORIGIN=origin)) as client:
        assert client.get("/api/v1/health").headers["access-control-allow-origin"] == origin
        assert client.options("/api/v1/data").headers["access-control-allow-origin"] == origin


def test_the_openapi_document_lists_the_data_route(shared: TestClient) -> None:
    document = shared.get("/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {"post", "get"} <= paths["/api/v1/data"].keys()
    for path in ("/api/v1/status", "/api/v1/health", "/api/v1/config/queue"):
        assert path in paths
    docs = shared.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")


ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_openapi_document_shows_the_400_error_body_never_a_422(shared: TestClient) -> None:
    document = shared.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"] == {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    assert "HTTPValidationError" not in schemas
    assert "422" not in json.dumps(document)
    validated: set[tuple[str, str]] = set()
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        takes_input = "requestBody" in operation or any(
            parameter["in"] == "query" for parameter in operation.get("parameters", [])
        )
        if takes_input:
            validated.add((method, path))
            for status in ("400", "413"):
                content = responses[status]["content"]
                assert content == {"application/json": {"schema": ERROR_BODY}}, (path, method)
    assert validated >= {
        ("post", "/api/v1/data"),
        ("get", "/api/v1/data"),
        ("put", "/api/v1/config/queue"),
        ("put", "/api/v1/config/consume"),
        ("put", "/api/v1/config/virtio"),
        ("put", "/config/virtio"),
    }


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_openapi_document_describes_the_data_answers(shared: TestClient, method: str) -> None:
    operation = shared.get("/openapi.json").json()["paths"]["/api/v1/data"][method]
    ok = operation["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"type": "array", "items": {"type": "integer"}}
    assert "application/octet-stream" in ok
    unavailable = operation["responses"]["503"]["content"]
    assert unavailable == {"application/json": {"schema": ERROR_BODY}}


def test_the_old_swagger_ui_address_redirects_to_the_docs(shared: TestClient) -> None:
    response = shared.get("/swagger/index.html", follow_redirects=False)
    assert 300 <= response.status_code < 400
    assert response.headers["location"] == "/docs"
    assert shared.get("/swagger/index.html").status_code == 200


def test_unknown_routes_answer_with_the_error_shape(shared: TestClient) -> None:
    missing = shared.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert error_of(missing)
    wrong_method = shared.delete("/api/v1/data")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)

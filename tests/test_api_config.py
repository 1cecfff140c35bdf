"""The API's run-time configuration (spec/service-api.md §1.3-§1.5, §5, §6.1).

``/api/v1/config/queue`` resizes both queues on every store back-end and forwards the VirtIO
ring size; ``/api/v1/config/consume`` sets the delete-on-read default (peeking only with
``ALLOW_PEEK``); ``/api/v1/config/virtio`` switches the seeding source at once without touching
the TRNG and Fortuna capacities. All of it is persisted in the LMDB store; a variable that is
explicitly set wins over the persisted value at start-up. The VirtIO peer is an
``httpx.MockTransport`` where a test needs it to answer (or fail).
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_helpers import api_service, api_settings, running_api, settings_for
from tests.service_helpers import TestClient

VIRTIO = "http://virtio.test:8083"


def items(count: int, start: int = 0, size: int = 32) -> list[bytes]:
    """Item ``i`` is ``size`` bytes of value ``i``: which items survive is visible."""
    return [bytes([i % 256]) * size for i in range(start, start + count)]


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert isinstance(body, dict)
    message = body["error"]
    assert isinstance(message, str)
    return message


def status(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/status")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def queue_sizes(trng: int, fortuna: int, virtio: int) -> dict[str, int]:
    return {"trng_queue_size": trng, "fortuna_queue_size": fortuna, "virtio_queue_size": virtio}


class FakeVirtio:
    """VirtIO's ``/config/queue`` as a MockTransport handler: GET reports ``queue_size``,
    PUT answers ``put_status``; every request is recorded."""

    def __init__(self, queue_size: int = 15_000, put_status: int = 200) -> None:
        self.queue_size = queue_size
        self.put_status = put_status
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path == "/config/queue" and request.method == "GET":
            return httpx.Response(200, json={"queue_size": self.queue_size, "queue_current": 0})
        if request.url.path == "/config/queue" and request.method == "PUT":
            if self.put_status != 200:
                return httpx.Response(self.put_status, json={"error": "resize failed"})
            self.queue_size = json.loads(request.content)["queue_size"]
            return httpx.Response(200, json={"queue_size": self.queue_size, "queue_current": 0})
        return httpx.Response(503, json={"error": "not simulated"})

    def puts(self) -> list[object]:
        return [
            json.loads(r.content)
            for r in self.seen
            if r.method == "PUT" and r.url.host == "virtio.test" and r.url.path == "/config/queue"
        ]


def with_virtio(tmp_path: Path, fake: FakeVirtio, **env: str) -> AbstractContextManager[TestClient]:
    """The app with VirtIO at a simulated address answered by ``fake``."""
    return running_api(
        api_settings(tmp_path, VIRTIO_ADDR=VIRTIO, **env), transport=httpx.MockTransport(fake)
    )


# -- /api/v1/config/queue --------------------------------------------------------------------------


def test_get_queue_reports_the_default_capacities(api: TestClient) -> None:
    response = api.get("/api/v1/config/queue")
    assert response.status_code == 200
    assert response.json() == queue_sizes(1_000_000, 1_000_000, 500_000)


def test_put_queue_resizes_both_queues_and_echoes_the_body(client: TestClient) -> None:
    body = queue_sizes(20, 30, 40)
    response = client.put("/api/v1/config/queue", json=body)
    assert response.status_code == 200
    assert response.json().items() >= body.items()
    assert client.get("/api/v1/config/queue").json() == body  # VirtIO unreachable: last set
    now = status(client)
    assert now["trng"]["queue_capacity"] == 20
    assert now["fortuna"]["queue_capacity"] == 30
    stats = api_service(client).store.stats
    assert (stats("trng").capacity, stats("fortuna").capacity) == (20, 30)


def test_shrinking_drops_the_oldest_items_and_counts_them(client: TestClient) -> None:
    store = api_service(client).store
    store.push("trng", items(15))
    store.push("fortuna", items(12, start=100, size=256))
    assert client.put("/api/v1/config/queue", json=queue_sizes(10, 10, 10)).status_code == 200
    now = status(client)
    assert now["trng"]["queue_current"] == 10
    assert now["trng"]["queue_dropped"] == 5
    assert now["trng"]["total_generated"] == 15
    assert now["fortuna"]["queue_current"] == 10
    assert now["fortuna"]["queue_dropped"] == 2
    # the newest items survive: item 5 is now the head
    got = client.post("/api/v1/data", json={"format": "uint8", "limit": 1, "source": "trng"})
    assert got.json() == [5]
    got = client.post("/api/v1/data", json={"format": "uint8", "limit": 1, "source": "fortuna"})
    assert got.json() == [102]


def test_growing_keeps_every_item(client: TestClient) -> None:
    api_service(client).store.push("trng", items(12))
    assert client.put("/api/v1/config/queue", json=queue_sizes(500, 10, 10)).status_code == 200
    trng = status(client)["trng"]
    assert (trng["queue_current"], trng["queue_dropped"], trng["queue_capacity"]) == (12, 0, 500)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fortuna_queue_size": 10, "virtio_queue_size": 10}, "trng_queue_size"),
        ({"trng_queue_size": 10, "virtio_queue_size": 10}, "fortuna_queue_size"),
        ({"trng_queue_size": 10, "fortuna_queue_size": 10}, "virtio_queue_size"),
        (queue_sizes(9, 10, 10), "trng_queue_size"),
        (queue_sizes(10, 1_000_001, 10), "fortuna_queue_size"),
        (queue_sizes(10, 10, 0), "virtio_queue_size"),
        ({**queue_sizes(10, 10, 10), "trng_queue_size": "100"}, "trng_queue_size"),
        ({**queue_sizes(10, 10, 10), "virtio_queue_size": 10.5}, "virtio_queue_size"),
        ({**queue_sizes(10, 10, 10), "fortuna_queue_size": True}, "fortuna_queue_size"),
    ],
)
def test_put_queue_needs_all_three_sizes_within_10_to_1_000_000(
    shared: TestClient, body: dict[str, object], field: str
) -> None:
    before = shared.get("/api/v1/config/queue").json()
    response = shared.put("/api/v1/config/queue", json=body)
    assert response.status_code == 400
    assert re.search(rf"\b{field}\b", error_of(response))
    assert shared.get("/api/v1/config/queue").json() == before  # nothing applied


@pytest.mark.parametrize("content", [b"{", b"[10, 10, 10]", b""])
def test_put_queue_with_a_malformed_body_is_invalid_request_body(
    shared: TestClient, content: bytes
) -> None:
    response = shared.put(
        "/api/v1/config/queue", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid request body"}


def test_the_boundary_sizes_are_accepted(api: TestClient) -> None:
    for body in (queue_sizes(10, 10, 10), queue_sizes(1_000_000, 1_000_000, 1_000_000)):
        assert api.put("/api/v1/config/queue", json=body).status_code == 200
        assert api.get("/api/v1/config/queue").json() == body


def test_put_queue_forwards_the_virtio_size_to_the_virtio_service(tmp_path: Path) -> None:
    fake = FakeVirtio(queue_size=15_000)
    with with_virtio(tmp_path, fake) as client:
        response = client.put("/api/v1/config/queue", json=queue_sizes(100, 200, 4_321))
        assert response.status_code == 200
        assert fake.puts() == [{"queue_size": 4_321}]
        assert client.get("/api/v1/config/queue").json() == queue_sizes(100, 200, 4_321)


def test_get_queue_reports_the_virtio_services_own_ring_size(tmp_path: Path) -> None:
    fake = FakeVirtio(queue_size=15_000)
    with with_virtio(tmp_path, fake, VIRTIO_QUEUE_SIZE="777") as client:
        assert client.get("/api/v1/config/queue").json()["virtio_queue_size"] == 15_000
        fake.queue_size = 2_048  # changed behind the API's back
        assert client.get("/api/v1/config/queue").json()["virtio_queue_size"] == 2_048
    assert any(r.method == "GET" and r.url.path == "/config/queue" for r in fake.seen)


def test_get_queue_falls_back_to_virtio_queue_size_when_virtio_is_unreachable(
    tmp_path: Path,
) -> None:
    with running_api(api_settings(tmp_path, VIRTIO_QUEUE_SIZE="1234")) as client:
        assert client.get("/api/v1/config/queue").json()["virtio_queue_size"] == 1_234
        assert client.put("/api/v1/config/queue", json=queue_sizes(10, 10, 99)).status_code == 200
        assert client.get("/api/v1/config/queue").json()["virtio_queue_size"] == 99


def test_get_queue_falls_back_when_virtio_addr_is_blank(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path, VIRTIO_ADDR="", VIRTIO_QUEUE_SIZE="321")) as client:
        assert client.get("/api/v1/config/queue").json()["virtio_queue_size"] == 321
        response = client.put("/api/v1/config/queue", json=queue_sizes(10, 10, 64))
        assert response.status_code == 200
        assert response.json().items() >= queue_sizes(10, 10, 64).items()


@pytest.mark.parametrize("put_status", [500, 400])
def test_a_failing_virtio_service_does_not_fail_the_resize(tmp_path: Path, put_status: int) -> None:
    fake = FakeVirtio(put_status=put_status)
    with with_virtio(tmp_path, fake) as client:
        body = queue_sizes(50, 60, 70)
        response = client.put("/api/v1/config/queue", json=body)
        assert response.status_code == 200
        assert response.json().items() >= body.items()
        assert fake.puts() == [{"queue_size": 70}]
        stats = api_service(client).store.stats
        assert (stats("trng").capacity, stats("fortuna").capacity) == (50, 60)


def test_queue_sizes_persist_across_a_restart(tmp_path: Path) -> None:
    stored = api_settings(tmp_path)
    with running_api(stored) as client:
        api_service(client).store.push("trng", items(3))
        assert client.put("/api/v1/config/queue", json=queue_sizes(20, 30, 40)).status_code == 200
    with running_api(stored) as client:
        assert client.get("/api/v1/config/queue").json() == queue_sizes(20, 30, 40)
        assert status(client)["trng"]["queue_current"] == 3


def test_an_explicit_queue_size_variable_wins_over_the_persisted_size(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path)) as client:
        assert client.put("/api/v1/config/queue", json=queue_sizes(20, 30, 40)).status_code == 200
    explicit = api_settings(tmp_path, TRNG_QUEUE_SIZE="50", VIRTIO_QUEUE_SIZE="60")
    with running_api(explicit) as client:
        assert client.get("/api/v1/config/queue").json() == queue_sizes(50, 30, 60)


# -- /api/v1/config/consume ------------------------------------------------------------------------


def test_consume_defaults_to_true(api: TestClient) -> None:
    response = api.get("/api/v1/config/consume")
    assert response.status_code == 200
    assert response.json() == {"consume": True}


def test_turning_consume_off_needs_allow_peek(api: TestClient) -> None:
    response = api.put("/api/v1/config/consume", json={"consume": False})
    assert response.status_code == 400
    assert "ALLOW_PEEK" in error_of(response)
    assert api.get("/api/v1/config/consume").json() == {"consume": True}
    echoed = api.put("/api/v1/config/consume", json={"consume": True})
    assert echoed.status_code == 200
    assert echoed.json() == {"consume": True}


@pytest.mark.parametrize(
    "content", [b"{", b"", b"true", b'{"consume": "no"}', b'{"consume": 0}', b"{}"]
)
def test_put_consume_refuses_anything_but_a_boolean(shared: TestClient, content: bytes) -> None:
    response = shared.put(
        "/api/v1/config/consume", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)
    assert shared.get("/api/v1/config/consume").json() == {"consume": True}


def test_put_consume_malformed_json_is_invalid_request_body(shared: TestClient) -> None:
    response = shared.put(
        "/api/v1/config/consume", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.json() == {"error": "Invalid request body"}


def test_with_allow_peek_the_global_default_makes_reads_peek(tmp_path: Path, backend: str) -> None:
    with running_api(settings_for(tmp_path, backend, ALLOW_PEEK="true")) as client:
        api_service(client).store.push("trng", items(1, start=7))
        response = client.put("/api/v1/config/consume", json={"consume": False})
        assert response.status_code == 200
        assert response.json() == {"consume": False}
        assert client.get("/api/v1/config/consume").json() == {"consume": False}
        assert api_service(client).runtime.consume is False
        body = {"format": "binary", "limit": 4, "source": "trng"}
        first = client.post("/api/v1/data", json=body)
        second = client.post("/api/v1/data", json=body)
        assert first.content == second.content == bytes([7]) * 4
        assert first.headers["x-lokey-consumed"] == "false"
        # a request can still ask to consume
        consumed = client.post("/api/v1/data", json={**body, "consume": True})
        assert consumed.headers["x-lokey-consumed"] == "true"
        assert status(client)["trng"]["queue_bytes"] == 28


def test_the_consume_default_persists_across_a_restart(tmp_path: Path) -> None:
    peek = api_settings(tmp_path, ALLOW_PEEK="true")
    with running_api(peek) as client:
        assert client.put("/api/v1/config/consume", json={"consume": False}).status_code == 200
    with running_api(peek) as client:
        assert client.get("/api/v1/config/consume").json() == {"consume": False}


def test_a_persisted_peek_default_is_not_used_without_allow_peek(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path, ALLOW_PEEK="true")) as client:
        assert client.put("/api/v1/config/consume", json={"consume": False}).status_code == 200
    with running_api(api_settings(tmp_path)) as client:
        api_service(client).store.push("trng", items(1, start=3))
        body = {"format": "binary", "limit": 32, "source": "trng"}
        first = client.post("/api/v1/data", json=body)
        assert first.status_code == 200
        assert first.headers["x-lokey-consumed"] == "true"
        assert client.post("/api/v1/data", json=body).status_code == 503  # not served twice


# -- /api/v1/config/virtio and /config/virtio ------------------------------------------------------

VIRTIO_PATHS = ("/api/v1/config/virtio", "/config/virtio")


@pytest.mark.parametrize("path", VIRTIO_PATHS)
def test_get_virtio_reports_the_source_size_and_interval(shared: TestClient, path: str) -> None:
    response = shared.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body.items() >= {"seeding_source": "trng", "queue_size": 500_000}.items()
    assert body["seed_interval_seconds"] == 30


@pytest.mark.parametrize("path", VIRTIO_PATHS)
@pytest.mark.parametrize("source", ["trng", "fortuna", "both"])
def test_put_virtio_switches_the_seeding_source_at_once(
    api: TestClient, path: str, source: str
) -> None:
    body = {"seeding_source": source, "queue_size": 2_000}
    response = api.put(path, json=body)
    assert response.status_code == 200
    assert response.json().items() >= body.items()
    runtime = api_service(api).runtime
    assert runtime.virtio_source == source
    assert runtime.virtio_interval_s == 30  # not sent: unchanged
    for either in VIRTIO_PATHS:
        assert api.get(either).json().items() >= body.items()


def test_put_virtio_sets_the_seed_interval(api: TestClient) -> None:
    for interval in (10, 3600, 45):
        body = {"seeding_source": "fortuna", "queue_size": 100, "seed_interval_seconds": interval}
        response = api.put("/api/v1/config/virtio", json=body)
        assert response.status_code == 200
        assert response.json().items() >= body.items()
        assert api_service(api).runtime.virtio_interval_s == interval
        assert api.get("/api/v1/config/virtio").json()["seed_interval_seconds"] == interval


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue_size": 100}, "seeding_source"),
        ({"seeding_source": "trng"}, "queue_size"),
        ({"seeding_source": "hwrng", "queue_size": 100}, "seeding_source"),
        ({"seeding_source": "trng", "queue_size": 9}, "queue_size"),
        ({"seeding_source": "trng", "queue_size": 1_000_001}, "queue_size"),
        ({"seeding_source": "trng", "queue_size": "100"}, "queue_size"),
        (
            {"seeding_source": "trng", "queue_size": 100, "seed_interval_seconds": 9},
            "seed_interval",
        ),
        (
            {"seeding_source": "trng", "queue_size": 100, "seed_interval_seconds": 3601},
            "seed_interval_seconds",
        ),
        (
            {"seeding_source": "trng", "queue_size": 100, "seed_interval_seconds": "30"},
            "seed_interval_seconds",
        ),
    ],
)
def test_put_virtio_validates_every_field(
    shared: TestClient, body: dict[str, object], field: str
) -> None:
    before = shared.get("/api/v1/config/virtio").json()
    runtime = api_service(shared).runtime
    source, interval = runtime.virtio_source, runtime.virtio_interval_s
    response = shared.put("/config/virtio", json=body)
    assert response.status_code == 400
    assert field in error_of(response)
    assert shared.get("/api/v1/config/virtio").json() == before
    assert (runtime.virtio_source, runtime.virtio_interval_s) == (source, interval)


def test_put_virtio_leaves_the_trng_and_fortuna_queues_alone(client: TestClient) -> None:
    """The reference zeroed both capacities here (spec §1.5 defect b)."""
    store = api_service(client).store
    store.push("trng", items(12))
    store.push("fortuna", items(3, size=256))
    sizes = client.get("/api/v1/config/queue").json()
    before = status(client)
    body = {"seeding_source": "both", "queue_size": 10}
    assert client.put("/api/v1/config/virtio", json=body).status_code == 200
    after = status(client)
    for source in ("trng", "fortuna"):
        assert after[source]["queue_capacity"] == before[source]["queue_capacity"]
        assert after[source]["queue_current"] == before[source]["queue_current"]
        assert after[source]["queue_dropped"] == 0
    assert client.get("/api/v1/config/queue").json() == {**sizes, "virtio_queue_size": 10}
    store.push("trng", items(1))  # the next insert trims nothing either
    assert status(client)["trng"]["queue_current"] == 13


def test_put_virtio_forwards_the_ring_size_and_get_reads_it_back(tmp_path: Path) -> None:
    fake = FakeVirtio(queue_size=15_000)
    with with_virtio(tmp_path, fake) as client:
        assert client.get("/config/virtio").json()["queue_size"] == 15_000
        body = {"seeding_source": "fortuna", "queue_size": 8_192}
        assert client.put("/config/virtio", json=body).status_code == 200
        assert fake.puts() == [{"queue_size": 8_192}]
        assert client.get("/api/v1/config/virtio").json()["queue_size"] == 8_192


def test_put_virtio_succeeds_when_the_virtio_service_fails(tmp_path: Path) -> None:
    fake = FakeVirtio(put_status=500)
    with with_virtio(tmp_path, fake) as client:
        body = {"seeding_source": "both", "queue_size": 100}
        response = client.put("/api/v1/config/virtio", json=body)
        assert response.status_code == 200
        assert response.json().items() >= body.items()
        assert api_service(client).runtime.virtio_source == "both"


def test_virtio_settings_persist_across_a_restart(tmp_path: Path) -> None:
    stored = api_settings(tmp_path)
    body = {"seeding_source": "fortuna", "queue_size": 2_500, "seed_interval_seconds": 120}
    with running_api(stored) as client:
        assert client.put("/api/v1/config/virtio", json=body).status_code == 200
    with running_api(stored) as client:
        assert client.get("/api/v1/config/virtio").json().items() >= body.items()
        runtime = api_service(client).runtime
        assert (runtime.virtio_source, runtime.virtio_interval_s) == ("fortuna", 120)
        assert client.get("/api/v1/config/queue").json()["virtio_queue_size"] == 2_500


def test_explicit_virtio_variables_win_over_the_persisted_settings(tmp_path: Path) -> None:
    body = {"seeding_source": "fortuna", "queue_size": 2_500, "seed_interval_seconds": 120}
    with running_api(api_settings(tmp_path)) as client:
        assert client.put("/api/v1/config/virtio", json=body).status_code == 200
    explicit = api_settings(
        tmp_path, VIRTIO_SEEDING_SOURCE="both", VIRTIO_SEED_INTERVAL_SECONDS="60"
    )
    with running_api(explicit) as client:
        virtio = client.get("/api/v1/config/virtio").json()
    assert virtio["seeding_source"] == "both"
    assert virtio["seed_interval_seconds"] == 60


def test_concurrent_virtio_puts_leave_the_running_configuration_equal_to_the_saved_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Configuration changes are serialised: while one PUT is between saving and applying its
    values, another PUT must not save and apply its own, or the service would run with one
    configuration and restart with the other."""
    stored = api_settings(tmp_path)
    first = {"seeding_source": "fortuna", "queue_size": 100, "seed_interval_seconds": 60}
    second = {"seeding_source": "both", "queue_size": 200, "seed_interval_seconds": 120}
    with running_api(stored) as client:
        store = api_service(client).store
        save = store.update_config
        first_saved = threading.Event()
        second_answered = threading.Event()
        saves = 0

        def save_then_linger(values: Any) -> None:
            nonlocal saves
            save(values)
            saves += 1
            if saves == 1:  # the first PUT has saved and not yet applied
                first_saved.set()
                second_answered.wait(0.5)  # long enough for a second PUT let in meanwhile

        monkeypatch.setattr(store, "update_config", save_then_linger)
        answers: dict[str, httpx.Response] = {}

        def put(name: str, body: dict[str, object]) -> None:
            answers[name] = client.put("/api/v1/config/virtio", json=body)
            if name == "second":
                second_answered.set()

        threads = [threading.Thread(target=put, args=("first", first))]
        threads[0].start()
        assert first_saved.wait(10)
        threads.append(threading.Thread(target=put, args=("second", second)))
        threads[1].start()
        for thread in threads:
            thread.join(10)
        running = client.get("/api/v1/config/virtio").json()
    with running_api(stored) as client:
        saved = client.get("/api/v1/config/virtio").json()
    assert [answers[name].status_code for name in ("first", "second")] == [200, 200]
    assert running == saved
    assert running == second  # applied in the order they were saved


# -- any body --------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
SIZES = st.integers(0, 1_000_001) | JSON_VALUES
CONFIG_BODIES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "trng_queue_size": SIZES,
            "fortuna_queue_size": SIZES,
            "virtio_queue_size": SIZES,
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "seeding_source": st.sampled_from(["trng", "fortuna", "both"]) | JSON_VALUES,
            "queue_size": SIZES,
            "seed_interval_seconds": st.integers(0, 4000) | JSON_VALUES,
        },
    ),
    st.fixed_dictionaries({}, optional={"consume": st.booleans() | JSON_VALUES}),
)


def test_no_configuration_body_makes_a_server_error(tmp_path: Path) -> None:
    with running_api(api_settings(tmp_path, ALLOW_PEEK="true")) as client:

        @given(
            path=st.sampled_from(
                ["/api/v1/config/queue", "/api/v1/config/consume", "/api/v1/config/virtio"]
            ),
            body=CONFIG_BODIES,
        )
        @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        def check(path: str, body: object) -> None:
            response = client.put(
                path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert response.status_code in {200, 400}, response.text
            if response.status_code == 400:
                assert error_of(response)

        check()

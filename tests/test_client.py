"""lokey.client against the real API app (in-process, memory store), and its edges on mocks.

Every behaviour test runs twice, with :class:`Client` and with :class:`AsyncClient`: the async
client talks to the same app through ``httpx.ASGITransport`` and each of its calls is awaited in
the app's own event loop (the ``TestClient``'s portal), so both see the same store. Mocked
transports (``httpx.MockTransport``) stand in only for answers the real app never gives
(timeouts, proxies, malformed bodies). Nothing sleeps: waits go through an injected ``sleep``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import anyio
import httpx
import pytest

from lokey.client import (
    FORMATS,
    ApiError,
    ApiUnavailableError,
    AsyncClient,
    Client,
    Format,
    InvalidRequestError,
    NoDataError,
    QueueConfig,
    VirtioConfig,
)
from lokey.errors import LokeyError
from lokey.services.api.app import PEEK_ERROR, VIRTIO_SOURCE_ERROR
from tests.api_helpers import api_service, api_settings, dead_address, running_api
from tests.service_helpers import TestClient

KINDS = ("sync", "async")
# 16 bytes pushed as items of 3, 10 and 3 bytes, so most values span an item boundary.
DATA = bytes.fromhex("8001fffe7f001234fedcba9876543210")
ITEMS = [DATA[:3], DATA[3:13], DATA[13:]]
# int.from_bytes(..., "big", signed=...) of DATA, written out (spec §1.2: big-endian, two's
# complement for the signed formats).
EXPECTED: dict[Format, list[int]] = {
    "int8": [-128, 1, -1, -2, 127, 0, 18, 52, -2, -36, -70, -104, 118, 84, 50, 16],
    "uint8": [128, 1, 255, 254, 127, 0, 18, 52, 254, 220, 186, 152, 118, 84, 50, 16],
    "int16": [-32767, -2, 32512, 4660, -292, -17768, 30292, 12816],
    "uint16": [32769, 65534, 32512, 4660, 65244, 47768, 30292, 12816],
    "int32": [-2147352578, 2130711092, -19088744, 1985229328],
    "uint32": [2147614718, 2130711092, 4275878552, 1985229328],
    "int64": [-9222809093360577996, -81985529216486896],
    "uint64": [9223934980348973620, 18364758544493064720],
}
NO_DATA = {"error": "No data available"}  # spec §1.2, with 503 and Retry-After


# -- two clients, one set of tests ------------------------------------------------------------


class _Blocking:
    """An :class:`AsyncClient` called like a :class:`Client`: each coroutine method runs to
    completion through ``run`` (the app's portal, or a fresh event loop for mocks)."""

    def __init__(
        self, client: AsyncClient, run: Callable[[Callable[[], Awaitable[Any]]], Any]
    ) -> None:
        self._client = client
        self._run = run

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not inspect.iscoroutinefunction(method):
            return method
        return lambda *args, **kwargs: self._run(partial(method, *args, **kwargs))

    def close(self) -> None:
        self._run(self._client.aclose)


def _async_sleep(sleep: Callable[[float], None]) -> Callable[[float], Awaitable[None]]:
    async def wait(seconds: float) -> None:
        sleep(seconds)

    return wait


def _never_sleep(seconds: float) -> None:
    raise AssertionError(f"a test client slept {seconds} s")


class Connect(Protocol):
    def __call__(
        self, *, retry_no_data: float = ..., sleep: Callable[[float], None] = ...
    ) -> Client: ...


class Offline(Protocol):
    def __call__(
        self,
        target: httpx.MockTransport | str,
        *,
        retry_no_data: float = ...,
        sleep: Callable[[float], None] = ...,
    ) -> Client: ...


@pytest.fixture
def app(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The API app on the memory store with peeking allowed (an indirect parameter adds env)."""
    env = {"DB_IMPLEMENTATION": "channel", "ALLOW_PEEK": "true", **getattr(request, "param", {})}
    with running_api(api_settings(tmp_path, **env)) as test_client:
        yield test_client


@pytest.fixture(params=KINDS)
def connect(request: pytest.FixtureRequest, app: TestClient) -> Iterator[Connect]:
    """Clients of ``app``, sync or async (the parameter); closed before the app stops."""
    opened: list[Client | _Blocking] = []

    def make(
        *, retry_no_data: float = 0.0, sleep: Callable[[float], None] = _never_sleep
    ) -> Client:
        if request.param == "sync":
            client = Client(
                "http://testserver",
                transport=app._transport,
                retry_no_data=retry_no_data,
                sleep=sleep,
            )
            opened.append(client)
            return client
        assert app.portal is not None
        asgi = httpx.ASGITransport(app=app.app)
        wrapped = _Blocking(
            AsyncClient(
                "http://testserver",
                transport=asgi,
                retry_no_data=retry_no_data,
                sleep=_async_sleep(sleep),
            ),
            app.portal.call,
        )
        opened.append(wrapped)
        return cast(Client, wrapped)  # the same methods, each run to completion

    yield make
    for client in opened:
        client.close()


@pytest.fixture(params=KINDS)
def offline(request: pytest.FixtureRequest) -> Iterator[Offline]:
    """Clients of a mocked transport or a bare address (no app), sync or async."""
    opened: list[Client | _Blocking] = []

    def make(
        target: httpx.MockTransport | str,
        *,
        retry_no_data: float = 0.0,
        sleep: Callable[[float], None] = _never_sleep,
    ) -> Client:
        base, transport = (target, None) if isinstance(target, str) else ("http://lokey", target)
        if request.param == "sync":
            client = Client(base, transport=transport, retry_no_data=retry_no_data, sleep=sleep)
            opened.append(client)
            return client
        wrapped = _Blocking(
            AsyncClient(
                base, transport=transport, retry_no_data=retry_no_data, sleep=_async_sleep(sleep)
            ),
            anyio.run,
        )
        opened.append(wrapped)
        return cast(Client, wrapped)

    yield make
    for client in opened:
        client.close()


def _answer(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.MockTransport:
    """A transport answering every request with ``status`` and ``body`` (JSON unless bytes)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handle)


# -- data --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_ints_decodes_every_format_across_items(
    app: TestClient, connect: Connect, fmt: Format
) -> None:
    api_service(app).store.push("fortuna", ITEMS)
    lokey = connect()

    assert lokey.ints(fmt, len(EXPECTED[fmt])) == EXPECTED[fmt]
    assert lokey.status().fortuna.queue_bytes == 0  # consumed (the default)


def test_ints_reads_the_source_asked_for(app: TestClient, connect: Connect) -> None:
    store = api_service(app).store
    store.push("trng", [DATA])
    store.push("fortuna", [bytes(16)])
    lokey = connect()

    assert lokey.ints("uint64", 2, source="trng") == EXPECTED["uint64"]
    assert lokey.ints("uint64", 2) == [0, 0]  # fortuna is the default source


def test_offset_counts_values_and_leaves_them_queued(app: TestClient, connect: Connect) -> None:
    api_service(app).store.push("fortuna", ITEMS)
    lokey = connect()

    assert lokey.ints("uint16", 2, offset=1) == EXPECTED["uint16"][1:3]
    assert lokey.ints("uint16", 1) == EXPECTED["uint16"][:1]  # the skipped value stayed
    assert lokey.random_bytes(3, offset=2) == DATA[8:11]


def test_random_bytes_are_exact_and_consumed(app: TestClient, connect: Connect) -> None:
    items = [bytes(range(i, i + 32)) for i in range(0, 96, 32)]
    api_service(app).store.push("fortuna", items)
    lokey = connect()

    assert lokey.random_bytes(40) == b"".join(items)[:40]
    assert lokey.random_bytes(56) == b"".join(items)[40:]
    with pytest.raises(NoDataError):
        lokey.random_bytes(1)


def test_consume_false_peeks(app: TestClient, connect: Connect) -> None:
    api_service(app).store.push("trng", [DATA])
    lokey = connect()

    assert lokey.random_bytes(4, source="trng", consume=False) == DATA[:4]
    assert lokey.random_bytes(4, source="trng", consume=False) == DATA[:4]
    assert lokey.random_bytes(16, source="trng", consume=True) == DATA


@pytest.mark.parametrize("app", [{"ALLOW_PEEK": "false"}], indirect=True)
def test_peeking_refused_by_the_server_is_invalid_request(
    app: TestClient, connect: Connect
) -> None:
    api_service(app).store.push("fortuna", [DATA])

    with pytest.raises(InvalidRequestError) as caught:
        connect().ints("uint8", 1, consume=False)
    assert caught.value.message == PEEK_ERROR
    assert caught.value.status_code == 400


def test_not_enough_data_is_no_data_error_and_consumes_nothing(
    app: TestClient, connect: Connect
) -> None:
    api_service(app).store.push("fortuna", [DATA[:3]])
    lokey = connect()

    with pytest.raises(NoDataError) as caught:
        lokey.ints("uint32", 1)  # 4 bytes needed, 3 queued
    error = caught.value
    assert (error.status_code, error.message, error.retry_after) == (503, "No data available", 1.0)
    assert (error.method, error.path) == ("POST", "/api/v1/data")
    assert isinstance(error, ApiError)
    assert isinstance(error, LokeyError)
    assert lokey.random_bytes(3) == DATA[:3]  # still all there


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.ints("uint8", 0), "limit: "),
        (lambda c: c.ints("uint8", 100_001), "limit: "),
        (lambda c: c.random_bytes(1, offset=-1), "offset: "),
        (lambda c: c.ints("uint8", 1, source="virtio"), VIRTIO_SOURCE_ERROR),
        (lambda c: c.random_bytes(1, source="disk"), "source: "),
    ],
    ids=["limit-0", "limit-too-big", "offset-negative", "source-virtio", "source-unknown"],
)
def test_refused_requests_are_invalid_request_with_the_server_message(
    connect: Connect, call: Callable[[Client], object], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        call(connect())
    assert caught.value.status_code == 400
    assert caught.value.message.startswith(message)
    assert str(caught.value) == f"400 from POST /api/v1/data: {caught.value.message}"


@pytest.mark.parametrize("fmt", ["binary", "float32", "INT8", ""])
def test_unknown_format_is_refused_before_sending(offline: Offline, fmt: str) -> None:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=[])

    with pytest.raises(ValueError, match="unknown integer format") as caught:
        offline(httpx.MockTransport(handle)).ints(fmt, 1)  # type: ignore[arg-type]
    assert ("random_bytes()" in str(caught.value)) == (fmt == "binary")
    assert sent == []


def test_data_request_body_is_the_spec_fields(offline: Offline) -> None:
    bodies: list[object] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json=[7])

    lokey = offline(httpx.MockTransport(handle))
    lokey.ints("int16", 1)
    lokey.ints("int16", 1, source="trng", offset=3, consume=False)
    base = {"format": "int16", "limit": 1, "offset": 0, "source": "fortuna"}
    assert bodies == [
        ("POST", "/api/v1/data", base),
        ("POST", "/api/v1/data", {**base, "offset": 3, "source": "trng", "consume": False}),
    ]


def test_base_url_with_a_path_prefix(offline: Offline) -> None:
    urls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, text="up 1\n")

    assert offline(httpx.MockTransport(handle)).metrics() == "up 1\n"
    assert urls == ["http://lokey/metrics"]
    with Client("http://host:9/lokey/", transport=httpx.MockTransport(handle)) as lokey:
        lokey.metrics()
    assert urls[-1] == "http://host:9/lokey/metrics"


# -- retrying on NoDataError --------------------------------------------------------------------


def test_retry_no_data_waits_as_told_until_data_arrives(app: TestClient, connect: Connect) -> None:
    store = api_service(app).store
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            store.push("fortuna", [DATA])

    lokey = connect(retry_no_data=5.0, sleep=sleep)
    assert lokey.random_bytes(16) == DATA
    assert sleeps == [1.0, 1.0]  # Retry-After: 1, twice


def test_retry_no_data_gives_up_when_the_budget_is_spent(connect: Connect) -> None:
    sleeps: list[float] = []
    lokey = connect(retry_no_data=2.5, sleep=sleeps.append)

    with pytest.raises(NoDataError):
        lokey.ints("uint8", 1)
    assert sleeps == [1.0, 1.0, 0.5]


def test_retry_after_zero_or_missing_does_not_spin(offline: Offline) -> None:
    sleeps: list[float] = []
    no_wait = _answer(503, NO_DATA, {"Retry-After": "0"})
    with pytest.raises(NoDataError):
        offline(no_wait, retry_no_data=0.25, sleep=sleeps.append).random_bytes(1)
    assert sleeps == pytest.approx([0.1, 0.1, 0.05])

    sleeps.clear()
    unsaid = _answer(503, NO_DATA)
    with pytest.raises(NoDataError):
        offline(unsaid, retry_no_data=1.5, sleep=sleeps.append).random_bytes(1)
    assert sleeps == [1.0, 0.5]  # 1 s when the server says nothing


def test_other_errors_are_never_retried(connect: Connect) -> None:
    lokey = connect(retry_no_data=60.0)  # _never_sleep fails the test if it waits
    with pytest.raises(InvalidRequestError):
        lokey.ints("uint8", 0)


@pytest.mark.parametrize("budget", [-1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_retry_budget_must_be_finite_and_non_negative(
    kind: type[Client | AsyncClient], budget: float
) -> None:
    with pytest.raises(ValueError, match="retry_no_data"):
        kind(retry_no_data=budget)


# -- errors from answers and from the network ---------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((413, {"error": "Request body too large"}, {}), (InvalidRequestError, None, None)),
        ((422, {"error": "x: bad"}, {}), (InvalidRequestError, None, None)),
        ((500, {"error": "Failed to retrieve data"}, {}), (ApiError, None, None)),
        ((404, NO_DATA, {}), (NoDataError, None, None)),  # as the Go reference answers
        ((503, NO_DATA, {"Retry-After": "2"}), (NoDataError, None, 2.0)),
        ((503, NO_DATA, {"Retry-After": "soon"}), (NoDataError, None, None)),
        ((503, {"error": "Failed to get system status"}, {}), (ApiError, None, None)),
        ((502, b"upstream down\n", {}), (ApiError, "upstream down", None)),  # a proxy's text
        ((502, b"", {}), (ApiError, "Bad Gateway", None)),
        ((404, b'{"detail": "Not Found"}', {}), (ApiError, '{"detail": "Not Found"}', None)),
    ],
)
def test_error_answers_map_to_the_exception_tree(
    offline: Offline,
    answer: tuple[int, object, dict[str, str]],
    expected: tuple[type[ApiError], str | None, float | None],
) -> None:
    status, body, headers = answer
    kind, message, retry_after = expected
    with pytest.raises(ApiError) as caught:
        offline(_answer(status, body, headers)).random_bytes(1)
    error = caught.value
    assert type(error) is kind
    assert error.status_code == status
    assert error.message == (
        message if message is not None else cast(dict[str, str], body)["error"]
    )
    if isinstance(error, NoDataError):
        assert error.retry_after == retry_after


@pytest.mark.parametrize(
    ("call", "body", "problem"),
    [
        (lambda c: c.ints("uint8", 2), {"values": [1, 2]}, "expected a JSON array of integers"),
        (lambda c: c.ints("uint8", 2), [1, "2"], "expected a JSON array of integers"),
        (lambda c: c.ints("uint8", 2), [1, True], "expected a JSON array of integers"),
        (lambda c: c.ints("uint8", 2), [1], "asked for 2 values, got 1"),  # the Go reference
        (lambda c: c.ints("uint8", 2), b"<html>", "not JSON"),
        (lambda c: c.random_bytes(4), b"abc", "asked for 4 bytes, got 3"),
        (lambda c: c.status(), {"trng": {}}, "trng.queue_current: Field required"),
        (lambda c: c.health(), {"status": "fine"}, "status: Input should be 'ok' or 'degraded'"),
        (lambda c: c.consume_default(), {"consume": "yes"}, "Input should be a valid boolean"),
        (lambda c: c.ready(), [], "expected a JSON object with 'ready'"),
    ],
)
def test_malformed_answers_are_api_errors(
    offline: Offline, call: Callable[[Client], object], body: object, problem: str
) -> None:
    with pytest.raises(ApiError) as caught:
        call(offline(_answer(200, body)))
    assert caught.value.status_code == 200
    assert caught.value.message.startswith("unexpected answer: ")
    assert problem in caught.value.message


def test_refused_connection_is_api_unavailable(offline: Offline) -> None:
    address = dead_address()
    with pytest.raises(ApiUnavailableError) as caught:
        offline(address).status()
    error = caught.value
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert (error.method, error.url) == ("GET", f"{address}/api/v1/status")
    assert str(error).startswith(f"no answer from the LoKey API at {address} (GET /api/v1/status)")
    assert isinstance(error, LokeyError)
    assert not isinstance(error, ApiError)


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("peer closed")]
)
def test_timeouts_and_broken_answers_are_api_unavailable(
    offline: Offline, failure: httpx.TransportError
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(ApiUnavailableError, match=type(failure).__name__) as caught:
        offline(httpx.MockTransport(handle), retry_no_data=10.0).random_bytes(1)
    assert caught.value.__cause__ is failure


# -- status, health, configuration ----------------------------------------------------------------


def test_status_is_typed(app: TestClient, connect: Connect) -> None:
    api_service(app).store.push("fortuna", [bytes(32)] * 4)
    lokey = connect()
    lokey.random_bytes(40)

    status = lokey.status()
    fortuna = status.fortuna
    assert (fortuna.queue_current, fortuna.queue_bytes, fortuna.total_generated) == (3, 88, 4)
    assert (fortuna.consumed_count, fortuna.unconsumed_count, fortuna.polling_count) == (1, 3, 0)
    assert fortuna.queue_percentage == pytest.approx(100 * 3 / fortuna.queue_capacity)
    assert (status.trng.queue_current, status.trng.queue_bytes) == (0, 0)
    assert (status.virtio.polling_count, status.virtio.queue_bytes) == (None, None)
    assert status.database.path == "memory://channels"
    assert status.database.size_human == "0 B (in-memory)"
    assert status.trng_quality.apt.window_size == 512
    assert status.trng_quality.monobit.total == 0
    assert status.trng_quality.repetition_count.failures == 0
    assert status.health_tests is not None
    assert status.health_tests.state == "init"
    assert status.raw["virtio"]["reachable"] is False  # keys not modelled stay readable
    assert status.raw["usage"]["fortuna"]["bytes"] == 40


def test_status_without_lokey_additions(offline: Offline, app: TestClient) -> None:
    body = app.get("/api/v1/status").json()
    del body["health_tests"]
    for queue in ("trng", "fortuna"):
        del body[queue]["queue_bytes"]

    status = offline(_answer(200, body)).status()
    assert status.health_tests is None
    assert status.fortuna.queue_bytes is None


def test_health_is_typed(connect: Connect) -> None:
    health = connect().health()
    assert health.status == "degraded"  # the peers are at refused addresses
    assert not health.ok
    assert health.details == {
        "api": True,
        "controller": False,
        "fortuna": False,
        "virtio": False,
        "database": True,
    }
    assert health.timestamp.utcoffset() == UTC.utcoffset(None)


def test_ready_follows_the_queues(app: TestClient, connect: Connect) -> None:
    lokey = connect()
    assert lokey.ready() is False  # 503
    api_service(app).store.push("trng", [DATA])
    assert lokey.ready() is True


def test_queue_config_round_trip(connect: Connect) -> None:
    lokey = connect()
    changed = lokey.set_queue_config(trng=100, fortuna=200, virtio=300)
    assert changed == QueueConfig(100, 200, 300, virtio_forwarded=False)  # VirtIO is down
    assert lokey.queue_config() == QueueConfig(100, 200, 300)
    assert lokey.status().fortuna.queue_capacity == 200

    with pytest.raises(InvalidRequestError) as caught:
        lokey.set_queue_config(trng=5, fortuna=200, virtio=300)
    assert caught.value.message.startswith("trng_queue_size: ")
    assert lokey.queue_config().trng_queue_size == 100


def test_consume_default_round_trip(app: TestClient, connect: Connect) -> None:
    api_service(app).store.push("fortuna", [DATA])
    lokey = connect()
    assert lokey.consume_default() is True

    assert lokey.set_consume_default(False) is False
    assert lokey.consume_default() is False
    assert lokey.random_bytes(2) == lokey.random_bytes(2) == DATA[:2]  # peeks now

    assert lokey.set_consume_default(True) is True
    assert lokey.random_bytes(2) == DATA[:2]
    assert lokey.random_bytes(2) == DATA[2:4]


def test_virtio_config_round_trip(connect: Connect) -> None:
    lokey = connect()
    assert lokey.virtio_config().seeding_source == "trng"

    changed = lokey.set_virtio_config("both", queue_size=1000, seed_interval_seconds=60)
    assert changed == VirtioConfig("both", 1000, 60, virtio_forwarded=False)
    assert lokey.virtio_config() == VirtioConfig("both", 1000, 60)
    kept = lokey.set_virtio_config("fortuna", queue_size=2000)
    assert kept.seed_interval_seconds == 60  # an omitted interval is left as it was

    with pytest.raises(InvalidRequestError) as caught:
        lokey.set_virtio_config("fortuna", queue_size=2000, seed_interval_seconds=5)
    assert caught.value.message.startswith("seed_interval_seconds: ")


def test_metrics_is_the_exposition_text(app: TestClient, connect: Connect) -> None:
    api_service(app).store.push("trng", [DATA, DATA])
    text = connect().metrics()
    assert "\ntrng_queue_current 2.0\n" in text
    assert "database_size_bytes" in text


# -- the two classes -----------------------------------------------------------------------------


def _public(kind: type[object]) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(kind).items()
        if callable(member) and not name.startswith("_") and name not in ("close", "aclose")
    }


def test_async_client_has_the_same_methods() -> None:
    sync, asynchronous = _public(Client), _public(AsyncClient)
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert asynchronous[name].parameters == signature.parameters, name
        assert asynchronous[name].return_annotation == signature.return_annotation, name
    sync_init = inspect.signature(Client.__init__).parameters
    async_init = inspect.signature(AsyncClient.__init__).parameters
    assert sync_init.keys() == async_init.keys()


def test_context_managers_close_the_connection_pool() -> None:
    with Client() as lokey:
        assert str(lokey.base_url) == "http://127.0.0.1:8080"
    with pytest.raises(RuntimeError, match="closed"):
        lokey.metrics()

    async def use() -> AsyncClient:
        async with AsyncClient("http://lokey:1") as alokey:
            assert str(alokey.base_url) == "http://lokey:1"
        return alokey

    closed = anyio.run(use)
    with pytest.raises(RuntimeError, match="closed"):
        anyio.run(closed.metrics)

"""Schemathesis against the OpenAPI document of each of the four services (issue 9).

Every service runs in-process on the emulator (schemathesis drives the ASGI app and runs its
lifespan): the controller on a config-locked chip with instant timing, Fortuna seeded, VirtIO
with bytes in its ring, the API with data queued and its three peers in-process too. For
every operation schemathesis generates valid and invalid requests (positive and negative
modes, boundary values from its coverage phase) and checks:

* no server error: 500 is a failure; 503 is the contract's "not ready, retry later" answer
  (spec §1.2, §2, §3, §4: Retry-After, nothing consumed), allowed only where documented;
* the status code, the content type and the body are the ones the document gives;
* invalid input (negative mode) is refused with a 4xx, never accepted.

Bounded and reproducible: a fixed number of examples per operation, derandomized, no example
database. Destructive operations run too, each service is this module's own: chaos faults are
cleared and the chip power-cycled after every ``POST /sim/faults`` case, so a fault never
outlives its case (a latched one would turn every later case into a 503).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lokey.services.api import ApiService, create_api_app
from lokey.services.controller import create_controller_app
from lokey.services.fortuna import create_fortuna_app
from lokey.services.settings import MIN_QUEUE_SIZE, load_fortuna_settings, load_virtio_settings
from lokey.services.virtio import create_virtio_app
from lokey.virtio import ITEM_SIZE
from tests.api_helpers import settings_for
from tests.service_helpers import FAST_RECOVERY, LOCKED_URL, wait_for
from tests.service_helpers import settings as controller_settings

EXAMPLES = 25  # per operation (Hypothesis phase); the whole module stays well under a minute
#: what a /stream case reads at most: an unbounded stream of a refilled ring never ends, and a
#: case may have shrunk the ring to its smallest size (PUT /config/queue) before, so no more
#: than that smallest ring holds
STREAM_CAP = MIN_QUEUE_SIZE * ITEM_SIZE
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "deterministic": True, "database": "none"},
        # 503 is a documented answer of the contract (not ready / no data), not a crash;
        # status_code_conformance still fails it wherever it is not documented
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
    }
)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


Case = schemathesis.Case[Any]


def _client(app: Any) -> asgi.ASGIClient:
    """A client of ``app`` in-process (the first one starts the app's lifespan, which then
    runs until :func:`lifespans` ends it)."""
    return asgi.get_client(app)


@pytest.fixture(scope="module")
def lifespans() -> Iterator[None]:
    """Schemathesis starts each app's lifespan on first use and keeps it; end them all."""
    yield
    asgi.shutdown_lifespans()


def _load(app: Any) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@pytest.fixture(scope="module")
def controller_schema(lifespans: None) -> schemathesis.BaseSchema:
    app = create_controller_app(controller_settings(LOCKED_URL, **FAST_RECOVERY))
    with _client(app) as client:
        wait_for(lambda: client.get("/health").status_code == 200, "controller healthy")
    return _load(app)


@pytest.fixture(scope="module")
def fortuna_schema(lifespans: None) -> schemathesis.BaseSchema:
    app = create_fortuna_app(load_fortuna_settings({}))
    with _client(app) as client:
        seeds = [os.urandom(32).hex() for _ in range(4)]  # 128 bytes: a direct first reseed
        assert client.post("/seed", json={"seeds": seeds}).status_code == 200
    return _load(app)


def _fill_ring(client: Any, size: int) -> None:
    answer = client.post("/seed", json={"seeds": [os.urandom(size).hex()]})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def virtio_schema(lifespans: None) -> schemathesis.BaseSchema:
    app = create_virtio_app(load_virtio_settings({"VIRTIO_PIPE_PATH": ""}))
    with _client(app) as client:  # /generate cases find values to take
        answer = client.post("/seed", json={"seeds": [os.urandom(4096).hex() for _ in range(100)]})
        assert answer.status_code == 200, answer.text
    return _load(app)


class _InProcess(httpx.AsyncBaseTransport):
    """The API's peers as in-process apps, chosen by host name (no processes to start)."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self._peers = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._peers[request.url.host].handle_async_request(request)


@pytest.fixture(scope="module")
def api_schema(
    lifespans: None, tmp_path_factory: pytest.TempPathFactory
) -> schemathesis.BaseSchema:
    """The API with its three peers (the emulator controller, a seeded Fortuna, a VirtIO),
    each in this process; its queues filled directly (the background jobs stay off: what
    they do is tests/test_api_background.py's, and they would compete for the CPU)."""
    peers = {
        "controller": create_controller_app(controller_settings(LOCKED_URL, **FAST_RECOVERY)),
        "fortuna": create_fortuna_app(load_fortuna_settings({})),
        "virtio": create_virtio_app(load_virtio_settings({"VIRTIO_PIPE_PATH": ""})),
    }
    for app in peers.values():
        with _client(app) as client:  # starts the peer's lifespan
            assert client.get("/info").status_code == 200
    env = {f"{name.upper()}_ADDR": f"http://{name}" for name in peers}
    settings = settings_for(tmp_path_factory.mktemp("api"), "lmdb", **env)
    app = create_api_app(settings, transport=_InProcess(peers), start_background=False)
    with _client(app) as client:
        service = app.state.lokey
        assert isinstance(service, ApiService)
        service.store.push("trng", [os.urandom(32) for _ in range(2000)])
        service.store.push("fortuna", [os.urandom(256) for _ in range(500)])
        assert client.get("/api/v1/ready").status_code == 200
    return _load(app)


def _run_all(schema: schemathesis.BaseSchema, test: Callable[[Case], None]) -> None:
    """``test`` on every operation of ``schema`` (each a Hypothesis test with schemathesis's
    phases); fails with every operation's first failure, not only the first operation's.

    (schemathesis's own pytest integration, ``from_fixture(...).parametrize()``, renames the
    pytest node through an attribute pytest 9 no longer has, so the loop is done here.)
    """
    load_all_checks()
    failures: list[str] = []
    count = 0
    for result in get_all_tests(
        schema=schema, test_func=test, settings=SETTINGS, given_kwargs=None
    ):
        if not isinstance(result, Ok):
            failures.append(f"invalid schema: {result.err()}")
            continue
        operation, run = result.ok()
        count += 1
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup is a group
            failures.append(f"{operation.label}:\n{exc}")
    assert count > 0, "no operation in the schema"
    assert not failures, "\n\n".join(failures)


def test_controller_answers_every_request_as_documented(
    controller_schema: schemathesis.BaseSchema,
) -> None:
    def test(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)

    _run_all(controller_schema.exclude(path_regex="^/sim/"), test)


def test_controller_chaos_api_answers_every_request_as_documented(
    controller_schema: schemathesis.BaseSchema,
) -> None:
    """The /sim routes (emulator only); a fault injected by a case is gone after it."""

    def test(case: Case) -> None:
        try:
            case.call_and_validate(checks=CHECKS)
        finally:
            if case.operation.path == "/sim/faults" and case.method == "POST":
                with _client(case.operation.app) as client:
                    assert client.delete("/sim/faults").status_code == 200
                    assert client.post("/sim/power-cycle").status_code == 200

    _run_all(controller_schema.include(path_regex="^/sim/"), test)


def test_fortuna_answers_every_request_as_documented(
    fortuna_schema: schemathesis.BaseSchema,
) -> None:
    def test(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)

    _run_all(fortuna_schema, test)


def _capped_stream(case: Case) -> None:
    """A /stream case reads at most STREAM_CAP bytes, and they are in the ring beforehand
    (the stream waits for data by design; without max_bytes it never ends)."""
    query = case.query if isinstance(case.query, dict) else {}
    wanted = query.get("max_bytes")
    try:
        too_many = wanted is None or int(wanted) > STREAM_CAP
    except (TypeError, ValueError):
        too_many = False  # an invalid max_bytes: the request is refused before streaming
    if too_many:
        query["max_bytes"] = STREAM_CAP
        case.query = query
    with _client(case.operation.app) as client:
        _fill_ring(client, STREAM_CAP)


def test_virtio_answers_every_request_as_documented(
    virtio_schema: schemathesis.BaseSchema,
) -> None:
    def test(case: Case) -> None:
        if case.operation.path == "/stream":
            _capped_stream(case)
        case.call_and_validate(checks=CHECKS)

    _run_all(virtio_schema, test)


def test_api_answers_every_request_as_documented(api_schema: schemathesis.BaseSchema) -> None:
    def test(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)

    _run_all(api_schema, test)

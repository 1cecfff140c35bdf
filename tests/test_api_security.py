"""API keys, the per-client rate limit and what never reaches the logs (docs/security.md)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lokey.services.api.security import AUTH_ERROR, RATE_ERROR, RateLimiter
from lokey.services.settings import SettingsError
from sim.clock import VirtualClock
from tests.api_helpers import api_service, api_settings, running_api
from tests.service_helpers import TestClient

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "bravo-key-0123456789ABCDEF"
DATA = "/api/v1/data?format=binary&limit=8&source=trng"
PROTECTED = (
    ("GET", "/api/v1/data?format=uint8&limit=1&source=trng", None),
    ("POST", "/api/v1/data", {"format": "uint8", "limit": 1, "source": "trng"}),
    ("GET", "/api/v1/config/queue", None),
    ("PUT", "/api/v1/config/consume", {"consume": True}),
    ("GET", "/api/v1/config/consume", None),
    ("GET", "/api/v1/config/virtio", None),
    ("GET", "/config/virtio", None),
    ("PUT", "/config/virtio", {"seeding_source": "trng", "queue_size": 100}),
)
OPEN = ("/api/v1/health", "/health", "/api/v1/status", "/metrics", "/api/v1/metrics", "/docs")


def items(count: int, start: int = 0) -> list[bytes]:
    return [hashlib.sha256(f"security/{i}".encode()).digest() for i in range(start, count)]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def api(tmp_path: Path, *, clock: VirtualClock | None = None, **env: str) -> Iterator[TestClient]:
    with running_api(api_settings(tmp_path, **env), clock=clock) as client:
        api_service(client).store.push("trng", items(256))
        yield client


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api(
        tmp_path_factory.mktemp("keyed"),
        LOKEY_API_KEYS=f"{KEY_A}, {KEY_B}",
        LOKEY_CORS_ORIGIN="https://app.example",
    ) as client:
        yield client


# -- keys ----------------------------------------------------------------------------------------


def test_keys_are_off_by_default(tmp_path: Path) -> None:
    with api(tmp_path) as client:
        answer = client.get(DATA)
    assert answer.status_code == 200
    assert len(answer.content) == 8


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
@pytest.mark.parametrize(
    "headers", [{}, bearer("wrong-key-0123456789abcdef"), {"Authorization": KEY_A}]
)
def test_protected_routes_refuse_a_missing_or_wrong_key(
    keyed: TestClient, method: str, path: str, body: object, headers: dict[str, str]
) -> None:
    before = api_service(keyed).store.stats("trng").bytes
    answer = keyed.request(method, path, json=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"error": AUTH_ERROR}
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert api_service(keyed).store.stats("trng").bytes == before


def test_a_refusal_is_access_logged(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lokey.access"):
        keyed.get("/api/v1/config/queue")
    assert any("/api/v1/config/queue 401" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key", [KEY_A, KEY_B])
def test_each_configured_key_is_accepted(keyed: TestClient, key: str) -> None:
    assert keyed.get(DATA, headers=bearer(key)).status_code == 200
    lower = {"Authorization": f"bearer {key}"}  # the scheme is case-insensitive
    assert keyed.get("/api/v1/config/queue", headers=lower).status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_probes_status_and_metrics_stay_open(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_options_stays_open(keyed: TestClient) -> None:
    answer = keyed.options("/api/v1/data")
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "https://app.example"


def test_openapi_shows_the_bearer_scheme(keyed: TestClient) -> None:
    document = keyed.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["paths"]["/api/v1/data"]["post"]["security"] == [{"bearerAuth": []}]
    assert "401" in document["paths"]["/api/v1/config/queue"]["put"]["responses"]
    assert "security" not in document["paths"]["/api/v1/status"]["get"]


@pytest.mark.parametrize(
    "value", ["short-key-123", f"{KEY_A},tiny", "has a space in it 0123456789", ",", "ключ" * 8]
)
def test_a_bad_key_is_refused_without_echoing_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        api_settings(tmp_path, LOKEY_API_KEYS=value)
    message = str(caught.value)
    assert "LOKEY_API_KEYS" in message
    for part in value.split(","):
        if part.strip():
            assert part.strip() not in message
    assert KEY_A not in message


def test_keys_do_not_appear_in_the_settings_repr(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, LOKEY_API_KEYS=KEY_A)
    assert KEY_A not in repr(settings)
    assert settings.api_key_list == (KEY_A,)


# -- rate limit ----------------------------------------------------------------------------------


def test_burst_then_429_then_refill(tmp_path: Path) -> None:
    clock = VirtualClock()
    env = {"LOKEY_RATE_LIMIT_PER_S": "0.5", "LOKEY_RATE_LIMIT_BURST": "3"}
    with api(tmp_path, clock=clock, **env) as client:
        assert [client.get(DATA).status_code for _ in range(3)] == [200] * 3
        refused = client.get(DATA)
        assert refused.status_code == 429
        assert refused.json() == {"error": RATE_ERROR}
        assert refused.headers["retry-after"] == "2"  # one token at 0.5/s
        assert refused.headers["cache-control"] == "no-store"
        assert client.get("/api/v1/status").status_code == 200  # only data is limited
        clock.advance(1.0)
        assert client.get(DATA).status_code == 429
        assert client.get(DATA).headers["retry-after"] == "1"
        clock.advance(1.0)
        assert client.get(DATA).status_code == 200
        assert client.get(DATA).status_code == 429
        clock.advance(3600)
        assert [client.get(DATA).status_code for _ in range(4)] == [200] * 3 + [429]


def test_each_key_has_its_own_bucket(tmp_path: Path) -> None:
    env = {
        "LOKEY_API_KEYS": f"{KEY_A},{KEY_B}",
        "LOKEY_RATE_LIMIT_PER_S": "1",
        "LOKEY_RATE_LIMIT_BURST": "2",
    }
    with api(tmp_path, clock=VirtualClock(), **env) as client:
        first = [client.get(DATA, headers=bearer(KEY_A)).status_code for _ in range(3)]
        second = [client.get(DATA, headers=bearer(KEY_B)).status_code for _ in range(3)]
        assert client.get(DATA).status_code == 401  # refused keys never reach the bucket
    assert first == second == [200, 200, 429]


def test_no_limit_when_the_rate_is_zero(tmp_path: Path) -> None:
    with api(tmp_path, clock=VirtualClock(), LOKEY_RATE_LIMIT_BURST="1") as client:
        assert {client.get(DATA).status_code for _ in range(20)} == {200}


def test_buckets_per_address_and_bounded() -> None:
    clock = VirtualClock()
    limiter = RateLimiter(1.0, 1, clock, max_buckets=3)
    assert limiter.take("ip:10.0.0.1") == 0.0
    assert limiter.take("ip:10.0.0.1") == pytest.approx(1.0)
    assert limiter.take("ip:10.0.0.2") == 0.0
    for n in range(3, 10):
        limiter.take(f"ip:10.0.0.{n}")
    assert len(limiter) == 3
    assert limiter.take("ip:10.0.0.1") == 0.0  # evicted, so a fresh bucket


def test_the_least_recently_used_bucket_goes_first() -> None:
    limiter = RateLimiter(1.0, 1, VirtualClock(), max_buckets=2)
    limiter.take("a")
    limiter.take("b")
    limiter.take("a")  # a is now the most recent
    limiter.take("c")  # evicts b
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


# -- logs ----------------------------------------------------------------------------------------


def test_no_log_record_holds_served_bytes_or_a_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"LOKEY_API_KEYS": KEY_A, "LOKEY_RATE_LIMIT_PER_S": "1000"}
    served: list[bytes] = []
    with caplog.at_level(logging.DEBUG), api(tmp_path, clock=VirtualClock(), **env) as client:
        for fmt in ("binary", "uint8", "uint64"):
            answer = client.get(
                f"/api/v1/data?format={fmt}&limit=16&source=trng", headers=bearer(KEY_A)
            )
            assert answer.status_code == 200
            if fmt == "binary":
                served.append(answer.content)
            else:
                width = 1 if fmt == "uint8" else 8
                served.append(b"".join(v.to_bytes(width, "big") for v in answer.json()))
        answer = client.post(
            "/api/v1/data",
            json={"format": "binary", "limit": 16, "source": "trng"},
            headers=bearer(KEY_A),
        )
        served.append(answer.content)
        client.get(DATA, headers=bearer(KEY_A + "x"))  # a wrong key is not logged either
    assert caplog.records  # the access log did record the requests
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for chunk in served:
        assert chunk.hex() not in text
        assert chunk.hex().upper() not in text
    assert KEY_A not in text

"""The controller service's HTTP contract (spec/service-api.md §0, §2) on the emulator.

Every route, status code and error string of the reference that LoKey keeps, and what LoKey
does instead: 32-byte samples (64 lowercase hex characters), the string / list shape of
``data``, 400 with the reference's exact message for any bad ``count``, ``{"error": ...}`` for
every framework error, ``OPTIONS`` 204, Prometheus text from a per-app registry, and no sample
bytes in any log line.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from lokey.controller import RejectReason
from lokey.services.common import strict_int
from lokey.services.controller import COUNT_ERROR, create_controller_app
from tests.service_helpers import TestClient, running, service_of, settings, wait_for

HEX64 = re.compile(r"[0-9a-f]{64}")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with running() as client:
        yield client


# -- /generate -------------------------------------------------------------------------------------


def test_generate_without_count_is_one_sample_as_a_string(client: TestClient) -> None:
    response = client.get("/generate")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "source"}
    assert body["source"] == "trng"
    assert isinstance(body["data"], str)
    assert HEX64.fullmatch(body["data"])  # 32 bytes, lowercase hex (the reference sent 31)


def test_count_1_is_a_string_and_larger_counts_are_lists(client: TestClient) -> None:
    assert isinstance(client.get("/generate?count=1").json()["data"], str)
    for count in (2, 3, 100):
        data = client.get(f"/generate?count={count}").json()["data"]
        assert isinstance(data, list)
        assert len(data) == count
        assert all(HEX64.fullmatch(sample) for sample in data)
        assert len(set(data)) == count


@pytest.mark.parametrize(
    "query",
    [
        "count=0",
        "count=101",
        "count=abc",
        "count=1.5",
        "count=",
        "count=-1",
        "count=%201",  # " 1"
        "count=1e2",
        "count=0x10",
        "count=%D9%A1",  # ARABIC-INDIC DIGIT ONE: int() would take it, Go's Atoi does not
        "count=99999999999999999999999999",
        "count=1&count=2",  # repeated parameter: ambiguous, refused
        "count=5&count=5",
    ],
)
def test_bad_counts_get_400_with_the_reference_message(client: TestClient, query: str) -> None:
    response = client.get(f"/generate?{query}")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid count parameter (1-100)"}
    assert COUNT_ERROR == "Invalid count parameter (1-100)"


@pytest.mark.parametrize(("text", "count"), [("+5", 5), ("05", 5), ("100", 100)])
def test_counts_are_read_like_gos_atoi(client: TestClient, text: str, count: int) -> None:
    response = client.get("/generate", params={"count": text})
    assert response.status_code == 200
    assert len(response.json()["data"]) == count


def test_unknown_query_parameters_are_ignored(client: TestClient) -> None:
    assert client.get("/generate?size=7&count=2").status_code == 200


@given(st.text(max_size=30))
def test_strict_int_accepts_exactly_ascii_integers_in_range(text: str) -> None:
    value = strict_int(text, 1, 100)
    if re.fullmatch(r"[+-]?[0-9]{1,18}", text) and 1 <= int(text) <= 100:
        assert value == int(text)
    else:
        assert value is None


def test_concurrent_requests_never_share_a_sample(client: TestClient) -> None:
    results: list[list[str]] = []
    lock = threading.Lock()

    def fetch() -> None:
        data = client.get("/generate?count=5").json()["data"]
        with lock:
            results.append(data)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    samples = [sample for batch in results for sample in batch]
    assert len(samples) == 40
    assert len(set(samples)) == 40


# -- /health and /info ---------------------------------------------------------------------------


def test_health_is_the_references_healthy_body(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "timestamp"}
    assert body["status"] == "healthy"
    assert RFC3339.fullmatch(body["timestamp"])


def test_info_keeps_running_and_adds_the_device_the_state_and_counters(
    client: TestClient,
) -> None:
    before = client.get("/info").json()
    client.get("/generate?count=3")
    info = client.get("/info").json()
    assert info["status"] == "running"
    assert info["device"] == {
        "part": "ATECC608B",  # the emulator's default personality
        "revision": "00006003",
        "serial_number": info["device"]["serial_number"],
        "config_locked": True,
        "data_locked": False,
    }
    assert re.fullmatch(r"[0-9a-f]{18}", info["device"]["serial_number"])  # 9 bytes
    assert info["bus"] == {
        "kind": "emulator",
        "url": "sim://atecc608a?lock=config-locked&timing=instant",
    }
    assert info["state"]["name"] == "healthy"
    assert info["state"]["code"] == 1
    assert info["breaker"]["state"] == "closed"
    assert info["breaker"]["code"] == 0
    assert info["breaker"]["threshold"] == 5
    counters = info["counters"]
    assert counters["served"]["trng"] == before["counters"]["served"]["trng"] + 3
    assert counters["served"]["fallback"] == 0
    assert set(counters["rejected"]) == {reason.value for reason in RejectReason}
    assert counters["transitions"]["unknown->validating"] == 1
    assert counters["transitions"]["validating->healthy"] == 1
    assert info["requests"]["ok"] >= 1
    assert info["provisioning"] is None  # FORCE_CONFIG not set
    assert info["config"] == {
        "recovery_cooldown_s": 30.0,
        "validation_samples": 3,
        "breaker_threshold": 5,
        "breaker_open_s": 300.0,
        "conditioning": True,
        "fallback": False,
    }


# -- /metrics ------------------------------------------------------------------------------------


def _metrics(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return values


def test_metrics_parse_and_carry_the_state_breaker_and_counters(client: TestClient) -> None:
    client.get("/generate?count=2")
    client.get("/generate?count=0")
    metrics = _metrics(client)
    assert metrics["lokey_controller_state"][()] == 1
    assert metrics["lokey_controller_device_state"][(("state", "healthy"),)] == 1
    assert metrics["lokey_controller_device_state"][(("state", "failed"),)] == 0
    assert metrics["lokey_controller_breaker_state"][()] == 0
    assert metrics["lokey_controller_breaker_consecutive_failures"][()] == 0
    served = metrics["lokey_controller_samples_served_total"]
    info = client.get("/info").json()
    assert served[(("source", "trng"),)] == info["counters"]["served"]["trng"]
    assert served[(("source", "fallback"),)] == 0
    rejected = metrics["lokey_controller_samples_rejected_total"]
    assert {dict(labels)["reason"] for labels in rejected} == {r.value for r in RejectReason}
    transitions = metrics["lokey_controller_transitions_total"]
    assert transitions[(("from", "unknown"), ("to", "validating"))] == 1
    assert transitions[(("from", "healthy"), ("to", "failed"))] == 0
    requests = metrics["lokey_controller_generate_requests_total"]
    assert requests[(("outcome", "ok"),)] >= 1
    assert requests[(("outcome", "invalid"),)] >= 1
    assert "lokey_controller_health_test_failures_total" in metrics
    assert "lokey_controller_recovery_attempts_total" in metrics


def test_each_app_has_its_own_registry_and_the_global_one_stays_clean() -> None:
    with running() as first, running() as second:
        first.get("/generate?count=4")
        a = _metrics(first)["lokey_controller_samples_served_total"][(("source", "trng"),)]
        b = _metrics(second)["lokey_controller_samples_served_total"][(("source", "trng"),)]
        assert a == b + 4
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("lokey_")]


# -- conventions: errors, OPTIONS, CORS ------------------------------------------------------------


def test_framework_errors_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    wrong = client.post("/generate")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "Method Not Allowed"}


def test_options_is_204_without_a_body_and_without_cors_by_default(client: TestClient) -> None:
    for path in ("/generate", "/health", "/anything/at/all"):
        response = client.options(path)
        assert response.status_code == 204
        assert response.content == b""
        assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in client.get("/health").headers


def test_a_configured_origin_gets_the_reference_cors_headers() -> None:
    with running(settings(LOKEY_CORS_ORIGIN="*")) as client:
        for response in (client.options("/generate"), client.get("/generate")):
            assert response.headers["access-control-allow-origin"] == "*"
            assert response.headers["access-control-allow-methods"] == (
                "GET, POST, PUT, DELETE, OPTIONS"
            )
            assert response.headers["access-control-allow-headers"] == (
                "Content-Type, Authorization, Accept"
            )


# -- logging ---------------------------------------------------------------------------------------


def test_no_log_line_carries_sample_bytes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), running() as client:
        served = client.get("/generate?count=20").json()["data"]
        client.get("/generate?count=0")
        client.get("/info")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /generate?count=20 200" in text
    assert not any(sample in text for sample in served)
    assert not re.search(r"[0-9a-fA-F]{32}", text)  # nor any other 16+ byte hex blob


def test_access_lines_are_info_for_2xx_and_warning_otherwise(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="lokey.access"):
        client.get("/health")
        client.get("/generate?count=0")
    lines = {r.getMessage().split(" ")[1]: r.levelno for r in caplog.records}
    assert lines["/health"] == logging.INFO
    assert lines["/generate?count=0"] == logging.WARNING


# -- lifecycle -------------------------------------------------------------------------------------


def test_nothing_opens_before_the_lifespan_and_everything_closes_after_it() -> None:
    app = create_controller_app(settings())
    assert not hasattr(app.state, "lokey")
    with TestClient(app) as client:
        wait_for(lambda: client.get("/health").status_code == 200, "healthy")
        service = service_of(client)
        runner = service.runner
        assert runner is not None
        assert runner.running
    assert not runner.running
    assert service.controller.closed
    assert service.opened is not None
    assert not hasattr(app.state, "lokey")


def test_importing_the_service_on_hardware_loads_no_emulator_code() -> None:
    code = (
        "import sys\n"
        "from lokey.services.controller import create_controller_app\n"
        "from lokey.services.settings import load_controller_settings\n"
        "app = create_controller_app(load_controller_settings({'I2C_BUS_NUMBER': '1'}))\n"
        "print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))\n"
        "print(sorted(r.path for r in app.routes if r.path.startswith('/sim')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.split("\n")[:2] == ["[]", "[]"]

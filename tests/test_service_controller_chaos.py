"""The chaos API (design.md, "Fault injection at runtime") and the fault builder behind it.

On the emulator: every chip fault of ``sim.atecc608a.faults`` and every bus fault of
``sim.i2c_bus.faults`` can be injected by name with JSON parameters, listed and cleared; bad
bodies get 400 naming the problem, never 500; a lasting fault turns ``/generate`` into 503 with
Retry-After and the service recovers once the fault is cleared (and the chip power-cycled for a
latched one). On an i2c-dev bus the routes do not exist. One test drives the state machine on a
VirtualClock to reach the circuit breaker's five-minute open period without waiting for it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lokey.backends import build_fault, describe_fault, fault_kinds
from lokey.controller import DeviceState
from sim.atecc608a import ATECC608A, ForcedStatus, Opcode, RngHealthFailure, Status
from sim.atecc608a import faults as chip_faults
from sim.clock import VirtualClock, WallClock
from sim.i2c_bus import Nack, Schedule, VirtualI2CBus
from sim.i2c_bus import faults as bus_faults
from sim.i2c_dev import emulated_i2c_dev
from tests.controller_doubles import run_until
from tests.service_helpers import (
    FAST_RECOVERY,
    TestClient,
    running,
    service_of,
    settings,
    wait_for,
)

#: The least each kind needs (its required parameters).
REQUIRED: dict[str, dict[str, object]] = {
    "nack": {"address": 0x60, "schedule": {"next_n": 1}},
    "bit_flip": {"address": 0x60, "schedule": {"every_nth": 3}},
    "corrupt_byte": {"address": None, "schedule": {"probability": 0.5, "seed": 7}},
    "truncated_read": {"address": 0x60, "schedule": {"next_n": 2}, "after": 1},
    "latency": {"seconds": 0.0},
}
LASTING_RANDOM_ERROR = {"kind": "forced_status", "params": {"opcode": "Random", "count": None}}


def _sim_fault_names() -> set[str]:
    chip = {
        cls.name
        for cls in vars(chip_faults).values()
        if isinstance(cls, type)
        and issubclass(cls, chip_faults.ChipFault)
        and cls is not chip_faults.ChipFault
    }
    bus = {
        cls.name
        for cls in vars(bus_faults).values()
        if isinstance(cls, type)
        and issubclass(cls, bus_faults.Fault)
        and cls not in (bus_faults.Fault, bus_faults.ReadFault)
    }
    return chip | bus


@pytest.fixture(scope="module")
def chaos_client() -> Iterator[TestClient]:
    """A started service on virtual time with no worker: nothing touches the chip (and uses up
    an injected fault) unless a test asks. Brought to HEALTHY once, which fills the trace."""
    clock = VirtualClock()
    with running(clock=clock, start_runner=False, healthy=False) as client:
        run_until(service_of(client).controller, clock, DeviceState.HEALTHY)
        yield client


@pytest.fixture
def clean(chaos_client: TestClient) -> Iterator[TestClient]:
    yield chaos_client
    chaos_client.delete("/sim/faults")


# -- the builder (lokey.backends) ----------------------------------------------------------------


def test_every_sim_fault_is_offered_with_its_target() -> None:
    kinds = fault_kinds()
    assert set(kinds) == _sim_fault_names()
    assert {k.name for k in kinds.values() if k.target == "bus"} == {
        "nack",
        "bit_flip",
        "corrupt_byte",
        "truncated_read",
        "stuck_bus",
        "sda_low",
        "latency",
    }


@pytest.mark.parametrize("kind", sorted(_sim_fault_names()))
def test_a_built_fault_describes_itself_in_a_form_that_builds_it_again(kind: str) -> None:
    built = build_fault(kind, REQUIRED.get(kind, {}))
    described = describe_fault(built.fault)
    assert described["kind"] == kind
    again = build_fault(kind, described["params"])  # type: ignore[arg-type]
    assert again.fault == built.fault
    assert json.loads(json.dumps(described)) == described


def test_json_values_map_onto_the_fault_fields() -> None:
    fault = build_fault("forced_status", {"opcode": "random", "status": "HEALTH_TEST_ERROR"}).fault
    assert fault == ForcedStatus(opcode=Opcode.RANDOM, status=Status.HEALTH_TEST_ERROR)
    assert build_fault("ForcedStatus", {"opcode": "0x1B", "count": None}).fault == ForcedStatus(
        opcode=0x1B, count=None
    )
    assert build_fault("nack", {"address": "0x60", "schedule": {"next_n": 2}}).fault == Nack(
        0x60, Schedule(next_n=2)
    )
    stuck = build_fault("stuck_output", {"block": "00ff"}).fault
    assert stuck == chip_faults.StuckOutput(block=b"\x00\xff")
    assert build_fault("sda_low", {"errno": "ETIMEDOUT"}).fault == bus_faults.SdaLow(errno=110)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("no_such_fault", {}, "unknown fault kind 'no_such_fault'; choose one of: bit_flip"),
        ("forced_status", {"colour": 1}, "unknown parameter(s) 'colour'"),
        ("forced_status", {"count": "many"}, "parameter 'count' must be an integer"),
        ("forced_status", {"count": True}, "parameter 'count' must be an integer"),
        ("forced_status", {"count": 0}, "count must be a positive number"),
        ("forced_status", {"status": "SUCCESS"}, "status 0x00 cannot be forced"),
        ("forced_status", {"opcode": "Dance"}, "unknown name 'Dance'"),
        ("forced_status", {"opcode": 300}, "opcode must be a byte"),
        ("nack", {"address": 0x60}, "missing parameter(s) 'schedule'"),
        ("nack", {"address": 0x60, "schedule": {}}, "exactly one of next_n"),
        ("nack", {"address": 0x60, "schedule": 3}, "'schedule' must be a JSON object"),
        ("stuck_output", {"block": "xyz"}, "'block' must be a hex string"),
        ("latency", {"seconds": None}, "'seconds' must not be null"),
        ("latency", {"seconds": "1"}, "'seconds' must be a number"),
        ("rng_health_failure", {"count": 2}, "takes no count"),
        ("extra_busy", {"seconds": -1.0}, "seconds must be >= 0"),
    ],
)
def test_bad_descriptions_raise_value_errors_naming_the_problem(
    kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_fault(kind, params)


PARAMETER_NAMES = (
    *("count", "opcode", "status", "value", "block", "seconds", "address", "schedule"),
    *("after", "bits", "seed", "errno", "tests", "persistent", "after_calls", "x"),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(
    kind=st.sampled_from([*sorted(_sim_fault_names()), "bogus"]),
    params=st.dictionaries(
        st.sampled_from(PARAMETER_NAMES),
        JSON,
        max_size=4,
    ),
)
def test_any_json_builds_a_fault_or_raises_value_error(kind: str, params: dict[str, Any]) -> None:
    try:
        built = build_fault(kind, params)
    except ValueError:
        return
    assert built.kind.name == kind


# -- the routes ------------------------------------------------------------------------------------


def test_kinds_are_listed_with_their_parameters(chaos_client: TestClient) -> None:
    kinds = chaos_client.get("/sim/faults/kinds").json()
    assert set(kinds) == _sim_fault_names()
    assert kinds["forced_status"]["target"] == "chip"
    assert kinds["forced_status"]["params"]["status"] == {
        "type": "integer or name",
        "required": False,
        "default": 0x0F,
    }
    assert kinds["nack"]["params"]["schedule"]["required"] is True


@pytest.mark.parametrize("kind", sorted(_sim_fault_names()))
def test_every_fault_kind_can_be_injected_listed_and_cleared(clean: TestClient, kind: str) -> None:
    target = fault_kinds()[kind].target
    response = clean.post("/sim/faults", json={"kind": kind, "params": REQUIRED.get(kind, {})})
    assert response.status_code == 201, response.json()
    injected = response.json()["injected"]
    assert injected["kind"] == kind
    assert injected["target"] == target
    listed = clean.get("/sim/faults").json()
    latching = kind == "self_test_failure"  # a transient one latches at once and is spent
    assert [f["kind"] for f in listed[target]] == ([] if latching else [kind])
    cleared = clean.delete("/sim/faults").json()
    assert cleared["cleared"][target] == (0 if latching else 1)
    after = clean.get("/sim/faults").json()
    assert after["chip"] == after["bus"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid request body"),
        (b"", "Invalid request body"),
        (b"\xff\xfe", "Invalid request body"),
        (b"[1, 2]", "Invalid request body: expected"),
        (b"{}", "Invalid request body: kind is required, one of: bit_flip"),
        (b'{"kind": 5}', "Invalid request body: kind is required"),
        (b'{"kind": "nack", "extra": 1}', "unknown key(s) 'extra'"),
        (b'{"kind": "gremlins"}', "unknown fault kind 'gremlins'"),
        (b'{"kind": "nack", "params": []}', "nack: params must be a JSON object"),
        (b'{"kind": "nack"}', "nack: missing parameter(s) 'address', 'schedule'"),
        (b'{"kind": "forced_status", "params": {"status": 0}}', "cannot be forced"),
        (b'{"kind": "latency", "params": {"seconds": 11}}', "'seconds' must be <= 10"),
        (b'{"kind": "extra_busy", "params": {"seconds": 1e999}}', "must be finite"),
        (b'{"kind": "forced_status", "params": {"count": 1' + b"0" * 5000 + b"}}", "Invalid"),
        (b"[" * 100_000, "Invalid request body"),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(
    clean: TestClient, body: bytes, message: str
) -> None:
    response = clean.post("/sim/faults", content=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert clean.get("/sim/faults").json()["chip"] == []


def test_trace_returns_the_newest_records(chaos_client: TestClient) -> None:
    default = chaos_client.get("/sim/trace").json()
    assert 0 < default["count"] <= 100
    assert default["capacity"] == 65_536
    five = chaos_client.get("/sim/trace?limit=5").json()
    assert five["count"] == 5
    assert set(five["records"][0]) == {"t", "xfer", "i", "addr", "dir", "data", "outcome", "faults"}
    for bad in ("0", "10001", "x", "", "1.0"):
        response = chaos_client.get(f"/sim/trace?limit={bad}")
        assert response.status_code == 400
        assert response.json() == {"error": "Invalid limit parameter (1-10000)"}
    assert chaos_client.get("/sim/trace?limit=1&limit=2").status_code == 400


def test_state_and_power_cycle(chaos_client: TestClient) -> None:
    state = chaos_client.get("/sim/state").json()
    assert state["config_locked"] is True
    assert {"power", "failure", "health_failed", "commands_executed"} <= set(state)
    cycled = chaos_client.post("/sim/power-cycle").json()
    assert cycled["status"] == "power-cycled"
    assert cycled["state"]["power"] == "sleep"


# -- faults against the running service ------------------------------------------------------------


def test_a_lasting_chip_fault_gives_503_with_retry_after_until_it_is_cleared() -> None:
    with running(settings(**FAST_RECOVERY)) as client:
        assert client.post("/sim/faults", json=LASTING_RANDOM_ERROR).status_code == 201
        response = client.get("/generate?count=3")
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "Failed to generate random data"
        assert body["state"] in {"failed", "recovering", "validating"}
        assert "ExecutionError" in body["reason"]
        assert int(response.headers["retry-after"]) >= 1
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        details = health.json()["details"]
        assert details["device"] is False
        assert details["state"] in {"failed", "recovering", "validating", "circuit_open"}
        assert "ExecutionError" in details["reason"]
        assert int(health.headers["retry-after"]) >= 1
        # later requests are refused without touching the chip, still with Retry-After
        again = client.get("/generate")
        assert again.status_code == 503
        assert again.headers["retry-after"].isdigit()
        listed = client.get("/sim/faults").json()["chip"]
        assert listed[0]["kind"] == "forced_status"
        assert listed[0]["params"] == {"count": None, "opcode": 0x1B, "status": 0x0F}
        assert listed[0]["fired"] >= 1
        assert client.delete("/sim/faults").json()["cleared"] == {"chip": 1, "bus": 0}
        wait_for(lambda: client.get("/health").status_code == 200, "recovery")
        assert client.get("/generate?count=2").status_code == 200
        info = client.get("/info").json()
        assert info["counters"]["recoveries"] == 1
        assert info["counters"]["transitions"]["healthy->failed"] == 1
        assert info["requests"]["unavailable"] == 2


def test_a_latched_rng_health_failure_needs_the_power_cycle() -> None:
    with running(settings(**FAST_RECOVERY)) as client:
        client.post("/sim/faults", json={"kind": "rng_health_failure"})
        assert client.get("/generate").status_code == 503
        wait_for(lambda: client.get("/sim/state").json()["health_failed"], "the latch")
        cleared = client.delete("/sim/faults").json()
        assert cleared["latched"]["health_failed"] is True
        assert "power-cycle" in cleared["note"]
        assert client.get("/health").status_code == 503  # cleared, still latched
        client.post("/sim/power-cycle")
        wait_for(lambda: client.get("/health").status_code == 200, "recovery")
        assert client.get("/generate").status_code == 200


def test_a_bus_fault_shows_in_the_trace_and_recovers_when_cleared() -> None:
    with running(settings(**FAST_RECOVERY)) as client:
        client.post("/sim/faults", json={"kind": "sda_low", "params": {"errno": "EIO"}})
        assert client.get("/generate").status_code == 503
        records = client.get("/sim/trace?limit=50").json()["records"]
        assert any(r["outcome"] == "error:EIO" and r["faults"] == ["sda_low"] for r in records)
        listed = client.get("/sim/faults").json()["bus"]
        assert listed[0]["kind"] == "sda_low"
        assert listed[0]["fired"] >= 1
        client.delete("/sim/faults")
        wait_for(lambda: client.get("/health").status_code == 200, "recovery")


# -- not on hardware -------------------------------------------------------------------------------


def test_chaos_routes_do_not_exist_on_an_i2c_dev_bus() -> None:
    clock = WallClock()
    bus = VirtualI2CBus(clock)
    bus.attach(0x60, ATECC608A(clock=clock, timing="instant", lock="config-locked"))
    with emulated_i2c_dev(bus) as path, running(settings(f"i2c://{path}")) as client:
        info = client.get("/info").json()
        assert info["bus"] == {"kind": "i2c-dev", "url": f"i2c://{path}"}
        assert service_of(client).chaos is None
        for method, route in [
            ("GET", "/sim/faults"),
            ("POST", "/sim/faults"),
            ("DELETE", "/sim/faults"),
            ("GET", "/sim/faults/kinds"),
            ("POST", "/sim/power-cycle"),
            ("GET", "/sim/state"),
            ("GET", "/sim/trace"),
        ]:
            response = client.request(method, route)
            assert response.status_code == 404, route
            assert response.json() == {"error": "Not Found"}
        assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/sim")]
        # and the service works through the real smbus2 code path
        assert len(client.get("/generate?count=3").json()["data"]) == 3


# -- the breaker, on virtual time ------------------------------------------------------------------


def test_the_circuit_breaker_opens_for_its_cooldown_and_closes_after_the_trial() -> None:
    clock = VirtualClock()
    the_settings = settings(**{**FAST_RECOVERY, "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "5"})
    with running(the_settings, clock=clock, start_runner=False, healthy=False) as client:
        controller = service_of(client).controller
        assert client.get("/health").json()["details"]["state"] == "unknown"
        run_until(controller, clock, DeviceState.HEALTHY)
        assert client.get("/health").status_code == 200
        once = {"kind": "forced_status", "params": {"opcode": "Random", "count": 1}}
        for _ in range(4):  # four single failures, each followed by a full recovery
            client.post("/sim/faults", json=once)
            assert client.get("/generate").status_code == 503
            run_until(controller, clock, DeviceState.HEALTHY)
        client.post("/sim/faults", json=once)
        fifth = client.get("/generate")
        assert fifth.status_code == 503
        assert fifth.json()["state"] == "circuit_open"
        assert fifth.headers["retry-after"] == "300"  # 5 minutes, rounded up
        clock.advance(100)
        later = client.get("/generate")
        assert later.headers["retry-after"] == "200"
        metrics = client.get("/metrics").text
        assert "lokey_controller_breaker_state 1.0" in metrics
        assert "lokey_controller_state 5.0" in metrics
        health = client.get("/health")
        assert health.json()["details"]["state"] == "circuit_open"
        assert math.isclose(health.json()["details"]["retry_after_s"], 200, abs_tol=0.01)
        run_until(controller, clock, DeviceState.HEALTHY)  # the half-open trial passes
        info = client.get("/info").json()
        assert info["breaker"]["state"] == "closed"
        assert info["breaker"]["opened"] == 1
        assert info["breaker"]["trials"] == 1
        assert client.get("/generate").status_code == 200


def test_chip_faults_injected_through_the_api_are_the_sims_own() -> None:
    with running(settings(**FAST_RECOVERY), healthy=False) as client:
        client.post("/sim/faults", json=LASTING_RANDOM_ERROR)
        client.post("/sim/faults", json={"kind": "rng_health_failure", "params": {}})
        chip = service_of(client).opened.emulator  # type: ignore[union-attr]
        assert isinstance(chip, ATECC608A)
        assert chip.control.faults == (
            ForcedStatus(count=None, opcode=Opcode.RANDOM),
            RngHealthFailure(),
        )

"""The Fortuna service's HTTP contract (spec/service-api.md §0, §3; fortuna.md §§3, 5, 7).

Every route, status code and error string of the reference that LoKey keeps, and what LoKey
does instead: 503 ``Generator not seeded`` until the first seeding (never predictable output),
whole-request validation of ``/seed`` and ``/amplify`` that never half-applies (pool sizes,
reseed count and the round-robin position are unchanged after any rejected request), events of
at most 32 bytes spread round-robin over all 32 pools across requests, the direct start-up
reseed (design.md), the accumulator's reseed rule (P0 >= 64 bytes and >= 100 ms) on a
``VirtualClock``, JSON vs raw output, the health interval, ``/info`` and ``/metrics``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from lokey.fortuna import check_seed
from lokey.services.fortuna import (
    FORMAT_ERROR,
    FORMAT_PARAM_ERROR,
    GATE_ERROR,
    HEX_ERROR,
    MAX_BODY_BYTES,
    MAX_SEEDS,
    NO_SEEDS_ERROR,
    NOT_SEEDED_ERROR,
    SIZE_ERROR,
    FortunaService,
    create_fortuna_app,
)
from lokey.services.settings import load_fortuna_settings
from sim.clock import VirtualClock
from tests.service_helpers import TestClient

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
HEX = re.compile(r"[0-9a-f]*")
EVENT = 34  # one 32-byte event in a pool: source byte, length byte, 32 bytes (fortuna.md §3)
MIB = 1 << 20


# -- helpers -------------------------------------------------------------------------------------


class Samples:
    """Deterministic 'TRNG samples' that pass the seed-quality gate."""

    def __init__(self, seed: int = 2026) -> None:
        self._rng = random.Random(seed)

    def __call__(self, n: int = 32) -> bytes:
        data = self._rng.randbytes(n)
        check_seed(data)
        return data

    def hex(self, n: int = 32) -> str:
        return self(n).hex()


@dataclass
class Rig:
    client: TestClient
    clock: VirtualClock
    samples: Samples

    @property
    def service(self) -> FortunaService:
        service: Any = self.client.app.state.lokey  # type: ignore[attr-defined]
        assert isinstance(service, FortunaService)
        return service

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/info").json()
        return body

    def state(self) -> tuple[object, ...]:
        """Everything a rejected request must leave alone."""
        info = self.info()
        return (
            info["seeded"],
            info["reseed_count"],
            info["direct_reseeds"],
            tuple(info["pools"]["sizes"]),
            info["bytes_generated"],
            info["last_reseeded"],
        )

    def seed(self, *seeds: bytes) -> dict[str, Any]:
        response = self.client.post("/seed", json={"seeds": [s.hex() for s in seeds]})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def seed_directly(self) -> None:
        """The start-up seeding: 64 bytes in one request reseed the generator directly."""
        assert self.seed(self.samples(), self.samples())["status"] == "reseeded"

    def pools(self) -> list[int]:
        sizes: list[int] = self.info()["pools"]["sizes"]
        return sizes


@contextmanager
def running(**env: str) -> Iterator[Rig]:
    clock = VirtualClock(start=1_000.0)
    app = create_fortuna_app(load_fortuna_settings(env), clock=clock)
    with TestClient(app) as client:
        yield Rig(client, clock, Samples())


@pytest.fixture
def rig() -> Iterator[Rig]:
    with running() as the_rig:
        yield the_rig


@pytest.fixture
def seeded(rig: Rig) -> Rig:
    rig.seed_directly()
    return rig


# -- before the first seeding ----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?size=1", f"?size={MIB}", "?size=16&format=binary"])
def test_generate_before_any_seeding_is_503_never_data(rig: Rig, query: str) -> None:
    response = rig.client.get(f"/generate{query}")
    assert response.status_code == 503
    assert response.json() == {"error": "Generator not seeded"}
    assert NOT_SEEDED_ERROR == "Generator not seeded"
    assert rig.info()["bytes_generated"] == 0


def test_amplify_before_seeding_is_503_and_does_not_use_the_seed(rig: Rig) -> None:
    before = rig.state()
    response = rig.client.post("/amplify", json={"seed": rig.samples.hex(64), "size": 32})
    assert response.status_code == 503
    assert response.json() == {"error": "Generator not seeded"}
    assert rig.state() == before  # a client's seed never becomes the first key


def test_health_before_seeding_is_the_references_unhealthy_body(rig: Rig) -> None:
    response = rig.client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert RFC3339.fullmatch(body["timestamp"])
    assert body["details"]["generator"] is False
    assert "not seeded" in body["details"]["reason"]


def test_info_before_seeding(rig: Rig) -> None:
    info = rig.info()
    assert info["status"] == "running"
    assert info["amplification_factor"] == 4
    assert info["last_reseeded"] is None
    assert info["seeded"] is False
    assert info["reseed_count"] == 0
    assert info["pools"]["sizes"] == [0] * 32
    assert info["bytes_generated"] == 0


# -- start-up seeding (design.md) -----------------------------------------------------------------


def test_a_first_seeding_of_64_bytes_reseeds_directly(rig: Rig) -> None:
    body = rig.seed(rig.samples(), rig.samples())
    assert body["status"] == "reseeded"
    assert body["count"] == 2
    assert RFC3339.fullmatch(body["last_reseeded"])
    assert body["events"] == 0  # straight into the generator, not through the pools
    info = rig.info()
    assert info["seeded"] is True
    assert info["direct_reseeds"] == 1
    assert info["reseed_count"] == 0  # ReseedCnt counts pool reseeds only (fortuna.md §3)
    assert info["pools"]["sizes"] == [0] * 32
    assert info["last_reseeded"] is not None
    assert rig.client.get("/generate").status_code == 200
    assert rig.client.get("/health").status_code == 200


def test_one_long_seed_counts_as_64_bytes_of_material(rig: Rig) -> None:
    assert rig.seed(rig.samples(64))["status"] == "reseeded"


def test_a_first_seeding_below_64_bytes_is_only_pooled(rig: Rig) -> None:
    body = rig.seed(rig.samples(32), rig.samples(31))
    assert body == {
        "status": "accepted",
        "count": 2,
        "last_reseeded": None,
        "events": 2,
        "reseed_count": 0,
    }
    assert rig.pools()[:3] == [EVENT, EVENT - 1, 0]
    assert rig.client.get("/generate").status_code == 503


def test_unseeded_events_fill_all_32_pools_and_the_33rd_reseeds(rig: Rig) -> None:
    """fortuna.md §5: one event per pool per round, so P0 reaches 64 bytes at event 33."""
    for k in range(32):
        assert rig.seed(rig.samples())["status"] == "accepted"
        assert rig.pools() == [EVENT] * (k + 1) + [0] * (31 - k)
    assert rig.client.get("/generate").status_code == 503
    body = rig.seed(rig.samples())
    assert body["status"] == "reseeded"
    assert body["reseed_count"] == 1
    assert rig.pools() == [0] + [EVENT] * 31  # reseed 1 uses P0 only
    assert rig.info()["direct_reseeds"] == 0
    assert rig.client.get("/generate").status_code == 200


# -- round robin and the reseed rule ---------------------------------------------------------------


def test_seeds_spread_round_robin_over_all_pools_across_requests(seeded: Rig) -> None:
    """Not seed i -> pool i: five seeds per request (the reference API's pattern) still reach
    every pool, because the position carries over from one request to the next."""
    rig = seeded
    for _ in range(6):
        assert rig.seed(*(rig.samples() for _ in range(5)))["events"] == 5
    assert rig.pools() == [EVENT] * 30 + [0, 0]
    rig.seed(rig.samples(), rig.samples())
    assert rig.pools() == [EVENT] * 32


def test_long_seeds_are_cut_into_32_byte_events(seeded: Rig) -> None:
    rig = seeded
    body = rig.seed(rig.samples(100))
    assert body["events"] == 4
    assert rig.pools()[:5] == [EVENT, EVENT, EVENT, 2 + 4, 0]
    rig.seed(rig.samples(8))
    assert rig.pools()[:5] == [EVENT, EVENT, EVENT, 6, 10]


def test_the_reseed_rule_needs_64_bytes_in_p0_and_100_ms(seeded: Rig) -> None:
    rig = seeded
    # 33 events: P0 gets two (68 bytes); the direct seed did not start the 100 ms timer
    body = rig.seed(*(rig.samples() for _ in range(33)))
    assert (body["status"], body["reseed_count"]) == ("reseeded", 1)
    assert rig.pools()[0] == 0
    # 64 more events: P0 has 68 bytes again, but no time has passed since reseed 1
    body = rig.seed(*(rig.samples() for _ in range(64)))
    assert (body["status"], body["reseed_count"]) == ("accepted", 1)
    assert rig.client.get("/generate").status_code == 200
    assert rig.info()["reseed_count"] == 1
    rig.clock.advance(0.099)
    rig.client.get("/generate")
    assert rig.info()["reseed_count"] == 1
    rig.clock.advance(0.001)  # 100 ms after reseed 1: the next request reseeds
    assert rig.client.get("/generate").status_code == 200
    info = rig.info()
    assert info["reseed_count"] == 2
    assert info["pools"]["sizes"][:2] == [0, 0]  # reseed 2 uses P0 and P1


def test_a_seed_request_reseeds_when_the_rule_allows(seeded: Rig) -> None:
    rig = seeded
    rig.seed(*(rig.samples() for _ in range(33)))
    rig.seed(*(rig.samples() for _ in range(64)))
    rig.clock.advance(0.5)
    body = rig.seed(rig.samples())
    assert body["status"] == "reseeded"
    assert body["reseed_count"] == 2


# -- /seed validation: never half-applied ----------------------------------------------------------

GOOD = "5f0e8a7c3b9d2e4f1a6b8c0d7e9f2a4b6c8d0e1f3a5b7c9d0e2f4a6b8c1d3e5f"  # 32 distinct-ish bytes
LOW_ENTROPY = "ffff0000" * 8  # the unlocked ATECC pattern: H = 1.0 (fortuna.md §7)


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


SEED_REJECTIONS: list[tuple[bytes, str]] = [
    (b"", FORMAT_ERROR),
    (b"{", FORMAT_ERROR),
    (b"null", FORMAT_ERROR),
    (b"[]", FORMAT_ERROR),
    (b'"seeds"', FORMAT_ERROR),
    (b"{}", FORMAT_ERROR),
    (b"\xff\xfe{}", FORMAT_ERROR),  # not UTF-8
    (b"[" * 100_000, FORMAT_ERROR),  # nesting deeper than the parser's recursion
    (b'{"seeds": [' + b"9" * 5000 + b"]}", FORMAT_ERROR),  # an integer too long to convert
    (_body({"seeds": None}), FORMAT_ERROR),
    (_body({"seeds": GOOD}), FORMAT_ERROR),
    (_body({"seeds": {"0": GOOD}}), FORMAT_ERROR),
    (_body({"seeds": [GOOD, 5]}), FORMAT_ERROR),
    (_body({"seeds": [GOOD, None]}), FORMAT_ERROR),
    (_body({"seed": [GOOD]}), FORMAT_ERROR),
    (_body({"seeds": []}), NO_SEEDS_ERROR),
    (_body({"seeds": [GOOD, GOOD, "zz" * 32]}), HEX_ERROR),
    (_body({"seeds": [GOOD, GOOD, GOOD[:-1]]}), HEX_ERROR),  # odd length
    (_body({"seeds": [GOOD, "0x" + GOOD]}), HEX_ERROR),
    (_body({"seeds": [GOOD, "ab cd ef 01"]}), HEX_ERROR),  # bytes.fromhex would take it
    (_body({"seeds": [GOOD, "éé"]}), HEX_ERROR),
    (_body({"seeds": [GOOD, GOOD, "00" * 32]}), GATE_ERROR),
    (_body({"seeds": [GOOD, GOOD, LOW_ENTROPY]}), GATE_ERROR),
    (_body({"seeds": [GOOD, GOOD, "ff" * 31 + "00"]}), GATE_ERROR),
    (_body({"seeds": [GOOD, GOOD, ""]}), GATE_ERROR),
    (_body({"seeds": [GOOD, GOOD, "a1b2c3"]}), GATE_ERROR),
]


def _assert_refused(response: Any, message: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if message == GATE_ERROR:
        assert error.startswith(f"{GATE_ERROR} (")
    else:
        assert response.json() == {"error": message}


@pytest.mark.parametrize("state", ["unseeded", "seeded"])
def test_rejected_seed_requests_change_nothing(rig: Rig, state: str) -> None:
    if state == "seeded":
        rig.seed_directly()
        rig.seed(rig.samples(), rig.samples(), rig.samples())  # pools 0-2 hold one event each
    before = rig.state()
    for body, message in SEED_REJECTIONS:
        _assert_refused(rig.client.post("/seed", content=body), message)
        assert rig.state() == before, body[:80]
    # the round-robin position did not move either: the next event lands where it would have
    rig.seed(rig.samples())
    expected = [0] * 32 if state == "unseeded" else [EVENT] * 3 + [0] * 29
    expected[0 if state == "unseeded" else 3] = EVENT
    assert rig.pools() == expected


def test_the_reference_strings_are_kept_verbatim() -> None:
    assert (FORMAT_ERROR, NO_SEEDS_ERROR, HEX_ERROR, SIZE_ERROR) == (
        "Invalid request format",
        "No seeds provided",
        "Invalid seed format (not hex)",
        "Invalid size parameter (1-1048576)",
    )


@pytest.mark.parametrize(
    ("seed", "reason"),
    [
        ("00" * 32, "all_equal"),
        ("ff" * 31 + "00", "mostly_ff"),
        (LOW_ENTROPY, "low_entropy"),
        ("a1b2c3", "too_short"),
    ],
)
def test_the_gate_says_which_seed_and_which_rule(rig: Rig, seed: str, reason: str) -> None:
    response = rig.client.post("/seed", json={"seeds": [GOOD, seed]})
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith(f"{GATE_ERROR} (seed 1: ")
    assert (body["reason"], body["seed"]) == (reason, 1)
    assert seed not in body["error"]  # never echo sample bytes


def test_more_seeds_than_the_cap_are_refused_before_any_gate_work(rig: Rig) -> None:
    before = rig.state()
    response = rig.client.post("/seed", json={"seeds": [GOOD] * (MAX_SEEDS + 1)})
    assert response.status_code == 400
    assert response.json()["error"] == f"Too many seeds (at most {MAX_SEEDS}, got {MAX_SEEDS + 1})"
    assert rig.state() == before
    assert rig.client.post("/seed", json={"seeds": [GOOD] * MAX_SEEDS}).status_code == 200


def test_uppercase_hex_is_accepted(rig: Rig) -> None:
    assert rig.client.post("/seed", json={"seeds": [GOOD.upper()]}).status_code == 200


def test_a_too_large_body_is_413_and_changes_nothing(rig: Rig) -> None:
    before = rig.state()
    body = _body({"seeds": [GOOD] * (MAX_BODY_BYTES // 60)})
    assert len(body) > MAX_BODY_BYTES
    response = rig.client.post("/seed", content=body)
    assert response.status_code == 413
    assert response.json()["error"].startswith("Request body too large")
    assert rig.state() == before


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["seeds", "seed", "size", "x"]), children, max_size=3)
    ),
    max_leaves=12,
)


def test_no_seed_or_amplify_body_causes_a_500_or_a_partial_change() -> None:
    with running() as rig:
        rig.seed_directly()

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(value=JSON_VALUES, route=st.sampled_from(["/seed", "/amplify"]))
        def check(value: object, route: str) -> None:
            before = rig.state()
            response = rig.client.post(route, content=json.dumps(value).encode())
            assert response.status_code in (200, 400), response.text
            assert "error" in response.json() or response.status_code == 200
            if response.status_code == 400:
                assert rig.state() == before

        check()


# -- /generate -------------------------------------------------------------------------------------


def test_generate_default_is_128_bytes_of_lowercase_hex(seeded: Rig) -> None:
    response = seeded.client.get("/generate")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"data", "size"}
    assert body["size"] == 128
    assert len(body["data"]) == 256
    assert HEX.fullmatch(body["data"])


@pytest.mark.parametrize("size", [1, 15, 16, 17, 4096, MIB])
def test_generate_returns_exactly_size_bytes(seeded: Rig, size: int) -> None:
    body = seeded.client.get(f"/generate?size={size}").json()
    assert body["size"] == size
    assert len(bytes.fromhex(body["data"])) == size


@pytest.mark.parametrize(
    "query",
    [
        "size=0",
        "size=1048577",
        "size=-1",
        "size=abc",
        "size=1.5",
        "size=",
        "size=%201",
        "size=1e3",
        "size=0x10",
        "size=%D9%A1",
        "size=99999999999999999999999999",
        "size=1&size=2",
    ],
)
@pytest.mark.parametrize("state", ["unseeded", "seeded"])
def test_bad_sizes_get_400_with_the_reference_message(rig: Rig, query: str, state: str) -> None:
    if state == "seeded":
        rig.seed_directly()
    response = rig.client.get(f"/generate?{query}")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid size parameter (1-1048576)"}


@pytest.mark.parametrize(
    ("accept", "binary"),
    [
        ("application/octet-stream", True),
        ("application/octet-stream, */*;q=0.1", True),
        ("application/json;q=0.5, application/octet-stream", True),
        ("application/json", False),
        ("*/*", False),
        ("application/*", False),
        ("application/json, application/octet-stream", False),  # a tie keeps JSON
        ("application/octet-stream;q=0", False),
        ("application/octet-stream;q=nonsense", False),
        ("text/html", False),
        ("", False),
    ],
)
def test_the_accept_header_chooses_raw_bytes(seeded: Rig, accept: str, binary: bool) -> None:
    response = seeded.client.get("/generate?size=48", headers={"accept": accept})
    assert response.status_code == 200
    if binary:
        assert response.headers["content-type"] == "application/octet-stream"
        assert len(response.content) == 48
    else:
        assert response.headers["content-type"] == "application/json"
        assert response.json()["size"] == 48


def test_format_binary_returns_raw_bytes_and_format_json_wins_over_accept(seeded: Rig) -> None:
    raw = seeded.client.get(f"/generate?size={MIB}&format=binary")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/octet-stream"
    assert int(raw.headers["content-length"]) == MIB
    assert len(raw.content) == MIB
    default = seeded.client.get("/generate?format=binary")
    assert len(default.content) == 128
    forced = seeded.client.get(
        "/generate?size=8&format=json", headers={"accept": "application/octet-stream"}
    )
    assert forced.json()["size"] == 8


@pytest.mark.parametrize("query", ["format=xml", "format=", "format=binary&format=json"])
def test_an_unknown_format_is_400(seeded: Rig, query: str) -> None:
    response = seeded.client.get(f"/generate?size=8&{query}")
    assert response.status_code == 400
    assert response.json() == {"error": FORMAT_PARAM_ERROR}


def test_outputs_never_repeat_and_are_counted(seeded: Rig) -> None:
    rig = seeded
    outputs = [rig.client.get("/generate?size=32").json()["data"] for _ in range(20)]
    assert len(set(outputs)) == 20
    assert rig.info()["bytes_generated"] == 20 * 32


def test_concurrent_requests_never_share_output(seeded: Rig) -> None:
    results: list[bytes] = []
    lock = threading.Lock()

    def fetch() -> None:
        for _ in range(5):
            data = seeded.client.get("/generate?size=64&format=binary").content
            with lock:
                results.append(data)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 40
    blocks = {r[i : i + 16] for r in results for i in range(0, 64, 16)}
    assert len(blocks) == 40 * 4  # no 16-byte block twice: no two requests read the same (K, C)


# -- /amplify --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 100, MIB])
def test_amplify_returns_exactly_size_bytes(seeded: Rig, size: int) -> None:
    response = seeded.client.post("/amplify", json={"seed": seeded.samples.hex(40), "size": size})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "size"}
    assert body["size"] == size
    assert len(body["data"]) == 2 * size
    assert HEX.fullmatch(body["data"])


def test_amplify_can_answer_raw_bytes(seeded: Rig) -> None:
    response = seeded.client.post(
        "/amplify?format=binary", json={"seed": seeded.samples.hex(), "size": 1000}
    )
    assert response.headers["content-type"] == "application/octet-stream"
    assert len(response.content) == 1000


def test_amplify_pools_its_seed_round_robin_as_its_own_source(seeded: Rig) -> None:
    """Not every chunk into pool 0 (the reference's defect 8): 32-byte events over the pools,
    continuing across requests, with a position of its own (source 1)."""
    rig = seeded
    rig.client.post("/amplify", json={"seed": rig.samples.hex(40), "size": 8})
    assert rig.pools()[:3] == [EVENT, 2 + 8, 0]
    rig.client.post("/amplify", json={"seed": rig.samples.hex(64), "size": 8})
    assert rig.pools()[:5] == [EVENT, 2 + 8, EVENT, EVENT, 0]
    rig.seed(rig.samples())  # /seed (source 0) has its own position: pool 0
    assert rig.pools()[:5] == [0, 2 + 8, EVENT, EVENT, 0]  # P0 reached 68 bytes: reseed 1
    assert rig.info()["reseed_count"] == 1


AMPLIFY_REJECTIONS: list[tuple[object, str]] = [
    (None, FORMAT_ERROR),
    ([], FORMAT_ERROR),
    ({}, FORMAT_ERROR),
    ({"size": 10}, FORMAT_ERROR),
    ({"seed": GOOD}, FORMAT_ERROR),
    ({"seed": "", "size": 10}, FORMAT_ERROR),
    ({"seed": None, "size": 10}, FORMAT_ERROR),
    ({"seed": [GOOD], "size": 10}, FORMAT_ERROR),
    ({"seed": GOOD, "size": "10"}, FORMAT_ERROR),
    ({"seed": GOOD, "size": 1.5}, FORMAT_ERROR),
    ({"seed": GOOD, "size": 10.0}, FORMAT_ERROR),
    ({"seed": GOOD, "size": True}, FORMAT_ERROR),
    ({"seed": GOOD, "size": None}, FORMAT_ERROR),
    ({"seed": "zz" + GOOD, "size": 10}, HEX_ERROR),
    ({"seed": GOOD[:-1], "size": 10}, HEX_ERROR),
    ({"seed": GOOD, "size": 0}, SIZE_ERROR),
    ({"seed": GOOD, "size": -1}, SIZE_ERROR),
    ({"seed": GOOD, "size": MIB + 1}, SIZE_ERROR),
    ({"seed": GOOD, "size": 10**30}, SIZE_ERROR),
    ({"seed": LOW_ENTROPY, "size": 10}, GATE_ERROR),
    ({"seed": "00" * 64, "size": 10}, GATE_ERROR),
]


@pytest.mark.parametrize("state", ["unseeded", "seeded"])
def test_rejected_amplify_requests_change_nothing(rig: Rig, state: str) -> None:
    if state == "seeded":
        rig.seed_directly()
    before = rig.state()
    for body, message in AMPLIFY_REJECTIONS:
        _assert_refused(rig.client.post("/amplify", content=_body(body)), message)
        assert rig.state() == before, body
    _assert_refused(rig.client.post("/amplify", content=b"{"), FORMAT_ERROR)
    assert rig.state() == before


def test_amplify_gate_errors_name_the_rule(seeded: Rig) -> None:
    body = seeded.client.post("/amplify", json={"seed": LOW_ENTROPY, "size": 4}).json()
    assert body["error"].startswith(f"{GATE_ERROR} (")
    assert body["reason"] == "low_entropy"
    assert "seed" not in body


# -- /health ---------------------------------------------------------------------------------------


def test_health_follows_the_reseed_interval(seeded: Rig) -> None:
    rig = seeded
    healthy = rig.client.get("/health")
    assert healthy.status_code == 200
    assert set(healthy.json()) == {"status", "timestamp"}
    assert healthy.json()["status"] == "healthy"
    rig.clock.advance(3600.0)
    assert rig.client.get("/health").status_code == 200  # exactly 1 h: still within
    rig.clock.advance(1.0)
    stale = rig.client.get("/health")
    assert stale.status_code == 503
    body = stale.json()
    assert body["status"] == "unhealthy"
    assert body["details"]["generator"] is False
    assert body["details"]["seeded"] is True
    assert "FORTUNA_MAX_RESEED_INTERVAL_HOURS" in body["details"]["reason"]
    assert RFC3339.fullmatch(body["details"]["last_reseeded"])
    assert rig.client.get("/generate").status_code == 200  # stale is not unseeded
    rig.seed(*(rig.samples() for _ in range(33)))  # P0 reaches 64 bytes: a pool reseed
    assert rig.client.get("/health").status_code == 200


def test_the_health_interval_is_configurable() -> None:
    with running(FORTUNA_MAX_RESEED_INTERVAL_HOURS="0.5") as rig:
        rig.seed_directly()
        rig.clock.advance(1800.0)
        assert rig.client.get("/health").status_code == 200
        rig.clock.advance(0.5)
        assert rig.client.get("/health").status_code == 503
        assert rig.info()["max_reseed_interval_hours"] == 0.5


def test_pooled_data_without_a_reseed_does_not_refresh_health(seeded: Rig) -> None:
    rig = seeded
    rig.clock.advance(3601.0)
    assert rig.seed(rig.samples())["status"] == "accepted"
    assert rig.client.get("/health").status_code == 503


# -- /info and /metrics ----------------------------------------------------------------------------


def test_info_keeps_the_reference_keys_and_adds_the_generator_state(seeded: Rig) -> None:
    rig = seeded
    rig.seed(rig.samples(), rig.samples())
    rig.client.get("/generate?size=10")
    rig.clock.advance(12.0)
    info = rig.info()
    assert list(info)[:3] == ["status", "amplification_factor", "last_reseeded"]
    assert info["status"] == "running"
    assert info["amplification_factor"] == 4
    assert RFC3339.fullmatch(info["last_reseeded"])
    assert info["seeded"] is True
    assert info["healthy"] is True
    assert info["reseed_count"] == 0
    assert info["direct_reseeds"] == 1
    assert info["seconds_since_reseed"] == 12.0
    assert info["pools"] == {
        "count": 32,
        "sizes": [EVENT, EVENT] + [0] * 30,
        "total_bytes": 2 * EVENT,
        "min_pool_size": 64,
    }
    assert info["bytes_generated"] == 10
    assert info["seed_file"] is None


def test_info_reports_the_amplification_factor_setting() -> None:
    with running(AMPLIFICATION_FACTOR="7") as rig:
        assert rig.info()["amplification_factor"] == 7


def _metrics(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return values


def test_metrics_parse_and_carry_the_generator_state(rig: Rig) -> None:
    before = _metrics(rig.client)
    assert before["lokey_fortuna_seeded"][()] == 0
    assert "lokey_fortuna_seconds_since_reseed" not in before
    rig.client.get("/generate")
    rig.seed_directly()
    rig.seed(rig.samples())
    rig.client.get("/generate?size=100")
    rig.client.get("/generate?size=0")
    rig.client.post("/seed", json={"seeds": ["00" * 32]})
    metrics = _metrics(rig.client)
    assert metrics["lokey_fortuna_seeded"][()] == 1
    assert metrics["lokey_fortuna_healthy"][()] == 1
    assert metrics["lokey_fortuna_reseeds_total"][()] == 0
    assert metrics["lokey_fortuna_direct_reseeds_total"][()] == 1
    assert metrics["lokey_fortuna_seconds_since_reseed"][()] == 0
    assert metrics["lokey_fortuna_bytes_generated_total"][()] == 100
    pools = metrics["lokey_fortuna_pool_bytes"]
    assert len(pools) == 32
    assert pools[(("pool", "0"),)] == EVENT
    assert pools[(("pool", "1"),)] == 0
    assert metrics["lokey_fortuna_events_total"][(("source", "seed"),)] == 1
    assert metrics["lokey_fortuna_seeds_total"][(("outcome", "accepted"),)] == 3
    assert metrics["lokey_fortuna_seeds_total"][(("outcome", "rejected"),)] == 1
    requests = metrics["lokey_fortuna_requests_total"]
    assert requests[(("outcome", "unseeded"), ("route", "generate"))] == 1
    assert requests[(("outcome", "ok"), ("route", "generate"))] == 1
    assert requests[(("outcome", "invalid"), ("route", "generate"))] == 1
    assert requests[(("outcome", "invalid"), ("route", "seed"))] == 1
    assert requests[(("outcome", "ok"), ("route", "seed"))] == 2


def test_each_app_has_its_own_registry_and_the_global_one_stays_clean() -> None:
    with running() as first, running() as second:
        first.seed_directly()
        assert _metrics(first.client)["lokey_fortuna_seeded"][()] == 1
        assert _metrics(second.client)["lokey_fortuna_seeded"][()] == 0
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("lokey_")]


# -- conventions: errors, OPTIONS, CORS, logs ------------------------------------------------------


def test_framework_errors_use_the_error_shape(rig: Rig) -> None:
    missing = rig.client.get("/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    for response in (rig.client.post("/generate"), rig.client.get("/seed")):
        assert response.status_code == 405
        assert response.json() == {"error": "Method Not Allowed"}


def test_options_is_204_without_a_body(rig: Rig) -> None:
    for path in ("/generate", "/seed", "/amplify", "/anything"):
        response = rig.client.options(path)
        assert response.status_code == 204
        assert response.content == b""
        assert "access-control-allow-origin" not in response.headers


def test_a_configured_origin_gets_the_reference_cors_headers() -> None:
    with running(LOKEY_CORS_ORIGIN="*") as rig:
        for response in (rig.client.options("/seed"), rig.client.get("/generate")):
            assert response.headers["access-control-allow-origin"] == "*"


def test_no_log_line_carries_seed_or_output_bytes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), running() as rig:
        seeds = [rig.samples.hex() for _ in range(3)]
        rig.client.post("/seed", json={"seeds": seeds})
        rig.client.post("/seed", json={"seeds": [*seeds, LOW_ENTROPY]})
        served = rig.client.get("/generate?size=64").json()["data"]
        amplified = rig.client.post("/amplify", json={"seed": seeds[0], "size": 32}).json()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /seed 200" in text
    assert "POST /seed 400" in text
    assert "GET /generate?size=64 200" in text
    assert not any(s in text for s in [*seeds, served, amplified["data"], LOW_ENTROPY])
    assert not re.search(r"[0-9a-fA-F]{32}", text)


# -- lifecycle -------------------------------------------------------------------------------------


def test_nothing_opens_before_the_lifespan_and_everything_closes_after_it() -> None:
    app = create_fortuna_app(load_fortuna_settings({}))
    assert not hasattr(app.state, "lokey")
    with TestClient(app) as client:
        service = client.app.state.lokey  # type: ignore[attr-defined]
        assert isinstance(service, FortunaService)
        assert client.get("/generate").status_code == 503
    assert service.closed
    assert not hasattr(app.state, "lokey")

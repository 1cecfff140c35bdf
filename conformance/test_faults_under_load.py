"""Faults under load: the fault campaigns while clients consume at full speed on every path.

Issue 9. The whole stack runs on the emulator (:class:`conformance.load.LoadStack`: controller,
Fortuna, VirtIO and API as processes, instant chip timing, fast recovery) and
``--load-consumers`` threads per path (default 4) read as fast as they can from every path that
serves random bytes: the API's ``source=trng`` and ``source=fortuna`` (binary), the
controller's ``/generate``, VirtIO's ``/stream`` and ``/generate``. For each campaign of
:mod:`conformance.campaigns` (by default one per fault kind, :data:`REPRESENTATIVES`;
``--load-all``: all of them):

1. all four services are healthy; the throughput of each path is measured for
   :data:`BASELINE_S`;
2. the campaign's fault is injected through the chaos API and kept for :data:`FAULT_S` while
   the consumers go on;
3. it is cleared (and the chip power-cycled if the campaign says the chip latches it); the
   stack must be healthy again, and each of :data:`JUDGED` (all chip paths together, the API's
   TRNG and Fortuna paths, the controller) must reach :data:`RECOVERY_FRACTION` of its
   baseline rate in a window of :data:`RECOVERY_WINDOW_S` starting within ``--recovery-bound``
   of the clear (unless its baseline was below :data:`MIN_BASELINE_BPS`). VirtIO's paths are
   measured and reported: by design they get what the API's clients leave.

Then, over every byte the chip paths served since the previous verdict: (a) no byte of a bad
sample was served, no run of 32 bytes came from nowhere and no chip byte was served twice (the
bus-trace oracle, :class:`conformance.load.TraceBook`: CRC-damaged, count-damaged,
bus-damaged, test-pattern, stuck, mostly-0xFF and repeated Random payloads are bad, recognised
in the SHA-256-conditioned form the controller serves); the same oracle judges every sample the
controller gave the API (its TRNG polls and the Fortuna seeds, recorded by a proxy between
them), so no seed with a bad sample reached Fortuna; (b) the recovery above; (c) no consumer got
anything but a 200 or the path's documented 503 with Retry-After (refused connections, other
5xx, 4xx, timeouts all fail the campaign; every answer is counted and reported).

Figures go into the JUnit XML (``load_*`` user properties) and the end-of-run table.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from conformance.campaigns import CAMPAIGNS, Campaign
from conformance.load import (
    CHIP_PATHS,
    PATHS,
    SEEDING_PATH,
    WINDOW,
    Judgement,
    Ledger,
    Load,
    LoadStack,
    Served,
    TraceBook,
    TraceCollector,
    chunks_of,
)
from conformance.plugin import EMULATED, STACK_URL
from conformance.protocol import crc16
from conformance.samples import TEST_PATTERN
from conformance.stack import ChaosClient
from conformance.summary import (
    LOAD_ANSWERS_PROPERTY,
    LOAD_CHIP_BASELINE_PROPERTY,
    LOAD_CHIP_FAULT_PROPERTY,
    LOAD_COLUMNS,
    LOAD_FAULT_PROPERTY,
    LOAD_FORTUNA_BASELINE_PROPERTY,
    LOAD_FORTUNA_FAULT_PROPERTY,
    LOAD_PATHS_PROPERTY,
    LOAD_RECOVERY_PROPERTY,
    LOAD_SAMPLES_PROPERTY,
    RECOVERY_BOUND_PROPERTY,
    load_rows,
)

#: One campaign per fault kind the issue names (ids of conformance.campaigns).
REPRESENTATIVES: Final = (
    "stuck_output",  # stuck 0xFF
    "stuck_output-test-pattern",  # the unlocked chip's fixed pattern (what a lock change gives)
    "corrupt_response_crc",  # CRC errors from the chip
    "bit_flip-intermittent",  # CRC errors from the bus, now and then
    "rng_health_failure",  # the chip's RNG health test latches
    "brown_out",  # power loss during every command
    "extra_busy",  # a slow chip (tolerated)
    "wake_ignored",  # the chip never answers: the driver's wake and polling budgets run out
)
BASELINE_S: Final = 1.0
FAULT_S: Final = 1.0
RECOVERY_WINDOW_S: Final = 0.75
RECOVERY_STEP_S: Final = 0.05
RECOVERY_FRACTION: Final = 0.5
MIN_BASELINE_BPS: Final = 256.0  # below this a path is too starved to judge a recovery on
#: Throughput is measured per path and for all chip paths together ("chip"): the chip is the
#: bottleneck they share, so the split between them is a race, and VirtIO by design gets only
#: what the API's clients leave in the TRNG queue (architecture.md): its two paths are
#: reported, not judged.
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    **{path: (path,) for path in PATHS},
    "chip": tuple(p for p in CHIP_PATHS if p in PATHS),
}
JUDGED: Final = ("chip", "api-trng", "controller", "api-fortuna")
MB: Final = 1e6


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "load_campaign" in metafunc.fixturenames:
        chosen = [
            c
            for c in CAMPAIGNS
            if metafunc.config.getoption("--load-all") or c.id in REPRESENTATIVES
        ]
        metafunc.parametrize("load_campaign", chosen, ids=[c.id for c in chosen])


@dataclass
class LoadRun:
    """The session's stack, its consumers and the trace oracle."""

    stack: LoadStack
    chaos: ChaosClient
    book: TraceBook
    collector: TraceCollector
    load: Load
    judged: int = 0  # ledger entries already judged by an earlier campaign
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2.0))


@pytest.fixture(scope="module")
def load_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoadRun]:
    if request.config.stash.get(STACK_URL, None) is not None:
        pytest.skip(
            "faults under load start their own four services on the emulator; --stack names "
            "one controller"
        )
    if not request.config.stash.get(EMULATED, False):
        pytest.skip("faults under load run the whole stack on the emulator (not on a Pi's bus)")
    workdir: Path = tmp_path_factory.mktemp("lokey-load")
    ledger = Ledger()
    stack = LoadStack.start(workdir, ledger)
    try:
        with ChaosClient(stack.url("controller")) as chaos:
            info = httpx.get(stack.url("controller", "/info"), timeout=5).json()
            book = TraceBook(bool(info.get("config", {}).get("conditioning", True)))
            collector = TraceCollector(chaos, book)
            collector.start()
            load = Load(stack, int(request.config.getoption("--load-consumers")), ledger)
            run = LoadRun(stack, chaos, book, collector, load)
            load.start()
            try:
                yield run
            finally:
                collector.stop()
                load.halt()
                stack.stop()  # ends the waiting streams at once
                load.stop()
                run.http.close()
    finally:
        stack.stop()


def _recover(
    run: LoadRun, mark: int, baseline: dict[str, float], cleared: float, bound_s: float
) -> tuple[dict[str, float | None], float]:
    """Per group, seconds from the clear to the start of the first window at the baseline
    fraction (None: none within the bound); and the seconds until all four services were
    healthy again."""
    ledger = run.load.ledger
    found: dict[str, float | None] = dict.fromkeys(GROUPS)
    starts = dict.fromkeys(GROUPS, cleared)  # the next window to look at, per group
    healthy_s: float | None = None
    deadline = cleared + bound_s + RECOVERY_WINDOW_S
    while True:
        now = time.monotonic()
        if healthy_s is None and not run.stack.unhealthy(run.http):
            healthy_s = now - cleared
        for name, paths in GROUPS.items():
            if baseline[name] < MIN_BASELINE_BPS:
                continue  # too little to tell a recovery from noise
            while found[name] is None and starts[name] + RECOVERY_WINDOW_S <= now:
                start = starts[name]
                if start > cleared + bound_s:
                    break
                rate = ledger.rate(paths, start, start + RECOVERY_WINDOW_S, mark)
                if rate >= RECOVERY_FRACTION * baseline[name]:
                    found[name] = start - cleared
                starts[name] = start + RECOVERY_STEP_S
        pending = [g for g in JUDGED if found[g] is None and baseline[g] >= MIN_BASELINE_BPS]
        if (not pending and healthy_s is not None) or now > deadline:
            return found, healthy_s if healthy_s is not None else now - cleared
        time.sleep(RECOVERY_STEP_S)


def _answers(run: LoadRun, t0: float, t1: float) -> tuple[Counter[str], list[str]]:
    """Non-200 answers between t0 and t1 by path and kind, and the unexpected ones."""
    counts: Counter[str] = Counter()
    unexpected: list[str] = []
    for _, path, what in run.load.ledger.answers_between(t0, t1):
        counts[f"{path} {what}"] += 1
        if what != "no-data":
            unexpected.append(f"{path}: {what}")
    return counts, unexpected


#: /stream waits for ring bytes and /generate polls for them: under load the waiting streams
#: can take all of VirtIO's share, so of these two paths one serving is enough.
ONE_OF: Final = ("virtio-stream", "virtio-generate")
SERVE_TIMEOUT_S: Final = 15.0


def _judge(run: LoadRun, served: list[Served]) -> dict[str, Judgement]:
    """The oracle's verdict per chip path; what clients got must be unique, what the API got
    from the controller is those same bytes on their way in."""
    return {
        path: run.book.judge(chunks_of(served, path), once=path != SEEDING_PATH)
        for path in CHIP_PATHS
    }


@pytest.mark.stack
def test_the_stack_serves_every_path_under_load(load_run: LoadRun) -> None:
    """Before any fault: every path serves, all of it good chip output, every answer in the
    contract."""
    run = load_run
    ledger = run.load.ledger
    start = time.monotonic()

    def silent() -> list[str]:
        served = {s.path for s in ledger.since(0)}
        missing = [p for p in (*PATHS, SEEDING_PATH) if p not in served and p not in ONE_OF]
        return missing + ([] if served.intersection(ONE_OF) else ["virtio"])

    while silent() and time.monotonic() - start < SERVE_TIMEOUT_S:
        time.sleep(0.1)
    assert not silent(), f"paths that served nothing in {SERVE_TIMEOUT_S:g} s: {silent()}"
    served = ledger.since(run.judged)
    run.judged += len(served)
    run.collector.collect()
    total = Judgement()
    for path, verdict in _judge(run, served).items():
        total.add(verdict, prefix=f"{path}: ")
    assert total.good_bytes > 0
    assert not total.bad_bytes, f"bad samples served without a fault: {total.bad[:5]}"
    assert not total.unknown_bytes, f"bytes from no chip payload: {total.unknown[:5]}"
    assert not total.twice_bytes, f"chip bytes served twice: {total.twice[:5]}"
    _, unexpected = _answers(run, 0.0, time.monotonic())
    assert not unexpected, f"answers outside the contract: {Counter(unexpected)}"


@dataclass
class Outcome:
    """One campaign under load: rates per group (B/s), recoveries (s), the oracle, answers."""

    baseline: dict[str, float]
    during: dict[str, float]
    recovered: dict[str, float | None]
    healthy_s: float
    verdicts: dict[str, Judgement]
    answers: Counter[str]
    unexpected: list[str]

    @property
    def judged(self) -> list[str]:
        """The groups judged on throughput whose baseline is enough to judge a recovery on."""
        return [g for g in JUDGED if self.baseline[g] >= MIN_BASELINE_BPS]

    def slowest(self, bound_s: float) -> float:
        late = [bound_s if self.recovered[p] is None else self.recovered[p] for p in self.judged]
        return max([self.healthy_s, *(t for t in late if t is not None)])

    def total(self) -> Judgement:
        total = Judgement()
        for path, verdict in self.verdicts.items():
            total.add(verdict, prefix=f"{path}: ")
        return total


def _run(campaign: Campaign, run: LoadRun, bound_s: float) -> Outcome:
    ledger, chaos = run.load.ledger, run.chaos
    run.stack.wait_healthy(bound_s)
    mark = ledger.mark()
    t0 = time.monotonic()
    time.sleep(BASELINE_S)
    t1 = time.monotonic()
    injected = chaos.inject(campaign.kind, campaign.params)
    assert injected.get("kind") == campaign.kind, injected
    try:
        time.sleep(FAULT_S)
    finally:
        t2 = time.monotonic()
        chaos.clear()
        if campaign.power_cycle:
            chaos.power_cycle()
    baseline = {name: ledger.rate(paths, t0, t1, mark) for name, paths in GROUPS.items()}
    during = {name: ledger.rate(paths, t1, t2, mark) for name, paths in GROUPS.items()}
    recovered, healthy_s = _recover(run, mark, baseline, t2, bound_s)
    t3 = time.monotonic()
    # the oracle, over everything served since the previous campaign's verdict
    served = ledger.since(run.judged)  # first: each payload is in the trace before it is served
    run.judged += len(served)
    run.collector.collect()
    verdicts = _judge(run, served)
    answers, unexpected = _answers(run, t0, t3)
    return Outcome(baseline, during, recovered, healthy_s, verdicts, answers, unexpected)


def _record(outcome: Outcome, run: LoadRun, bound_s: float, record_property: Any) -> None:
    def mbps(rates: dict[str, float], group: str) -> str:
        return f"{rates[group] / MB:.4f}"

    record_property(LOAD_CHIP_BASELINE_PROPERTY, mbps(outcome.baseline, "chip"))
    record_property(LOAD_CHIP_FAULT_PROPERTY, mbps(outcome.during, "chip"))
    record_property(LOAD_FORTUNA_BASELINE_PROPERTY, mbps(outcome.baseline, "api-fortuna"))
    record_property(LOAD_FORTUNA_FAULT_PROPERTY, mbps(outcome.during, "api-fortuna"))
    record_property(LOAD_RECOVERY_PROPERTY, f"{outcome.slowest(bound_s):.3f}")

    def path_figures(group: str) -> str:
        rates = f"{mbps(outcome.baseline, group)}/{mbps(outcome.during, group)} MB/s"
        back = outcome.recovered[group]
        if back is not None:
            return f"{group} {rates} back at half in {back:.2f} s"
        if outcome.baseline[group] < MIN_BASELINE_BPS:
            return f"{group} {rates} (baseline too low to judge)"
        if group not in JUDGED:
            return f"{group} {rates} not back (reported only)"
        return f"{group} {rates} NOT BACK"

    record_property(LOAD_PATHS_PROPERTY, "; ".join(map(path_figures, GROUPS)))
    total, book = outcome.total(), run.book
    record_property(
        LOAD_SAMPLES_PROPERTY,
        f"{total.good_bytes} good, {total.bad_bytes} bad, {total.unknown_bytes} unknown, "
        f"{total.twice_bytes} served twice, {total.unattributed_bytes} unattributed bytes "
        f"({outcome.verdicts[SEEDING_PATH].bytes} from the controller to the API); trace so "
        f"far: {book.good} good payloads, bad {dict(book.bad)}, gaps {book.gaps}",
    )
    counts = sorted(outcome.answers.items())
    record_property(LOAD_ANSWERS_PROPERTY, ", ".join(f"{n}x {k}" for k, n in counts))


@pytest.mark.stack
def test_fault_under_load(
    load_campaign: Campaign,
    load_run: LoadRun,
    recovery_bound_s: float,
    record_property: Any,
) -> None:
    campaign, run, bound_s = load_campaign, load_run, recovery_bound_s
    record_property(LOAD_FAULT_PROPERTY, campaign.id)
    record_property(RECOVERY_BOUND_PROPERTY, f"{bound_s:g}")
    outcome = _run(campaign, run, bound_s)
    _record(outcome, run, bound_s, record_property)

    name = f"{campaign.id} ({campaign.why})"
    total = outcome.total()
    assert not total.bad_bytes, f"{name}: bad samples served: {total.bad[:5]}"
    assert not total.unknown_bytes, (
        f"{name}: bytes served that no Random response explains (trace gaps {run.book.gaps}): "
        f"{total.unknown[:5]}"
    )
    assert not total.twice_bytes, f"{name}: chip bytes served twice: {total.twice[:5]}"
    assert not outcome.unexpected, (
        f"{name}: answers outside the contract: {Counter(outcome.unexpected)}"
    )
    assert outcome.healthy_s <= bound_s, (
        f"{name}: the stack was not healthy {bound_s:g} s after the fault was cleared: "
        f"{run.stack.unhealthy(run.http)}"
    )
    late = [p for p in outcome.judged if outcome.recovered[p] is None]
    assert not late, (
        f"{name}: throughput did not return to {RECOVERY_FRACTION:.0%} of the baseline within "
        f"{bound_s:g} s on {late}; baseline B/s "
        f"{ {p: round(outcome.baseline[p]) for p in outcome.judged} }"
    )


# -- the oracle on its own (no stack) ------------------------------------------------------------


def _random_records(*responses: tuple[bytes, str, list[str]]) -> list[dict[str, Any]]:
    """Trace records: one Random command per response (data, outcome, faults)."""
    command = "03071b00000024cd"
    records: list[dict[str, Any]] = []
    for data, outcome, faults in responses:
        for direction, payload, result, touched in (
            ("w", command, "ack", []),
            ("r", data.hex(), outcome, faults),
        ):
            records.append(
                {"xfer": len(records), "i": 0, "addr": 0x60, "dir": direction, "data": payload,
                 "outcome": result, "faults": touched}
            )  # fmt: skip
    return records


def _response(payload: bytes, count: int = 0x23) -> bytes:
    body = bytes([count]) + payload
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


@pytest.mark.parametrize("conditioning", [True, False])
def test_the_oracle_tells_good_from_bad_in_the_form_served(conditioning: bool) -> None:
    good = [hashlib.sha256(bytes([n])).digest() for n in range(4)]
    damaged = bytearray(_response(hashlib.sha256(b"crc").digest()))
    damaged[-1] ^= 1
    book = TraceBook(conditioning)
    book.feed(
        _random_records(
            *((_response(g), "ack", []) for g in good),
            (_response(b"\xff" * 32), "ack", []),  # stuck: all 0xFF, CRC fine
            (_response(TEST_PATTERN), "ack", []),  # the unlocked chip's pattern
            (bytes(damaged), "ack", []),  # a wrong CRC
            (_response(good[0]), "ack", []),  # the chip repeats an earlier payload
        )
    )
    form = book.served_form
    stream = b"".join(form(g) for g in good[1:])
    verdict = book.judge([stream[5:], form(good[1]) + form(good[2])])
    assert (verdict.good_bytes, verdict.bad_bytes, verdict.unknown_bytes) == (
        len(stream) - 5 + 64,
        0,
        0,
    )
    assert verdict.unattributed_bytes == 0 or verdict.unattributed_bytes < WINDOW
    assert verdict.twice_bytes == 27 + 32  # the second string serves good[1:3] again
    for bad in (b"\xff" * 32, TEST_PATTERN, bytes(damaged[1:33]), good[0]):
        judged = book.judge([form(good[3])[:20] + form(bad)])
        assert judged.bad_bytes == 32, (bad.hex(), judged)
    assert book.judge([b"\x00" * 31 + bytes(range(40))]).unknown_bytes == 71
    again = book.judge([stream[40:50]])  # served in the first verdict already
    assert again.twice_bytes == 10, again


def test_a_payload_damaged_only_on_the_bus_is_good_once_read_again_intact() -> None:
    payload = hashlib.sha256(b"flip").digest()
    intact = _response(payload)
    flipped = bytearray(intact)
    flipped[-2] ^= 0x10  # the flip hit the CRC: the 32 bytes are the chip's own
    book = TraceBook(conditioning=True)
    records = _random_records((bytes(flipped), "ack", ["bit_flip"]))
    records.append({**records[-1], "xfer": 2, "data": intact.hex(), "faults": []})
    book.feed(records)
    verdict = book.judge([book.served_form(payload)])
    assert (verdict.good_bytes, verdict.bad_bytes) == (32, 0), verdict
    assert book.bad == Counter({"damaged on the bus": 1})


@dataclass
class _Report:
    nodeid: str
    user_properties: list[tuple[str, object]]
    when: str | None = "call"
    outcome: str = "passed"
    duration: float = 0.0


def test_the_load_table_has_one_row_per_campaign_from_its_properties() -> None:
    properties: list[tuple[str, object]] = [
        (LOAD_FAULT_PROPERTY, "brown_out"),
        (LOAD_CHIP_BASELINE_PROPERTY, "0.0060"),
        (LOAD_CHIP_FAULT_PROPERTY, "0.0000"),
        (LOAD_FORTUNA_BASELINE_PROPERTY, "30.1"),
        (LOAD_FORTUNA_FAULT_PROPERTY, "29.9"),
        (LOAD_RECOVERY_PROPERTY, "1.250"),
        (RECOVERY_BOUND_PROPERTY, "10"),
    ]
    reports = [
        _Report("t.py::a", properties[:1]),  # setup: no figures yet
        _Report("t.py::a", properties),
        _Report("t.py::b", [("fault", "nack")]),  # another suite's campaign
    ]
    assert load_rows(reports) == [("brown_out", "0.0060", "0.0000", "30.1", "29.9", "1.250", "10")]
    assert len(LOAD_COLUMNS) == len(load_rows(reports)[0])

"""Fault campaigns through the controller's chaos API: break a running stack, watch, mend it.

For every fault kind ``GET /sim/faults/kinds`` lists (``conformance.campaigns`` says what each
campaign injects and what it must cause):

1. the stack is healthy; ``/info``'s state and transition counts are noted;
2. the fault is injected (``POST /sim/faults``), and for a short window ``GET /generate`` is
   called again and again: every answer is 200 with samples a healthy chip could produce
   (``conformance.samples``), or 503 with Retry-After; nothing else, and never a bad sample;
3. the state machine did what the diagram says (lokey.controller ``ALLOWED_TRANSITIONS``): every
   counted transition is in it, the counts form one walk from the state before to the state now,
   and a disruptive fault took the controller out of HEALTHY and kept it out;
4. the fault is cleared (and the chip power-cycled when the fault latches in it); the time until
   the stack is healthy and serves a good sample again is the recovery time, which must stay
   within ``--recovery-bound``. It is recorded as the test's ``recovery_s`` property (JUnit XML)
   and shown in the end-of-run table.

Parametrised from the live list: with ``--stack`` it is fetched from that stack at collection
time; our own controller runs this installed LoKey, so its list is ``lokey.backends.fault_kinds``
(and ``test_the_chaos_api_lists_every_expected_fault_kind`` checks that the process agrees).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest

from conformance.campaigns import CAMPAIGNS, EXPECTED_KINDS, Campaign, campaigns_for, walk_problems
from conformance.plugin import STACK_URL
from conformance.samples import repeated_sample, sample_problem, samples_of
from conformance.stack import ChaosClient, StackClient, StackError
from conformance.summary import FAULT_PROPERTY, RECOVERY_BOUND_PROPERTY, RECOVERY_PROPERTY
from lokey.controller import ALLOWED_TRANSITIONS, DeviceState

ALLOWED: Final = frozenset((a.value, b.value) for a, b in ALLOWED_TRANSITIONS)
STATES: Final = frozenset(state.value for state in DeviceState)
HEALTHY: Final = DeviceState.HEALTHY.value
LEAVING_HEALTHY: Final = tuple(f"{HEALTHY}->{s}" for s in ("failed", "circuit_open"))
REVALIDATED: Final = f"{DeviceState.VALIDATING.value}->{HEALTHY}"
SAMPLES_PER_REQUEST: Final = 4
WINDOW_S: Final = 0.3  # shortest time a fault stays installed
MIN_REQUESTS: Final = 5  # fewest /generate calls while it is
DISRUPTION_TIMEOUT_S: Final = 5.0  # longest wait for a disruptive fault to show
GENERATE_ERROR: Final = "Failed to generate random data"  # spec §2
_KINDS = pytest.StashKey[list[str]]()

pytestmark = pytest.mark.stack


def _live_kinds(config: pytest.Config) -> list[str]:
    if _KINDS not in config.stash:
        url = config.stash.get(STACK_URL, None)
        if url is None:
            from lokey.backends import fault_kinds  # noqa: PLC0415 - the emulator, on demand

            kinds = sorted(fault_kinds())
        else:
            with ChaosClient(url) as client:
                kinds = sorted(client.kinds()) if client.available() else []
        config.stash[_KINDS] = kinds
    return config.stash[_KINDS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "campaign" in metafunc.fixturenames:
        found = campaigns_for(_live_kinds(metafunc.config))
        ids = [c.id if isinstance(c, Campaign) else c for c in found]
        metafunc.parametrize("campaign", found, ids=ids)


# -- observing the stack ---------------------------------------------------------------------------


def _info(client: StackClient, timeout_s: float = 5.0) -> dict[str, Any]:
    """A fresh ``/info`` (not the stale snapshot served while the controller is busy)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.info()
        if not info.get("stale") and isinstance(info.get("counters"), dict):
            return info
        if time.monotonic() > deadline:
            raise StackError(f"/info stayed stale for {timeout_s:g} s: {info}")
        time.sleep(0.02)


def _state(info: dict[str, Any]) -> str:
    return str(info["state"]["name"])


def _transitions(info: dict[str, Any]) -> dict[str, int]:
    counts = info["counters"]["transitions"]
    assert isinstance(counts, dict), f"/info counters.transitions: {counts!r}"
    return {str(k): int(v) for k, v in counts.items()}


def _taken(before: dict[str, Any], after: dict[str, Any], *keys: str) -> int:
    a, b = _transitions(before), _transitions(after)
    return sum(b.get(k, 0) - a.get(k, 0) for k in keys)


def _left_healthy(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Transitions out of HEALTHY between two snapshots (allowed or not: the walk judges them)."""
    a, b = _transitions(before), _transitions(after)
    return sum(n - a.get(k, 0) for k, n in b.items() if k.startswith(f"{HEALTHY}->"))


@dataclass
class Observed:
    """What the stack did while a fault was installed."""

    statuses: Counter[int] = field(default_factory=Counter)
    served: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    def answer(self, response: httpx.Response, count: int) -> bool:
        """Check one ``/generate`` answer; True when it served samples."""
        self.statuses[response.status_code] += 1
        if response.status_code == 503:
            body = response.json()
            if body.get("error") != GENERATE_ERROR or "retry-after" not in response.headers:
                self.unexpected.append(f"503 without the error body or Retry-After: {body}")
            return False
        if response.status_code != 200:
            self.unexpected.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return False
        for sample in samples_of(response.json(), count):
            problem = sample_problem(sample)
            if problem is not None:
                self.bad.append(problem)
            elif isinstance(sample, str):
                self.served.append(sample)
        return True

    def state(self, info: dict[str, Any]) -> None:
        name = _state(info)
        if not self.states or self.states[-1] != name:
            self.states.append(name)


def _recover(client: StackClient, observed: Observed, started: float, bound_s: float) -> float:
    """Seconds from ``started`` until ``/health`` is 200 and ``/generate`` serves a good sample."""
    deadline = started + bound_s
    while True:
        if client.healthy():
            response = client.generate(1)
            if observed.answer(response, 1):
                return time.monotonic() - started
        if time.monotonic() > deadline:
            return time.monotonic() - started
        time.sleep(0.005)


# -- the suite -------------------------------------------------------------------------------------


def test_the_chaos_api_lists_every_expected_fault_kind(
    chaos: ChaosClient, request: pytest.FixtureRequest
) -> None:
    live = chaos.kinds()
    missing = sorted(EXPECTED_KINDS - set(live))
    assert not missing, f"GET /sim/faults/kinds lacks: {', '.join(missing)}"
    assert sorted(live) == _live_kinds(request.config), "the campaign ran from another list"
    for name, kind in live.items():
        assert kind.get("target") in ("chip", "bus"), f"{name}: {kind}"
        assert isinstance(kind.get("params"), dict), f"{name}: {kind}"


def test_every_campaign_names_a_fault_kind_the_stack_offers(chaos: ChaosClient) -> None:
    live = set(chaos.kinds())
    unknown = sorted({c.id for c in CAMPAIGNS if c.kind not in live})
    assert not unknown, f"campaigns for kinds the stack does not offer: {unknown}"


@dataclass
class Run:
    """One campaign: ``/info`` before, at the end of the faulted window, and after recovery."""

    campaign: Campaign
    before: dict[str, Any]
    during: dict[str, Any]
    after: dict[str, Any]
    cleared: dict[str, Any]  # DELETE /sim/faults's answer
    observed: Observed  # while the fault was installed
    recovered: Observed  # after it was cleared
    recovery_s: float


def _run(campaign: Campaign, chaos: ChaosClient, client: StackClient, bound_s: float) -> Run:
    client.wait_healthy(bound_s)
    before = _info(client)
    assert _state(before) == HEALTHY, f"not healthy before the fault: {before['state']}"
    observed = Observed()
    injected = chaos.inject(campaign.kind, campaign.params)
    assert injected.get("kind") == campaign.kind, injected
    try:
        started = time.monotonic()
        requests = 0
        while True:
            observed.answer(client.generate(SAMPLES_PER_REQUEST), SAMPLES_PER_REQUEST)
            requests += 1
            during = _info(client)
            observed.state(during)
            elapsed = time.monotonic() - started
            if observed.bad or observed.unexpected or elapsed > DISRUPTION_TIMEOUT_S:
                break  # the verdict is in (or the fault never showed)
            shown = campaign.effect != "disrupts" or _left_healthy(before, during) > 0
            if elapsed >= WINDOW_S and requests >= MIN_REQUESTS and shown:
                break
    finally:
        cleared_at = time.monotonic()
        cleared = chaos.clear()
        if campaign.power_cycle:
            chaos.power_cycle()
    recovered = Observed()
    recovery_s = _recover(client, recovered, cleared_at, bound_s)
    after = _info(client)
    observed.state(after)
    return Run(campaign, before, during, after, cleared, observed, recovered, recovery_s)


def _check_answers(run: Run) -> None:
    """Never a bad sample, never an answer the API does not promise."""
    name, observed, recovered = run.campaign.id, run.observed, run.recovered
    bad = observed.bad + recovered.bad
    assert not bad, f"{name}: bad samples served: {bad[:5]}"
    twice = repeated_sample(observed.served + recovered.served)
    assert twice is None, f"{name}: the sample {twice} was served twice"
    unexpected = observed.unexpected + recovered.unexpected
    assert not unexpected, f"{name}: {unexpected[:5]}"


def _check_states(run: Run) -> None:
    """The state machine went where the diagram says, for this fault's effect."""
    campaign, observed = run.campaign, run.observed
    before, during, after = run.before, run.during, run.after
    name = f"{campaign.id} ({campaign.why})"
    unknown = sorted(set(observed.states) - STATES)
    assert not unknown, f"{name}: /info reported unknown states {unknown}"
    problems = walk_problems(
        _state(before), _state(during), _transitions(before), _transitions(during), ALLOWED
    )
    problems += walk_problems(
        _state(before), _state(after), _transitions(before), _transitions(after), ALLOWED
    )
    assert not problems, f"{name}: {problems}; states seen {observed.states}"
    if campaign.effect == "disrupts":
        assert _taken(before, during, *LEAVING_HEALTHY) > 0, (
            f"{name}: the controller never left {HEALTHY}; states seen {observed.states}, "
            f"answers {dict(observed.statuses)}"
        )
        assert _taken(before, during, REVALIDATED) == 0, (
            f"{name}: a recovery validated the chip while the fault was installed; "
            f"transitions {_transitions(during)}"
        )
    elif campaign.effect == "tolerated":
        assert set(observed.statuses) == {200}, (
            f"{name} must be absorbed; answers {dict(observed.statuses)}"
        )
        assert _transitions(during) == _transitions(before), (
            f"{name}: the state changed: {observed.states}"
        )
    if campaign.power_cycle:
        latched = run.cleared.get("latched")
        assert isinstance(latched, dict), f"{name}: DELETE /sim/faults: {run.cleared}"
        assert any(latched.values()), f"{name}: the chip's latched state is not reported"


def test_fault_campaign(
    campaign: Campaign | str,
    chaos: ChaosClient,
    stack_client: StackClient,
    recovery_bound_s: float,
    record_property: Any,
) -> None:
    if not isinstance(campaign, Campaign):
        pytest.fail(
            f"GET /sim/faults/kinds offers {campaign!r}, which has no campaign: add one to "
            "conformance/campaigns.py saying what it must cause"
        )
    record_property(FAULT_PROPERTY, campaign.id)
    run = _run(campaign, chaos, stack_client, recovery_bound_s)
    record_property(RECOVERY_PROPERTY, f"{run.recovery_s:.3f}")
    record_property(RECOVERY_BOUND_PROPERTY, f"{recovery_bound_s:g}")
    record_property("states_seen", " > ".join(run.observed.states))
    answers = sorted(run.observed.statuses.items())
    record_property("answers_while_faulted", ", ".join(f"{n}x {code}" for code, n in answers))
    _check_answers(run)
    _check_states(run)
    healthy_in_time = _state(run.after) == HEALTHY and run.recovery_s <= recovery_bound_s
    assert healthy_in_time, (
        f"{campaign.id}: not healthy and serving {run.recovery_s:.2f} s after the fault was "
        f"cleared (bound {recovery_bound_s:g} s); state {run.after['state']}"
    )

"""The fault campaigns: one or more per fault kind of the chaos API, and what each must cause.

Every kind ``GET /sim/faults/kinds`` lists has a main campaign (test id = the kind) that keeps
the fault in place until it is cleared; some kinds have variants (``kind-variant``) that fire
once, intermittently, or with other parameters. ``effect`` is what the controller's state
machine (lokey.controller, spec/service-api.md §2.1) must do while the fault is installed:

* ``disrupts``: no healthy chip answers like this, so the controller must leave HEALTHY and no
  recovery may validate the device (no VALIDATING -> HEALTHY) until the fault is cleared;
* ``tolerated``: the driver absorbs it (a slow bus, a slow chip): every request is served and the
  state never changes;
* ``any``: a fault that fires once or now and then: the controller may fail and recover on its
  own; only the invariants below are checked.

Whatever the effect: no bad sample is ever served (``conformance.samples``), every transition
the controller counts is in the diagram, the counts form one walk from the state before the
fault to the state after recovery, and after the fault is cleared (and the chip power-cycled,
for a fault the chip latches) the controller is healthy again within the recovery bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CAMPAIGNS",
    "EXPECTED_KINDS",
    "Campaign",
    "Effect",
    "campaigns_for",
    "walk_problems",
]

Effect = Literal["disrupts", "tolerated", "any"]

_CHIP: Final = 0x60  # the ATECC608A's address (spec §1.1)
_EVERY: Final = {"every_nth": 1}
_EVERY_THIRD: Final = {"every_nth": 3}


@dataclass(frozen=True)
class Campaign:
    """Inject ``kind`` with ``params`` through ``POST /sim/faults`` and expect ``effect``."""

    kind: str
    params: Mapping[str, object]
    effect: Effect
    why: str
    variant: str = ""  # empty: the kind's main campaign
    #: The chip latches the fault: clearing removes the cause, a power cycle the state.
    power_cycle: bool = False

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.variant}" if self.variant else self.kind


CAMPAIGNS: Final[tuple[Campaign, ...]] = (
    # -- chip faults (sim.atecc608a.faults) ------------------------------------------------------
    Campaign(
        "forced_status",
        {"count": None},
        "disrupts",
        "every command answers EXECUTION_ERROR (0x0F)",
    ),
    Campaign("forced_status", {}, "any", "one command answers EXECUTION_ERROR", variant="once"),
    Campaign(
        "corrupt_response_crc",
        {"count": None},
        "disrupts",
        "every response has a wrong CRC (a re-read returns the same bytes)",
    ),
    Campaign("corrupt_response_crc", {}, "any", "one wrong CRC", variant="once"),
    Campaign(
        "wrong_count",
        {"count": None},
        "disrupts",
        "every response's count byte is one too many, with a CRC over the bytes as sent",
    ),
    Campaign("wrong_count", {}, "any", "one wrong count byte", variant="once"),
    Campaign("stuck_output", {}, "disrupts", "the RNG returns FF x 32 with a valid CRC"),
    Campaign(
        "stuck_output", {"block": "00"}, "disrupts", "the RNG returns 00 x 32", variant="zeros"
    ),
    Campaign(
        "stuck_output",
        {"block": "ffff0000"},
        "disrupts",
        "a locked chip returns the unlocked chip's test pattern",
        variant="test-pattern",
    ),
    Campaign(
        "stuck_output",
        {"block": "3a9c1f4e7b2d8e605f1ac3b7942de8017c6b5a49382716f5e4d3c2b1a0918273"},
        "disrupts",
        "the RNG repeats one random-looking 32-byte block",
        variant="repeated-block",
    ),
    Campaign(
        "rng_health_failure",
        {},
        "disrupts",
        "the RNG health test latches: Random answers 0x08 until a power cycle",
        power_cycle=True,
    ),
    Campaign(
        "rng_health_failure",
        {"after_calls": 5},
        "disrupts",
        "the health test latches after five more good Random commands",
        variant="later",
        power_cycle=True,
    ),
    Campaign(
        "self_test_failure",
        {"persistent": True},
        "disrupts",
        "the RNG self-test fails on every wake until the hardware is mended",
    ),
    Campaign(
        "self_test_failure",
        {},
        "any",
        "a transient self-test failure: the next wake from sleep clears it",
        variant="transient",
    ),
    Campaign(
        "brown_out",
        {"count": None},
        "disrupts",
        "power dips during every command: no response, the chip resets",
    ),
    Campaign("brown_out", {}, "any", "one brown-out", variant="once"),
    Campaign(
        "lost_command",
        {"count": None},
        "disrupts",
        "every command is lost: the wake group 04 11 33 43 comes back instead",
    ),
    Campaign("lost_command", {}, "any", "one lost command", variant="once"),
    Campaign(
        "extra_busy",
        {"count": None, "seconds": 0.01},
        "tolerated",
        "every command takes 10 ms longer than the datasheet's typical time",
    ),
    Campaign("wake_ignored", {}, "disrupts", "the chip never sees a wake pulse"),
    Campaign("wake_ignored", {"count": 1}, "any", "one wake pulse is missed", variant="once"),
    # -- bus faults (sim.i2c_bus.faults) ---------------------------------------------------------
    Campaign(
        "nack",
        {"address": _CHIP, "schedule": _EVERY},
        "disrupts",
        "the chip's address is never acknowledged",
    ),
    Campaign(
        "nack",
        {"address": _CHIP, "schedule": {"probability": 0.3, "seed": 1}},
        "any",
        "30 % of the chip's messages are not acknowledged",
        variant="intermittent",
    ),
    Campaign(
        "bit_flip",
        {"address": _CHIP, "schedule": _EVERY},
        "disrupts",
        "a bit of every read from the chip flips",
    ),
    Campaign(
        "bit_flip",
        {"address": _CHIP, "schedule": _EVERY_THIRD},
        "any",
        "a bit of every third read flips",
        variant="intermittent",
    ),
    Campaign(
        "corrupt_byte",
        {"address": _CHIP, "schedule": _EVERY},
        "disrupts",
        "a byte of every read from the chip is replaced",
    ),
    Campaign(
        "corrupt_byte",
        {"address": _CHIP, "schedule": _EVERY_THIRD, "value": 0xFF},
        "any",
        "a byte of every third read becomes 0xFF",
        variant="intermittent",
    ),
    Campaign(
        "truncated_read",
        {"address": _CHIP, "schedule": _EVERY, "after": 1},
        "disrupts",
        "every read loses all but its first byte (the pull-up reads 0xFF)",
    ),
    Campaign(
        "truncated_read",
        {"address": _CHIP, "schedule": _EVERY_THIRD, "after": 1},
        "any",
        "every third read is truncated",
        variant="intermittent",
    ),
    Campaign(
        "stuck_bus",
        {},
        "disrupts",
        "floating SDA: every address ACKed, writes vanish, every byte reads 0xFF",
    ),
    Campaign("sda_low", {}, "disrupts", "SDA held low: every transfer fails with EIO"),
    Campaign(
        "sda_low",
        {"errno": "ETIMEDOUT"},
        "disrupts",
        "SDA held low on an adapter that reports ETIMEDOUT",
        variant="etimedout",
    ),
    Campaign(
        "latency",
        {"seconds": 0.001},
        "tolerated",
        "every message waits 1 ms on the bus",
    ),
)

#: Every kind the chaos API must offer (each has at least its main campaign above).
EXPECTED_KINDS: Final = frozenset(c.kind for c in CAMPAIGNS)


def campaigns_for(kinds: Iterable[str]) -> list[Campaign | str]:
    """The campaigns for the live ``kinds``, in their order; a kind without one stays a str."""
    out: list[Campaign | str] = []
    for kind in kinds:
        mine = [c for c in CAMPAIGNS if c.kind == kind]
        out.extend(mine if mine else [kind])
    return out


def walk_problems(
    start: str,
    end: str,
    before: Mapping[str, int],
    after: Mapping[str, int],
    allowed: Collection[tuple[str, str]],
) -> list[str]:
    """What is wrong with the transitions counted between two ``/info`` snapshots.

    ``before`` / ``after`` are ``/info``'s ``counters.transitions`` (``"from->to": n``, counted
    since start). The differences must be transitions of the diagram (``allowed``) and must
    form one walk from ``start`` to ``end``: each state entered as often as it was left, except
    ``start`` (left once more) and ``end`` (entered once more). Empty list: all is well.
    """
    problems: list[str] = []
    balance: Counter[str] = Counter()
    for key in sorted(set(before) | set(after)):
        taken = after.get(key, 0) - before.get(key, 0)
        if taken == 0:
            continue
        if taken < 0:
            problems.append(f"the count of {key} went down by {-taken}")
            continue
        source, arrow, target = key.partition("->")
        if not arrow:
            problems.append(f"{key!r} is not a 'from->to' transition")
            continue
        if (source, target) not in allowed:
            problems.append(f"{key} ({taken}x) is not a transition of the state diagram")
        balance[source] += taken
        balance[target] -= taken
    if start != end:
        balance[start] -= 1
        balance[end] += 1
    unbalanced = {state: n for state, n in sorted(balance.items()) if n}
    if unbalanced:
        problems.append(
            f"the transitions do not form a walk from {start} to {end}: "
            f"left minus entered per state {unbalanced}"
        )
    return problems

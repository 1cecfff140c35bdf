"""A record of every message on the virtual bus, cheap enough to leave on in benchmarks.

The trace is the ground truth when a driver and the emulator disagree: it shows what the host
sent, what it received after any injected fault, and which fault touched it. Its JSON-lines form
is stable so that a run can be stored and replayed later.

The bus appends plain tuples to a bounded deque; :class:`TraceRecord` objects are only built when
someone reads the trace. Building a frozen dataclass per message would cost about a microsecond,
which the emulator's throughput budget cannot spare.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "DEFAULT_TRACE_CAPACITY",
    "Direction",
    "Trace",
    "TraceRecord",
]

#: Enough for several seconds of a chip polled flat out, small enough (a few MB) to keep always on.
DEFAULT_TRACE_CAPACITY: Final = 65_536

Direction: TypeAlias = Literal["w", "r"]

#: What the bus appends for one message: the fields of :class:`TraceRecord`, in order.
RawRecord: TypeAlias = tuple[float, int, int, int, Direction, bytes, str, tuple[str, ...]]

_JSON_KEYS: Final = ("t", "xfer", "i", "addr", "dir", "data", "outcome", "faults")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One I2C message as it happened on the wire.

    ``data`` is what the host put in a write message (also when the address was not acknowledged,
    so a replay knows what the driver meant to send), or what the host received in a read after
    any injected fault (empty when the read was not acknowledged). ``outcome`` is ``"ack"``,
    ``"nack"``, ``"wake"`` (a write to address 0x00) or ``"error:<ERRNO name>"`` for an injected
    bus error; ``faults`` names the injected faults that touched the message.
    """

    time: float
    transfer: int
    index: int
    address: int
    direction: Direction
    data: bytes
    outcome: str
    faults: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form, with the short keys that the JSON-lines format promises."""
        return {
            "t": self.time,
            "xfer": self.transfer,
            "i": self.index,
            "addr": self.address,
            "dir": self.direction,
            "data": self.data.hex(),
            "outcome": self.outcome,
            "faults": list(self.faults),
        }

    def to_json(self) -> str:
        """One line of JSON (no newline), compact so that long traces stay small on disk."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, source: str | bytes | Mapping[str, Any]) -> TraceRecord:
        """Parse one record; anything malformed raises :class:`ValueError` naming the key."""
        obj: Any = json.loads(source) if isinstance(source, str | bytes) else source
        if not isinstance(obj, Mapping):
            raise ValueError(f"a trace record must be a JSON object, not {type(obj).__name__}")
        missing = [key for key in _JSON_KEYS if key not in obj]
        if missing:
            raise ValueError(f"trace record lacks key(s) {', '.join(map(repr, missing))}")
        t = obj["t"]
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise ValueError(f"trace record key 't' must be a number, not {t!r}")
        direction = obj["dir"]
        if direction not in ("w", "r"):
            raise ValueError(f"trace record key 'dir' must be 'w' or 'r', not {direction!r}")
        data = obj["data"]
        if not isinstance(data, str):
            raise ValueError(f"trace record key 'data' must be a hex string, not {data!r}")
        try:
            payload = bytes.fromhex(data)
        except ValueError as exc:
            raise ValueError(f"trace record key 'data' is not hex: {data!r}") from exc
        outcome = obj["outcome"]
        if not isinstance(outcome, str):
            raise ValueError(f"trace record key 'outcome' must be a string, not {outcome!r}")
        faults = obj["faults"]
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise ValueError(f"trace record key 'faults' must be a list of strings, not {faults!r}")
        return cls(
            time=float(t),
            transfer=_int_field(obj, "xfer"),
            index=_int_field(obj, "i"),
            address=_int_field(obj, "addr"),
            direction=direction,
            data=payload,
            outcome=outcome,
            faults=tuple(faults),
        )


def _int_field(obj: Mapping[str, Any], key: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"trace record key {key!r} must be a non-negative integer, not {value!r}")
    return value


class Trace:
    """The bounded message log of one bus (or one loaded from JSON lines).

    Old records fall off the front when the capacity is reached, so an always-on trace cannot
    exhaust memory in a long soak run. A capacity of 0 records nothing.
    """

    __slots__ = ("_buf",)

    def __init__(self, capacity: int = DEFAULT_TRACE_CAPACITY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"trace capacity must be a non-negative integer, not {capacity!r}")
        self._buf: deque[RawRecord] = deque(maxlen=capacity)

    @property
    def capacity(self) -> int:
        """The most records kept; older ones are dropped first."""
        maxlen = self._buf.maxlen
        assert maxlen is not None  # always constructed with a bound
        return maxlen

    @property
    def enabled(self) -> bool:
        """Whether this trace keeps anything at all."""
        return self.capacity > 0

    def records(self) -> list[TraceRecord]:
        """A snapshot of the kept records, oldest first."""
        # deque.copy() runs entirely in C under the GIL, so a bus appending from another thread
        # cannot make it fail with "deque mutated during iteration".
        return [TraceRecord(*raw) for raw in self._buf.copy()]

    def clear(self) -> None:
        """Forget every record (transfer numbers keep counting on the bus)."""
        self._buf.clear()

    def __len__(self) -> int:
        return len(self._buf)

    def __iter__(self) -> Iterator[TraceRecord]:
        return iter(self.records())

    def __repr__(self) -> str:
        return f"Trace({len(self._buf)} records, capacity={self.capacity})"

    def to_jsonl(self) -> str:
        """All kept records as JSON lines (one object per line, each line ending in a newline)."""
        return "".join(record.to_json() + "\n" for record in self.records())

    def write_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Store the trace as JSON lines, e.g. to attach it to a failing CI run."""
        Path(path).write_text(self.to_jsonl(), encoding="utf-8")

    @classmethod
    def read_jsonl(cls, source: str | os.PathLike[str]) -> Trace:
        """Load a trace written by :meth:`to_jsonl` / :meth:`write_jsonl`.

        ``source`` is JSON-lines text, or a path to a file of it. A string is taken as text when
        it is empty or starts with ``{`` (no sensible file name does), otherwise as a path.
        Blank lines are ignored; a malformed line raises :class:`ValueError` with its number.
        """
        if isinstance(source, str) and (not source.strip() or source.lstrip().startswith("{")):
            text = source
        else:
            text = Path(source).read_text(encoding="utf-8")
        records: list[TraceRecord] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(TraceRecord.from_json(line))
            except ValueError as exc:
                raise ValueError(f"trace line {number}: {exc}") from exc
        return cls.from_records(records)

    @classmethod
    def from_records(cls, records: Iterable[TraceRecord], capacity: int | None = None) -> Trace:
        """A trace holding ``records``; by default just large enough to keep all of them."""
        items = list(records)
        trace = cls(max(len(items), 1) if capacity is None else capacity)
        trace._buf.extend(
            (r.time, r.transfer, r.index, r.address, r.direction, r.data, r.outcome, r.faults)
            for r in items
        )
        return trace

    def _sink(self) -> Callable[[RawRecord], None]:
        """The raw append used by the bus on its hot path (a bound C method, no Python frame)."""
        return self._buf.append

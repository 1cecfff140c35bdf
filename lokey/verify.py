"""``lokey verify uniqueness``: no byte string is ever served twice, even while services die.

``python -m lokey.verify uniqueness [--duration S] [--long] [--kill-every S] [--consumers N]
[--seed N] [--data-dir DIR] [--history FILE] [--json]`` starts ``lokey up --fast
--max-restart-delay 1`` as a child (free ports; ``LOKEY_VIRTIO_TRNG_RESERVE_BYTES=0`` and
``VIRTIO_SEEDING_SOURCE=both`` so VirtIO takes TRNG and Fortuna bytes; 16 samples per TRNG
poll), waits for the four health endpoints, then for ``--duration`` seconds (default 20;
``--long``: 300, and a kill every half second) runs concurrent consumers on every path that serves
random bytes:

* ``api-trng`` and ``api-fortuna``: ``GET /api/v1/data`` (binary) through :class:`Client`;
* ``virtio-stream``: ``GET /stream?chunk_size=4096&max_bytes=65536``, again and again;
* ``virtio-generate`` and ``controller-generate``: ``GET /generate?count=4``;
* ``fifo``: reads of the named pipe ``DIR/virtio-rng`` (one reader; a pipe has one stream).

Every path gets its share: the pipe and stream readers, which would drain the VirtIO ring as
fast as it fills, read one second in two (:class:`Phases`), and each path keeps at most its part
of the checker's memory budget per second of the run (:meth:`History.over_budget`), so that a
long run is consumed evenly from start to end.

Meanwhile a killer SIGKILLs a random service (seeded by ``--seed``) every ``--kill-every``
seconds (pids from ``DIR/lokey-up.json``; only a service that answers its health check again
since its last kill, so that every kill cuts live traffic) and the supervisor restarts it.
Every successful response is recorded (``--history FILE`` also writes them as JSON lines,
hex). A request that served nothing is counted per path as *refused* (nothing consumed: 503,
connection refused while a service is down), *lost* (the answer broke off: its bytes may be
consumed and never delivered, which is allowed) or an *error* (anything else). They are
reported, not failures. Progress goes to stderr while it runs.

The checker then looks for any 16-byte window, at any offset, that occurs twice across all the
responses of all paths (a window never spans two responses: those bytes were never served
together; the pipe's bytes between two reopenings count as one response). Exit status: 0 no
duplicate, 1 at least one duplicate, 2 the run could not happen (the stack did not start, bad
options).

:func:`find_duplicates` is the checker on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TextIO, cast

import httpx
import numpy as np
import numpy.typing as npt

from lokey.client import ApiError, ApiUnavailableError, Client, NoDataError

__all__ = [
    "WINDOW",
    "Duplicate",
    "History",
    "Response",
    "RunReport",
    "find_duplicates",
    "main",
]

EXIT_OK: Final = 0
EXIT_DUPLICATES: Final = 1
EXIT_NOT_RUN: Final = 2

WINDOW: Final = 16  # bytes: a repeated window of this size is a duplicate
_WORD: Final = 8  # the checker indexes 8-byte words: a 16-byte window holds an aligned one
_QUERY_BLOCK: Final = 1 << 22  # positions hashed at once (bounds the checker's memory)
_MAX_CANDIDATES: Final = 10_000  # per block: beyond this, data is degenerate anyway
_MAX_EXAMPLES: Final = 20

SERVICES: Final = ("controller", "fortuna", "virtio", "api")
PATHS: Final = (
    "api-trng",
    "api-fortuna",
    "virtio-stream",
    "virtio-generate",
    "controller-generate",
    "fifo",
)
DEFAULT_DURATION_S: Final = 20.0
LONG_DURATION_S: Final = 300.0
DEFAULT_KILL_EVERY_S: Final = 2.0
LONG_KILL_EVERY_S: Final = 0.5
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 5.0
PROBE_TIMEOUT_S: Final = 0.5
PROGRESS_LOG_EVERY_S: Final = 10.0  # when stderr is not a terminal (CI logs)
# The checker holds about four times what it checks; the budget is spread over the run.
MAX_RECORDED_BYTES: Final = 512 << 20
BUDGET_BURST: Final = 1 << 20  # bytes a path may record ahead of its share of the budget
DRAIN_PHASE_S: Final = 1.0  # the pipe and stream readers drain for 1 s, then pause for 1 s
# Restarts wait 1 s (lokey up's default doubles to 30 s): without this a service killed every
# few seconds spends most of a long run waiting to restart.
MAX_RESTART_DELAY_S: Final = 1.0
TRNG_LIMIT: Final = 64  # TRNG is scarce (a poll brings 16 samples): small asks are served often
FORTUNA_LIMIT: Final = 4096
STREAM_QUERY: Final = "/stream?chunk_size=4096&max_bytes=65536"
GENERATE_COUNT: Final = 4
HEALTH_PATHS: Final = {
    "controller": "/health",
    "fortuna": "/health",
    "virtio": "/health",
    "api": "/api/v1/health",
}


# -- the history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """The bytes one response served (``time`` is seconds since the run started)."""

    path: str
    time: float
    data: bytes


Outcome = Literal["refused", "lost", "error"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("refused", "lost", "error")


@dataclass
class History:
    """Everything served, and every request that served nothing, per path; safe to record
    from many threads.

    A request that served nothing is *refused* (certainly nothing was consumed: a 503, a
    connection refused while a service was down), *lost* (sent, but the answer never came or
    broke off: its bytes may have been consumed and never delivered, which is allowed; serving
    them again is not), or an *error* (any other status or an unreadable body).

    Each path may record ``budget_b_s`` bytes per second of the run (plus a burst), so that
    the bytes kept for the checker are spread over the whole run instead of filling up in
    its first minutes; :meth:`over_budget` tells a consumer to pause.
    """

    budget_b_s: float = float("inf")
    clock: Callable[[], float] = time.monotonic
    responses: list[Response] = field(default_factory=list)
    outcomes: dict[str, Counter[Outcome]] = field(default_factory=dict)
    kinds: dict[str, Counter[str]] = field(default_factory=dict)
    path_bytes: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    started: float = field(default=0.0)
    recorded_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def record(self, path: str, data: bytes) -> None:
        if not data:
            return
        response = Response(path, round(self.clock() - self.started, 3), data)
        with self._lock:
            self.responses.append(response)
            self.recorded_bytes += len(data)
            self.path_bytes[path] += len(data)

    def failed(self, path: str, outcome: Outcome, kind: str) -> None:
        with self._lock:
            self.outcomes.setdefault(path, Counter())[outcome] += 1
            self.kinds.setdefault(path, Counter())[kind] += 1

    def kill(self, service: str) -> None:
        with self._lock:
            self.kills[service] += 1

    def over_budget(self, path: str) -> bool:
        if self.recorded_bytes >= MAX_RECORDED_BYTES:
            return True
        allowed = self.budget_b_s * (self.clock() - self.started) + BUDGET_BURST
        return self.path_bytes[path] > allowed

    def write_jsonl(self, handle: TextIO) -> None:
        for r in self.responses:
            handle.write(json.dumps({"path": r.path, "t": r.time, "hex": r.data.hex()}) + "\n")


# -- the checker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Duplicate:
    """A 16-byte window served twice: ``first`` and ``second`` are (response index, offset)."""

    window: bytes
    first: tuple[int, int]
    second: tuple[int, int]
    paths: tuple[str, str]

    def to_json(self) -> dict[str, object]:
        return {
            "window": self.window.hex(),
            "first": {"path": self.paths[0], "response": self.first[0], "offset": self.first[1]},
            "second": {"path": self.paths[1], "response": self.second[0], "offset": self.second[1]},
        }


@dataclass(frozen=True)
class Check:
    """The checker's verdict: how many distinct repeats, and the first few of them."""

    windows_checked: int
    duplicates: int
    examples: tuple[Duplicate, ...]
    truncated: bool = False  # degenerate data: more candidates than were examined


def _words(data: npt.NDArray[np.uint8], start: int, stop: int) -> npt.NDArray[np.uint64]:
    """The little-endian 8-byte word at each position in ``[start, stop)``."""
    out = np.zeros(stop - start, dtype=np.uint64)
    for k in range(_WORD):
        out |= data[start + k : stop + k].astype(np.uint64) << np.uint64(8 * k)
    return out


def _index(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """The sorted words at offsets that are multiples of 8 in chunks of 16 bytes or more, and
    where each is."""
    per_chunk = [
        np.arange(s, e - _WORD + 1, _WORD, dtype=np.int64)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        if e - s >= WINDOW
    ]
    aligned = np.concatenate(per_chunk) if per_chunk else np.zeros(0, dtype=np.int64)
    keys = np.empty(len(aligned), dtype=np.uint64)
    for i in range(0, len(aligned), _QUERY_BLOCK):
        part = aligned[i : i + _QUERY_BLOCK]
        keys[i : i + len(part)] = data[part[:, None] + np.arange(_WORD)].astype(np.uint64) @ (
            np.uint64(1) << (np.arange(_WORD, dtype=np.uint64) * np.uint64(8))
        )
    order = np.argsort(keys, kind="stable")
    keys, aligned = keys[order], aligned[order]

    return keys, aligned


def find_duplicates(chunks: Sequence[bytes], paths: Sequence[str] | None = None) -> Check:
    """Every 16-byte window (any offset) that occurs twice in ``chunks``, windows never
    spanning two chunks.

    Any such window contains an 8-byte word at an offset that is a multiple of 8 within its
    chunk; so the aligned words are indexed (sorted), the word at every offset is looked up,
    and each hit other than a word finding itself is confirmed on the bytes around it.
    """
    names = list(paths) if paths is not None else ["?"] * len(chunks)
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    ends = starts + lengths
    blob = b"".join(chunks)
    data = np.frombuffer(blob + bytes(_WORD), dtype=np.uint8)  # padded: words never overrun
    total = len(blob)
    windows = int(np.maximum(lengths - WINDOW + 1, 0).sum())
    if total < WINDOW:
        return Check(windows, 0, ())

    keys, aligned = _index(data, starts, ends)

    def chunk_of(position: int) -> int:
        return int(np.searchsorted(starts, position, side="right")) - 1

    seen: set[tuple[int, int, int]] = set()
    examples: list[Duplicate] = []
    truncated = False
    for block in range(0, total, _QUERY_BLOCK):
        stop = min(block + _QUERY_BLOCK, total)
        positions = np.arange(block, stop, dtype=np.int64)
        owner = np.searchsorted(starts, positions, side="right") - 1
        fits = positions + _WORD <= ends[owner]
        positions = positions[fits]
        words = _words(data, block, stop)[fits]
        order = np.argsort(words)  # sorted lookups are several times faster than random ones
        words, positions = words[order], positions[order]
        low = np.searchsorted(keys, words, side="left")
        high = np.searchsorted(keys, words, side="right")
        counts = high - low
        hit = counts > 0
        if not hit.any():
            continue
        positions, low, counts = positions[hit], low[hit], counts[hit]
        queries = np.repeat(positions, counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        found = aligned[np.repeat(low, counts) + offsets]
        real = queries != found
        queries, found = queries[real], found[real]
        if len(queries) > _MAX_CANDIDATES:
            truncated = True
            queries, found = queries[:_MAX_CANDIDATES], found[:_MAX_CANDIDATES]
        for q, t in zip(queries.tolist(), found.tolist(), strict=True):
            match = _confirm(blob, starts=starts, ends=ends, chunk_of=chunk_of, q=q, t=t)
            if match is None:
                continue
            a, b = sorted(match)
            ca, cb = chunk_of(a), chunk_of(b)
            key = (ca, cb, b - a)
            if key in seen:
                continue
            seen.add(key)
            if len(examples) < _MAX_EXAMPLES:
                examples.append(
                    Duplicate(
                        window=blob[a : a + WINDOW],
                        first=(ca, a - int(starts[ca])),
                        second=(cb, b - int(starts[cb])),
                        paths=(names[ca], names[cb]),
                    )
                )
    return Check(windows, len(seen), tuple(examples), truncated)


def _confirm(
    blob: bytes,
    *,
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    chunk_of: Callable[[int], int],
    q: int,
    t: int,
) -> tuple[int, int] | None:
    """Where a 16-byte window holding the equal words at ``q`` and ``t`` starts in each chunk,
    or None if the bytes around them differ too soon."""
    cq, ct = chunk_of(q), chunk_of(t)
    lo_q, lo_t = int(starts[cq]), int(starts[ct])
    hi_q, hi_t = int(ends[cq]), int(ends[ct])
    for back in range(WINDOW - _WORD, -1, -1):  # earliest window start first
        a, b = q - back, t - back
        if a < lo_q or b < lo_t or a + WINDOW > hi_q or b + WINDOW > hi_t:
            continue
        if blob[a : a + WINDOW] == blob[b : b + WINDOW]:
            return a, b
    return None


# -- the stack -----------------------------------------------------------------------------------


def _free_ports() -> dict[str, int]:
    sockets: list[socket.socket] = []
    try:
        for _ in SERVICES:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return {name: s.getsockname()[1] for name, s in zip(SERVICES, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Stack:
    """The ``lokey up --fast`` this run started."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    ports: dict[str, int]

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def pids(self) -> dict[str, int | None]:
        try:
            document = json.loads((self.data_dir / "lokey-up.json").read_text())
            return {name: entry["pid"] for name, entry in document["services"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def answers(self, name: str) -> bool:
        try:
            url = self.url(name, HEALTH_PATHS[name])
            return httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    def healthy(self) -> bool:
        return all(self.answers(name) for name in SERVICES)


@contextlib.contextmanager
def running_stack(data_dir: Path, log: TextIO) -> Iterator[Stack]:
    ports = _free_ports()
    argv = [sys.executable, "-m", "lokey.cli", "up", "--fast", "--data-dir", str(data_dir)]
    argv += ["--max-restart-delay", str(MAX_RESTART_DELAY_S)]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    env = dict(os.environ)
    env.update(
        LOKEY_VIRTIO_TRNG_RESERVE_BYTES="0",
        VIRTIO_SEEDING_SOURCE="both",
        LOKEY_TRNG_POLL_SAMPLES="16",  # 512 B per poll, so that TRNG bytes reach every path
        # a 32 KiB ring: it fills past half while its drainers pause, so refills stop and TRNG
        # bytes stay for API clients (the default 16 MiB half never fills: refills never stop)
        VIRTIO_QUEUE_SIZE="1024",
        PYTHONUNBUFFERED="1",
    )
    for name in ("VIRTIO_PIPE_PATH", "DB_PATH", "LOKEY_FORTUNA_SEED_FILE", "LOKEY_BUS_URL"):
        env.pop(name, None)  # the data directory's own, and the --fast emulator
    data_dir.mkdir(parents=True, exist_ok=True)
    output = (data_dir / "verify-up.out").open("wb")
    process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    stack = Stack(process, data_dir, ports)
    try:
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print("lokey up did not stop: killing it", file=log)
                process.kill()
                process.wait()
        for pid in stack.pids().values():  # children of a supervisor that did not stop them
            if pid and process.returncode != 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        output.close()


def _wait_healthy(stack: Stack, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            return False
        if stack.healthy():
            return True
        time.sleep(0.2)
    return False


# -- consumers and the killer --------------------------------------------------------------------


class Phases:
    """When the pipe and stream readers may drain the VirtIO ring: on for one ``period_s``,
    off for the next.

    Both read as fast as the ring fills, so without pauses ``/generate`` would find the ring
    empty, and the API's TRNG queue would go to VirtIO refills instead of API clients. While
    they pause, the ring fills past half, refills stop, and the other paths get their share.
    """

    def __init__(
        self, period_s: float, started: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.period_s = period_s
        self.started = started
        self.clock = clock

    def draining(self) -> bool:
        return int((self.clock() - self.started) / self.period_s) % 2 == 0

    def wait_for_drain(self, stop: threading.Event) -> bool:
        """Wait until the next drain phase; False if the run stopped first."""
        while not self.draining():
            if stop.wait(0.05):
                return False
        return not stop.is_set()


def _classify(error: BaseException) -> tuple[Outcome, str]:
    """What a failed request tells: nothing was served (refused), or the answer may have been
    consumed without arriving (lost), or something else went wrong (error)."""
    if isinstance(error, NoDataError):
        return "refused", "503 no data"
    if isinstance(error, ApiError):
        status = error.status_code
        return ("refused" if status == 503 else "error"), f"http {status}"
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return ("refused" if status == 503 else "error"), f"http {status}"
    cause = error.__cause__ if isinstance(error, ApiUnavailableError) else error
    if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "refused", "connection refused"
    if isinstance(cause, httpx.TransportError):
        return "lost", type(cause).__name__
    return "error", type(error).__name__


def _failed(history: History, path: str, stop: threading.Event, error: BaseException) -> None:
    outcome, kind = _classify(error)
    history.failed(path, outcome, kind)
    # a 503 clears as soon as a poll lands; a dead service takes a restart
    stop.wait(0.05 if "503" in kind else 0.1)


def _paused(history: History, path: str, stop: threading.Event) -> bool:
    if history.over_budget(path):
        stop.wait(0.1)
        return True
    return False


def _api_consumer(stack: Stack, history: History, stop: threading.Event, path: str) -> None:
    source: Literal["trng", "fortuna"] = "trng" if path == "api-trng" else "fortuna"
    limit = TRNG_LIMIT if source == "trng" else FORTUNA_LIMIT
    with Client(stack.url("api"), timeout=HTTP_TIMEOUT_S) as client:
        while not stop.is_set():
            if _paused(history, path, stop):
                continue
            try:
                history.record(path, client.random_bytes(limit, source=source))
            except (ApiError, ApiUnavailableError) as error:
                _failed(history, path, stop, error)


def _stream_consumer(stack: Stack, history: History, stop: threading.Event, phases: Phases) -> None:
    path = "virtio-stream"
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as http:
        while phases.wait_for_drain(stop):
            if _paused(history, path, stop):
                continue
            received = bytearray()
            try:
                with http.stream("GET", stack.url("virtio", STREAM_QUERY)) as answer:
                    answer.raise_for_status()
                    for part in answer.iter_bytes():
                        received += part
                        if stop.is_set() or not phases.draining():
                            break
            except httpx.HTTPError as error:
                _failed(history, path, stop, error)
            history.record(path, bytes(received))  # a broken stream still served its bytes


def _generate_consumer(
    stack: Stack, history: History, stop: threading.Event, service: str, path: str
) -> None:
    url = stack.url(service, f"/generate?count={GENERATE_COUNT}")
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as http:
        while not stop.is_set():
            if _paused(history, path, stop):
                continue
            try:
                answer = http.get(url)
                answer.raise_for_status()
                values = answer.json()["data"]
                samples = [values] if isinstance(values, str) else list(values)
                chunks = [bytes.fromhex(sample) for sample in samples]
            except httpx.HTTPError as error:
                _failed(history, path, stop, error)
                continue
            except (ValueError, KeyError, TypeError):
                history.failed(path, "error", "bad body")
                continue
            # each 32-byte sample is its own response: they are not one contiguous stream
            for chunk in chunks:
                history.record(path, chunk)


def _fifo_consumer(stack: Stack, history: History, stop: threading.Event, phases: Phases) -> None:
    path = "fifo"
    pipe = stack.data_dir / "virtio-rng"
    while not stop.is_set():
        try:
            fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            history.failed(path, "refused", "no pipe")
            stop.wait(0.2)
            continue
        session = bytearray()  # one open: one contiguous stream of bytes
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while len(session) < (1 << 20) and phases.wait_for_drain(stop):
                if _paused(history, path, stop):
                    continue
                if not poller.poll(100):
                    continue
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                if not data:  # the writer went away (virtio killed): reopen
                    history.failed(path, "refused", "eof")
                    stop.wait(0.05)
                    break
                session += data
        finally:
            os.close(fd)
            history.record(path, bytes(session))


def _killer(
    stack: Stack, history: History, stop: threading.Event, every_s: float, rng: random.Random
) -> None:
    killed: dict[str, int] = {}
    while not stop.wait(every_s):
        pids = stack.pids()
        # only a service serving again since its last kill: a kill should cut live traffic
        candidates = [
            name
            for name in SERVICES
            if pids.get(name) and pids.get(name) != killed.get(name) and stack.answers(name)
        ]
        if not candidates:
            continue
        name = rng.choice(candidates)
        pid = pids[name]
        assert pid is not None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed[name] = pid
        history.kill(name)


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class RunReport:
    duration_s: float
    history: History
    check: Check
    checker_s: float

    def paths(self) -> dict[str, dict[str, object]]:
        table: dict[str, dict[str, object]] = {}
        for path in PATHS:
            responses = [r for r in self.history.responses if r.path == path]
            outcomes = self.history.outcomes.get(path, Counter())
            table[path] = {
                "responses": len(responses),
                "bytes": sum(len(r.data) for r in responses),
                **{outcome: outcomes[outcome] for outcome in OUTCOMES},
                "kinds": dict(self.history.kinds.get(path, Counter())),
            }
        return table

    def to_json(self) -> dict[str, object]:
        return {
            "duration_s": round(self.duration_s, 1),
            "paths": self.paths(),
            "kills": dict(self.history.kills),
            "windows_checked": self.check.windows_checked,
            "duplicates": self.check.duplicates,
            "truncated": self.check.truncated,
            "examples": [d.to_json() for d in self.check.examples],
            "checker_s": round(self.checker_s, 2),
        }

    def render(self) -> str:
        lines = [
            f"lokey verify uniqueness: {self.duration_s:.1f} s under SIGKILL",
            f"  {'path':<20}{'responses':>10}{'bytes':>14}{'refused':>9}{'lost':>6}"
            f"{'errors':>8}  what failed",
        ]
        for path, row in self.paths().items():
            kinds = cast(dict[str, int], row["kinds"])
            detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            lines.append(
                f"  {path:<20}{row['responses']:>10}{row['bytes']:>14,}{row['refused']:>9}"
                f"{row['lost']:>6}{row['error']:>8}  {detail}"
            )
        kills = ", ".join(f"{name} {self.history.kills[name]}" for name in SERVICES)
        lines.append(f"  kills: {sum(self.history.kills.values())} ({kills})")
        lines.append(
            f"  16-byte windows checked: {self.check.windows_checked:,} "
            f"({self.checker_s:.1f} s); duplicates: {self.check.duplicates}"
            + (" (truncated: degenerate data)" if self.check.truncated else "")
        )
        for d in self.check.examples:
            lines.append(
                f"    DUPLICATE {d.window.hex()}  {d.paths[0]}#{d.first[0]}+{d.first[1]}  "
                f"{d.paths[1]}#{d.second[0]}+{d.second[1]}"
            )
        lines.append("PASS: no window served twice" if self.check.duplicates == 0 else "FAIL")
        return "\n".join(lines)


class Progress:
    """One status line on stderr: rewritten in place on a terminal, else a line every
    :data:`PROGRESS_LOG_EVERY_S`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.last = 0.0

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.live:
            self.stream.write(f"\r\x1b[K{text}")
        elif force or now - self.last >= PROGRESS_LOG_EVERY_S:
            self.stream.write(text + "\n")
            self.last = now
        else:
            return
        self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _status(history: History, elapsed_s: float, duration_s: float) -> str:
    with history._lock:
        served = history.recorded_bytes
        kills = sum(history.kills.values())
        outcomes: Counter[Outcome] = Counter()
        for counts in history.outcomes.values():
            outcomes.update(counts)
    return (
        f"lokey verify: {elapsed_s:4.0f}/{duration_s:.0f} s, {kills} kills, "
        f"{served / 1e6:.1f} MB served, {outcomes['refused']} refused, "
        f"{outcomes['lost']} lost, {outcomes['error']} errors"
    )


def run(
    data_dir: Path,
    *,
    duration_s: float,
    kill_every_s: float,
    consumers: int,
    seed: int,
    progress: Progress | None = None,
) -> RunReport | str:
    """The whole run; a string says why it could not happen."""
    history = History(budget_b_s=MAX_RECORDED_BYTES / len(PATHS) / duration_s)
    stop = threading.Event()
    show = progress.show if progress is not None else (lambda text, force=False: None)
    with running_stack(data_dir, sys.stderr) as stack:
        show("lokey verify: starting lokey up --fast", force=True)
        if not _wait_healthy(stack, START_TIMEOUT_S):
            code = stack.process.poll()
            return f"lokey up did not become healthy (exit {code}); see {data_dir}/verify-up.out"
        history.started = time.monotonic()
        phases = Phases(DRAIN_PHASE_S, history.started)
        workers: list[threading.Thread] = []

        def spawn(target: Callable[..., None], *args: object) -> None:
            worker = threading.Thread(target=target, args=(stack, history, stop, *args))
            worker.daemon = True
            worker.start()
            workers.append(worker)

        for _ in range(consumers):
            spawn(_api_consumer, "api-trng")
            spawn(_api_consumer, "api-fortuna")
            spawn(_stream_consumer, phases)
            spawn(_generate_consumer, "virtio", "virtio-generate")
            spawn(_generate_consumer, "controller", "controller-generate")
        spawn(_fifo_consumer, phases)
        spawn(_killer, kill_every_s, random.Random(seed))
        end = history.started + duration_s
        while not stop.wait(min(1.0, max(end - time.monotonic(), 0.0))):
            elapsed = time.monotonic() - history.started
            show(_status(history, elapsed, duration_s))
            if elapsed >= duration_s:
                break
        stop.set()
        show("lokey verify: stopping the consumers and lokey up", force=True)
        for worker in workers:
            worker.join(timeout=HTTP_TIMEOUT_S + 2)
        elapsed = time.monotonic() - history.started
    with history._lock:
        responses = list(history.responses)
    windows = sum(max(len(r.data) - WINDOW + 1, 0) for r in responses)
    show(f"lokey verify: checking {windows:,} windows for repeats", force=True)
    began = time.monotonic()
    check = find_duplicates([r.data for r in responses], [r.path for r in responses])
    return RunReport(elapsed, history, check, time.monotonic() - began)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lokey verify", description="Check LoKey's guarantees against a running stack."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    unique = commands.add_parser(
        "uniqueness",
        help="no 16-byte window is ever served twice, on any path, while services are killed",
        description="Consume every path of lokey up --fast while services are SIGKILLed; "
        "fail if any 16-byte window was served twice.",
    )
    unique.add_argument("--duration", type=float, default=None, metavar="S")
    unique.add_argument("--long", action="store_true", help="300 s, a kill every half second")
    unique.add_argument("--kill-every", type=float, default=None, metavar="S")
    unique.add_argument("--consumers", type=int, default=2, metavar="N", help="per HTTP path")
    unique.add_argument("--seed", type=int, default=None, help="the killer's random seed")
    unique.add_argument("--data-dir", type=Path, default=None, metavar="DIR")
    unique.add_argument("--history", type=Path, default=None, metavar="FILE")
    unique.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    duration = args.duration or (LONG_DURATION_S if args.long else DEFAULT_DURATION_S)
    kill_every = args.kill_every or (LONG_KILL_EVERY_S if args.long else DEFAULT_KILL_EVERY_S)
    if duration <= 0 or kill_every <= 0 or args.consumers < 1:
        print("lokey verify: --duration, --kill-every and --consumers must be > 0", file=sys.stderr)
        return EXIT_NOT_RUN
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="lokey-verify-")) if temporary else args.data_dir
    try:
        progress = Progress(sys.stderr)
        try:
            result = run(
                data_dir.absolute(),
                duration_s=duration,
                kill_every_s=kill_every,
                consumers=args.consumers,
                seed=seed,
                progress=progress,
            )
        finally:
            progress.done()
        if isinstance(result, str):
            print(f"lokey verify: {result}", file=sys.stderr)
            return EXIT_NOT_RUN
        if args.history is not None:
            with args.history.open("w") as handle:
                result.history.write_jsonl(handle)
        if args.json:
            print(json.dumps({"seed": seed, **result.to_json()}, indent=2))
        else:
            print(f"(killer seed {seed})")
            print(result.render())
        return EXIT_OK if result.check.duplicates == 0 else EXIT_DUPLICATES
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

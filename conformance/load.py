"""Faults under load: the whole stack on the emulator, consumers on every path, and the oracle.

:class:`LoadStack` starts the four services as processes (``python -m lokey.services NAME``),
as :class:`conformance.stack.LocalController` starts the controller: the controller on
:data:`~conformance.stack.LOCAL_BUS_URL` (instant timing) with
:data:`~conformance.stack.FAST_RECOVERY`, the API polling the controller fast and feeding VirtIO
TRNG bytes only (:data:`API_ENV`), so that every path but ``api-fortuna`` carries chip samples.
The API reaches the controller through a :class:`RecordingProxy`, which records every sample
the controller hands the API: its TRNG polls and the samples it seeds Fortuna with.

:class:`Load` runs consumer threads on every serving path (:data:`PATHS`) as fast as they can,
recording what each response served and when, and every answer that was not a 200.

:class:`TraceBook` is the bad-sample oracle. It reads the controller's bus trace
(``GET /sim/trace``) and finds every Random command and the responses the chip (or the faulted
bus) gave to it. A response is **good** when it arrived acknowledged, untouched by an injected
bus fault, 35 bytes with count 0x23 and a valid CRC, its 32 bytes pass the fault campaigns' own
sample check (:func:`conformance.samples.sample_problem`: not the unlocked chip's test pattern,
not all equal, not over 90 % 0xFF) and are not a payload the chip gave an earlier command too;
any other payload is **bad**, with the reason (a payload damaged only on the way, by a flipped
CRC bit say, is the chip's own when a good read of it exists). The controller releases each
sample SHA-256 conditioned (``/info`` ``config.conditioning``), so the oracle indexes the served
form of every good and bad payload (and the raw form of the bad ones). A served byte string is
cut into pieces of known samples (8 bytes or more, found through an index of every 8-byte
window): any byte of a bad sample served is a violation, and so is a run of 32 or more bytes
that is in no payload the chip produced ("unknown"). Shorter unattributed runs can occur where a
response joins two takes of a queue (a take may end inside a sample); they are counted.

The Fortuna path carries no chip bytes: its throughput and answers are checked, and the seeds it
gets are judged on the way in (:data:`SEEDING_PATH`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx

from conformance.protocol import crc16
from conformance.samples import SAMPLE_BYTES, sample_problem
from conformance.stack import FAST_RECOVERY, LOCAL_BUS_URL, ChaosClient, StackError

__all__ = [
    "API_ENV",
    "CHIP_PATHS",
    "PATHS",
    "SEEDING_PATH",
    "WINDOW",
    "Judgement",
    "Ledger",
    "Load",
    "LoadStack",
    "RecordingProxy",
    "Served",
    "TraceBook",
    "TraceCollector",
    "chunks_of",
    "classify_answer",
    "response_problem",
]

SERVICES: Final = ("controller", "fortuna", "virtio", "api")
HEALTH: Final = {
    "controller": "/health",
    "fortuna": "/health",
    "virtio": "/health",
    "api": "/api/v1/health",
}
#: Every path that serves random bytes, and the chip-sample paths among them.
PATHS: Final = ("api-trng", "api-fortuna", "controller", "virtio-stream", "virtio-generate")
#: What the controller gave the API (its TRNG polls and the Fortuna seeds), as the
#: :class:`RecordingProxy` between them saw it: judged like a path, not a consumer's.
SEEDING_PATH: Final = "controller->api"
CHIP_PATHS: Final = ("api-trng", "controller", "virtio-stream", "virtio-generate", SEEDING_PATH)
#: The API polls the controller fast and gives VirtIO TRNG bytes only (never Fortuna's): then
#: the API's TRNG queue and the VirtIO ring hold nothing but chip samples.
API_ENV: Final[Mapping[str, str]] = {
    "TRNG_POLL_INTERVAL_MS": "1",
    "LOKEY_TRNG_POLL_SAMPLES": "32",  # the poller's share of the chip beside the consumers'
    "FORTUNA_SEED_INTERVAL_SECONDS": "1",
    "FORTUNA_SEED_SAMPLES": "4",
    "VIRTIO_SEEDING_SOURCE": "trng",
    # VirtIO takes what the TRNG queue holds beyond 512 bytes, every 10 ms: the queue's API
    # consumers and VirtIO both get a share
    "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "512",
    "VIRTIO_POLL_INTERVAL_MS": "10",
    "DB_SYNC": "false",
}
#: Variables of an inherited environment that would configure the services behind our back.
_SERVICE_VARIABLES: Final = (
    "LOKEY_",
    "CONTROLLER_",
    "FORTUNA_",
    "VIRTIO_",
    "TRNG_",
    "DB_",
    "I2C_BUS_NUMBER",
    "FORCE_CONFIG",
    "PORT",
    "ALLOW_PEEK",
    "AMPLIFICATION_FACTOR",
    "LOG_LEVEL",
)
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
HTTP_TIMEOUT_S: Final = 5.0
STREAM_READ_TIMEOUT_S: Final = 2.0  # an empty ring makes /stream wait: not an error
NO_DATA_PAUSE_S: Final = 0.02  # after a 503: the consumers stay hungry without spinning

API_TRNG_LIMIT: Final = 512
API_FORTUNA_LIMIT: Final = 65536
GENERATE_COUNT: Final = 8
VIRTIO_GENERATE_COUNT: Final = 1  # the stream consumers drain the ring too
STREAM_QUERY: Final = {"chunk_size": "2048", "max_bytes": "4096"}
#: The documented "no data" answers (service-api.md §1.2, §2, §4): 503, this error, Retry-After.
NO_DATA: Final[Mapping[str, str]] = {
    "api-trng": "No data available",
    "api-fortuna": "No data available",
    "controller": "Failed to generate random data",
    "virtio-generate": "Failed to generate random data: queue may be empty",
    "virtio-stream": "",  # waits for data instead; a 503 only for too many open streams
}

_CHIP: Final = 0x60
_COMMAND_WORD: Final = 0x03
_RANDOM: Final = 0x1B
_RESPONSE_COUNT: Final = 3 + SAMPLE_BYTES  # count byte, 32 bytes, CRC
_DELAYS_ONLY: Final = frozenset({"latency"})  # bus faults that touch a message but not its bytes
WINDOW: Final = 8  # bytes: a piece of a sample is found by its first 8 bytes
UNKNOWN_RUN: Final = SAMPLE_BYTES  # an unattributed run this long is not a junction


def _free_ports(count: int) -> list[int]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


# -- the stack -----------------------------------------------------------------------------------


@dataclass
class LoadStack:
    """The four services as child processes on one emulated chip (the controller's)."""

    processes: dict[str, subprocess.Popen[bytes]]
    ports: dict[str, int]
    workdir: Path
    proxy: RecordingProxy

    @classmethod
    def start(
        cls, workdir: Path, ledger: Ledger, *, timeout_s: float = START_TIMEOUT_S
    ) -> LoadStack:
        """Start all four at once on free ports; wait until every one is healthy.

        The API reaches the controller through a :class:`RecordingProxy` that puts every
        sample the controller gives it into ``ledger`` as :data:`SEEDING_PATH`. Tried three
        times: a free port can be taken between probing and binding it.
        """
        last: StackError | None = None
        for _ in range(3):
            try:
                return cls._start(workdir, ledger, timeout_s)
            except StackError as error:
                last = error
        assert last is not None
        raise last

    @classmethod
    def _start(cls, workdir: Path, ledger: Ledger, timeout_s: float) -> LoadStack:
        workdir.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(SERVICES, _free_ports(len(SERVICES)), strict=True))
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        proxy = RecordingProxy(ports["controller"], ledger)
        base = {k: v for k, v in os.environ.items() if not k.startswith(_SERVICE_VARIABLES)}
        base.update(PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")
        own: dict[str, dict[str, str]] = {
            "controller": {"LOKEY_BUS_URL": LOCAL_BUS_URL, **FAST_RECOVERY},
            "fortuna": {"LOKEY_FORTUNA_SEED_FILE": str(workdir / "fortuna.seed")},
            "virtio": {"VIRTIO_PIPE_PATH": ""},
            "api": {
                "DB_PATH": str(workdir / "api.db"),
                "CONTROLLER_ADDR": proxy.url,
                "FORTUNA_ADDR": urls["fortuna"],
                "VIRTIO_ADDR": urls["virtio"],
                **API_ENV,
            },
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        stack = cls(processes, ports, workdir, proxy)
        try:
            for name in SERVICES:
                with (workdir / f"{name}.log").open("wb") as log:
                    processes[name] = subprocess.Popen(
                        [sys.executable, "-m", "lokey.services", name, "--port", str(ports[name])],
                        cwd=workdir,
                        env={**base, **own[name]},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
            stack.wait_healthy(timeout_s)
        except BaseException:
            stack.stop()
            raise
        return stack

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def output(self, name: str) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def unhealthy(self, client: httpx.Client) -> list[str]:
        """The services not answering 200 on their health route (the API: and "ok")."""
        bad: list[str] = []
        for name in SERVICES:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                bad.append(f"{name} exited with status {process.returncode}")
                continue
            try:
                answer = client.get(self.url(name, HEALTH[name]))
            except httpx.HTTPError as error:
                bad.append(f"{name}: {type(error).__name__}")
                continue
            if answer.status_code != 200:
                bad.append(f"{name}: HTTP {answer.status_code}")
            elif name == "api" and answer.json().get("status") != "ok":
                bad.append(f"api: {answer.json()}")
        return bad

    def wait_healthy(self, timeout_s: float) -> float:
        """Seconds until all four are healthy; StackError (with their logs) after timeout_s."""
        start = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while True:
                bad = self.unhealthy(client)
                if not bad:
                    return time.monotonic() - start
                if any("exited" in b for b in bad) or time.monotonic() - start > timeout_s:
                    logs = "\n".join(f"--- {n} ---\n{self.output(n)[-2000:]}" for n in SERVICES)
                    raise StackError(f"the stack is not healthy: {bad}\n{logs}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to each (API first), killed after 10 s."""
        for name in reversed(SERVICES):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.proxy.close()


_HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class RecordingProxy:
    """An HTTP forwarder from the API to the controller that records every sample served.

    Every ``GET /generate`` answered 200 goes into the ledger as :data:`SEEDING_PATH`: the
    API's TRNG polls and the samples it sends Fortuna as seeds (the API asks the controller for
    fresh samples for each seeding round). Status, headers and body pass through unchanged.
    """

    def __init__(self, controller_port: int, ledger: Ledger) -> None:
        target, record = ("127.0.0.1", controller_port), ledger

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection = http.client.HTTPConnection(*target, timeout=HTTP_TIMEOUT_S)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    status, answer_headers = answer.status, answer.getheaders()
                except OSError:
                    status, answer_headers, data = 502, [], b""
                finally:
                    connection.close()
                if status == 200 and self.path.startswith("/generate"):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        values = json.loads(data)["data"]
                        samples = [values] if isinstance(values, str) else list(values)
                        record.serve(SEEDING_PATH, b"".join(map(bytes.fromhex, samples)), True)
                with contextlib.suppress(OSError):  # the API went away (the stack stops)
                    self.send_response_only(status)
                    for key, value in answer_headers:
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="recording-proxy", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()


# -- the oracle ----------------------------------------------------------------------------------


def response_problem(record: Mapping[str, Any]) -> tuple[str, bool] | None:
    """Why one read of a Random response is not a good sample, and whether the reason is damage
    on the way (bus fault, count, CRC: the payload bytes may still be the chip's own); None if
    it is a good sample."""
    data = bytes.fromhex(str(record["data"]))
    if record["outcome"] != "ack":
        return f"read {record['outcome']}", True
    faults = [f for f in record.get("faults") or [] if f not in _DELAYS_ONLY]
    if faults:
        return "damaged on the bus by " + "+".join(map(str, faults)), True
    if len(data) != _RESPONSE_COUNT or data[0] != _RESPONSE_COUNT:
        return (f"count byte 0x{data[0]:02X}, {len(data)} bytes read" if data else "empty"), True
    if crc16(data[:-2]) != data[-2] | data[-1] << 8:
        return "CRC error", True
    problem = sample_problem(data[1 : 1 + SAMPLE_BYTES].hex())  # the campaigns' own checks
    return None if problem is None else (problem, False)


@dataclass(frozen=True)
class Piece:
    sample: bytes  # the served form (conditioned) of one chip payload
    good: bool
    reason: str  # why a bad one is bad
    damage: bool = False  # bad only because of how it arrived (see response_problem)


@dataclass
class Judgement:
    """What the oracle found in the bytes of some responses."""

    responses: int = 0
    bytes: int = 0
    good_bytes: int = 0
    bad_bytes: int = 0
    unattributed_bytes: int = 0  # short runs where a response joins two takes
    unknown_bytes: int = 0  # runs of 32+ bytes no chip payload explains
    twice_bytes: int = 0  # bytes of a good sample that had been served before
    bad: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)

    def add(self, other: Judgement, prefix: str = "") -> None:
        for name in ("responses", "bytes", "good_bytes", "bad_bytes", "twice_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unattributed_bytes += other.unattributed_bytes
        self.unknown_bytes += other.unknown_bytes
        for mine, theirs in ((self.bad, other.bad), (self.unknown, other.unknown)):
            mine.extend(prefix + text for text in theirs[: max(0, 10 - len(mine))])
        self.twice.extend(prefix + text for text in other.twice[: max(0, 10 - len(self.twice))])


class TraceBook:
    """Every Random response in the controller's bus trace, good or bad, in served form.

    Fed with trace records (``GET /sim/trace``'s dicts) in any order and overlap; each transfer is
    read once. ``conditioning``: the controller serves SHA-256 of each payload (its ``/info``).
    """

    def __init__(self, conditioning: bool) -> None:
        self.conditioning = conditioning
        self._lock = threading.Lock()
        self._last: tuple[int, int] = (-1, -1)  # (xfer, i) of the newest record read
        self._random = False  # the last command written was Random
        self._command = 0  # commands seen
        self._payloads: dict[bytes, int] = {}  # good payload -> the command it answered
        self._index: dict[bytes, list[tuple[int, Piece]]] = {}
        self._good: set[bytes] = set()
        self._good_forms: set[bytes] = set()
        self._served: dict[bytes, int] = {}  # good sample -> bitmask of its bytes served
        self._bad: set[bytes] = set()
        self.gaps = 0  # records lost between two reads of the trace
        self.bad: Counter[str] = Counter()  # bad responses read, by reason

    def served_form(self, raw: bytes) -> bytes:
        return hashlib.sha256(raw).digest() if self.conditioning else raw

    def _learn(self, raw: bytes, reason: str | None, damage: bool = False) -> None:
        forms = {self.served_form(raw)}
        if reason is not None:
            forms.add(raw)  # a bad payload must not be served raw either
        for form in forms:
            piece = Piece(form, reason is None, reason or "", damage)
            for offset in range(len(form) - WINDOW + 1):
                self._index.setdefault(form[offset : offset + WINDOW], []).append((offset, piece))

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Read the records not read yet (thread-safe: the collector and a test both feed)."""
        ordered = sorted(records, key=lambda r: (int(r["xfer"]), int(r["i"])))
        with self._lock:  # _last is read under the lock too: two feeds must not overlap
            fresh = [r for r in ordered if (int(r["xfer"]), int(r["i"])) > self._last]
            if fresh and self._last[0] >= 0 and int(fresh[0]["xfer"]) > self._last[0] + 1:
                self.gaps += 1
            for record in fresh:
                self._read(record)
                self._last = (int(record["xfer"]), int(record["i"]))

    def _read(self, record: Mapping[str, Any]) -> None:
        if int(record["addr"]) != _CHIP:
            return
        data = bytes.fromhex(str(record["data"]))
        if record["dir"] == "w":
            if len(data) >= 3 and data[0] == _COMMAND_WORD:
                self._command += 1
                self._random = data[2] == _RANDOM
            return
        if not self._random or len(data) < 1 + SAMPLE_BYTES:
            return
        raw = data[1 : 1 + SAMPLE_BYTES]
        problem = response_problem(record)
        if problem is None:
            first = self._payloads.setdefault(raw, self._command)
            if first == self._command:  # a re-read of this command's response counts once
                if raw not in self._good:
                    self._good.add(raw)
                    self._good_forms.add(self.served_form(raw))
                    self._learn(raw, None)
                return
            problem = "repeated: the chip gave this payload to an earlier command too", False
        reason, damage = problem
        self.bad[reason.split(" by ")[0].split(":")[0]] += 1
        if raw not in self._bad:  # a stuck output repeats: its pieces are indexed once
            self._bad.add(raw)
            self._learn(raw, reason, damage)

    @property
    def good(self) -> int:
        """Good payloads read so far."""
        return len(self._good)

    def judge(self, chunks: Iterable[bytes], *, once: bool = True) -> Judgement:
        """Cut each served byte string into pieces of known samples (see the module doc).

        ``once``: these bytes reached clients, so each byte of a sample may be among them once
        (over every call with ``once``); a byte served again counts in ``twice_bytes``.
        """
        verdict = Judgement()
        with self._lock:
            for chunk in chunks:
                verdict.responses += 1
                verdict.bytes += len(chunk)
                self._judge(chunk, verdict, once)
        return verdict

    def _verdict(self, found: list[tuple[int, Piece]]) -> tuple[int, Piece]:
        """The piece a served string matched: a bad content wins (a stuck block first seen
        good is bad once it repeats); a payload damaged only on the way is the chip's own when a
        good read of it exists (a re-read after a flipped CRC bit)."""
        for offset, piece in found:
            if not piece.good and not piece.damage:
                return offset, piece
        for offset, piece in found:
            if piece.good or piece.sample in self._good_forms:
                return offset, Piece(piece.sample, True, "")
        return found[0]

    def _claim(self, sample: bytes, offset: int, length: int, verdict: Judgement) -> None:
        bits = ((1 << length) - 1) << offset
        before = self._served.get(sample, 0)
        again = (before & bits).bit_count()
        self._served[sample] = before | bits
        if again:
            verdict.twice_bytes += again
            if len(verdict.twice) < 10:
                verdict.twice.append(f"{again} bytes of {sample.hex()} served again")

    def _judge(self, chunk: bytes, verdict: Judgement, once: bool) -> None:
        n, p, run = len(chunk), 0, 0

        def close_run(at: int) -> None:
            if run >= UNKNOWN_RUN:
                verdict.unknown_bytes += run
                if len(verdict.unknown) < 10:
                    verdict.unknown.append(
                        f"{run} bytes from no chip payload: {chunk[at - run : at].hex()[:64]}"
                    )
            else:
                verdict.unattributed_bytes += run

        while p < n:
            best, found = 0, []
            if n - p >= WINDOW:
                for offset, candidate in self._index.get(chunk[p : p + WINDOW], ()):
                    length = _common_prefix(chunk, p, candidate.sample, offset)
                    if length > best:
                        best, found = length, [(offset, candidate)]
                    elif length == best:
                        found.append((offset, candidate))
            if not found:
                run += 1
                p += 1
                continue
            offset, piece = self._verdict(found)
            close_run(p)
            run = 0
            if piece.good:
                verdict.good_bytes += best
                if once:
                    self._claim(piece.sample, offset, best, verdict)
            else:
                verdict.bad_bytes += best
                if len(verdict.bad) < 10:
                    verdict.bad.append(
                        f"{best} bytes of a bad sample ({piece.reason}): {piece.sample.hex()}"
                    )
            p += best
        close_run(n)


def _common_prefix(chunk: bytes, p: int, sample: bytes, offset: int) -> int:
    length = min(len(chunk) - p, len(sample) - offset)
    if chunk[p : p + length] == sample[offset : offset + length]:
        return length
    k = 0
    while k < length and chunk[p + k] == sample[offset + k]:
        k += 1
    return k


class TraceCollector:
    """Reads the controller's trace every ``interval_s`` into a :class:`TraceBook`."""

    LIMIT: Final = 10_000

    def __init__(self, chaos: ChaosClient, book: TraceBook, interval_s: float = 0.5) -> None:
        self.chaos = chaos
        self.book = book
        self.interval_s = interval_s
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trace-collector", daemon=True)

    def start(self) -> None:
        self.collect()
        self._thread.start()

    def collect(self) -> None:
        try:
            self.book.feed(self.chaos.trace(self.LIMIT))
        except (httpx.HTTPError, StackError) as error:
            self.errors[type(error).__name__] += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.collect()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- consumers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    path: str
    time: float
    size: int
    data: bytes | None  # None: not kept (Fortuna's bytes: no chip oracle applies)


@dataclass
class Ledger:
    """What every consumer got, in arrival order; safe to add to from many threads."""

    served: list[Served] = field(default_factory=list)
    answers: list[tuple[float, str, str]] = field(default_factory=list)  # not 200: time, path, what
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, path: str, data: bytes, keep: bool) -> None:
        if data:
            entry = Served(path, time.monotonic(), len(data), data if keep else None)
            with self._lock:
                self.served.append(entry)

    def answer(self, path: str, what: str) -> None:
        with self._lock:
            self.answers.append((time.monotonic(), path, what))

    def since(self, start: int) -> list[Served]:
        with self._lock:
            return self.served[start:]

    def mark(self) -> int:
        with self._lock:
            return len(self.served)

    def rate(self, paths: Collection[str], t0: float, t1: float, start: int = 0) -> float:
        """Bytes per second ``paths`` served together in [t0, t1) (entries from ``start``)."""
        total = sum(s.size for s in self.since(start) if s.path in paths and t0 <= s.time < t1)
        return total / max(t1 - t0, 1e-9)

    def answers_between(self, t0: float, t1: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [a for a in self.answers if t0 <= a[0] < t1]


def classify_answer(path: str, response: httpx.Response) -> str:
    """``no-data`` for the documented 503; otherwise a short description of the answer."""
    error = ""
    with contextlib.suppress(ValueError, AttributeError):
        error = str(response.json().get("error", ""))
    if response.status_code == 503 and NO_DATA[path] and error == NO_DATA[path]:
        if "retry-after" in response.headers:
            return "no-data"
        return "503 without Retry-After"
    return f"HTTP {response.status_code} {error or response.text[:80]!r}"


class Load:
    """``per_path`` consumer threads on each of :data:`PATHS`, reading as fast as they can."""

    def __init__(self, stack: LoadStack, per_path: int, ledger: Ledger) -> None:
        self.stack = stack
        self.per_path = per_path
        self.ledger = ledger
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._consume, args=(path,), name=f"{path}-{n}", daemon=True)
            for path in PATHS
            for n in range(per_path)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def halt(self) -> None:
        """Ask every consumer to stop after its current request (see :meth:`stop`)."""
        self._stop.set()

    def stop(self) -> None:
        """Halt and wait for the consumers (a stream waits up to its read timeout: stopping
        the stack first ends it at once)."""
        self.halt()
        for thread in self._threads:
            thread.join(timeout=HTTP_TIMEOUT_S + 1)

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _consume(self, path: str) -> None:
        timeout = httpx.Timeout(HTTP_TIMEOUT_S, read=STREAM_READ_TIMEOUT_S)
        with httpx.Client(timeout=timeout if path == "virtio-stream" else HTTP_TIMEOUT_S) as http:
            while not self._stop.is_set():
                try:
                    self._once(http, path)
                except httpx.ReadTimeout:
                    if path != "virtio-stream":  # a stream waits for data: not an error
                        self.ledger.answer(path, "read timeout")
                except httpx.HTTPError as error:
                    self.ledger.answer(path, f"transport {type(error).__name__}")
                    self._stop.wait(0.1)
                except (ValueError, KeyError, TypeError) as error:
                    self.ledger.answer(path, f"bad body: {error}")

    def _once(self, http: httpx.Client, path: str) -> None:
        stack, ledger = self.stack, self.ledger
        if path == "virtio-stream":
            with http.stream("GET", stack.url("virtio", "/stream"), params=STREAM_QUERY) as answer:
                if answer.status_code != 200:
                    answer.read()
                    ledger.answer(path, classify_answer(path, answer))
                    self._stop.wait(NO_DATA_PAUSE_S)
                    return
                for part in answer.iter_bytes():
                    ledger.serve(path, part, keep=True)
            return
        if path.startswith("api-"):
            source = path.removeprefix("api-")
            limit = API_TRNG_LIMIT if source == "trng" else API_FORTUNA_LIMIT
            body = {"format": "binary", "limit": limit, "source": source}
            answer = http.post(stack.url("api", "/api/v1/data"), json=body)
            if answer.status_code == 200:
                ledger.serve(path, answer.content, keep=source == "trng")
                return
        else:
            service = "controller" if path == "controller" else "virtio"
            count = GENERATE_COUNT if path == "controller" else VIRTIO_GENERATE_COUNT
            answer = http.get(stack.url(service, "/generate"), params={"count": count})
            if answer.status_code == 200:
                values = answer.json()["data"]
                samples = [values] if isinstance(values, str) else list(values)
                ledger.serve(path, b"".join(bytes.fromhex(v) for v in samples), keep=True)
                return
        ledger.answer(path, classify_answer(path, answer))
        self._stop.wait(NO_DATA_PAUSE_S)


def chunks_of(served: Sequence[Served], path: str) -> Iterator[bytes]:
    for entry in served:
        if entry.path == path and entry.data is not None:
            yield entry.data

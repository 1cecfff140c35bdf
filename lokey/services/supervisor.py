"""``lokey up``: the whole stack in one command (``python -m lokey.services up``).

Starts controller, fortuna, virtio and api (in that order: each depends only on the ones
before it) as child processes ``python -m lokey.services SERVICE --host H --port P``, waits
until each answers its health endpoint, prints the URLs, the named pipe and the logs, then
supervises: a child that exits is started again after an exponential back-off (1 s doubling to
30 s; a child that stayed up 60 s starts again from 1 s). SIGINT (Ctrl-C), SIGTERM or SIGHUP
stop the children in reverse order (SIGTERM, then SIGKILL for any still running after 10 s)
and the command exits 0; a second Ctrl-C kills at once. ``--single-process`` runs the four apps
in this process instead (:mod:`lokey.services.combined`).

**Data directory** (``--data-dir``; default ``$XDG_STATE_HOME/lokey``, that is
``~/.local/state/lokey``: per user, needs no root, the same wherever the command is run, so
the Fortuna seed file and the queues survive restarts): ``api.db`` (``DB_PATH``),
``fortuna.seed`` (``LOKEY_FORTUNA_SEED_FILE``), the FIFO ``virtio-rng``
(``VIRTIO_PIPE_PATH``; the services' own default under /var/run needs root),
``logs/SERVICE.log`` (each child's output, appended; a log over 10 MiB is renamed
``.log.1`` at start), ``lokey-up.json`` (the pids and URLs while running) and
``lokey-up.lock`` (one ``lokey up`` per data directory).

**Environment**: options beat the environment, which beats ``lokey up``'s defaults. The bus is
``--hardware DEV`` or ``--fast`` if given, else ``LOKEY_BUS_URL`` / ``I2C_BUS_NUMBER`` from
the environment, else the emulator with a provisioned (config-locked) chip on typical timing.
``DB_PATH``, ``LOKEY_FORTUNA_SEED_FILE`` and ``VIRTIO_PIPE_PATH`` (set but empty: no pipe)
from the environment win over the data directory's files; ``LOG_LEVEL`` defaults to WARNING
(at INFO every request is logged, and the api polls ten times a second). Ports come from the
options only (``PORT`` is ignored), and the api's ``CONTROLLER_ADDR``, ``FORTUNA_ADDR`` and
``VIRTIO_ADDR`` always name the children started here. Everything else passes through.

This module uses only the standard library (and :mod:`lokey.clock`): the supervisor stays a
small process beside its four children.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TextIO

from lokey.clock import Clock, SystemClock

__all__ = [
    "DEFAULT_PORTS",
    "EMULATOR_BUS_URL",
    "EXIT_CLEAN",
    "EXIT_NOT_STARTED",
    "FAST_BUS_URL",
    "SERVICES",
    "Answer",
    "Backoff",
    "ChildProcess",
    "Console",
    "Launcher",
    "PopenLauncher",
    "ServicePlan",
    "Supervisor",
    "UpPlan",
    "UsageError",
    "add_up_arguments",
    "default_data_dir",
    "health_reason",
    "main",
    "make_plan",
    "megabytes",
    "probe",
    "service_env",
]

EXIT_CLEAN: Final = 0
EXIT_NOT_STARTED: Final = 2  # bad options, a data directory in use, a service that cannot start

SERVICES: Final = ("controller", "fortuna", "virtio", "api")  # start order; stop is reversed
DEFAULT_PORTS: Final = {"controller": 8081, "fortuna": 8082, "virtio": 8083, "api": 8080}
EMULATOR_BUS_URL: Final = "sim://atecc608a?lock=config-locked"  # a provisioned chip
FAST_BUS_URL: Final = EMULATOR_BUS_URL + "&timing=instant"
HEALTH_PATHS: Final = {
    "controller": "/health",
    "fortuna": "/health",
    "virtio": "/health",
    "api": "/api/v1/health",
}
#: Ready when /health answers 200; the others are ready once they answer at all (Fortuna is
#: 503 until the api seeds it, the api's health is 200 even when degraded).
NEEDS_200: Final = frozenset({"controller", "virtio"})

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0
BACKOFF_INITIAL_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
BACKOFF_RESET_AFTER_S: Final = 60.0
TICK_S: Final = 0.1
PROBE_INTERVAL_S: Final = 0.5
MAX_LOG_BYTES: Final = 10 << 20
PID_FILE: Final = "lokey-up.json"
LOCK_FILE: Final = "lokey-up.lock"
PIPE_NAME: Final = "virtio-rng"


class UsageError(Exception):
    """The options (or the data directory) do not describe a stack that can start."""


# -- options -----------------------------------------------------------------------------------


def _port(option: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be an integer, got {text!r}") from None
        if not 1 <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{option} must be in [1, 65,535], got {text}")
        return value

    return parse


def _seconds(option: str, *, lower: float, upper: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be a number, got {text!r}") from None
        if not lower <= value <= upper:
            raise argparse.ArgumentTypeError(
                f"{option} must be in [{lower:g}, {upper:g}], got {text}"
            )
        return value

    return parse


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lokey up`` (``lokey.cli`` declares the same ones for its help)."""
    bus = parser.add_mutually_exclusive_group()
    bus.add_argument(
        "--fast",
        action="store_true",
        help="emulator with instant timing (default: typical chip timing, like hardware)",
    )
    bus.add_argument(
        "--hardware",
        metavar="DEV",
        default=None,
        help="use the real chip on this i2c-dev node, e.g. /dev/i2c-1 (no chaos API)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="database, Fortuna seed file, FIFO and logs (default $XDG_STATE_HOME/lokey, "
        "i.e. ~/.local/state/lokey)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address all four listen on (default 127.0.0.1)"
    )
    for name in SERVICES:
        option = f"--{name}-port"
        parser.add_argument(
            option,
            type=_port(option),
            default=DEFAULT_PORTS[name],
            metavar="PORT",
            help=f"default {DEFAULT_PORTS[name]}",
        )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="run the four apps in one process (less memory, e.g. on a 512 MB Pi; no restarts)",
    )
    parser.add_argument(
        "--max-restart-delay",
        type=_seconds("--max-restart-delay", lower=BACKOFF_INITIAL_S, upper=3600.0),
        default=BACKOFF_MAX_S,
        metavar="S",
        help=f"longest wait before restarting a service that keeps exiting (default "
        f"{BACKOFF_MAX_S:g} s; the wait starts at {BACKOFF_INITIAL_S:g} s and doubles)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lokey up",
        description="Start controller, fortuna, virtio and api, supervised; Ctrl-C stops them.",
    )
    add_up_arguments(parser)
    return parser


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/lokey``, else ``~/.local/state/lokey``."""
    state = env.get("XDG_STATE_HOME", "").strip()
    if state and Path(state).is_absolute():  # the XDG spec says to ignore a relative path
        return Path(state) / "lokey"
    return Path("~/.local/state/lokey").expanduser()


# -- the plan: what runs where ---------------------------------------------------------------


@dataclass(frozen=True)
class ServicePlan:
    """One child: its name, where it listens, how it is reached and judged, its log."""

    name: str
    host: str
    port: int
    base_url: str
    log_path: Path

    @property
    def health_url(self) -> str:
        return self.base_url + HEALTH_PATHS[self.name]

    @property
    def option(self) -> str:
        return f"--{self.name}-port"

    def ready(self, status: int) -> bool:
        return status == 200 or self.name not in NEEDS_200

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "lokey.services",
            self.name,
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]


@dataclass(frozen=True)
class UpPlan:
    """Everything ``lokey up`` decided from its options and the environment."""

    data_dir: Path
    services: tuple[ServicePlan, ...]
    env: dict[str, str]
    bus_label: str
    single_process: bool
    max_restart_delay_s: float = BACKOFF_MAX_S

    @property
    def pipe_path(self) -> str | None:
        text = self.env.get("VIRTIO_PIPE_PATH", "").strip()
        return text or None

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE

    def service(self, name: str) -> ServicePlan:
        return next(s for s in self.services if s.name == name)


def _connect_host(host: str) -> str:
    """Where a client reaches a server listening on ``host`` (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def service_env(
    base: Mapping[str, str],
    *,
    data_dir: Path,
    addresses: Mapping[str, str],
    bus_url: str | None,
) -> dict[str, str]:
    """The children's environment: ``base`` (the user's) with ``lokey up``'s settings.

    ``bus_url`` is the one the options chose (None: the environment's, else the emulator).
    """
    env = {k: v for k, v in base.items() if k != "PORT"}

    def default(name: str, value: str) -> None:
        if not env.get(name, "").strip():
            env[name] = value

    default("LOG_LEVEL", "WARNING")
    default("DB_PATH", str(data_dir / "api.db"))
    default("LOKEY_FORTUNA_SEED_FILE", str(data_dir / "fortuna.seed"))
    if "VIRTIO_PIPE_PATH" not in env:  # set but empty disables the pipe: the user's choice
        env["VIRTIO_PIPE_PATH"] = str(data_dir / PIPE_NAME)
    if bus_url is not None:
        env["LOKEY_BUS_URL"] = bus_url
        env.pop("I2C_BUS_NUMBER", None)
    elif not env.get("LOKEY_BUS_URL", "").strip() and not env.get("I2C_BUS_NUMBER", "").strip():
        env["LOKEY_BUS_URL"] = EMULATOR_BUS_URL
    env["CONTROLLER_ADDR"] = addresses["controller"]
    env["FORTUNA_ADDR"] = addresses["fortuna"]
    env["VIRTIO_ADDR"] = addresses["virtio"]
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _bus_label(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.hardware is not None:
        return f"hardware {args.hardware}"
    if args.fast:
        return "emulator, instant timing (--fast)"
    url = env.get("LOKEY_BUS_URL", "").strip()
    if url == EMULATOR_BUS_URL:
        return "emulator, typical chip timing"
    if url:
        return f"LOKEY_BUS_URL={url} (from the environment)"
    return f"/dev/i2c-{env.get('I2C_BUS_NUMBER', '').strip()} (I2C_BUS_NUMBER)"


def make_plan(args: argparse.Namespace, base_env: Mapping[str, str]) -> UpPlan:
    """Check the options (raising :class:`UsageError` naming the option) and decide."""
    ports = {name: int(getattr(args, f"{name}_port")) for name in SERVICES}
    seen: dict[int, str] = {}
    for name in SERVICES:
        other = seen.setdefault(ports[name], name)
        if other != name:
            raise UsageError(
                f"--{name}-port {ports[name]} is also --{other}-port: each service needs its "
                "own port"
            )
    bus_url: str | None = None
    if args.hardware is not None:
        device = str(args.hardware).strip()
        if not device or device.startswith("sim:"):
            raise UsageError(
                f"--hardware must name an i2c-dev node such as /dev/i2c-1, got {args.hardware!r} "
                "(the emulator is the default; --fast makes it instant)"
            )
        bus_url = device
    elif args.fast:
        bus_url = FAST_BUS_URL
    data_dir = (args.data_dir or default_data_dir(base_env)).expanduser().absolute()
    host = str(args.host)
    reach = _connect_host(host)
    services = tuple(
        ServicePlan(
            name=name,
            host=host,
            port=ports[name],
            base_url=f"http://{reach}:{ports[name]}",
            log_path=data_dir / "logs" / f"{name}.log",
        )
        for name in SERVICES
    )
    addresses = {s.name: s.base_url for s in services}
    env = service_env(base_env, data_dir=data_dir, addresses=addresses, bus_url=bus_url)
    return UpPlan(
        data_dir=data_dir,
        services=services,
        env=env,
        bus_label=_bus_label(args, env),
        single_process=bool(args.single_process),
        max_restart_delay_s=float(args.max_restart_delay),
    )


def prepare_data_dir(plan: UpPlan) -> None:
    """Create the data directory and its ``logs`` (0700); refuse one that cannot be written."""
    path = plan.data_dir
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # the seed file and queues live here
        (path / "logs").mkdir(exist_ok=True, mode=0o700)
    except FileExistsError:
        raise UsageError(f"--data-dir {path}: not a directory") from None
    except OSError as error:
        raise UsageError(f"--data-dir {path}: cannot create it: {error.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK) or not os.access(path / "logs", os.W_OK | os.X_OK):
        raise UsageError(f"--data-dir {path}: not writable")
    if created:
        with contextlib.suppress(OSError):  # like a venv: never committed by accident
            (path / ".gitignore").write_text("*\n")
    for service in plan.services:
        log = service.log_path
        with contextlib.suppress(OSError):
            if log.stat().st_size > MAX_LOG_BYTES:
                log.replace(log.with_suffix(".log.1"))


@contextlib.contextmanager
def data_dir_lock(plan: UpPlan) -> Iterator[None]:
    """Hold ``lokey-up.lock`` (one ``lokey up`` per data directory) and the pid file."""
    lock_path = plan.data_dir / LOCK_FILE
    try:
        handle = lock_path.open("a")
    except OSError as error:
        raise UsageError(f"--data-dir {plan.data_dir}: {error.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = ""
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                owner = f" (pid {json.loads(plan.pid_path.read_text())['supervisor']})"
            raise UsageError(
                f"--data-dir {plan.data_dir} is in use by another lokey up{owner}; stop it or "
                "choose another --data-dir"
            ) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                plan.pid_path.unlink()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound the way uvicorn binds one (IPv6 iff the host has a colon, SO_REUSEADDR,
    so a port in TIME_WAIT counts as free); OSError when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def check_ports_free(plan: UpPlan) -> None:
    """Refuse, naming the option, a port something already listens on (or a bad --host)."""
    for service in plan.services:
        try:
            listening_socket(service.host, service.port).close()
        except socket.gaierror as error:
            raise UsageError(f"--host {service.host}: {error.strerror}") from None
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"{service.option} {service.port}: {service.host}:{service.port} is "
                    "already in use"
                ) from None
            raise UsageError(
                f"--host {service.host} / {service.option} {service.port}: cannot listen "
                f"there: {error.strerror}"
            ) from None


def write_pid_file(plan: UpPlan, pids: Mapping[str, int | None]) -> None:
    """``lokey-up.json``: the supervisor's pid and each service's (atomically replaced)."""
    document = {
        "supervisor": os.getpid(),
        "single_process": plan.single_process,
        "services": {
            s.name: {"pid": pids.get(s.name), "url": s.base_url, "log": str(s.log_path)}
            for s in plan.services
        },
        "fifo": plan.pipe_path,
    }
    temporary = plan.pid_path.with_suffix(".tmp")
    with contextlib.suppress(OSError):
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        temporary.replace(plan.pid_path)


# -- health probes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An HTTP answer to a health probe: status and the start of the body."""

    status: int
    body: str


_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


def probe(url: str, timeout_s: float = 1.0) -> Answer | None:
    """GET ``url``: the answer (any status), or None when nothing answers in time."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            return Answer(response.status, response.read(500).decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.read(500).decode("utf-8", "replace"))
    except (OSError, ValueError):  # refused, reset, timed out, not HTTP
        return None


def health_reason(answer: Answer) -> str:
    """The ``reason`` / ``error`` / ``status`` of a JSON health body, else the raw text."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return answer.body.strip()[:120]
    if isinstance(body, dict):
        for key in ("reason", "error", "state", "status"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return answer.body.strip()[:120]


# -- the console ---------------------------------------------------------------------------------


class Console:
    """Event lines, plus one status line redrawn in place when ``stream`` is a terminal."""

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self._stream = stream
        self.live = stream.isatty() if live is None else live
        self._shown = False
        self.timestamps = False

    def event(self, text: str) -> None:
        self.clear()
        prefix = time.strftime("%H:%M:%S ") if self.timestamps else ""
        self._write(prefix + text + "\n")

    def status(self, text: str) -> None:
        if not self.live:
            return
        width = _terminal_width(self._stream) - 1
        self._write("\r\x1b[K" + text[:width])
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = False

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed terminal must not stop a stop
            self._stream.write(text)
            self._stream.flush()


def _terminal_width(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 80
    return columns if columns >= 20 else 80  # 0 from a pty nobody sized


# -- children ------------------------------------------------------------------------------------


class ChildProcess(Protocol):
    """What the supervisor needs of a child (``subprocess.Popen`` has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...


class Launcher(Protocol):
    def launch(self, service: ServicePlan) -> ChildProcess: ...


class PopenLauncher:
    """``python -m lokey.services NAME`` with the plan's environment, output to its log.

    Each child gets its own process group, so a Ctrl-C in the terminal reaches only the
    supervisor (which stops the children in order); on Linux each child also gets SIGTERM
    should the supervisor die without stopping it (``PR_SET_PDEATHSIG``).
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._preexec = _parent_death_signal() if sys.platform.startswith("linux") else None

    def launch(self, service: ServicePlan) -> subprocess.Popen[bytes]:
        with service.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} lokey up: starting {service.name}\n".encode())
            log.flush()
            return subprocess.Popen(
                service.argv(),
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=self._preexec,  # noqa: PLW1509 - the supervisor starts no threads
            )


def _parent_death_signal() -> Callable[[], None] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the signal was armed
            os._exit(1)

    return arm


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


# -- the restart policy and the supervisor -------------------------------------------------------


@dataclass
class Backoff:
    """Restart delays: ``initial_s`` doubling to ``maximum_s``; a child that stayed up at least
    ``reset_after_s`` starts again from ``initial_s``."""

    initial_s: float = BACKOFF_INITIAL_S
    maximum_s: float = BACKOFF_MAX_S
    reset_after_s: float = BACKOFF_RESET_AFTER_S
    failures: int = 0

    def after_exit(self, uptime_s: float) -> float:
        """The delay before the next start of a child that exited after ``uptime_s``."""
        if uptime_s >= self.reset_after_s:
            self.failures = 0
        delay = min(self.initial_s * 2.0 ** min(self.failures, 60), self.maximum_s)
        self.failures += 1
        return delay


@dataclass
class _Child:
    plan: ServicePlan
    backoff: Backoff
    process: ChildProcess | None = None
    started_at: float = 0.0
    ready: bool = False
    restart_at: float | None = None
    restarts: int = 0
    next_probe: float = 0.0


@dataclass
class Supervisor:
    """Starts the children in order, restarts the ones that exit, stops them in reverse.

    Time comes from ``clock`` and processes from ``launcher``, so the policy runs against
    fakes in tests; :meth:`request_stop` is safe to call from a signal handler.
    """

    services: Sequence[ServicePlan]
    launcher: Launcher
    console: Console
    clock: Clock = field(default_factory=SystemClock)
    probe: Callable[[str, float], Answer | None] = probe
    on_change: Callable[[dict[str, int | None]], None] | None = None
    start_timeout_s: float = START_TIMEOUT_S
    stop_timeout_s: float = STOP_TIMEOUT_S
    backoff: Callable[[], Backoff] = Backoff
    children: list[_Child] = field(init=False)
    stopping: bool = field(default=False, init=False)
    forced: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.children = [_Child(plan, self.backoff()) for plan in self.services]

    # -- control

    def request_stop(self) -> None:
        """The first call stops gracefully; a second one kills what is still running."""
        if self.stopping:
            self.forced = True
        self.stopping = True

    def pids(self) -> dict[str, int | None]:
        return {c.plan.name: c.process.pid if c.process else None for c in self.children}

    def run(self, on_ready: Callable[[], None] = lambda: None, tick_s: float = TICK_S) -> int:
        """Start, supervise until asked to stop, stop; the exit status."""
        try:
            if not self.start():
                return EXIT_CLEAN if self.stopping else EXIT_NOT_STARTED
            on_ready()
            while not self.stopping:
                self.tick()
                self.clock.sleep(tick_s)
            return EXIT_CLEAN
        finally:
            self.stop()

    # -- start

    def start(self) -> bool:
        """Each child in order, waiting until it is ready; False if one cannot start."""
        total = len(self.children)
        for index, child in enumerate(self.children, start=1):
            if self.stopping:
                return False
            try:
                self._launch(child)
            except OSError as error:  # an unwritable log, a missing interpreter
                self.console.event(f"{child.plan.name}: cannot start: {error}")
                return False
            if not self._await_ready(child, f"[{index}/{total}]"):
                return False
        self.console.clear()
        return True

    def _await_ready(self, child: _Child, step: str) -> bool:
        name = child.plan.name
        began = self.clock.monotonic()
        deadline = began + self.start_timeout_s
        last: Answer | None = None
        while not self.stopping:
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                self.console.event(
                    f"{name} stopped before it was ready ({describe_exit(code)}); the end of "
                    f"{child.plan.log_path}:\n{log_tail(child.plan.log_path)}"
                )
                child.process = None
                return False
            answer = self.probe(child.plan.health_url, 1.0)
            now = self.clock.monotonic()
            if answer is not None and child.plan.ready(answer.status):
                child.ready = True
                self.console.event(
                    f"{step} {name:<10} ready   {child.plan.base_url}  (pid {child.process.pid}, "
                    f"{now - began:.1f} s)"
                )
                return True
            last = answer if answer is not None else last
            if now >= deadline:
                if last is not None:  # it runs and answers: not fatal, the api copes
                    self.console.event(
                        f"{step} {name:<10} NOT READY after {self.start_timeout_s:g} s: "
                        f"{last.status} {health_reason(last)}; continuing (see "
                        f"{child.plan.log_path})"
                    )
                    return True
                self.console.event(
                    f"{name} did not answer {child.plan.health_url} within "
                    f"{self.start_timeout_s:g} s; the end of {child.plan.log_path}:\n"
                    f"{log_tail(child.plan.log_path)}"
                )
                return False
            waiting = "starting" if last is None else f"{last.status} {health_reason(last)}"
            self.console.status(
                f"{step} {name}: waiting for {HEALTH_PATHS[name]} ({waiting}) {now - began:.1f} s"
            )
            self.clock.sleep(TICK_S)
        return False

    def _launch(self, child: _Child) -> None:
        child.process = self.launcher.launch(child.plan)
        child.started_at = self.clock.monotonic()
        child.ready = False
        child.restart_at = None
        child.next_probe = child.started_at
        if self.on_change is not None:
            self.on_change(self.pids())

    # -- supervise

    def tick(self) -> None:
        """Notice exits, start due restarts, report restarted children once ready."""
        for child in self.children:
            if self.stopping:
                return
            now = self.clock.monotonic()
            name = child.plan.name
            if child.process is not None:
                code = child.process.poll()
                if code is not None:
                    uptime = now - child.started_at
                    delay = child.backoff.after_exit(uptime)
                    child.process = None
                    child.ready = False
                    child.restart_at = now + delay
                    self.console.event(
                        f"{name} exited ({describe_exit(code)}) after {uptime:.1f} s; restarting "
                        f"in {delay:g} s (log: {child.plan.log_path})"
                    )
                    if self.on_change is not None:
                        self.on_change(self.pids())
                elif not child.ready and now >= child.next_probe:
                    child.next_probe = now + PROBE_INTERVAL_S
                    answer = self.probe(child.plan.health_url, 0.5)
                    if answer is not None and child.plan.ready(answer.status):
                        child.ready = True
                        self.console.event(f"{name} is ready again (pid {child.process.pid})")
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                try:
                    self._launch(child)
                except OSError as error:
                    delay = child.backoff.after_exit(0.0)
                    child.restart_at = now + delay
                    self.console.event(f"{name}: cannot start ({error}); retrying in {delay:g} s")
                    continue
                assert child.process is not None
                self.console.event(
                    f"{name} restarted (pid {child.process.pid}, restart {child.restarts})"
                )

    # -- stop

    def stop(self) -> None:
        """SIGTERM in reverse order, each waited for; SIGKILL after ``stop_timeout_s``."""
        self.stopping = True
        deadline = self.clock.monotonic() + self.stop_timeout_s
        for child in reversed(self.children):
            child.restart_at = None
            process = child.process
            if process is None or process.poll() is not None:
                continue
            self.console.status(f"stopping {child.plan.name} (pid {process.pid})")
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            while process.poll() is None and not self.forced:
                if self.clock.monotonic() >= deadline:
                    break
                self.clock.sleep(0.02)
            code = process.poll()
            if code is not None:
                self.console.event(f"stopped {child.plan.name} ({describe_exit(code)})")
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            self.console.event(f"killing {child.plan.name} (pid {process.pid}): it did not stop")
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            limit = self.clock.monotonic() + 5.0
            while process.poll() is None and self.clock.monotonic() < limit:
                self.clock.sleep(0.02)
        self.console.clear()
        if self.on_change is not None:
            self.on_change(self.pids())


# -- memory --------------------------------------------------------------------------------------


def rss_bytes(pid: int | None = None) -> int | None:
    """Resident set size of ``pid`` (default: this process), from /proc; None elsewhere."""
    path = f"/proc/{pid if pid is not None else 'self'}/status"
    try:
        with open(path) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def megabytes(size: int) -> str:
    return f"{size / (1 << 20):.0f} MB"


# -- the summary ---------------------------------------------------------------------------------


def summary(plan: UpPlan, pids: Mapping[str, int | None], *, memory: str) -> str:
    """The table printed once everything is up."""
    api = plan.service("api").base_url
    lines = [
        f"LoKey is up on the {plan.bus_label}.",
        f"  {'service':<11}{'URL':<28}{'pid':>8}  log",
    ]
    for service in sorted(plan.services, key=lambda s: s.name != "api"):
        pid = pids.get(service.name)
        log = plan.data_dir / "logs" / "lokey.log" if plan.single_process else service.log_path
        lines.append(f"  {service.name:<11}{service.base_url:<28}{pid or '-':>8}  {log}")
    pipe = plan.pipe_path
    lines.append(f"  {'FIFO':<11}{pipe or 'disabled (VIRTIO_PIPE_PATH is empty)'}")
    lines.append(f"  {'database':<11}{plan.env.get('DB_PATH', '')}")
    lines.append(f"  {'memory':<11}{memory}")
    lines.append(f"  {'data dir':<11}{plan.data_dir}  (pids in {PID_FILE})")
    lines.append("")
    request = '{"format": "uint8", "limit": 4, "source": "trng"}'
    lines.append(f"Try: curl -X POST {api}/api/v1/data -d '{request}'")
    if pipe:
        lines.append(
            f"QEMU: -object rng-random,id=rng0,filename={pipe} -device virtio-rng-pci,rng=rng0"
        )
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


# -- entry point ---------------------------------------------------------------------------------


def _install_stop_handlers(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: object) -> None:
        stop()

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, handler)


def prepare(argv: Sequence[str] | None, env: Mapping[str, str]) -> UpPlan:
    """Parse and check the options and the data directory (exit 2 via argparse or UsageError)."""
    args = _parser().parse_args(argv)
    return make_plan(args, env)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lokey.services up ...``: the exit status."""
    try:
        plan = prepare(argv, os.environ)
        prepare_data_dir(plan)
        with data_dir_lock(plan):
            check_ports_free(plan)
            if plan.single_process:
                from lokey.services import combined  # noqa: PLC0415 - loads the apps

                return combined.run(plan, Console(sys.stderr))
            return _run_children(plan)
    except UsageError as error:
        print(f"lokey up: {error}", file=sys.stderr)
        return EXIT_NOT_STARTED


def _run_children(plan: UpPlan) -> int:
    console = Console(sys.stderr)
    console.event(f"lokey up: starting 4 services on the {plan.bus_label}; data in {plan.data_dir}")
    supervisor = Supervisor(
        plan.services,
        PopenLauncher(plan.env),
        console,
        on_change=lambda pids: write_pid_file(plan, pids),
        backoff=lambda: Backoff(maximum_s=plan.max_restart_delay_s),
    )
    _install_stop_handlers(supervisor.request_stop)

    def ready() -> None:
        pids = supervisor.pids()
        sizes = [rss_bytes(pid) for pid in pids.values() if pid is not None]
        own = rss_bytes()
        memory = "unknown"
        if sizes and all(size is not None for size in sizes) and own is not None:
            total = sum(size for size in sizes if size is not None)
            memory = (
                f"{megabytes(total)} RSS in {len(sizes)} processes (+ {megabytes(own)} this "
                "supervisor); --single-process uses less"
            )
        print(summary(plan, pids, memory=memory), flush=True)
        console.timestamps = True

    status = supervisor.run(ready)
    console.timestamps = False
    if status == EXIT_CLEAN:
        console.event("lokey up: stopped")
    return status

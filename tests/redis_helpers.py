"""One throwaway ``redis-server`` per test process, for the Redis store's tests.

The server starts on first use (a test run that selects no Redis test starts none), listens on
127.0.0.1 on a free port, persists nothing (``--save "" --appendonly no``, its ``--dir`` a
temporary directory) and is killed when the interpreter exits. pytest-xdist workers are
processes, so each worker has its own. Tests share the server but never each other's keys:
each takes a fresh :func:`new_prefix`.

Without ``redis-server`` on PATH the Redis tests are skipped, unless ``LOKEY_REQUIRE_REDIS=1``
(``make unit`` sets it): then they fail, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "RedisServer",
    "new_prefix",
    "redis_server_available",
    "redis_url",
    "require_redis_server",
    "start_redis_server",
]

_INSTALL = (
    "install it with `scripts/ensure-redis` (Debian/Ubuntu: `sudo apt-get install redis-server`)"
    " or put a redis-server binary on PATH"
)
# How long a fresh server may take to answer PING (it starts in a few milliseconds).
_START_TIMEOUT = 10.0
_ATTEMPTS = 5  # free ports found by binding can be taken before redis-server binds them

_lock = threading.Lock()
_shared: list[RedisServer] = []  # this process's server, once started
_prefixes = itertools.count()
_run_id = uuid.uuid4().hex[:8]


@dataclass
class RedisServer:
    """A redis-server child process of this test process."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections stay open, nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


def require_redis_server() -> str:
    """The redis-server binary; skip the test without one, or fail under LOKEY_REQUIRE_REDIS=1."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    if os.environ.get("LOKEY_REQUIRE_REDIS") == "1":
        raise RuntimeError(f"LOKEY_REQUIRE_REDIS=1 but redis-server is not on PATH: {_INSTALL}")
    pytest.skip(f"redis-server is not on PATH: {_INSTALL}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # NOAUTH: --requirepass
    except OSError:
        return False


def start_redis_server(*extra: str, port: int | None = None) -> RedisServer:
    """A private redis-server (the caller kills it); ``extra`` are more command-line options.
    ``port``: that port (a server started again where an earlier one ran), else a free one."""
    binary = require_redis_server()
    fixed = port
    failures: list[str] = []
    for _ in range(_ATTEMPTS):
        directory = Path(tempfile.mkdtemp(prefix="lokey-redis-"))
        port = _free_port() if fixed is None else fixed
        # argv options: redis-server accepts `--name value` pairs after an (absent) config file
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(directory), *extra]
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        server = RedisServer(process, port, directory)
        deadline = time.monotonic() + _START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(port):
                return server
            time.sleep(0.01)
        output = b""
        if process.poll() is not None and process.stdout is not None:
            output = process.stdout.read()
        server.kill()
        failures.append(f"port {port}: {output.decode(errors='replace').strip()[-300:]}")
    raise RuntimeError("redis-server did not start:\n" + "\n".join(failures))


def _shared_server() -> RedisServer:
    with _lock:
        if not _shared or _shared[0].process.poll() is not None:
            server = start_redis_server()
            atexit.register(server.kill)
            _shared[:] = [server]
        return _shared[0]


def redis_url() -> str:
    """The URL of this process's shared test server (started on first use)."""
    return _shared_server().url


def new_prefix() -> str:
    """A key prefix no other test (in this or any other process) uses."""
    return f"test-{_run_id}-{os.getpid()}-{next(_prefixes)}"

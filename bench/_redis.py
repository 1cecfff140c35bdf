"""A private ``redis-server`` for the scale-out benchmark: loopback, a free port, a temp dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench._http import free_port

__all__ = ["redis_server"]

START_TIMEOUT_S = 10.0


@contextmanager
def redis_server(*, durable: bool) -> Iterator[str]:
    """A ``redis-server`` until the block ends; yields its ``redis://`` URL.

    ``durable``: append-only file fsynced on every write (``appendfsync always``), the Redis
    equivalent of LMDB's ``DB_SYNC=true`` (lokey.store.redis_store, "Durability"); otherwise
    no persistence at all.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed: `make redis` (scripts/ensure-redis) installs it"
        )
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else []
    with tempfile.TemporaryDirectory(prefix="lokey-bench-redis-") as directory:
        port = free_port()
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory]
        command += ["--save", "", "--appendonly", "no", *persistence]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _await_port(process, port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _await_port(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            _, err = process.communicate()
            raise RuntimeError(f"redis-server exited: {err.decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server: no answer on port {port}") from None
            time.sleep(0.05)

"""Shared helpers for the Fortuna tests: the vectors, and a transcription of fortuna.md §2.

``SpecGenerator`` is the spec written out as plainly as possible (one ``int.to_bytes`` per
counter block, no numpy, no buffers, no slicing tricks), so the fast generator is checked
against the definition rather than against itself. Known answers come from
``../shared/vectors/`` and are never retyped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import select
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "MAX_REQUEST",
    "VECTORS",
    "SpecGenerator",
    "accumulator_vectors",
    "generator_vectors",
    "run_in_child",
    "spec_shad256",
]

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
MAX_REQUEST = 1 << 20


@functools.cache
def generator_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "fortuna_generator.json").read_text())
    return data


@functools.cache
def accumulator_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "fortuna_accumulator.json").read_text())
    return data


def spec_shad256(data: bytes) -> bytes:
    """fortuna.md §1: SHAd-256(m) = SHA-256(SHA-256(m))."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


class SpecGenerator:
    """fortuna.md §2, step by step. ``counters_used`` lists every counter value encrypted."""

    def __init__(self) -> None:
        self.key = bytes(32)
        self.counter = 0
        self.counters_used: list[int] = []

    def reseed(self, seed: bytes) -> None:
        self.key = spec_shad256(self.key + seed)
        self.counter = (self.counter + 1) % 2**128

    def generate_blocks(self, k: int) -> bytes:
        assert self.counter != 0
        plain = b"".join(((self.counter + i) % 2**128).to_bytes(16, "little") for i in range(k))
        self.counters_used.extend((self.counter + i) % 2**128 for i in range(k))
        self.counter = (self.counter + k) % 2**128
        encryptor = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()
        return encryptor.update(plain) + encryptor.finalize()

    def request(self, n: int) -> bytes:
        """PseudoRandomData(n) for 0 <= n <= 2^20: output, then K <- GenerateBlocks(2)."""
        assert 0 <= n <= MAX_REQUEST
        result = self.generate_blocks(-(-n // 16))[:n]
        self.key = self.generate_blocks(2)
        return result

    def pseudo_random_data(self, n: int) -> bytes:
        """The public request: 2^20-byte internal requests, then the remainder (§2)."""
        parts = []
        while n > MAX_REQUEST:
            parts.append(self.request(MAX_REQUEST))
            n -= MAX_REQUEST
        if n or not parts:
            parts.append(self.request(n))
        return b"".join(parts)


def run_in_child(work: Callable[[], bytes], timeout_s: float = 20.0) -> bytes:
    """Fork; run ``work`` in the child and return what it returned (prefixed b"OK:"), or b"ERR:"
    and the exception's type name. A child that hangs (a deadlock) is killed and the test fails.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 0
        try:
            os.close(read_end)
            try:
                message = b"OK:" + work()
            except BaseException as exc:
                message = b"ERR:" + type(exc).__name__.encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(message)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], timeout_s)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("the forked child hung (deadlock?)")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return b"".join(chunks)


# Fortuna mixes 32 bytes of OS entropy into direct and seed-file reseeds; tests that pin outputs
# inject this fixed stand-in and expect SHAd-256 over seed || FIXED_ENTROPY.
FIXED_ENTROPY = bytes(range(0xA0, 0xC0))


def fixed_entropy(n: int) -> bytes:
    assert n == len(FIXED_ENTROPY)
    return FIXED_ENTROPY

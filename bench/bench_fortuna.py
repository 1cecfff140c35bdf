"""Fortuna generator throughput, against OpenSSL's AES-256-CTR measured in the same run.

Two figures (spec/fortuna.md §2, "Implementation facts"):

* **1 MiB requests**: ``Generator.pseudo_random_data(2**20)`` in a loop, bytes per second. The
  limit is ``openssl speed -elapsed -seconds 1 -bytes 16384 -evp aes-256-ctr`` run now on this
  machine: plain AES-256 keystream with no counter building, no rekeying, no copy out. Target:
  at least 0.4 of it. Without an ``openssl`` binary (or if its output cannot be parsed), the
  limit is the ``cryptography`` package's AES-256-CTR over the same 16,384-byte buffer, timed
  here, and the output says so.
* **32-byte requests**: requests per second, dominated by one new AES key schedule per request
  (every request rekeys). Target: at least 50,000/s. ``Fortuna.random_data(32)`` (lock, reseed
  check, then the same generator call) is printed beside it for information.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench._report import Direction, Figure, Target, all_met
from lokey.clock import SystemClock
from lokey.fortuna import MAX_REQUEST_BYTES, Fortuna, Generator

NAME = "bench_fortuna"
TARGET_RATIO = 0.4
TARGET_SMALL_PER_S = 50_000
OPENSSL_BLOCK = 16384
OPENSSL_COMMAND = (
    "openssl",
    "speed",
    "-elapsed",
    "-seconds",
    "1",
    "-bytes",
    str(OPENSSL_BLOCK),
    "-evp",
    "aes-256-ctr",
)
# the result line: "AES-256-CTR    7675428.86k" (thousands of bytes per second)
_RESULT_LINE = re.compile(r"^aes-256-ctr\s+([0-9.]+)k\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Limit:
    bytes_per_s: float
    source: str


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def parse_openssl_speed(output: str) -> float | None:
    """Bytes per second from ``openssl speed``'s AES-256-CTR result line, or None."""
    match = _RESULT_LINE.search(output)
    return float(match.group(1)) * 1000 if match else None


def openssl_limit() -> Limit | None:
    """Run the openssl CLI benchmark; None if openssl is missing or its output is unusable."""
    if shutil.which(OPENSSL_COMMAND[0]) is None:
        return None
    try:
        done = subprocess.run(  # a fixed argument list, no shell
            OPENSSL_COMMAND, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    rate = parse_openssl_speed(done.stdout)
    if done.returncode != 0 or rate is None:
        return None
    return Limit(rate, "openssl speed -evp aes-256-ctr, 16384-byte blocks")


def cryptography_ctr_limit(seconds: float = 1.0) -> Limit:
    """Fallback limit: the cryptography package's AES-256-CTR over 16,384-byte buffers."""
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(bytes(16))).encryptor()
    data = bytes(OPENSSL_BLOCK)
    out = bytearray(OPENSSL_BLOCK + 15)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(256):
            encryptor.update_into(data, out)
        count += 256
        now = time.perf_counter()
        if now >= deadline:
            break
    return Limit(
        count * OPENSSL_BLOCK / (now - start),
        "FALLBACK: cryptography AES-256-CTR, 16384-byte buffers (no usable openssl CLI)",
    )


def seeded_generator() -> Generator:
    generator = Generator()
    generator.reseed(os.urandom(64))
    return generator


def run_requests(request: Callable[[int], bytes], size: int, count: int) -> Rate:
    request(size)  # buffers allocated, code warm
    start = time.perf_counter()
    for _ in range(count):
        request(size)
    return Rate(count, time.perf_counter() - start)


def best_of(run: Callable[[], Rate], repeats: int) -> Rate:
    return max((run() for _ in range(repeats)), key=lambda r: r.per_second)


def measure(large: int = 512, small: int = 100_000, repeats: int = 3) -> list[Figure]:
    limit = openssl_limit() or cryptography_ctr_limit()
    generator = seeded_generator()
    big = best_of(
        lambda: run_requests(generator.pseudo_random_data, MAX_REQUEST_BYTES, large), repeats
    )
    tiny = best_of(lambda: run_requests(generator.pseudo_random_data, 32, small), repeats)
    fortuna = Fortuna(SystemClock())
    fortuna.seed_directly(os.urandom(64))
    accumulator = best_of(lambda: run_requests(fortuna.random_data, 32, small), repeats)

    big_bytes_per_s = big.per_second * MAX_REQUEST_BYTES
    ratio = big_bytes_per_s / limit.bytes_per_s
    big_ok = ratio >= TARGET_RATIO
    small_ok = tiny.per_second >= TARGET_SMALL_PER_S
    print("fortuna: generator (AES-256-ECB over little-endian counter blocks, rekey per request)")
    print(f"  1 MiB requests    {big_bytes_per_s / 1e9:>10.2f} GB/s ({big.per_second:,.0f}/s)")
    print(f"  limit             {limit.bytes_per_s / 1e9:>10.2f} GB/s ({limit.source})")
    print(
        f"  ratio to limit    {ratio:>10.2f} "
        f"({'meets' if big_ok else 'MISSES'} the {TARGET_RATIO} target)"
    )
    print(f"  32-byte requests  {tiny.per_second:>10,.0f} /s (Generator.pseudo_random_data)")
    print(f"                    {accumulator.per_second:>10,.0f} /s (Fortuna.random_data)")
    print(
        f"  ratio to target   {tiny.per_second / TARGET_SMALL_PER_S:>10.2f} "
        f"({'meets' if small_ok else 'MISSES'} the {TARGET_SMALL_PER_S:,}/s target)"
    )
    fallback = limit.source.startswith("FALLBACK")
    return [
        Figure(
            NAME,
            "generator, 1 MiB requests",
            big_bytes_per_s / 1e9,
            "GB/s",
            limit=limit.bytes_per_s / 1e9,
            limit_what="cryptography AES-256-CTR (FALLBACK)" if fallback else "openssl AES-256-CTR",
            target=Target(TARGET_RATIO, Direction.AT_LEAST, on_ratio=True),
        ),
        Figure(
            NAME,
            "generator, 32-byte requests",
            tiny.per_second,
            "requests/s",
            target=Target(TARGET_SMALL_PER_S, Direction.AT_LEAST),
        ),
        Figure(
            NAME,
            "Fortuna.random_data, 32-byte requests",
            accumulator.per_second,
            "requests/s",
            limit=tiny.per_second,
            limit_what="generator alone",
        ),
    ]


def main(large: int = 512, small: int = 100_000, repeats: int = 3) -> bool:
    return all_met(measure(large, small, repeats))


def run(quick: bool = False) -> list[Figure]:
    return measure(large=64, small=20_000, repeats=1) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

"""Corpora for NIST-metric regression checks, each with the verdict it must get.

Every corpus is generated from a fixed seed (or, for the OS CSPRNG, recorded once: its output
cannot be reproduced), so its verdict is a fact a CI run can pin. Bad corpora name the tests
that must catch them: the statistical reason is in each description.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CORPORA", "CORPUS_BYTES", "GOOD_CORPUS_BYTES", "Corpus"]

CORPUS_BYTES = 125_000  # one SP 800-22 sequence of 10^6 bits: enough to catch a bad source
# Good corpora hold ten sequences, so their verdict exercises the second-level checks
# (SP 800-22 §4.2.1 proportion per sub-test) as well as the single-sequence path the bad ones use.
GOOD_CORPUS_BYTES = 10 * CORPUS_BYTES
_DATA = Path(__file__).resolve().parent / "data"
# The recorded OS CSPRNG sample (os.urandom, once); pinned so it cannot change unnoticed.
OS_CSPRNG_FILE = _DATA / "os_csprng_10mbit.bin"
OS_CSPRNG_SHA256 = "7dc53f20d9c79c8a050d81e2b86e9ef74057ae3d3c21ab5f468ea2479cf9bf5c"


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    good: bool
    generate: Callable[[], bytes]
    # Tests that must fail: SP 800-22 test names, or "health" for the SP 800-90B verdict.
    caught_by: tuple[str, ...] = ()


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def os_csprng() -> bytes:
    data = OS_CSPRNG_FILE.read_bytes()
    if hashlib.sha256(data).hexdigest() != OS_CSPRNG_SHA256:
        raise ValueError(f"{OS_CSPRNG_FILE} is not the recorded OS CSPRNG sample")
    return data


def aes_ctr() -> bytes:
    key = hashlib.sha256(b"lokey corpus: aes-ctr").digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(GOOD_CORPUS_BYTES)) + encryptor.finalize()


def biased() -> bytes:
    bits = _rng(51).random(CORPUS_BYTES * 8) < 0.51
    return np.packbits(bits).tobytes()


def stuck_bit() -> bytes:
    data = _rng(7).integers(0, 256, CORPUS_BYTES, dtype=np.uint8)
    return (data | 0x01).tobytes()  # the least significant bit of every byte stuck at 1


def repeated_block() -> bytes:
    block = _rng(32).integers(0, 256, 32, dtype=np.uint8).tobytes()
    return (block * (CORPUS_BYTES // 32 + 1))[:CORPUS_BYTES]


def counter() -> bytes:
    return (bytes(range(256)) * (CORPUS_BYTES // 256 + 1))[:CORPUS_BYTES]


def test_pattern() -> bytes:
    return bytes.fromhex("ffff0000") * (CORPUS_BYTES // 4)


def weak_lcg() -> bytes:
    # ANSI C's rand() recurrence; its low byte has short-period low bits (bit k: period 2^(k+1)).
    out = bytearray(CORPUS_BYTES)
    state = 2026
    for i in range(CORPUS_BYTES):
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        out[i] = state & 0xFF
    return bytes(out)


CORPORA: tuple[Corpus, ...] = (
    Corpus("os_csprng", "os.urandom output, recorded once (10 sequences)", True, os_csprng),
    Corpus("aes_ctr", "AES-256-CTR keystream under a fixed key (10 sequences)", True, aes_ctr),
    Corpus(
        "biased",
        "independent bits with P(1) = 0.51: 20 sigma off balance over 10^6 bits, which the "
        "balance tests see and the pattern tests barely do",
        False,
        biased,
        caught_by=("frequency", "runs", "cumulative_sums"),
    ),
    Corpus(
        "stuck_bit",
        "uniform bytes with the least significant bit stuck at 1 (H = 7 bits/byte)",
        False,
        stuck_bit,
        caught_by=("frequency", "runs", "rank", "dft", "serial", "cumulative_sums"),
    ),
    Corpus(
        "repeated_block",
        "one random 32-byte block repeated: balanced, but periodic with period 256 bits",
        False,
        repeated_block,
        caught_by=("health", "rank", "dft", "universal", "linear_complexity", "serial"),
    ),
    Corpus(
        "counter",
        "bytes 00, 01, ..., FF repeated: perfectly balanced, entirely predictable",
        False,
        counter,
        caught_by=("block_frequency", "rank", "dft", "universal", "serial"),
    ),
    Corpus(
        "test_pattern",
        "FF FF 00 00 repeated: the ATECC608A's Random output while its config zone is unlocked",
        False,
        test_pattern,
        caught_by=("health", "runs", "rank", "dft", "serial", "approximate_entropy"),
    ),
    Corpus(
        "weak_lcg",
        "low byte of the ANSI C rand() LCG: its low bits have periods 2, 4, 8, ...",
        False,
        weak_lcg,
        caught_by=("rank", "dft", "universal", "serial", "approximate_entropy"),
    ),
)

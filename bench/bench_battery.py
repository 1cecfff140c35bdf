"""The SP 800-22 battery: seconds per 10^6-bit sequence, against numpy's own floor.

All 15 tests run on ten AES-CTR sequences through :func:`lokey.quality.assess.assess` (health
tests included). The floor, measured in the same run, is the least any battery must do per
sequence: unpack the bytes to bits and take one real FFT of them (the DFT test's core). LoKey's
target: under one second per sequence on one core, so `lokey assess` on a CI-sized corpus and the
regression corpora stay well inside CI's minute.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench._report import Direction, Figure, Target, all_met
from lokey.quality.assess import SEQUENCE_BITS, assess

NAME = "bench_battery"
SEQUENCES = 10
TARGET_S_PER_SEQUENCE = 1.0


def _keystream(size: int) -> bytes:
    key = hashlib.sha256(b"bench_battery").digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(size)) + encryptor.finalize()


def _floor(data: bytes) -> float:
    start = time.perf_counter()
    for i in range(SEQUENCES):
        chunk = data[i * SEQUENCE_BITS // 8 : (i + 1) * SEQUENCE_BITS // 8]
        bits = np.unpackbits(np.frombuffer(chunk, dtype=np.uint8)).astype(np.float64)
        np.fft.rfft(2 * bits - 1)
    return (time.perf_counter() - start) / SEQUENCES


def _battery(data: bytes) -> float:
    start = time.perf_counter()
    result = assess(data)
    elapsed = time.perf_counter() - start
    if result.sequences != SEQUENCES:
        raise RuntimeError(f"expected {SEQUENCES} sequences, assessed {result.sequences}")
    return elapsed / SEQUENCES


def measure(repeats: int = 3) -> list[Figure]:
    data = _keystream(SEQUENCES * SEQUENCE_BITS // 8)
    battery = min(_battery(data) for _ in range(repeats))
    floor = min(_floor(data) for _ in range(repeats))
    ok = battery <= TARGET_S_PER_SEQUENCE
    print(f"battery: 15 SP 800-22 tests + health tests, {SEQUENCES} x 10^6-bit sequences")
    print(f"  battery           {battery * 1000:>10.1f} ms per sequence")
    print(f"  numpy floor       {floor * 1000:>10.1f} ms per sequence (unpack + one rfft)")
    print(f"  ratio to floor    {battery / floor:>10.1f}")
    verdict = "meets" if ok else "MISSES"
    print(
        f"  ratio to target   {battery / TARGET_S_PER_SEQUENCE:>10.2f} "
        f"({verdict} the {TARGET_S_PER_SEQUENCE:g} s per sequence target)"
    )
    return [
        Figure(
            NAME,
            "SP 800-22 battery, 10^6-bit sequence",
            battery * 1000,
            "ms/sequence",
            limit=floor * 1000,
            limit_what="numpy unpack + one rfft",
            target=Target(TARGET_S_PER_SEQUENCE * 1000, Direction.AT_MOST),
        )
    ]


def main(repeats: int = 3) -> bool:
    return all_met(measure(repeats))


def run(quick: bool = False) -> list[Figure]:
    return measure(repeats=1) if quick else measure()


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)

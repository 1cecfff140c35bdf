"""The generator against fortuna.md §2: request splitting, counter use, rekeying, bad input.

The reference is ``SpecGenerator`` (tests/fortuna_helpers.py), a plain transcription of §2; the
counter-reuse properties also instrument the real cipher calls, so they see exactly which
counter blocks the fast code encrypts under which key.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher
from hypothesis import given, settings
from hypothesis import strategies as st

import lokey.fortuna.generator as generator_module
from lokey.errors import FortunaError, FortunaInputError, LokeyError, NotSeededError
from lokey.fortuna import MAX_REQUEST_BYTES, Generator
from tests.fortuna_helpers import MAX_REQUEST, SpecGenerator

# Lengths around every boundary the code has: the to_bytes path (<= 6 output blocks), the
# numpy path, one slice of counter blocks (8192 blocks), the 2^20 cap and its multiples.
BOUNDARY_LENGTHS = [
    0, 1, 15, 16, 17, 95, 96, 97, 112, 113, 1000,
    8190 * 16, 8190 * 16 + 1, 8192 * 16,
    MAX_REQUEST - 1, MAX_REQUEST, MAX_REQUEST + 1, 2 * MAX_REQUEST, 2 * MAX_REQUEST + 17,
]  # fmt: skip
# in sequences, boundaries up to one split (the 2 MiB cases run once each, parametrized below)
lengths = st.one_of(
    st.integers(0, 4000), st.sampled_from([n for n in BOUNDARY_LENGTHS if n <= MAX_REQUEST + 1])
)
seeds = st.binary(max_size=80)


def seeded_pair(seed: bytes = b"seed") -> tuple[Generator, SpecGenerator]:
    fast, spec = Generator(), SpecGenerator()
    fast.reseed(seed)
    spec.reseed(seed)
    return fast, spec


def assert_same_state(fast: Generator, spec: SpecGenerator) -> None:
    assert fast._key == spec.key
    assert fast.counter == spec.counter


# --- the definition --------------------------------------------------------------------


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
def test_every_boundary_length_matches_the_spec(n: int) -> None:
    fast, spec = seeded_pair()
    assert fast.pseudo_random_data(n) == spec.pseudo_random_data(n)
    assert_same_state(fast, spec)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.one_of(lengths, seeds), min_size=1, max_size=8), first=seeds)
def test_any_sequence_of_requests_and_reseeds_matches_the_spec(
    ops: list[int | bytes], first: bytes
) -> None:
    fast, spec = seeded_pair(first)
    for op in ops:
        if isinstance(op, bytes):
            fast.reseed(op)
            spec.reseed(op)
        else:
            assert fast.pseudo_random_data(op) == spec.pseudo_random_data(op)
        assert_same_state(fast, spec)


@settings(max_examples=40, deadline=None)
@given(n=st.one_of(st.integers(0, 3 * MAX_REQUEST + 5), st.sampled_from(BOUNDARY_LENGTHS)))
def test_public_request_is_internal_requests_of_at_most_2_20_bytes(n: int) -> None:
    """§2: one 2^20 chunk, rekey, … remainder, rekey: the same bytes and the same final state
    as calling the internal routine on those chunks."""
    public, internal = Generator(), Generator()
    public.reseed(b"split")
    internal.reseed(b"split")
    chunks = [MAX_REQUEST] * (n // MAX_REQUEST) + ([n % MAX_REQUEST] if n % MAX_REQUEST else [])
    expected = b"".join(internal._single_request(size) for size in chunks or [0])
    assert public.pseudo_random_data(n) == expected
    assert public._key == internal._key
    assert public.counter == internal.counter
    blocks = sum(-(-size // 16) + 2 for size in chunks or [0])
    assert public.counter == 1 + blocks  # §2: C advances by ceil(n/16) + 2 per internal request


@pytest.mark.parametrize(
    "start",
    [
        2**64 - 1,  # bits 64 and up change on the second block (to_bytes path)
        2**64 - 3,
        2**64 - 100,  # sliced path, a carry past bit 64 inside the first slice
        2**64 - 8192 - 5,  # that carry in the second slice
        2**65 - 40,  # high word already 1
        2**16 - 5,  # the low 16 bits wrap inside a slice: bytes 2..15 take a second value
        3 * 2**16 - 8192 + 3,  # the low 16 bits wrap exactly at a later slice's edge, plus 3
        2**128 - 50,  # §1: arithmetic mod 2^128, the wrap inside the first slice
        2**128 - 8192,  # the wrap at the first slice's end: the next slice starts at 0
    ],
)
@pytest.mark.parametrize("n", [16, 300, 8192 * 16 + 200, 70_000])
def test_counter_carries_across_64_bits_and_wraps_mod_2_128(start: int, n: int) -> None:
    fast, spec = seeded_pair()
    fast._counter = spec.counter = start
    for _ in range(3):  # the third request reuses buffers written under a carry
        if fast.counter == 0:  # wrapped onto 0, which means "unseeded" (§2): both refuse
            with pytest.raises(NotSeededError):
                fast.pseudo_random_data(n)
            return
        assert fast.pseudo_random_data(n) == spec.pseudo_random_data(n)
        assert_same_state(fast, spec)


def test_the_counter_is_little_endian() -> None:
    """§1: C = 1 encodes as 01 00 … 00, C = 256 as 00 01 00 … 00."""
    fast, spec = seeded_pair()
    fast._counter = spec.counter = 255
    assert fast.pseudo_random_data(64) == spec.pseudo_random_data(64)
    fast._counter = spec.counter = 2**63 + 2**40 + 7
    assert fast.pseudo_random_data(200) == spec.pseudo_random_data(200)


# --- rekeying and counter use (instrumented) --------------------------------------------


class _Recorder:
    """Wraps ``Cipher`` in the generator module: records (key, counter) of every block."""

    def __init__(self) -> None:
        self.blocks: list[tuple[bytes, int]] = []

    def __call__(self, algorithm: Any, mode: Any) -> Any:
        recorder, key = self, bytes(algorithm.key)
        real = Cipher(algorithm, mode).encryptor()

        class Encryptor:
            def update(self, data: bytes) -> bytes:
                recorder.record(key, data)
                return real.update(data)

            def update_into(self, data: Any, out: Any) -> int:
                recorder.record(key, bytes(data))
                return real.update_into(data, out)

        class Recording:
            def encryptor(self) -> Encryptor:
                return Encryptor()

        return Recording()

    def record(self, key: bytes, data: bytes) -> None:
        words = np.frombuffer(data, dtype="<u8").reshape(-1, 2)
        counters = [int(lo) | int(hi) << 64 for lo, hi in words.tolist()]
        self.blocks.extend((key, c) for c in counters)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    recording = _Recorder()
    monkeypatch.setattr(generator_module, "Cipher", recording)
    return recording


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(st.one_of(lengths, seeds), min_size=1, max_size=10))
def test_no_counter_value_is_ever_encrypted_twice(ops: list[int | bytes]) -> None:
    """Across requests and reseeds every encrypted counter is new, each request's blocks are
    exactly C .. C + ceil(n/16) + 1, and every key encrypts for one internal request only."""
    with pytest.MonkeyPatch.context() as patch:
        recording = _Recorder()
        patch.setattr(generator_module, "Cipher", recording)
        generator = Generator()
        generator.reseed(b"start")
        keys_used: list[bytes] = []
        for op in ops:
            if isinstance(op, bytes):
                generator.reseed(op)
                continue
            before = len(recording.blocks)
            counter = generator.counter
            output = generator.pseudo_random_data(op)
            assert len(output) == op
            used = recording.blocks[before:]
            internal = max(1, -(-op // MAX_REQUEST))
            assert [c for _, c in used] == list(range(counter, counter + len(used)))
            assert len(used) == -(-op // 16) + 2 * internal
            keys_used.extend(dict.fromkeys(key for key, _ in used))
        counters = [c for _, c in recording.blocks]
        assert len(counters) == len(set(counters))
        assert len(keys_used) == len(set(keys_used))  # a key never serves two requests


def test_rekey_after_every_request_even_one_byte(recorder: _Recorder) -> None:
    """§2/§8: the two blocks after the output become the key; the next request starts after
    them, so its first block is not the key a lazy generator would reveal."""
    generator = Generator()
    generator.reseed(b"x")
    key0 = generator._key
    generator.pseudo_random_data(1)
    key1 = generator._key
    assert key1 != key0
    assert generator.counter == 1 + 1 + 2
    assert generator.pseudo_random_data(32) != key1  # §8: without the rekey it would be key1
    keys = [key for key, _ in recorder.blocks]
    assert keys[:3] == [key0] * 3
    assert len(set(keys)) == 2


def test_zero_byte_request_still_rekeys() -> None:
    fast, spec = seeded_pair()
    assert fast.pseudo_random_data(0) == b"" == spec.pseudo_random_data(0)
    assert_same_state(fast, spec)
    assert fast.counter == 3


def test_the_reused_output_buffer_is_wiped_after_each_request() -> None:
    generator = Generator()
    generator.reseed(b"wipe")
    generator.pseudo_random_data(5000)
    assert not any(generator._out)


def test_reseed_hashes_the_old_key_in() -> None:
    """§2 Reseed: K <- SHAd-256(K || s); the same seed on different keys gives different keys."""
    a, b = Generator(), Generator()
    a.reseed(b"one")
    b.reseed(b"two")
    a.reseed(b"same")
    b.reseed(b"same")
    assert a._key != b._key
    assert a.counter == b.counter == 2


def test_concurrent_requests_never_share_a_counter() -> None:
    """§5: two requests must never read the same (K, C)."""
    generator = Generator()
    generator.reseed(b"threads")
    outputs: list[bytes] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [generator.pseudo_random_data(32) for _ in range(300)]
        mine += [generator.pseudo_random_data(3000) for _ in range(20)]
        with lock:
            outputs.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(outputs)) == len(outputs) == 4 * 320
    per_thread = 300 * (2 + 2) + 20 * (188 + 2)
    assert generator.counter == 1 + 4 * per_thread


# --- refusals and bad input ----------------------------------------------------------------


def test_refuses_before_the_first_seed() -> None:
    generator = Generator()
    assert not generator.seeded
    for n in (0, 1, 32, MAX_REQUEST_BYTES, MAX_REQUEST_BYTES + 1):
        with pytest.raises(NotSeededError, match="not seeded"):
            generator.pseudo_random_data(n)
    assert generator.counter == 0
    generator.reseed(b"")  # §2: any length, including empty
    assert generator.seeded
    assert len(generator.pseudo_random_data(1)) == 1


@pytest.mark.parametrize("n", [-1, -(2**70)])
def test_negative_lengths_are_value_errors(n: int) -> None:
    generator = Generator()
    generator.reseed(b"x")
    with pytest.raises(FortunaInputError, match="negative") as caught:
        generator.pseudo_random_data(n)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, FortunaError)
    assert isinstance(caught.value, LokeyError)


@pytest.mark.parametrize("n", [1.0, "3", None, True])
def test_non_integer_lengths_are_type_errors(n: object) -> None:
    generator = Generator()
    generator.reseed(b"x")
    with pytest.raises(TypeError):
        generator.pseudo_random_data(n)  # type: ignore[arg-type]


def test_numpy_integer_lengths_are_accepted() -> None:
    fast, spec = seeded_pair()
    assert fast.pseudo_random_data(np.int64(40)) == spec.pseudo_random_data(40)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", ["text", 5, None])
def test_seeds_must_be_bytes(seed: object) -> None:
    with pytest.raises(TypeError, match="bytes"):
        Generator().reseed(seed)  # type: ignore[arg-type]


def test_internal_request_over_2_20_is_refused_without_consuming_anything() -> None:
    generator = Generator()
    generator.reseed(b"x")
    with pytest.raises(FortunaInputError):
        generator._single_request(MAX_REQUEST_BYTES + 1)
    assert generator.counter == 1
    assert len(generator._single_request(MAX_REQUEST_BYTES)) == MAX_REQUEST_BYTES


def test_repr_never_shows_the_key() -> None:
    generator = Generator()
    generator.reseed(b"x")
    assert generator._key.hex() not in repr(generator)
    assert repr(generator) == "Generator(seeded=True)"

"""Every case of ``shared/vectors/fortuna_generator.json`` and ``fortuna_accumulator.json``.

Generator known answers (PyCrypto test_FortunaGenerator), SHAd-256 and pool hashing (PyCrypto
test_SHAd256 / test_FortunaAccumulator), the accumulator's full reseed run, the minimum pool size
run and every pool-selection case, each reproduced exactly (fortuna.md §§1-3).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from lokey.errors import FortunaInputError, NotSeededError
from lokey.fortuna import Fortuna, Generator, Pool, shad256, which_pools
from sim.clock import VirtualClock
from tests.fortuna_helpers import accumulator_vectors, generator_vectors


def _input(case: dict[str, Any]) -> bytes:
    if "input_repeat" in case:
        repeat = case["input_repeat"]
        count: int = repeat["count"]
        return bytes.fromhex(repeat["byte_hex"]) * count
    return bytes.fromhex(case["input_hex"])


# --- generator ---------------------------------------------------------------------------


def test_generator_conventions_are_the_ones_implemented() -> None:
    conventions = generator_vectors()["conventions"]
    assert "32 zero bytes" in conventions["initial_state"]
    assert conventions["reseed"] == "key = SHA256(SHA256(key || seed)); counter += 1"
    assert "little-endian" in conventions["counter_encoding"]
    assert conventions["block"] == "AES-256-ECB(key, counter_block)"


def test_generator_steps() -> None:
    """Steps 1-5 in order, on one generator, checking every field the vector gives."""
    generator = Generator()
    steps = generator_vectors()["steps"]
    assert [step["step"] for step in steps] == [1, 2, 3, 4, 5]
    for step in steps:
        op = step["op"]
        if op == "pseudo_random_data" and step.get("expect") == "error":
            with pytest.raises(NotSeededError):
                generator.pseudo_random_data(step["n"])
            assert generator.counter == 0
        elif op == "reseed":
            generator.reseed(bytes.fromhex(step["seed_hex"]))
            assert step["seed_ascii"].encode() == bytes.fromhex(step["seed_hex"])
            assert generator._key.hex() == step["key_after_hex"]
            assert generator.counter == step["counter_after"]
        elif op == "pseudo_random_data":
            key_before, counter_before = generator._key, generator.counter
            output = generator.pseudo_random_data(step["n"])
            assert output.hex() == step["output_hex"]
            _check_blocks(key_before, counter_before, step)
            if "key_after_hex" in step:
                assert generator._key.hex() == step["key_after_hex"]
            if "counter_after" in step:
                assert generator.counter == step["counter_after"]
        elif op == "internal_pseudo_random_data":
            assert step["expect"] == "error"
            counter_before = generator.counter
            with pytest.raises(FortunaInputError, match="at most 2"):
                generator._single_request(step["n"])
            assert generator.counter == counter_before  # nothing was consumed
            # ... while the public call splits the same request (2^20 bytes, rekey, 1 byte)
            assert len(generator.pseudo_random_data(step["n"])) == step["n"]
            assert generator.counter == counter_before + (2**16 + 2) + (1 + 2)
        else:
            raise AssertionError(f"unknown op {op!r}")


def _check_blocks(key: bytes, counter: int, step: dict[str, Any]) -> None:
    """The per-block detail: counter encodings and E(K, C) for output and key blocks."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = step["output_blocks"] + step.get("key_blocks", [])
    for offset, block in enumerate(blocks):
        assert block["counter"] == counter + offset
        encoded = block["counter"].to_bytes(16, "little")
        assert encoded.hex() == block["counter_block_hex"]
        assert ecb.update(encoded).hex() == block["block_hex"]
    joined = "".join(b["block_hex"] for b in step["output_blocks"])
    assert joined.startswith(step["output_hex"])
    if "key_blocks" in step:
        assert "".join(b["block_hex"] for b in step["key_blocks"]) == step["key_after_hex"]


# --- SHAd-256 and pools ------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    accumulator_vectors()["shad256_cases"],
    ids=lambda c: c.get("input_ascii", "a x 1e6")[:12] or "empty",
)
def test_shad256(case: dict[str, Any]) -> None:
    assert shad256(_input(case)).hex() == case["shad256_hex"]


def test_pool_hash_cases() -> None:
    """One pool, appended to in the order the cases give (PyCrypto test_FortunaAccumulator)."""
    pool = Pool()
    for case in accumulator_vectors()["pool_hash_cases"]:
        if "appends_repeat" in case:
            pool.reset()
            repeat = case["appends_repeat"]
            pool.append(bytes.fromhex(repeat["byte_hex"]) * repeat["count"])
        else:
            pool.reset()
            for append in case["appends_hex"]:
                pool.append(bytes.fromhex(append))
        assert pool.length == case["pool_length"], case["name"]
        assert pool.shad256().hex() == case["shad256_hex"], case["name"]


# --- the accumulator ---------------------------------------------------------------------


def test_accumulator_conventions_are_the_ones_implemented() -> None:
    conventions = accumulator_vectors()["conventions"]
    assert conventions["event_framing"].startswith("pool_i ||= source_byte || length_byte")
    assert "never the generator counter" in conventions["reseed_count_note"]


def test_full_run() -> None:
    clock = VirtualClock(start=1000.0)
    fortuna = Fortuna(clock)
    for step in accumulator_vectors()["full_run"]:
        op = step["op"]
        if op == "random_data" and step.get("expect") == "error":
            with pytest.raises(NotSeededError, match="not seeded"):
                fortuna.random_data(step["n"])
            assert fortuna.reseed_count == 0
        elif op == "add_random_event_each_pool":
            assert step["pools"] == "0..31"
            for pool in range(32):
                fortuna.add_random_event(step["source"], pool, bytes.fromhex(step["event_hex"]))
            assert fortuna.pool_sizes == (step["pool_lengths_after"],) * 32
            if "pool0_sha256_state_digest_hex" in step:
                pool0 = fortuna._pools[0]
                assert pool0._hash.digest().hex() == step["pool0_sha256_state_digest_hex"]
                assert pool0.shad256().hex() == step["pool0_shad256_hex"]
                inner = (bytes((step["source"], 32)) + bytes.fromhex(step["event_hex"])) * 2
                assert hashlib.sha256(inner).hexdigest() == step["pool0_sha256_state_digest_hex"]
                assert fortuna._generator.counter == step["generator_counter_after"]
                assert not fortuna.seeded
        elif op == "random_data":
            _full_run_reseed_step(fortuna, step)
        else:
            raise AssertionError(f"unknown op {op!r}")


def _full_run_reseed_step(fortuna: Fortuna, step: dict[str, Any]) -> None:
    reseed = step["reseed"]
    seed = bytes.fromhex(reseed["seed_hex"])
    # the reseed's inner values, on a bare generator fed the vector's seed
    inner = hashlib.sha256(bytes(32) + seed).hexdigest()
    assert inner == reseed["inner_sha256_of_zero_key_and_seed_hex"]
    bare = Generator()
    bare.reseed(seed)
    assert bare._key.hex() == reseed["key_after_reseed_hex"]
    assert bare.counter == reseed["counter_after_reseed"]
    assert seed == fortuna._pools[0].shad256()  # pools_used [0]: the seed is SHAd-256(P0)
    assert list(which_pools(reseed["reseed_count"])) == reseed["pools_used"]

    output = fortuna.random_data(step["n"])
    assert output.hex() == step["output_hex"]
    assert fortuna.reseed_count == reseed["reseed_count"]
    assert fortuna.seeded
    assert fortuna._generator._key.hex() == step["key_after_hex"]
    assert fortuna._generator.counter == step["counter_after"]
    sizes = step["pool_lengths_after"]
    assert fortuna.pool_sizes == (sizes["pool0"],) + (sizes["pools1_31"],) * 31
    joined = "".join(block["block_hex"] for block in step["output_blocks"])
    assert joined == step["output_hex"]
    for offset, block in enumerate(step["output_blocks"]):
        assert block["counter"] == reseed["counter_after_reseed"] + offset
        assert block["counter"].to_bytes(16, "little").hex() == block["counter_block_hex"]


def test_min_pool_size_run() -> None:
    run = accumulator_vectors()["min_pool_size_run"]
    fortuna = Fortuna(VirtualClock())
    event = bytes.fromhex(run["event_hex"])
    for _ in range(run["rounds"]):
        for pool in range(32):
            fortuna.add_random_event(run["source"], pool, event)
            with pytest.raises(NotSeededError):
                fortuna.random_data(1)
    assert fortuna.pool_sizes[0] == run["pool0_length_before_last_event"]
    fortuna.add_random_event(run["source"], 0, event)
    assert fortuna.pool_sizes[0] == run["pool0_length_at_success"]
    assert len(fortuna.random_data(1)) == 1
    assert fortuna.reseed_count == 1


@pytest.mark.parametrize(
    "case", accumulator_vectors()["which_pools"], ids=lambda c: str(c["reseed_count"])
)
def test_which_pools(case: dict[str, Any]) -> None:
    assert list(which_pools(case["reseed_count"])) == case["pools"]


@pytest.mark.parametrize("reseed_count", accumulator_vectors()["which_pools_invalid"])
def test_which_pools_invalid(reseed_count: int) -> None:
    with pytest.raises(FortunaInputError, match="start at 1"):
        which_pools(reseed_count)


def test_which_pools_cases_cover_the_spec_list() -> None:
    """fortuna.md §3: r = 2^i - 1, 2^i, 2^i + 1 for every i in 1..31, and 2^32..2^64, 2^128."""
    counts = {case["reseed_count"] for case in accumulator_vectors()["which_pools"]}
    for i in range(1, 32):
        assert {2**i - 1, 2**i, 2**i + 1} <= counts
    assert {2**i for i in range(32, 65)} | {2**128} <= counts

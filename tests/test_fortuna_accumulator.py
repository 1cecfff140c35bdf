"""The accumulator against fortuna.md §3 and §5: the reseed rule on a VirtualClock, pool choice
by the reseed count, event framing and limits, direct seeding, and bad input.

A small model (pools as byte strings, ``SpecGenerator``) predicts every reseed's seed and every
output, so the tests check the construction, not just counters.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lokey.errors import FortunaError, FortunaInputError, LokeyError, NotSeededError
from lokey.fortuna import (
    MIN_POOL_SIZE,
    NUM_POOLS,
    RESEED_INTERVAL_S,
    Fortuna,
    which_pools,
)
from sim.clock import VirtualClock
from tests.fortuna_helpers import FIXED_ENTROPY, SpecGenerator, fixed_entropy, spec_shad256

EVENT = b"\x58" * 32


class Model:
    """fortuna.md §3 with pools as plain growing byte strings."""

    def __init__(self) -> None:
        self.pools = [b""] * NUM_POOLS
        self.reseed_count = 0
        self.last_reseed: float | None = None
        self.generator = SpecGenerator()

    def add(self, source: int, pool: int, data: bytes) -> None:
        self.pools[pool] += bytes((source, len(data))) + data

    def random_data(self, n: int, now: float) -> bytes | None:
        if len(self.pools[0]) >= MIN_POOL_SIZE and (
            self.last_reseed is None or now - self.last_reseed >= RESEED_INTERVAL_S - 1e-9
        ):
            self.reseed_count += 1
            seed = b""
            for i in range(NUM_POOLS):
                if self.reseed_count % 2**i:
                    break
                seed += spec_shad256(self.pools[i])
                self.pools[i] = b""
            self.generator.reseed(seed)
            self.last_reseed = now
        if self.generator.counter == 0:
            return None
        return self.generator.pseudo_random_data(n)


def fill_pool0(fortuna: Fortuna, model: Model | None = None) -> None:
    for _ in range(2):  # two 32-byte events: 68 bytes >= MinPoolSize
        fortuna.add_random_event(7, 0, EVENT)
        if model is not None:
            model.add(7, 0, EVENT)


# --- the reseed rule (§3 RandomData step 1) ------------------------------------------------


def test_first_reseed_needs_64_bytes_in_p0_but_no_waiting() -> None:
    clock = VirtualClock(start=50.0)
    fortuna = Fortuna(clock)
    for pool in range(1, NUM_POOLS):  # lots of entropy, but not in P0
        fortuna.add_random_event(1, pool, EVENT)
        fortuna.add_random_event(1, pool, EVENT)
    fortuna.add_random_event(1, 0, b"\x01" * 30)  # P0: 32 bytes
    fortuna.add_random_event(1, 0, b"\x02" * 29)  # P0: 63 bytes
    assert fortuna.pool_sizes[0] == 63
    with pytest.raises(NotSeededError):
        fortuna.random_data(16)
    fortuna.add_random_event(1, 0, b"\x03")  # P0: 66 bytes
    assert len(fortuna.random_data(16)) == 16
    assert fortuna.reseed_count == 1
    assert fortuna.last_reseed == 50.0


@pytest.mark.parametrize(
    ("wait", "reseeds"),
    [(0.0, False), (0.05, False), (0.0999, False), (0.1, True), (0.1001, True), (5.0, True)],
)
def test_reseeds_are_at_least_100_ms_apart(wait: float, reseeds: bool) -> None:
    clock = VirtualClock(start=5.0)
    fortuna = Fortuna(clock)
    fill_pool0(fortuna)
    fortuna.random_data(1)
    assert fortuna.reseed_count == 1
    fill_pool0(fortuna)
    clock.advance(wait)
    fortuna.random_data(1)
    assert fortuna.reseed_count == (2 if reseeds else 1)
    assert fortuna.last_reseed == (5.0 + wait if reseeds else 5.0)
    assert fortuna.pool_sizes[0] == (0 if reseeds else 68)


def test_time_alone_never_reseeds_and_p0_alone_never_reseeds_early() -> None:
    """AND, not OR (§8: libtomcrypt#363)."""
    clock = VirtualClock()
    fortuna = Fortuna(clock)
    fill_pool0(fortuna)
    fortuna.random_data(1)
    clock.advance(3600.0)
    fortuna.add_random_event(0, 0, EVENT)  # 34 bytes: below MinPoolSize
    fortuna.random_data(1)
    assert fortuna.reseed_count == 1
    fortuna.add_random_event(0, 0, EVENT)
    fortuna.random_data(1)
    assert fortuna.reseed_count == 2
    for _ in range(10):  # a flood of requests with a full P0 but no time passing
        fill_pool0(fortuna)
        fortuna.random_data(1)
    assert fortuna.reseed_count == 2


def test_a_clock_that_goes_backwards_blocks_reseeding_until_it_catches_up() -> None:
    class Rewind:
        now = 100.0

        def monotonic(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    clock = Rewind()
    fortuna = Fortuna(clock)
    fill_pool0(fortuna)
    fortuna.random_data(1)
    clock.now = 10.0
    fill_pool0(fortuna)
    fortuna.random_data(1)
    assert fortuna.reseed_count == 1
    clock.now = 100.1
    fortuna.random_data(1)
    assert fortuna.reseed_count == 2


# --- pool selection by the reseed count ----------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    reseeds=st.integers(1, 70),
    extra=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 31), st.binary(min_size=1, max_size=32)),
        max_size=40,
    ),
    requests=st.lists(st.integers(0, 300), min_size=1, max_size=3),
)
def test_reseed_count_drives_pool_choice(
    reseeds: int, extra: list[tuple[int, int, bytes]], requests: list[int]
) -> None:
    """Pool i is drained on reseed r iff 2^i | r; the seed is their SHAd-256 values in order;
    the output is the spec generator's on that seed; the generator's own counter never
    matters (§9 defect 3)."""
    clock = VirtualClock()
    fortuna, model = Fortuna(clock), Model()
    for event in extra:
        fortuna.add_random_event(*event)
        model.add(*event)
    for r in range(1, reseeds + 1):
        for pool in range(NUM_POOLS):
            data = hashlib.sha256(f"{r}/{pool}".encode()).digest()
            for _ in range(2):
                fortuna.add_random_event(pool, pool, data)
                model.add(pool, pool, data)
        before = fortuna.pool_sizes
        for n in requests:
            assert fortuna.random_data(n) == model.random_data(n, clock.monotonic())
        assert fortuna.reseed_count == model.reseed_count == r
        after = fortuna.pool_sizes
        drained = tuple(i for i in range(NUM_POOLS) if after[i] == 0)
        assert drained == which_pools(r)
        assert all(after[i] == before[i] for i in range(NUM_POOLS) if i not in drained)
        clock.advance(0.1)


def test_all_32_pools_at_reseed_counts_divisible_by_2_31() -> None:
    clock = VirtualClock()
    fortuna, model = Fortuna(clock), Model()
    fortuna._reseed_count = model.reseed_count = 2**40 - 1
    for pool in range(NUM_POOLS):
        for _ in range(2):
            fortuna.add_random_event(3, pool, EVENT)
            model.add(3, pool, EVENT)
    assert fortuna.random_data(48) == model.random_data(48, 0.0)
    assert fortuna.reseed_count == 2**40
    assert fortuna.pool_sizes == (0,) * NUM_POOLS


# --- events (§3 AddRandomEvent) ------------------------------------------------------------


def test_event_framing_and_pool_length() -> None:
    """P_i <- P_i || s || len(e) || e; a pool's length counts the two header bytes."""
    fortuna = Fortuna(VirtualClock())
    fortuna.add_random_event(255, 31, b"\xab")
    fortuna.add_random_event(0, 31, b"\xcd" * 32)
    assert fortuna.pool_sizes[31] == 3 + 34
    expected = hashlib.sha256(hashlib.sha256(b"\xff\x01\xab" + b"\x00\x20" + b"\xcd" * 32).digest())
    assert fortuna._pools[31].shad256() == expected.digest()


@pytest.mark.parametrize(
    ("source", "pool", "data", "match"),
    [
        (-1, 0, b"x", "source must be in 0..255"),
        (256, 0, b"x", "source must be in 0..255"),
        (0, -1, b"x", "pool index must be in 0..31"),
        (0, 32, b"x", "pool index must be in 0..31"),
        (0, 0, b"", "1..32 bytes, got 0"),
        (0, 0, b"x" * 33, "1..32 bytes, got 33"),
    ],
)
def test_out_of_range_events_are_value_errors(
    source: int, pool: int, data: bytes, match: str
) -> None:
    fortuna = Fortuna(VirtualClock())
    with pytest.raises(FortunaInputError, match=match) as caught:
        fortuna.add_random_event(source, pool, data)
    assert isinstance(caught.value, ValueError)
    assert fortuna.pool_sizes == (0,) * NUM_POOLS


@pytest.mark.parametrize(
    ("source", "pool", "data"),
    [("1", 0, b"x"), (1.0, 0, b"x"), (True, 0, b"x"), (0, None, b"x"), (0, 0, "x"), (0, 0, 5)],
)
def test_wrongly_typed_events_are_type_errors(source: object, pool: object, data: object) -> None:
    fortuna = Fortuna(VirtualClock())
    with pytest.raises(TypeError):
        fortuna.add_random_event(source, pool, data)  # type: ignore[arg-type]


def test_events_accept_any_bytes_like() -> None:
    fortuna = Fortuna(VirtualClock())
    fortuna.add_random_event(1, 0, bytearray(b"ab"))
    fortuna.add_random_event(1, 0, memoryview(b"cd"))
    assert fortuna.pool_sizes[0] == 8


def test_seed_material_is_split_into_32_byte_events_round_robin_per_source() -> None:
    fortuna, model = Fortuna(VirtualClock()), Model()
    material = bytes(range(256)) * 5  # 1280 bytes: 40 events
    assert fortuna.add_seed_material(9, material) == 40
    for index in range(40):
        model.add(9, index % 32, material[32 * index : 32 * index + 32])
    assert fortuna.add_seed_material(9, b"tail") == 1  # continues at pool 40 % 32 = 8
    model.add(9, 8, b"tail")
    assert fortuna.add_seed_material(4, b"other source") == 1  # its own round robin: pool 0
    model.add(4, 0, b"other source")
    assert fortuna.add_seed_material(4, b"") == 0
    assert fortuna.pool_sizes == tuple(len(p) for p in model.pools)
    assert [p.shad256() for p in fortuna._pools] == [spec_shad256(p) for p in model.pools]


# --- seeding and output (§3 steps 2-3, §5 start-up) ----------------------------------------


def test_no_output_before_seeding_whatever_is_asked() -> None:
    fortuna = Fortuna(VirtualClock())
    for n in (0, 1, 2**20, 2**21):
        with pytest.raises(NotSeededError) as caught:
            fortuna.random_data(n)
        assert isinstance(caught.value, FortunaError)
        assert isinstance(caught.value, LokeyError)
    assert not fortuna.seeded
    assert fortuna.bytes_generated == 0


def test_seed_directly_is_one_generator_reseed_outside_the_pools() -> None:
    clock = VirtualClock(start=3.0)
    fortuna = Fortuna(clock, extra_entropy=fixed_entropy)
    fortuna.add_random_event(0, 1, EVENT)
    seed = bytes(range(64))
    fortuna.seed_directly(seed)
    assert fortuna.seeded
    assert fortuna.reseed_count == 0
    assert fortuna.last_reseed is None
    assert fortuna.pool_sizes[1] == 34
    spec = SpecGenerator()
    spec.reseed(seed + FIXED_ENTROPY)  # OS entropy rides along with a direct seed
    assert fortuna.random_data(100) == spec.pseudo_random_data(100)
    assert fortuna.bytes_generated == 100
    # a later pool reseed hashes the direct seed's key in (K <- SHAd-256(K || s))
    fill_pool0(fortuna)
    clock.advance(0.2)
    out = fortuna.random_data(32)
    spec.reseed(spec_shad256(bytes((7, 32)) + EVENT + bytes((7, 32)) + EVENT))
    assert out == spec.pseudo_random_data(32)
    assert fortuna.reseed_count == 1


@pytest.mark.parametrize("length", [0, 32, 63])
def test_seed_directly_needs_64_bytes(length: int) -> None:
    fortuna = Fortuna(VirtualClock())
    with pytest.raises(FortunaInputError, match="at least 64 bytes"):
        fortuna.seed_directly(b"\x01" * length)
    assert not fortuna.seeded


def test_seed_directly_wants_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        Fortuna(VirtualClock()).seed_directly("x" * 64)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [-1, -100])
def test_negative_random_data_is_a_value_error(n: int) -> None:
    fortuna = Fortuna(VirtualClock())
    fortuna.seed_directly(bytes(range(64)))
    with pytest.raises(FortunaInputError, match="negative"):
        fortuna.random_data(n)


def test_large_requests_are_split_like_the_generator() -> None:
    fortuna = Fortuna(VirtualClock(), extra_entropy=fixed_entropy)
    fortuna.seed_directly(bytes(range(64)))
    spec = SpecGenerator()
    spec.reseed(bytes(range(64)) + FIXED_ENTROPY)
    n = 2**20 + 100
    assert fortuna.random_data(n) == spec.pseudo_random_data(n)
    assert fortuna.bytes_generated == n


def test_state_properties() -> None:
    fortuna = Fortuna(VirtualClock())
    assert fortuna.pool_sizes == (0,) * 32
    assert fortuna.reseed_count == 0
    assert fortuna.last_reseed is None
    assert fortuna.seed_file is None
    assert fortuna.seed_file_status is None
    assert fortuna.seed_file_message is None
    assert "seeded=False" in repr(fortuna)
    fortuna.write_seed_file()  # no seed file configured: nothing to do


def test_the_same_direct_seed_gives_different_keys_because_os_entropy_rides_along() -> None:
    # Whoever supplied the first seed (a client, at worst) must not know the key (fortuna.md §5).
    first, second = Fortuna(VirtualClock()), Fortuna(VirtualClock())
    first.seed_directly(bytes(range(64)))
    second.seed_directly(bytes(range(64)))
    assert first.random_data(32) != second.random_data(32)

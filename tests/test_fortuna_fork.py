"""Fork safety (fortuna.md §5 "Fork", §8 "no re-seed after fork", CVE-2013-1445).

Behaviour under test: in a forked child every *seeded* generator reseeds itself from
``os.urandom`` (K <- SHAd-256(K || 32 fresh bytes), C <- C + 1) before the child runs any code,
so the child's stream **differs** from the parent's and from every sibling's; an *unseeded*
generator stays unseeded and the child **refuses** (NotSeededError) exactly as the parent
would. Locks are replaced in the child, so a lock held by another parent thread at fork time
cannot deadlock it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lokey.fortuna import Fortuna, Generator
from sim.clock import VirtualClock
from tests.fortuna_helpers import SpecGenerator, run_in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_child_stream_differs_from_the_parents() -> None:
    generator = Generator()
    generator.reseed(b"parent seed")
    counter = generator.counter
    child = run_in_child(lambda: generator.pseudo_random_data(64))
    parent = generator.pseudo_random_data(64)
    assert child.startswith(b"OK:")
    assert len(child) == 3 + 64
    assert child[3:] != parent
    # the parent is untouched: its output is exactly the spec's continuation
    spec = SpecGenerator()
    spec.reseed(b"parent seed")
    assert parent == spec.pseudo_random_data(64)
    assert counter == 1


def test_the_child_reseeded_once_from_fresh_entropy() -> None:
    generator = Generator()
    generator.reseed(b"x")

    def counter_in_child() -> bytes:
        return str(generator.counter).encode()

    report = run_in_child(counter_in_child)
    assert report == b"OK:2"  # one reseed in the child: C + 1


def test_siblings_differ_from_each_other() -> None:
    generator = Generator()
    generator.reseed(b"shared parent state")
    streams = {run_in_child(lambda: generator.pseudo_random_data(32)) for _ in range(3)}
    assert len(streams) == 3
    assert all(s.startswith(b"OK:") for s in streams)


def test_unseeded_generator_refuses_in_the_child_too() -> None:
    generator = Generator()
    assert run_in_child(lambda: generator.pseudo_random_data(16)) == b"ERR:NotSeededError"


def test_fortuna_child_differs_and_its_pools_keep_working() -> None:
    clock = VirtualClock()
    fortuna = Fortuna(clock)
    fortuna.seed_directly(bytes(range(64)))

    def in_child() -> bytes:
        out = fortuna.random_data(32)
        for _ in range(2):
            fortuna.add_random_event(1, 0, b"\x33" * 32)
        return out + fortuna.random_data(32) + bytes([fortuna.reseed_count])

    child = run_in_child(in_child)
    parent = fortuna.random_data(32)
    assert child.startswith(b"OK:")
    assert child[3:35] != parent
    assert child[-1] == 1  # the child's accumulator reseeded from its pools normally


def test_unseeded_fortuna_refuses_in_the_child() -> None:
    fortuna = Fortuna(VirtualClock())
    assert run_in_child(lambda: fortuna.random_data(1)) == b"ERR:NotSeededError"


def test_a_child_drops_the_parents_seed_file(tmp_path: Path) -> None:
    # fortuna.md §4: the seed file is locked against concurrent users; the lock is the parent's.
    path = tmp_path / "seed"
    with Fortuna(VirtualClock(), seed_file=path) as fortuna:
        fortuna.seed_directly(bytes(range(64)))
        before = path.read_bytes()
        child = run_in_child(lambda: repr(fortuna.seed_file).encode())
        assert child == b"OK:None"
        assert path.read_bytes() == before  # the child wrote nothing


def test_a_lock_held_by_another_parent_thread_does_not_deadlock_the_child() -> None:
    fortuna = Fortuna(VirtualClock())
    fortuna.seed_directly(bytes(range(64)))
    holding, release = threading.Event(), threading.Event()

    def hold_locks() -> None:
        with fortuna._lock, fortuna._generator._lock:
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold_locks)
    thread.start()
    try:
        assert holding.wait(10)
        child = run_in_child(lambda: fortuna.random_data(16), timeout_s=10)
    finally:
        release.set()
        thread.join()
    assert child.startswith(b"OK:")
    assert len(child) == 3 + 16


def test_the_registry_does_not_keep_generators_alive() -> None:
    import gc
    import weakref

    from lokey.fortuna import _fork

    generator = Generator()
    assert generator in _fork._LIVE
    ref = weakref.ref(generator)
    del generator
    gc.collect()
    assert ref() is None

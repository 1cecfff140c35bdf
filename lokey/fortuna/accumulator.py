"""Fortuna's accumulator: 32 pools, the reseed rule, the seed file (fortuna.md §§3-5).

* Pools are running SHA-256 states, never growing byte strings (§3); a pool's length counts the
  two framing bytes of every event. SHAd-256(Pi) is SHA-256 of the running state's digest.
* ``add_random_event(s, i, e)`` appends ``s ‖ len(e) ‖ e`` to Pi; 0 ≤ s ≤ 255, 0 ≤ i ≤ 31,
  1 ≤ len(e) ≤ 32, anything else raises (§3 AddRandomEvent).
* ``random_data(n)`` reseeds first iff len(P0) ≥ 64 bytes **and** the last reseed was at least
  100 ms ago on the injected monotonic clock (or never happened); reseed number r uses pool i
  iff 2^i divides r, drains those pools and reseeds the generator with the concatenation of
  their SHAd-256 values. Without a seeded generator it raises
  :class:`~lokey.errors.NotSeededError`; it never returns unseeded output (§3 RandomData).
* Start-up (§4, §5 and design.md "Fortuna start-up"): a valid seed file is read at
  construction, reseeds the generator directly (not through the pools) and is rewritten with
  fresh output before any output is handed out; without one, :meth:`Fortuna.seed_directly`
  does the same with ≥ 64 bytes of health-tested TRNG output. The seed file is rewritten after
  every pool reseed, on :meth:`Fortuna.write_seed_file` and on :meth:`Fortuna.close`.

All state changes happen under one lock (§5). The class reads time only through the injected
:class:`~lokey.clock.Clock`; its only I/O is the optional seed file (:mod:`.seedfile`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from lokey.clock import Clock
from lokey.errors import FortunaInputError, NotSeededError, SeedFileError
from lokey.fortuna import _fork, seedfile
from lokey.fortuna.generator import Generator, _request_length
from lokey.fortuna.seedfile import SEED_FILE_SIZE, SeedFileStatus

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_SOURCE",
    "MIN_DIRECT_SEED_BYTES",
    "MIN_POOL_SIZE",
    "NUM_POOLS",
    "RESEED_INTERVAL_S",
    "Fortuna",
    "Pool",
    "which_pools",
]

NUM_POOLS = 32  # §3
MIN_POOL_SIZE = 64  # §3 MinPoolSize, bytes in P0 (framing included)
RESEED_INTERVAL_S = 0.1  # §3: at least 100 ms between reseeds
MAX_SOURCE = 255  # §3: a source number fits one byte
MAX_EVENT_BYTES = 32  # §3: 1 ≤ len(e) ≤ 32
MIN_DIRECT_SEED_BYTES = 64  # §5: a direct start-up reseed takes at least 64 bytes
# Clock readings are floats: "exactly 100 ms later" may come out a few ulps short
# (5.1 - 5.0 = 0.0999999999999996). A nanosecond of slack keeps ">= 100 ms" meaning that.
_TIME_SLACK_S = 1e-9


class Pool:
    """One entropy pool (fortuna.md §3): a running SHA-256 state and the byte count appended."""

    __slots__ = ("_hash", "_length")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._length = 0

    @property
    def length(self) -> int:
        """Bytes appended since the pool was last emptied (framing bytes included)."""
        return self._length

    def append(self, data: bytes) -> None:
        self._hash.update(data)
        self._length += len(data)

    def shad256(self) -> bytes:
        """SHAd-256 of everything appended: SHA-256 of the running state's digest (§3)."""
        return hashlib.sha256(self._hash.digest()).digest()

    def reset(self) -> None:
        """Empty the pool (length 0, fresh hash state)."""
        self._hash = hashlib.sha256()
        self._length = 0

    def drain(self) -> bytes:
        """SHAd-256 of the pool, which is then emptied (one step of §3 RandomData)."""
        value = self.shad256()
        self.reset()
        return value


def which_pools(reseed_count: int) -> tuple[int, ...]:
    """The pools reseed number ``reseed_count`` uses: every i in 0..31 with 2^i | r (§3).

    Once 2^i fails to divide r every larger power fails too, so these are pools 0..t where t is
    the number of trailing zero bits of r, capped at 31. r ≥ 1; r = 0 is invalid.
    """
    if isinstance(reseed_count, bool) or not isinstance(reseed_count, int):
        raise TypeError("a reseed count is an int")
    if reseed_count < 1:
        raise FortunaInputError(f"reseed counts start at 1, got {reseed_count}")
    trailing_zeros = (reseed_count & -reseed_count).bit_length() - 1
    return tuple(range(min(trailing_zeros + 1, NUM_POOLS)))


def _byte_string(data: object, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
    return bytes(data)


def _small_int(value: object, what: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= high:
        raise FortunaInputError(f"{what} must be in 0..{high}, got {value}")
    return value


_OS_SEED_BYTES = 32  # mixed into direct and seed-file reseeds (defence in depth)


class Fortuna:
    """The Fortuna accumulator and its generator (fortuna.md §3), with an optional seed file (§4).

    ``clock`` supplies monotonic seconds for the 100 ms rule. ``seed_file``, if given, is read
    at construction (a valid file reseeds the generator and is rewritten at once), rewritten
    after every pool reseed and on :meth:`write_seed_file` / :meth:`close`, and locked against
    other users (:class:`~lokey.errors.SeedFileError` if another Fortuna holds it, or if its
    directory is missing or unwritable). A missing, wrong-size, all-zero or group/other-readable
    file is not used (see :attr:`seed_file_status`); it is replaced at the next write.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        seed_file: str | os.PathLike[str] | None = None,
        extra_entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        # ``extra_entropy`` is mixed into direct and seed-file reseeds; tests inject a fixed
        # function to pin outputs. It must be a CSPRNG in production (the default).
        self._extra_entropy = extra_entropy
        self._clock = clock
        self._lock = threading.Lock()
        self._generator = Generator()
        self._pools = tuple(Pool() for _ in range(NUM_POOLS))
        self._reseed_count = 0
        self._last_reseed: float | None = None
        self._bytes_generated = 0
        self._next_pool: dict[int, int] = {}  # add_seed_material's round robin, per source
        self._seed_path: Path | None = None
        self._seed_status: SeedFileStatus | None = None
        self._seed_message: str | None = None
        self._release_seed_lock: weakref.finalize[[], Fortuna] | None = None
        _fork.register(self)
        if seed_file is not None:
            path = Path(os.fspath(seed_file)).absolute()  # a later chdir must not move it
            lock = seedfile.SeedFileLock(path)
            self._release_seed_lock = weakref.finalize(self, lock.release)
            self._seed_path = path
            self._update_seed_file()

    # --- read-only state -----------------------------------------------------------------

    @property
    def seeded(self) -> bool:
        """True once the generator has been seeded by any route (§3 "Seeded check": C ≠ 0)."""
        return self._generator.seeded

    @property
    def reseed_count(self) -> int:
        """ReseedCnt: pool reseeds so far (direct and seed-file reseeds do not count, §3)."""
        return self._reseed_count

    @property
    def last_reseed(self) -> float | None:
        """Clock time of the last pool reseed, or None if there has been none."""
        return self._last_reseed

    @property
    def pool_sizes(self) -> tuple[int, ...]:
        """len(P0) … len(P31) in bytes, framing included (§3)."""
        with self._lock:
            return tuple(pool.length for pool in self._pools)

    @property
    def bytes_generated(self) -> int:
        """Bytes handed out by :meth:`random_data` (seed-file contents not included)."""
        return self._bytes_generated

    @property
    def seed_file(self) -> Path | None:
        """The seed file's absolute path, or None if none is configured (or after close)."""
        return self._seed_path

    @property
    def seed_file_status(self) -> SeedFileStatus | None:
        """What last happened to the seed file; None if none was ever configured."""
        return self._seed_status

    @property
    def seed_file_message(self) -> str | None:
        """A sentence explaining :attr:`seed_file_status` (never contains seed bytes)."""
        return self._seed_message

    def __repr__(self) -> str:
        return (
            f"Fortuna(seeded={self.seeded}, reseed_count={self._reseed_count}, "
            f"seed_file={self._seed_path})"
        )

    # --- entropy in ----------------------------------------------------------------------

    def add_random_event(
        self, source: int, pool: int, data: bytes | bytearray | memoryview
    ) -> None:
        """Pi ← Pi ‖ s ‖ len(e) ‖ e (fortuna.md §3 AddRandomEvent).

        ``source`` 0..255, ``pool`` 0..31, ``data`` 1..32 bytes; otherwise
        :class:`~lokey.errors.FortunaInputError` (a ``ValueError``), or ``TypeError`` for a
        value of the wrong type. Each source should spread its events round-robin over the
        pools; :meth:`add_seed_material` does that for you.
        """
        source = _small_int(source, "an event source", MAX_SOURCE)
        pool = _small_int(pool, "a pool index", NUM_POOLS - 1)
        event = _byte_string(data, "an event")
        if not 1 <= len(event) <= MAX_EVENT_BYTES:
            raise FortunaInputError(
                f"an event holds 1..{MAX_EVENT_BYTES} bytes, got {len(event)} "
                "(split longer material into several events)"
            )
        with self._lock:
            self._pools[pool].append(bytes((source, len(event))) + event)

    def add_seed_material(self, source: int, data: bytes | bytearray | memoryview) -> int:
        """Split ``data`` into 32-byte events (the last may be shorter) and add them to the pools
        round-robin, continuing where this source's previous call stopped (§3 "Each source
        spreads its events over the pools round-robin", §5 "Event sizes"). Returns the number of
        events added (0 for empty data).
        """
        source = _small_int(source, "an event source", MAX_SOURCE)
        material = _byte_string(data, "seed material")
        with self._lock:
            pool = self._next_pool.get(source, 0)
            count = 0
            for offset in range(0, len(material), MAX_EVENT_BYTES):
                event = material[offset : offset + MAX_EVENT_BYTES]
                self._pools[pool].append(bytes((source, len(event))) + event)
                pool = (pool + 1) % NUM_POOLS
                count += 1
            self._next_pool[source] = pool
            return count

    def seed_directly(self, seed: bytes | bytearray | memoryview) -> None:
        """One direct reseed of the generator, as a seed-file update (design.md "Fortuna
        start-up", fortuna.md §5): K ← SHAd-256(K ‖ seed), then the seed file is rewritten
        if one is configured.

        Meant for the first seeding when there is no seed file: ``seed`` must be at least 64
        bytes of health-tested TRNG output (:class:`~lokey.errors.FortunaInputError`
        otherwise). It does not touch the pools, ReseedCnt or the 100 ms timer. It is safe to
        call again (the old key is always hashed in), but afterwards entropy should enter only
        through events. A failed seed-file write is recorded in :attr:`seed_file_status`, not
        raised: the seeding itself took effect.
        """
        material = _byte_string(seed, "a seed")
        if len(material) < MIN_DIRECT_SEED_BYTES:
            raise FortunaInputError(
                f"a direct seed needs at least {MIN_DIRECT_SEED_BYTES} bytes, got {len(material)}"
            )
        with self._lock:
            # OS entropy rides along: whoever supplied ``seed`` (a client of the service, in the
            # worst case) must not know the first key. SHAd-256 keeps every bit of the TRNG seed.
            self._generator.reseed(material + self._extra_entropy(_OS_SEED_BYTES))
            self._write_quietly()

    # --- data out ------------------------------------------------------------------------

    def random_data(self, n: int) -> bytes:
        """n random bytes (fortuna.md §3 RandomData): reseed from the pools if due, then
        refuse if the generator was never seeded, then PseudoRandomData(n).

        Raises :class:`~lokey.errors.NotSeededError` until seeded and
        :class:`~lokey.errors.FortunaInputError` for n < 0. After a pool reseed the seed file
        (if any) is rewritten before the output is produced.
        """
        n = _request_length(n)
        with self._lock:
            reseeded = self._reseed_if_due()
            if not self._generator.seeded:
                raise NotSeededError("PRNG not seeded yet")
            if reseeded:
                self._write_quietly()
            data = self._generator.pseudo_random_data(n)
            self._bytes_generated += n
            return data

    def write_seed_file(self) -> None:
        """WriteSeedFile (fortuna.md §4): replace the seed file with RandomData(64).

        Does nothing if no seed file is configured. Raises
        :class:`~lokey.errors.NotSeededError` while unseeded and
        :class:`~lokey.errors.SeedFileError` (with the ``OSError`` chained) if the write fails.
        """
        with self._lock:
            if self._seed_path is None:
                return
            self._reseed_if_due()  # RandomData(64) starts with the reseed check
            if not self._generator.seeded:
                raise NotSeededError("PRNG not seeded yet: there is nothing to write")
            self._write_or_raise()

    def close(self) -> None:
        """Write the seed file a last time (if seeded) and release its lock (idempotent).

        The generator keeps working afterwards, without a seed file. Raises
        :class:`~lokey.errors.SeedFileError` if that last write fails; the lock is released
        either way.
        """
        with self._lock:
            if self._seed_path is None:
                return
            try:
                if self._generator.seeded:
                    self._write_or_raise()
            finally:
                self._seed_path = None
                if self._release_seed_lock is not None:
                    self._release_seed_lock()

    def __enter__(self) -> Fortuna:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals (call with the lock held) ---------------------------------------------

    def _reseed_if_due(self) -> bool:
        """§3 RandomData step 1: reseed from the pools iff len(P0) ≥ 64 and ≥ 100 ms passed."""
        if self._pools[0].length < MIN_POOL_SIZE:
            return False
        now = self._clock.monotonic()
        last = self._last_reseed
        if last is not None and now - last < RESEED_INTERVAL_S - _TIME_SLACK_S:
            return False
        self._reseed_count += 1
        seed = b"".join(self._pools[i].drain() for i in which_pools(self._reseed_count))
        self._generator.reseed(seed)
        self._last_reseed = now
        return True

    def _update_seed_file(self) -> None:
        """UpdateSeedFile at start-up (§4): reseed from a valid file, then rewrite it at once.

        If the rewrite fails, the generator goes back to unseeded: output from a seed that is
        still on disk would be repeated after the next restart.
        """
        assert self._seed_path is not None
        try:
            contents = seedfile.read(self._seed_path)
        except FileNotFoundError:
            self._set_seed_status(
                SeedFileStatus.ABSENT,
                f"no seed file at {self._seed_path} yet; one is written once Fortuna is seeded",
            )
            return
        except SeedFileError as exc:
            self._set_seed_status(SeedFileStatus.REJECTED, f"{exc}; not used, will be replaced")
            return
        # OS entropy rides along so a restored or snapshotted seed file cannot replay an earlier
        # run's output (fortuna.md §4: a seed file supplements live entropy, never replaces it).
        self._generator.reseed(contents + self._extra_entropy(_OS_SEED_BYTES))
        try:
            seedfile.write(self._seed_path, self._generator.pseudo_random_data(SEED_FILE_SIZE))
        except OSError as exc:
            self._generator = Generator()  # back to unseeded, the old key dropped
            self._set_seed_status(
                SeedFileStatus.WRITE_FAILED,
                f"seed file {self._seed_path} could not be rewritten ({exc.strerror or exc}), "
                "so its contents were not used",
            )
            return
        self._set_seed_status(
            SeedFileStatus.LOADED, f"seed file {self._seed_path} loaded and rewritten"
        )

    def _write_or_raise(self) -> None:
        assert self._seed_path is not None
        try:
            seedfile.write(self._seed_path, self._generator.pseudo_random_data(SEED_FILE_SIZE))
        except OSError as exc:
            message = f"seed file {self._seed_path} could not be written: {exc.strerror or exc}"
            self._set_seed_status(SeedFileStatus.WRITE_FAILED, message)
            raise SeedFileError(message) from exc
        self._set_seed_status(SeedFileStatus.WRITTEN, f"seed file {self._seed_path} written")

    def _write_quietly(self) -> None:
        """Rewrite the seed file after a reseed, recording (not raising) a failure."""
        if self._seed_path is None:
            return
        with contextlib.suppress(SeedFileError):  # recorded in seed_file_status
            self._write_or_raise()  # the reseed itself took effect either way

    def _set_seed_status(self, status: SeedFileStatus, message: str) -> None:
        self._seed_status = status
        self._seed_message = message

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock (a parent thread may have held the old one), and no
        seed file: the inherited file lock belongs to the parent, so the child must not write
        (nor unlock: flock locks are shared with the parent's descriptor). The generator
        repairs itself (it reseeds from ``os.urandom``, see :mod:`._fork`).
        """
        self._lock = threading.Lock()
        self._seed_path = None
        self._release_seed_lock = None

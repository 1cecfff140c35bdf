"""The Ferguson-Schneier generator: AES-256 over a 128-bit little-endian counter (fortuna.md §2).

State is a 32-byte key K and a 128-bit counter C, both zero at start; C = 0 means "not seeded"
and every request then fails with :class:`~lokey.errors.NotSeededError` (§2, §5: output before
the first seed would be AES(0^32, counter), fully predictable).

* ``reseed(s)``: K ← SHAd-256(K ‖ s) with SHAd-256 = SHA-256∘SHA-256 (§1, the *Practical
  Cryptography* definition, no zero block); C ← C + 1.
* one internal request of n ≤ 2^20 bytes (§2 PseudoRandomData): the first n bytes of
  E(K, C), E(K, C+1), … E(K, C+⌈n/16⌉-1), then K ← the next two blocks ("rekey after every
  request", even for n = 0 or 1); C advances by ⌈n/16⌉ + 2.
* :meth:`Generator.pseudo_random_data` accepts any n ≥ 0 and splits it into ≤ 2^20-byte
  internal requests, each followed by its rekey (§2 "Requests larger than 2^20 bytes").

Speed (§2 "Implementation facts"): the ``cryptography`` package's CTR mode counts big-endian, so
the counter blocks are built explicitly and encrypted, output and new key together, in one
AES-256-ECB pass over ⌈n/16⌉ + 2 blocks, into buffers that are allocated once and reused. The
pass runs in 128 KiB slices (build counters, encrypt, next slice) so the counter blocks stay in
cache. A slice's blocks are built with bytes operations only (a 16-byte template for the high
bytes, rewritten once per 2^16 blocks, and two strided columns for the low two), about as fast
as numpy arrays were, without loading numpy (about 12 MB resident on a Pi). Requests of a few
blocks build their counter blocks one by one with ``int.to_bytes``, as does the slice in which
the 128-bit counter wraps (the tests check every path against the spec's definition). Each key
gets one cipher object: every key serves exactly one internal request. The reused output buffer
is wiped in place after every request, so it never holds past output (backtracking resistance,
§8 "no rekey after each request").

A lock serialises requests and reseeds (§5: two requests must never read the same (K, C)).
Fork safety: see :mod:`lokey.fortuna._fork`; a seeded generator reseeds itself from
``os.urandom`` in a forked child, so the child's stream differs from the parent's and from every
sibling's.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import operator
import os
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lokey.errors import FortunaInputError, NotSeededError
from lokey.fortuna import _fork

__all__ = [
    "BLOCK_SIZE",
    "KEY_SIZE",
    "MAX_REQUEST_BYTES",
    "Generator",
    "shad256",
]

KEY_SIZE = 32  # §2: AES-256 key
BLOCK_SIZE = 16  # §1: one AES block, one counter value
MAX_REQUEST_BYTES = 1 << 20  # §2: at most 2^20 bytes per internal request (2^16 blocks per key)
REKEY_BLOCKS = KEY_SIZE // BLOCK_SIZE  # §2: the two blocks after the output become the new key

_MASK128 = (1 << 128) - 1
_MAX_BLOCKS = MAX_REQUEST_BYTES // BLOCK_SIZE + REKEY_BLOCKS
_SMALL_BLOCKS = 8  # up to this many blocks (output + rekey), counter blocks come from to_bytes
_MIN_CAPACITY = 64  # smallest output buffer, in blocks
_SLICE_BLOCKS = 8192  # counter blocks built and encrypted per ECB call: 128 KiB, cache-sized


def shad256(data: bytes | bytearray | memoryview) -> bytes:
    """SHAd-256(m) = SHA-256(SHA-256(m)), 32 bytes (fortuna.md §1, PC §6.3.1, no zero block)."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _request_length(n: int) -> int:
    if isinstance(n, bool):
        raise TypeError("a request length must be an int, not a bool")
    n = operator.index(n)
    if n < 0:
        raise FortunaInputError(f"cannot generate a negative number of bytes ({n})")
    return n


@functools.cache
def _low_columns() -> tuple[memoryview, memoryview]:
    """Bytes 0 and 1 of the counters c = 0 .. 2^16 + one slice (the low 16 bits of c, wrapped)."""
    span = (1 << 16) + _SLICE_BLOCKS
    byte0 = bytes(range(256)) * (span // 256)
    byte1 = b"".join([bytes([value]) * 256 for value in range(256)])
    return memoryview(byte0), memoryview((byte1 + byte1)[:span])


class Generator:
    """Fortuna's generator (fortuna.md §2): thread-safe, fork-safe, refuses output until seeded.

    ``pseudo_random_data(n)`` is the public request: any n ≥ 0, split into ≤ 2^20-byte internal
    requests with a rekey after each. ``reseed(seed)`` hashes the old key in:
    K ← SHAd-256(K ‖ seed), C ← C + 1.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key = bytes(KEY_SIZE)  # §2 InitializeGenerator: K = 0^32, C = 0 (unseeded)
        self._counter = 0
        # Reused buffers, grown on demand up to one full internal request (2^16 + 2 blocks).
        self._capacity = 0
        self._blocks = bytearray()
        self._blocks_view = memoryview(self._blocks)
        self._out = bytearray()
        self._out_view = memoryview(self._out)
        self._out_c = (ctypes.c_char * 0).from_buffer(self._out)  # the buffer, for memset
        self._hi_fill: int | None = None  # bits 16 and up that every block holds, if uniform
        _fork.register(self)

    # --- state ---------------------------------------------------------------------------

    @property
    def seeded(self) -> bool:
        """True once the generator has been reseeded (C ≠ 0, fortuna.md §2 and §3)."""
        return self._counter != 0

    @property
    def counter(self) -> int:
        """The next counter value to be encrypted (0 while unseeded); not secret."""
        return self._counter

    def __repr__(self) -> str:  # never shows the key
        return f"Generator(seeded={self.seeded})"

    # --- operations ----------------------------------------------------------------------

    def reseed(self, seed: bytes | bytearray | memoryview) -> None:
        """K ← SHAd-256(K ‖ seed); C ← C + 1 (fortuna.md §2 Reseed). Any length, even empty."""
        if not isinstance(seed, bytes | bytearray | memoryview):
            raise TypeError(f"a seed must be bytes, not {type(seed).__name__}")
        with self._lock:
            self._reseed_locked(bytes(seed))

    def pseudo_random_data(self, n: int) -> bytes:
        """n pseudo-random bytes (fortuna.md §2 PseudoRandomData), any n ≥ 0.

        Requests over 2^20 bytes are split into 2^20-byte internal requests and a remainder,
        each followed by its rekey (§2 "Requests larger than 2^20 bytes"). Raises
        :class:`~lokey.errors.NotSeededError` before the first reseed and
        :class:`~lokey.errors.FortunaInputError` (a ``ValueError``) for n < 0.
        """
        n = _request_length(n)
        with self._lock:
            if n <= MAX_REQUEST_BYTES:
                return self._request(n)
            parts = []
            remaining = n
            while remaining:
                size = min(remaining, MAX_REQUEST_BYTES)
                parts.append(self._request(size))
                remaining -= size
            return b"".join(parts)

    def _single_request(self, n: int) -> bytes:
        """One internal request (fortuna.md §2): rejects n > 2^20 instead of splitting it."""
        n = _request_length(n)
        with self._lock:
            return self._request(n)

    # --- internals (call with the lock held) ---------------------------------------------

    def _reseed_locked(self, seed: bytes) -> None:
        self._key = shad256(self._key + seed)
        self._counter = (self._counter + 1) & _MASK128

    def _request(self, n: int) -> bytes:
        if n > MAX_REQUEST_BYTES:
            raise FortunaInputError(
                f"an internal request is at most 2^20 = {MAX_REQUEST_BYTES:,} bytes, got {n:,}"
            )
        if self._counter == 0:
            raise NotSeededError("PRNG not seeded yet: no output before the first reseed")
        # One cipher context per key: every key serves exactly one internal request.
        encryptor = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()
        out_blocks = -(-n // BLOCK_SIZE)
        total = out_blocks + REKEY_BLOCKS
        start = self._counter
        key_at = out_blocks * BLOCK_SIZE
        if total <= _SMALL_BLOCKS:
            counters = b"".join(
                [((start + i) & _MASK128).to_bytes(BLOCK_SIZE, "little") for i in range(total)]
            )
            stream = encryptor.update(counters)
            result = stream[:n]
            new_key = stream[key_at : key_at + KEY_SIZE]
        else:
            self._ensure_capacity(total)
            try:
                # Counter blocks are built and encrypted a slice at a time, so they stay in
                # cache; ECB is block by block, so this is the one ECB pass of the spec, in pieces.
                for offset in range(0, total, _SLICE_BLOCKS):
                    count = min(_SLICE_BLOCKS, total - offset)
                    self._fill_counter_blocks((start + offset) & _MASK128, count)
                    encryptor.update_into(
                        self._blocks_view[: count * BLOCK_SIZE],
                        self._out_view[offset * BLOCK_SIZE :],
                    )
                result = bytes(self._out_view[:n])
                new_key = bytes(self._out_view[key_at : key_at + KEY_SIZE])
            finally:  # the reused buffer keeps no past output, even when a step failed
                ctypes.memset(self._out_c, 0, total * BLOCK_SIZE)
        self._counter = (start + total) & _MASK128
        self._key = new_key
        return result

    def _ensure_capacity(self, blocks: int) -> None:
        """Room for ``blocks`` blocks of output; counter blocks for one slice of them."""
        if blocks <= self._capacity:
            return
        capacity = min(max(blocks, 2 * self._capacity, _MIN_CAPACITY), _MAX_BLOCKS)
        self._capacity = capacity
        self._blocks = bytearray(min(capacity, _SLICE_BLOCKS) * BLOCK_SIZE)
        self._blocks_view = memoryview(self._blocks)
        # update_into wants len(input) + block_size - 1 bytes of room
        self._out = bytearray(capacity * BLOCK_SIZE + BLOCK_SIZE - 1)
        self._out_view = memoryview(self._out)
        self._out_c = (ctypes.c_char * len(self._out)).from_buffer(self._out)
        self._hi_fill = 0

    def _fill_counter_blocks(self, start: int, count: int) -> None:
        """Blocks 0..count-1 of the block buffer ← C, C+1, … as 16-byte little-endian integers.

        Bytes 0 and 1 (the low 16 bits) are written as two strided columns. Bits 16 and up take
        at most two values within a slice (C >> 16, then one more from the block where the low
        16 bits wrap), so bytes 2..15 are rewritten only when they change: once every 2^16
        blocks. ``count`` is at most one slice (the buffer's blocks).
        """
        size = count * BLOCK_SIZE
        if start + count > _MASK128 + 1:  # the counter wraps inside this slice: never in practice
            self._blocks[:size] = b"".join(
                [((start + i) & _MASK128).to_bytes(BLOCK_SIZE, "little") for i in range(count)]
            )
            self._hi_fill = None
            return
        low, high = start & 0xFFFF, start >> 16
        carry_at = (1 << 16) - low  # the first block whose bits 16 and up are high + 1
        blocks = self._blocks
        if carry_at >= count:
            if self._hi_fill != high:  # usually once per 2^16 blocks: the template is rewritten
                blocks[:] = (bytes(2) + high.to_bytes(BLOCK_SIZE - 2, "little")) * (
                    len(blocks) // BLOCK_SIZE
                )
                self._hi_fill = high
        else:
            split = carry_at * BLOCK_SIZE
            blocks[:split] = (bytes(2) + high.to_bytes(BLOCK_SIZE - 2, "little")) * carry_at
            blocks[split:size] = (bytes(2) + (high + 1).to_bytes(BLOCK_SIZE - 2, "little")) * (
                count - carry_at
            )
            self._hi_fill = None
        byte0, byte1 = _low_columns()
        blocks[0:size:BLOCK_SIZE] = byte0[low : low + count]
        blocks[1:size:BLOCK_SIZE] = byte1[low : low + count]

    def _after_fork_in_child(self) -> None:
        """In a forked child: new lock, fresh buffers, and a reseed from ``os.urandom``.

        The reseed hashes 32 bytes of OS entropy into the inherited key (K ← SHAd-256(K ‖ r),
        C ← C + 1), so the child never repeats the parent's stream or a sibling's. An unseeded
        generator stays unseeded. If the OS cannot supply entropy the generator is reset to
        unseeded and refuses output until it is reseeded (fail closed).
        """
        self._lock = threading.Lock()  # a parent thread may have held the old one
        # A parent thread may have been half-way through the buffers: wipe what they may hold
        # (the parent's output), then start from fresh ones.
        if self._capacity:
            ctypes.memset(self._out_c, 0, len(self._out))
        self._capacity = 0
        self._hi_fill = None
        if self._counter == 0:
            return
        try:
            fresh = os.urandom(KEY_SIZE)
        except OSError:
            self._key = bytes(KEY_SIZE)
            self._counter = 0
            return
        self._reseed_locked(fresh)

"""VirtIO entropy delivery (service-api.md §4): the byte ring and the named-pipe feeder for QEMU.

:class:`ByteRing` holds bytes (capacity in 32-byte items, drop-oldest, each byte handed out at
most once); :class:`FifoFeeder` moves them into a FIFO that QEMU's ``virtio-rng`` reads, without
ever leaving the reader writer-less (see :mod:`lokey.virtio.fifo`). Imports only
:mod:`lokey.errors` and :mod:`lokey.clock`.
"""

from lokey.errors import FifoError, VirtioError
from lokey.virtio.fifo import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_MODE,
    DEFAULT_PIPE_PATH,
    DEFAULT_PIPE_SIZE,
    FifoFeeder,
    FifoStats,
    release_keepers,
)
from lokey.virtio.ring import (
    DEFAULT_CAPACITY_ITEMS,
    ITEM_SIZE,
    MAX_CAPACITY_ITEMS,
    MIN_CAPACITY_ITEMS,
    ByteRing,
    RingStats,
)

__all__ = [
    "DEFAULT_CAPACITY_ITEMS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MODE",
    "DEFAULT_PIPE_PATH",
    "DEFAULT_PIPE_SIZE",
    "ITEM_SIZE",
    "MAX_CAPACITY_ITEMS",
    "MIN_CAPACITY_ITEMS",
    "ByteRing",
    "FifoError",
    "FifoFeeder",
    "FifoStats",
    "RingStats",
    "VirtioError",
    "release_keepers",
]

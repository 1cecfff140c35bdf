"""The seed file's bytes on disk (fortuna.md §4, CE §9.6): read, write atomically, lock.

Format: exactly :data:`SEED_FILE_SIZE` = 64 raw bytes (generator output), no header. A file is
used only if it is a regular file (a symbolic link is not followed), not accessible to group or
others (mode & 0o077 = 0; seehuhn/fortuna's ``ErrInsecureSeed``), exactly 64 bytes long and not
all zero; anything else is *rejected* (:class:`~lokey.errors.SeedFileError` from :func:`read`)
and never reseeds the generator. A missing file is simply absent (``FileNotFoundError``).

Writes are atomic: the bytes go to a fresh ``0600`` temporary file in the same directory
(``.<name>.<random>.tmp``), which is fsynced and then renamed over the seed file; the directory
is fsynced after the rename (best effort: some file systems refuse to fsync a directory). A
crash therefore leaves either the old file or the new one, never a torn one.

Concurrent users (two services pointed at one seed file would both reseed from the same 64
bytes) are kept out by an exclusive, non-blocking ``flock`` on ``<seed file>.lock``, held for
the owner's lifetime: a lock on the seed file itself would not survive the atomic rename.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import stat
import tempfile
from pathlib import Path

from lokey.errors import SeedFileError

__all__ = ["SEED_FILE_SIZE", "SeedFileLock", "SeedFileStatus", "read", "write"]

SEED_FILE_SIZE = 64  # §4: the seed file holds exactly 64 bytes


class SeedFileStatus(enum.StrEnum):
    """What last happened to a Fortuna's seed file (``Fortuna.seed_file_status``)."""

    ABSENT = "absent"  # no file at start-up: nothing was loaded; one is written after seeding
    LOADED = "loaded"  # start-up update done: the file reseeded the generator, a new one written
    REJECTED = "rejected"  # a file was there but not used (see the message); it gets replaced
    WRITTEN = "written"  # the last write succeeded
    WRITE_FAILED = "write_failed"  # the last write failed (see the message)


def read(path: Path) -> bytes:
    """The 64 bytes of the seed file at ``path``.

    Raises ``FileNotFoundError`` if there is none, and :class:`~lokey.errors.SeedFileError`
    naming the problem if a file is there but must not be used (§4: wrong size, all zero,
    group/other access, not a regular file, unreadable).
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK  # a FIFO must not hang us
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SeedFileError(f"seed file {path} cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SeedFileError(f"seed file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SeedFileError(
                f"seed file {path} has mode {mode:04o}: a seed file must not be accessible to "
                "group or others (its contents must be assumed known; chmod 600 it)"
            )
        data = b""
        while len(data) <= SEED_FILE_SIZE:  # read one byte more than needed to see oversize
            chunk = os.read(fd, SEED_FILE_SIZE + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise SeedFileError(f"seed file {path} cannot be read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) != SEED_FILE_SIZE:
        size = f"{len(data)}" if len(data) <= SEED_FILE_SIZE else f"more than {SEED_FILE_SIZE}"
        raise SeedFileError(
            f"seed file {path} holds {size} bytes, exactly {SEED_FILE_SIZE} are needed"
        )
    if not any(data):
        raise SeedFileError(f"seed file {path} is all zero bytes")
    return data


def write(path: Path, data: bytes) -> None:
    """Replace the seed file at ``path`` with ``data`` atomically (temporary file, fsync,
    rename, directory fsync). Raises ``OSError`` on failure, leaving the old file in place.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class SeedFileLock:
    """An exclusive ``flock`` on ``<seed file>.lock`` (§4: lock the seed file against
    concurrent users). Raises :class:`~lokey.errors.SeedFileError` if another user holds it
    (another process, or another Fortuna in this one) or the lock file cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SeedFileError(
                f"cannot create the seed file's lock {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise SeedFileError(
                    f"seed file {path} is in use by another Fortuna (lock {self.path} is held)"
                ) from exc
            raise SeedFileError(f"cannot lock {self.path}: {exc.strerror}") from exc
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (idempotent). The lock file itself stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

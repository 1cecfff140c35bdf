"""The named pipe QEMU's ``virtio-rng`` (``rng-random``) reads from (service-api.md §4).

Measured QEMU 7.2 behaviour this module is designed around (issue 6):

* QEMU opens the FIFO once, ``O_RDONLY | O_NONBLOCK``, and reads only when the guest asks. A
  writer that is open but silent is harmless.
* If the last writer closes, QEMU reads end-of-file forever: its main loop spins at ~100 % CPU,
  the monitor stops answering and the guest starves. So **no writer may ever close** while the
  service lives: a *keeper* descriptor, opened ``O_RDWR``, is held on the FIFO for the life of the
  process. It is also a reader, so the writer's ``O_WRONLY`` open never fails with ``ENXIO`` and a
  write can never raise ``EPIPE``/``SIGPIPE`` (there is always a reader: the keeper, which never
  reads). Keepers live in a process-wide table keyed by the FIFO's inode, so stopping and
  restarting a :class:`FifoFeeder` (or replacing it with a new one) never leaves QEMU writer-less;
  :meth:`FifoFeeder.close` or :func:`release_keepers` let go of them explicitly.
* Bytes left in the pipe survive a VM restart and go to the next reader. The pipe buffer is shrunk
  with ``F_SETPIPE_SZ`` (default 4096 bytes) so at most that much can go stale.
* Any read error other than ``EAGAIN`` aborts QEMU, so the FIFO is never deleted or recreated while
  running; an existing FIFO is reused as it is.

The writer thread moves bytes from the :class:`~lokey.virtio.ring.ByteRing` with a non-blocking
write descriptor: it waits (bounded) for ring data, then ``poll`` for writability (bounded), takes
only what fits in the pipe's free space, and writes. ``EAGAIN`` (pipe full: no reader, or a reader
that is not reading) is a *stall*: wait, never spin, never close. A short write puts the unwritten
tail back at the front of the ring (:meth:`ByteRing.unread`), so nothing is consumed that was not
written and no byte goes to two consumers. Unexpected errors are counted and the loop keeps going
after a bounded back-off; the thread never exits on its own.

Mode: the default is ``0o660``, not world-writable (nor world-readable): any local user who can
open the FIFO could inject bytes into the guest's entropy or drain bytes meant for it. Give the QEMU
user access through the group. The mode is applied only to a FIFO this module creates; an existing
FIFO keeps the owner, group and mode the operator gave it.

Statistics: with the keeper holding a read end, the writer cannot see QEMU open or close the FIFO.
``stalls`` counts times the pipe stayed full for ``stall_after_s`` (nobody reading), and
``reader_connects`` counts times draining resumed after a stall (a reader came, came back, or woke).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import stat
import termios
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lokey.clock import Clock, SystemClock
from lokey.errors import FifoError
from lokey.virtio.ring import ByteRing

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MODE",
    "DEFAULT_PIPE_PATH",
    "DEFAULT_PIPE_SIZE",
    "FifoError",
    "FifoFeeder",
    "FifoStats",
    "release_keepers",
]

DEFAULT_PIPE_PATH: Final = "/var/run/lokey/virtio-rng"
DEFAULT_MODE: Final = 0o660
DEFAULT_PIPE_SIZE: Final = 4096
DEFAULT_CHUNK_SIZE: Final = 4096
POLL_INTERVAL_S: Final = 0.1  # every wait is bounded by this, so stop() is prompt
ERROR_BACKOFF_S: Final = 0.1

_F_SETPIPE_SZ: Final = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ: Final = getattr(fcntl, "F_GETPIPE_SZ", 1032)
_FIONREAD: Final = termios.FIONREAD


@dataclass(frozen=True)
class FifoStats:
    path: str
    running: bool
    bytes_written: int
    reader_connects: int
    stalls: int
    pipe_size: int
    errors: int
    last_error: str | None = None
    restarts: int = 0


# -- keepers: one O_RDWR descriptor per FIFO inode, for the life of the process -----------------

_keepers_lock = threading.Lock()
_keepers: dict[tuple[int, int], int] = {}


def _keeper_for(path: str, st: os.stat_result) -> int:
    key = (st.st_dev, st.st_ino)
    with _keepers_lock:
        fd = _keepers.get(key)
        if fd is not None:
            try:
                same = os.fstat(fd)
                if (same.st_dev, same.st_ino) == key:
                    return fd
            except OSError:
                pass
            del _keepers[key]
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise FifoError(f"cannot open the FIFO {path} read-write: {exc.strerror}") from exc
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != key or not stat.S_ISFIFO(opened.st_mode):
            os.close(fd)
            raise FifoError(f"{path} changed while it was being opened")
        _keepers[key] = fd
        return fd


def release_keepers(path: str | os.PathLike[str] | None = None) -> int:
    """Close keeper descriptors (all, or those of the FIFO at ``path``); returns how many.

    Only for shutdown and tests: a QEMU reader left without any writer spins.
    """
    with _keepers_lock:
        if path is None:
            keys = list(_keepers)
        else:
            try:
                st = os.stat(path)
            except OSError:
                return 0
            keys = [k for k in _keepers if k == (st.st_dev, st.st_ino)]
        for key in keys:
            with contextlib.suppress(OSError):
                os.close(_keepers.pop(key))
        return len(keys)


def _ensure_fifo(path: str, mode: int) -> os.stat_result:
    """Create the FIFO (and its directory) if missing; reuse an existing FIFO; refuse others."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        parent = Path(path).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FifoError(
                f"cannot create the directory {parent} for the FIFO {path}: {exc.strerror}"
            ) from exc
        try:
            os.mkfifo(path, mode)
            os.chmod(path, mode)  # mkfifo's mode is filtered by the umask
        except FileExistsError:
            pass  # someone else created it first: checked below
        except OSError as exc:
            raise FifoError(f"cannot create the FIFO {path}: {exc.strerror}") from exc
        try:
            st = os.stat(path)
        except OSError as exc:
            raise FifoError(f"cannot stat the FIFO {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise FifoError(f"cannot stat the FIFO path {path}: {exc.strerror}") from exc
    if not stat.S_ISFIFO(st.st_mode):
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "non-FIFO file"
        raise FifoError(
            f"VIRTIO_PIPE_PATH {path} is a {kind}, not a FIFO; remove it or choose another path"
        )
    return st


@dataclass
class _WriterState:
    blocked_since: float | None = None
    stalled: bool = False


class FifoFeeder:
    """Feeds a FIFO from a :class:`ByteRing` with one writer thread (see the module docstring)."""

    def __init__(
        self,
        ring: ByteRing,
        path: str | os.PathLike[str],
        *,
        mode: int = DEFAULT_MODE,
        pipe_size: int = DEFAULT_PIPE_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        stall_after_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        if not 0 <= mode <= 0o7777:
            raise ValueError(f"mode must be a permission mask (0..0o7777), got {mode:o}")
        if pipe_size < 0:
            raise ValueError(f"pipe_size must be >= 0 (0 keeps the kernel's), got {pipe_size}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self._ring = ring
        self._path = os.fspath(path)
        if not self._path:
            raise ValueError("the FIFO path is empty (an empty VIRTIO_PIPE_PATH disables the pipe)")
        self._mode = mode
        self._requested_pipe_size = pipe_size
        self._chunk_size = chunk_size
        self._stall_after_s = stall_after_s
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()  # guards the counters (the writer thread takes it too)
        self._lifecycle = threading.Lock()  # serialises start/stop/close; never taken by the thread
        self._stop: threading.Event | None = None  # the running thread's own stop flag
        self._thread: threading.Thread | None = None
        self._keeper: int | None = None
        self._pipe_size = 0
        self._bytes_written = 0
        self._reader_connects = 0
        self._stalls = 0
        self._errors = 0
        self._restarts = 0
        self._last_error: str | None = None
        self._starts = 0

    @property
    def path(self) -> str:
        return self._path

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Create or reuse the FIFO, hold its keeper, open the writer, start the thread.

        Idempotent while running. Raises :class:`FifoError` with a clear message on a non-FIFO
        file at the path, an uncreatable directory or FIFO, or an open failure.
        """
        with self._lifecycle:
            if self.running:
                return
            st = _ensure_fifo(self._path, self._mode)
            keeper = _keeper_for(self._path, st)
            if self._requested_pipe_size:
                try:
                    fcntl.fcntl(keeper, _F_SETPIPE_SZ, self._requested_pipe_size)
                except OSError as exc:
                    raise FifoError(
                        f"cannot set the pipe size of {self._path} to"
                        f" {self._requested_pipe_size}: {exc.strerror}"
                    ) from exc
            try:
                self._pipe_size = int(fcntl.fcntl(keeper, _F_GETPIPE_SZ))
            except OSError:
                self._pipe_size = self._requested_pipe_size or 65536
            try:
                wfd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise FifoError(f"cannot open the FIFO {self._path} for writing: {exc}") from exc
            self._keeper = keeper
            with self._lock:
                if self._starts:
                    self._restarts += 1
                self._starts += 1
            # Each thread gets its own stop flag, so a thread still exiting from an earlier
            # stop() can never be revived by this start().
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(wfd, self._stop),
                name=f"lokey-fifo-{self._path}",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the writer thread and close the writer descriptor.

        The keeper stays open (a reader is never left without a writer, so a restart is seamless
        for QEMU); use :meth:`close` to let go of it too. Bytes already in the pipe stay there.
        """
        with self._lifecycle:
            thread, self._thread = self._thread, None
            stop, self._stop = self._stop, None
            if stop is not None:
                stop.set()
            # The counters' lock is not held here: the thread takes it after every write, and
            # the thread closes its own descriptor on the way out.
            if thread is not None:
                thread.join(timeout_s)
                if thread.is_alive():
                    with self._lock:
                        self._note_error("writer thread did not stop in time; it exits on its own")

    def close(self, timeout_s: float = 2.0) -> None:
        """:meth:`stop`, then close the keeper: a QEMU reader still open will then see EOF."""
        self.stop(timeout_s)
        with self._lifecycle:
            self._keeper = None
        release_keepers(self._path)

    def __enter__(self) -> FifoFeeder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> FifoStats:
        with self._lock:
            return FifoStats(
                path=self._path,
                running=self.running,
                bytes_written=self._bytes_written,
                reader_connects=self._reader_connects,
                stalls=self._stalls,
                pipe_size=self._pipe_size,
                errors=self._errors,
                last_error=self._last_error,
                restarts=self._restarts,
            )

    # -- the writer thread ------------------------------------------------------------------------

    def _note_error(self, message: str) -> None:
        self._errors += 1
        self._last_error = message

    def _free_space(self, wfd: int) -> int:
        """Bytes the pipe can take now (its size minus what is queued), at least one page."""
        try:
            queued = int.from_bytes(fcntl.ioctl(wfd, _FIONREAD, b"\0\0\0\0"), "little", signed=True)
        except OSError:
            return min(self._chunk_size, select.PIPE_BUF)
        return max(select.PIPE_BUF, self._pipe_size - queued)

    def _run(self, wfd: int, stop: threading.Event) -> None:
        try:
            poller = select.poll()
            poller.register(wfd, select.POLLOUT)
            state = _WriterState()
            while not stop.is_set():
                try:
                    self._step(wfd, poller, state, stop)
                except Exception as exc:  # the writer thread must never die
                    with self._lock:
                        self._note_error(f"writer loop: {type(exc).__name__}: {exc}")
                    stop.wait(ERROR_BACKOFF_S)
        finally:
            with contextlib.suppress(OSError):
                os.close(wfd)  # the keeper still holds the FIFO open for readers

    def _step(
        self, wfd: int, poller: select.poll, state: _WriterState, stop: threading.Event
    ) -> None:
        """One bounded round: wait for data, wait for room, move what fits."""
        if not self._ring.wait_for_data(POLL_INTERVAL_S):
            return  # no data: write nothing (never close)
        ready = poller.poll(int(POLL_INTERVAL_S * 1000))
        if stop.is_set():
            return
        if not ready:
            # Pipe full: nobody reading (or a reader that is not asking). Wait, count.
            now = self._clock.monotonic()
            if state.blocked_since is None:
                state.blocked_since = now
            elif not state.stalled and now - state.blocked_since >= self._stall_after_s:
                state.stalled = True
                with self._lock:
                    self._stalls += 1
            return
        revents = ready[0][1]
        if revents & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            # Cannot happen while the keeper (a reader) is open; back off, never spin.
            with self._lock:
                self._note_error(f"poll on the FIFO writer reported events {revents:#x}")
            stop.wait(ERROR_BACKOFF_S)
            return
        data = self._ring.take(min(self._chunk_size, self._free_space(wfd)))
        if not data:
            return  # another consumer took it first
        try:
            written = os.write(wfd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            # EPIPE cannot happen while the keeper is open; anything else: count, back off.
            self._ring.unread(data)
            with self._lock:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                self._note_error(f"write to the FIFO failed: {name}")
            stop.wait(ERROR_BACKOFF_S)
            return
        if written < len(data):
            self._ring.unread(data[written:])  # never consume more than was written
        if written:
            with self._lock:
                self._bytes_written += written
                if state.stalled:
                    self._reader_connects += 1
            state.stalled = False
            state.blocked_since = None

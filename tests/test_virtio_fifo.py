"""FifoFeeder against a reader that behaves like QEMU's rng-random backend (issue 6).

The reader opens the FIFO ``O_RDONLY | O_NONBLOCK`` once and reads on demand; a 0-byte read is
end-of-file, the condition that makes QEMU spin at 100 % CPU, so it must never happen while the
service runs: across writer restarts, a replaced feeder, writer-thread faults and reader
reconnects.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokey.errors import FifoError, VirtioError
from lokey.virtio import ByteRing, FifoFeeder, release_keepers

F_GETPIPE_SZ = 1032


class QemuLikeReader:
    def __init__(self, path: Path) -> None:
        self.fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.reads = 0

    def read_once(self, n: int) -> bytes:
        """One on-demand read: b"" means EAGAIN (nothing yet); EOF fails the test."""
        assert self.fd is not None
        try:
            data = os.read(self.fd, n)
        except BlockingIOError:
            return b""
        self.reads += 1
        assert data, "0-byte read: end-of-file, QEMU would spin here"
        return data

    def read_exactly(self, n: int, timeout_s: float = 5.0) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(out) < n:
            assert time.monotonic() < deadline, f"only {len(out)} of {n} bytes arrived"
            chunk = self.read_once(n - len(out))
            if chunk:
                out += chunk
            else:
                time.sleep(0.002)
        return bytes(out)

    def assert_quiet(self, seconds: float) -> None:
        """Poll for a while: only EAGAIN allowed (never EOF, never data)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.read_once(4096) == b""
            time.sleep(0.005)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def pattern(start: int, count: int) -> bytes:
    return b"".join(i.to_bytes(4, "big") for i in range(start, start + count))


@pytest.fixture
def fifo_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run" / "lokey" / "virtio-rng"
    yield path
    release_keepers(path)


def test_creates_fifo_with_mode_dir_and_pipe_size(fifo_path: Path) -> None:
    ring = ByteRing(100)
    with FifoFeeder(ring, fifo_path) as feeder:
        st = os.stat(fifo_path)
        assert stat.S_ISFIFO(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660  # not world-writable
        reader = QemuLikeReader(fifo_path)
        assert reader.fd is not None
        assert fcntl.fcntl(reader.fd, F_GETPIPE_SZ) == 4096
        assert feeder.snapshot().pipe_size == 4096
        assert feeder.snapshot().running
        reader.close()
    assert not feeder.snapshot().running


def test_pipe_size_and_mode_configurable(fifo_path: Path) -> None:
    with FifoFeeder(ByteRing(100), fifo_path, mode=0o600, pipe_size=65536) as feeder:
        assert stat.S_IMODE(os.stat(fifo_path).st_mode) == 0o600
        assert feeder.snapshot().pipe_size == 65536


def test_existing_fifo_is_reused(fifo_path: Path) -> None:
    fifo_path.parent.mkdir(parents=True)
    os.mkfifo(fifo_path, 0o640)
    inode = os.stat(fifo_path).st_ino
    feeder = FifoFeeder(ByteRing(100), fifo_path)
    feeder.start()
    feeder.stop()
    feeder.start()
    st = os.stat(fifo_path)
    assert st.st_ino == inode
    assert stat.S_IMODE(st.st_mode) == 0o640
    feeder.stop()


def test_non_fifo_is_a_clear_error(tmp_path: Path) -> None:
    regular = tmp_path / "virtio-rng"
    regular.write_bytes(b"not a pipe")
    with pytest.raises(FifoError, match="not a FIFO") as info:
        FifoFeeder(ByteRing(100), regular).start()
    assert isinstance(info.value, VirtioError)
    assert regular.read_bytes() == b"not a pipe"  # never deleted
    with pytest.raises(FifoError, match="directory"):
        FifoFeeder(ByteRing(100), tmp_path).start()


def test_uncreatable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(FifoError, match="cannot create the directory"):
        FifoFeeder(ByteRing(100), blocker / "sub" / "virtio-rng").start()


def test_bytes_arrive_once_and_in_ring_order(fifo_path: Path) -> None:
    ring = ByteRing(1_000_000)
    data = pattern(0, 250_000)  # 1 MB through a 4 KiB pipe
    with FifoFeeder(ring, fifo_path) as feeder:
        reader = QemuLikeReader(fifo_path)
        ring.push(data)
        assert reader.read_exactly(len(data), timeout_s=30) == data
        reader.assert_quiet(0.05)
        stats = feeder.snapshot()
        assert stats.bytes_written == len(data) == ring.snapshot().consumed
        reader.close()


def test_sharing_with_another_consumer_never_duplicates(fifo_path: Path) -> None:
    ring = ByteRing(1_000_000)
    count = 100_000
    ring.push(pattern(0, count))
    with FifoFeeder(ring, fifo_path, chunk_size=512):
        reader = QemuLikeReader(fifo_path)
        api: list[bytes] = []
        got = bytearray()
        deadline = time.monotonic() + 30
        while ring.available or len(got) + 4 * len(api) < 4 * count:
            assert time.monotonic() < deadline
            if chunk := ring.take_exact(4):
                api.append(chunk)
            got += reader.read_once(4096)
        time.sleep(0.05)
        got += reader.read_once(65536)
        reader.close()
    words = [bytes(got[i : i + 4]) for i in range(0, len(got), 4)] + api
    assert len(got) % 4 == 0
    assert sorted(words) == [i.to_bytes(4, "big") for i in range(count)]


def test_no_eof_across_restarts_faults_and_reconnects(fifo_path: Path) -> None:
    ring = ByteRing(10_000)
    feeder = FifoFeeder(ring, fifo_path)
    feeder.start()
    reader = QemuLikeReader(fifo_path)
    next_word = 0

    def round_trip(words: int = 2_000) -> None:
        nonlocal next_word
        block = pattern(next_word, words)
        next_word += words
        ring.push(block)
        assert reader.read_exactly(len(block)) == block

    round_trip()
    # 1. writer-thread restart: the reader sees EAGAIN while it is down, never EOF
    feeder.stop()
    reader.assert_quiet(0.2)
    feeder.start()
    round_trip()
    assert feeder.snapshot().restarts == 1
    # 2. the feeder replaced by a new instance (service restart inside the process)
    feeder.stop()
    reader.assert_quiet(0.1)
    feeder = FifoFeeder(ring, fifo_path)
    feeder.start()
    round_trip()
    # 3. a fault inside the writer loop: counted, the thread carries on
    real_take = ring.take
    calls = {"n": 0}

    def flaky_take(n: int) -> bytes:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected")
        return real_take(n)

    ring.take = flaky_take  # type: ignore[method-assign]
    round_trip()
    ring.take = real_take  # type: ignore[method-assign]
    assert feeder.snapshot().errors == 1
    assert feeder.running
    assert "injected" in (feeder.snapshot().last_error or "")
    # 4. the reader goes away and comes back (VM restart): data flows again
    reader.close()
    ring.push(pattern(next_word, 3_000))  # 12 kB: 4 kB may be left in the pipe
    time.sleep(0.1)
    reader = QemuLikeReader(fifo_path)
    left = reader.read_exactly(4096)  # stale bytes from before go to the next reader
    assert left == pattern(next_word, 1024)
    rest = reader.read_exactly(12_000 - 4096)
    assert left + rest == pattern(next_word, 3_000)
    next_word += 3_000
    round_trip()
    reader.assert_quiet(0.1)
    feeder.stop()
    reader.assert_quiet(0.1)
    reader.close()


def test_stalls_and_reader_connects(fifo_path: Path) -> None:
    ring = ByteRing(10_000)
    with FifoFeeder(ring, fifo_path, stall_after_s=0.05) as feeder:
        ring.push(bytes(20_000))  # nobody reading: the pipe fills, the writer stalls
        deadline = time.monotonic() + 5
        while feeder.snapshot().stalls == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert feeder.snapshot().bytes_written == 4096
        assert ring.available == 20_000 - 4096
        reader = QemuLikeReader(fifo_path)
        reader.read_exactly(20_000)
        stats = feeder.snapshot()
        assert stats.reader_connects == 1
        assert stats.stalls == 1
        assert stats.bytes_written == 20_000
        reader.close()


def test_no_busy_spin_and_prompt_stop(fifo_path: Path) -> None:
    ring = ByteRing(10_000)
    feeder = FifoFeeder(ring, fifo_path)
    feeder.start()
    ring.push(bytes(100_000))  # pipe full, no reader: the writer must wait, not spin
    t0 = os.times()
    time.sleep(0.5)
    t1 = os.times()
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    assert cpu < 0.15, f"{cpu:.2f} s of CPU in 0.5 s while stalled"
    start = time.monotonic()
    feeder.stop()
    assert time.monotonic() - start < 0.5
    assert ring.available == 100_000 - 4096  # nothing consumed that was not written


def test_close_releases_the_keeper(fifo_path: Path) -> None:
    feeder = FifoFeeder(ByteRing(100), fifo_path)
    feeder.start()
    reader = QemuLikeReader(fifo_path)
    feeder.close()
    assert os.read(reader.fd or -1, 10) == b""  # now, and only now, end-of-file
    reader.close()


def test_empty_path_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        FifoFeeder(ByteRing(100), "")


def test_stop_is_prompt_while_data_flows_and_bytes_stay_in_order(fifo_path: Path) -> None:
    # stop() must not wait on a lock the writer takes after every write (a deadlock that
    # leaked the writer descriptor under steady flow); no byte is lost or repeated meanwhile.
    ring = ByteRing(1_000_000)
    data = pattern(0, 100_000)
    ring.push(data)
    feeder = FifoFeeder(ring, fifo_path)
    feeder.start()  # creates the FIFO
    reader = QemuLikeReader(fifo_path)
    got = bytearray()
    try:
        for _ in range(40):
            feeder.start()
            got += reader.read_once(65536)
            started = time.monotonic()
            feeder.stop(timeout_s=2.0)
            assert time.monotonic() - started < 1.0
            assert not feeder.running
        feeder.start()
        got += reader.read_exactly(len(data) - len(got), timeout_s=30)
        feeder.stop()
        assert bytes(got) == data
        assert feeder.snapshot().errors == 0
    finally:
        reader.close()

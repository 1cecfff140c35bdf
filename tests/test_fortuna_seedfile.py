"""The seed file (fortuna.md §4): round trip, start-up update, corruption, permissions, locking,
atomic writes and write failures.

Round trip means: what a Fortuna writes, the next one reads, reseeds from (K <- SHAd-256(0^32 ||
file)) and replaces with the generator's very next 64 bytes, before any output.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lokey.errors import NotSeededError, SeedFileError
from lokey.fortuna import SEED_FILE_SIZE, Fortuna, SeedFileStatus
from lokey.fortuna import seedfile as seedfile_module
from sim.clock import VirtualClock
from tests.fortuna_helpers import FIXED_ENTROPY, SpecGenerator, fixed_entropy

TRNG = bytes(range(100, 164))  # stands in for 64 bytes of health-tested TRNG output


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def status(fortuna: Fortuna) -> SeedFileStatus | None:
    return fortuna.seed_file_status  # (read through a call: mypy would narrow the property)


def leftovers(directory: Path) -> list[str]:
    """Temporary files left behind by writes (there must never be any)."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "fortuna.seed"
    with Fortuna(VirtualClock(), seed_file=path) as first:
        assert first.seed_file == path
        assert first.seed_file_status is SeedFileStatus.ABSENT
        assert not first.seeded
        with pytest.raises(NotSeededError):
            first.write_seed_file()
        assert not path.exists()
        first.seed_directly(TRNG)  # design.md start-up: direct reseed, then write the file
        assert status(first) is SeedFileStatus.WRITTEN
        written = path.read_bytes()
        assert len(written) == SEED_FILE_SIZE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first.random_data(10)
    at_close = path.read_bytes()  # close() wrote the file once more
    assert at_close != written

    second = Fortuna(VirtualClock(), seed_file=str(path), extra_entropy=fixed_entropy)
    assert second.seeded
    assert second.seed_file_status is SeedFileStatus.LOADED
    assert second.reseed_count == 0
    spec = SpecGenerator()
    # the update goes straight into the generator, not the pools, with OS entropy alongside
    spec.reseed(at_close + FIXED_ENTROPY)
    assert path.read_bytes() == spec.pseudo_random_data(64)  # rewritten before any output
    assert second.random_data(48) == spec.pseudo_random_data(48)
    assert second.bytes_generated == 48
    second.close()


def test_seed_file_is_rewritten_after_every_pool_reseed(tmp_path: Path) -> None:
    path = tmp_path / "seed"
    clock = VirtualClock()
    fortuna = Fortuna(clock, seed_file=path)
    fortuna.seed_directly(TRNG)
    contents = {path.read_bytes()}
    for _ in range(3):
        clock.advance(0.1)
        for _ in range(2):
            fortuna.add_random_event(0, 0, b"\x11" * 32)
        fortuna.random_data(1)
        contents.add(path.read_bytes())
    assert fortuna.reseed_count == 3
    assert len(contents) == 4
    fortuna.random_data(1)  # no reseed, no write
    assert len(contents | {path.read_bytes()}) == 4
    assert leftovers(tmp_path) == []
    fortuna.close()


def test_explicit_write_is_random_data_64(tmp_path: Path) -> None:
    path = tmp_path / "seed"
    fortuna = Fortuna(VirtualClock(), seed_file=path, extra_entropy=fixed_entropy)
    fortuna.seed_directly(TRNG)
    spec = SpecGenerator()
    spec.reseed(TRNG + FIXED_ENTROPY)
    assert path.read_bytes() == spec.pseudo_random_data(64)
    fortuna.write_seed_file()
    assert path.read_bytes() == spec.pseudo_random_data(64)
    assert fortuna.random_data(16) == spec.pseudo_random_data(16)
    assert fortuna.bytes_generated == 16  # seed-file bytes are not counted as handed out
    fortuna.close()


@pytest.mark.parametrize(
    ("contents", "mode", "match"),
    [
        (b"", 0o600, "holds 0 bytes"),
        (b"\x01" * 63, 0o600, "holds 63 bytes"),
        (b"\x01" * 65, 0o600, "holds more than 64 bytes"),
        (b"\x01" * 4096, 0o600, "holds more than 64 bytes"),
        (bytes(64), 0o600, "all zero"),
        (TRNG, 0o644, "mode 0644"),
        (TRNG, 0o640, "mode 0640"),
        (TRNG, 0o602, "mode 0602"),
    ],
)
def test_unusable_files_are_rejected_and_replaced(
    tmp_path: Path, contents: bytes, mode: int, match: str
) -> None:
    path = tmp_path / "seed"
    write_file(path, contents, mode)
    fortuna = Fortuna(VirtualClock(), seed_file=path, extra_entropy=fixed_entropy)
    assert fortuna.seed_file_status is SeedFileStatus.REJECTED
    assert fortuna.seed_file_message is not None
    assert match in fortuna.seed_file_message
    assert not fortuna.seeded  # its contents never reached the generator
    assert path.read_bytes() == contents  # left alone until there is something to write
    fortuna.seed_directly(TRNG)
    assert len(path.read_bytes()) == SEED_FILE_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    spec = SpecGenerator()
    spec.reseed(TRNG + FIXED_ENTROPY)  # the generator saw the direct seed only
    assert path.read_bytes() == spec.pseudo_random_data(64)
    fortuna.close()


def test_directories_symlinks_and_fifos_are_not_seed_files(tmp_path: Path) -> None:
    good = tmp_path / "elsewhere"
    write_file(good, TRNG)
    cases = {"dir": "not a regular file", "link": "cannot be opened", "fifo": "not a regular"}
    (tmp_path / "dir").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(good)
    os.mkfifo(tmp_path / "fifo", 0o600)
    for name, match in cases.items():
        fortuna = Fortuna(VirtualClock(), seed_file=tmp_path / name)
        assert fortuna.seed_file_status is SeedFileStatus.REJECTED, name
        assert match in (fortuna.seed_file_message or ""), name
        assert not fortuna.seeded
        fortuna.close()


def test_missing_directory_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(SeedFileError, match="lock"):
        Fortuna(VirtualClock(), seed_file=tmp_path / "no" / "such" / "seed")


def test_one_seed_file_one_user(tmp_path: Path) -> None:
    """§4: two users of one seed file would reseed from the same 64 bytes."""
    path = tmp_path / "seed"
    first = Fortuna(VirtualClock(), seed_file=path)
    with pytest.raises(SeedFileError, match="in use"):
        Fortuna(VirtualClock(), seed_file=path)
    first.close()
    first.close()  # idempotent
    second = Fortuna(VirtualClock(), seed_file=path)
    second.close()


def test_the_lock_is_released_when_the_fortuna_is_collected(tmp_path: Path) -> None:
    path = tmp_path / "seed"
    fortuna = Fortuna(VirtualClock(), seed_file=path)
    del fortuna
    import gc

    gc.collect()
    Fortuna(VirtualClock(), seed_file=path).close()


def test_a_relative_path_is_fixed_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    fortuna = Fortuna(VirtualClock(), seed_file="seed")
    monkeypatch.chdir(tmp_path / "b")
    fortuna.seed_directly(TRNG)
    assert fortuna.seed_file == tmp_path / "a" / "seed"
    assert (tmp_path / "a" / "seed").exists()
    assert not (tmp_path / "b" / "seed").exists()
    fortuna.close()


def test_close_writes_only_when_seeded_and_stops_seed_file_use(tmp_path: Path) -> None:
    path = tmp_path / "seed"
    Fortuna(VirtualClock(), seed_file=path).close()
    assert not path.exists()
    fortuna = Fortuna(VirtualClock(), seed_file=path)
    fortuna.seed_directly(TRNG)
    fortuna.close()
    after_close = path.read_bytes()
    assert fortuna.seed_file is None
    fortuna.write_seed_file()  # no longer configured: nothing happens
    fortuna.random_data(8)  # the generator keeps working
    assert path.read_bytes() == after_close


# --- failures while writing --------------------------------------------------------------


def _failing_write(path: Path, data: bytes) -> None:
    raise OSError(28, "No space left on device")


def test_a_start_up_update_that_cannot_be_rewritten_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§4: the file must be rewritten before any output; if it cannot be, output from it
    would repeat after the next restart, so the generator stays unseeded."""
    path = tmp_path / "seed"
    write_file(path, TRNG)
    monkeypatch.setattr(seedfile_module, "write", _failing_write)
    fortuna = Fortuna(VirtualClock(), seed_file=path)
    assert fortuna.seed_file_status is SeedFileStatus.WRITE_FAILED
    assert "No space left" in (fortuna.seed_file_message or "")
    assert not fortuna.seeded
    with pytest.raises(NotSeededError):
        fortuna.random_data(1)
    assert path.read_bytes() == TRNG
    fortuna.close()


def test_automatic_writes_record_failures_and_explicit_writes_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "seed"
    clock = VirtualClock()
    fortuna = Fortuna(clock, seed_file=path)
    monkeypatch.setattr(seedfile_module, "write", _failing_write)
    fortuna.seed_directly(TRNG)  # seeding takes effect; the failed write is recorded
    assert fortuna.seeded
    assert fortuna.seed_file_status is SeedFileStatus.WRITE_FAILED
    for _ in range(2):
        fortuna.add_random_event(0, 0, b"\x22" * 32)
    assert len(fortuna.random_data(5)) == 5  # a reseed, a failed write, still output
    assert fortuna.reseed_count == 1
    with pytest.raises(SeedFileError, match="could not be written") as caught:
        fortuna.write_seed_file()
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(SeedFileError):
        fortuna.close()
    assert fortuna.seed_file is None  # the lock is released even so
    monkeypatch.undo()
    Fortuna(clock, seed_file=path).close()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "seed"
    fortuna = Fortuna(VirtualClock(), seed_file=path)
    fortuna.seed_directly(TRNG)
    before = path.read_bytes()

    def no_rename(src: str, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("lokey.fortuna.seedfile.os.replace", no_rename)
    with pytest.raises(SeedFileError, match="Input/output error"):
        fortuna.write_seed_file()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    fortuna.write_seed_file()
    assert path.read_bytes() != before
    assert fortuna.seed_file_status is SeedFileStatus.WRITTEN
    fortuna.close()


def test_the_lock_file_sits_beside_the_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "seed"
    fortuna = Fortuna(VirtualClock(), seed_file=path)
    lock = tmp_path / "seed.lock"
    assert lock.exists()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    fortuna.close()


def test_a_restored_seed_file_does_not_replay_the_earlier_output(tmp_path: Path) -> None:
    # fortuna.md §4: a seed file supplements live entropy, never replaces it.
    path = tmp_path / "seed"
    with Fortuna(VirtualClock(), seed_file=path) as first:
        first.seed_directly(TRNG)
    backup = path.read_bytes()
    with Fortuna(VirtualClock(), seed_file=path) as run_a:
        out_a = run_a.random_data(64)
    path.write_bytes(backup)
    with Fortuna(VirtualClock(), seed_file=path) as run_b:
        out_b = run_b.random_data(64)
    assert out_a != out_b

"""TRNG source: sample checks, start-up test, conditioning, health failures (service-api.md §2).

The rejection rules and the test pattern come from service-api.md §2 and atecc608a.md §5; the
start-up length from health-tests.md §1.5 (1,024 samples = 32 Random responses of 32 bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pytest

from lokey.controller import (
    SAMPLE_BYTES,
    TEST_PATTERN,
    RejectReason,
    SampleRejectedError,
    SourceHealthError,
    TrngSource,
    classify,
    condition,
)
from lokey.controller.source import DEFAULT_REPEAT_HISTORY, REPEAT_DIGEST_BYTES, RepeatHistory
from lokey.errors import CommunicationError, DeviceError
from lokey.quality.health import STARTUP_SAMPLES, HealthState, HealthTracker
from tests.controller_doubles import Bench

STARTUP_RANDOMS = STARTUP_SAMPLES // SAMPLE_BYTES  # 1,024 bytes / 32 = 32 Random commands


class Scripted:
    """A device whose Random returns the given outputs in order (or raises them)."""

    def __init__(self, outputs: Iterable[bytes | Exception] = ()) -> None:
        self.outputs = list(outputs)
        self.calls = 0

    def random(self) -> bytes:
        self.calls += 1
        item = self.outputs.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def started_source(*, conditioning: bool = True) -> tuple[TrngSource, Bench, Scripted, bytes]:
    """A source past its start-up with one sample released and the next one held back.

    From here every ``sample()`` reads exactly one Random and releases the sample held before
    it; the raw bytes of the held sample are returned as the fourth element.
    """
    bench = Bench(seed=1)
    raws = [bench.good_sample() for _ in range(STARTUP_RANDOMS + 2)]
    device = Scripted(raws)
    source = TrngSource(device, conditioning=conditioning)
    source.sample()
    assert source.started
    assert not device.outputs
    return source, bench, device, raws[-1]


def test_the_pattern_and_sizes_are_the_specs() -> None:
    assert bytes.fromhex("ffff0000" * 8) == TEST_PATTERN  # atecc608a.md §5
    assert SAMPLE_BYTES == 32
    # atecc608a.md §5 prints the SHA-256 of the pattern: conditioning is plain SHA-256.
    assert condition(TEST_PATTERN).hex() == (
        "d422a4a64cfa4daffb575ef527d122992f8b1c74d466c68351eed0144d427b0f"
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes.fromhex("ffff0000") * 8, RejectReason.TEST_PATTERN),
        (b"\x00" * 32, RejectReason.ALL_EQUAL),
        (b"\xff" * 32, RejectReason.ALL_EQUAL),
        (b"\x5a" * 32, RejectReason.ALL_EQUAL),
        (b"\xff" * 29 + b"\x01\x02\x03", RejectReason.MOSTLY_FF),  # 90.6 % > 90 %
        (b"\x23\x42" + b"\xff" * 30, RejectReason.MOSTLY_FF),  # §17.3: an error group as data
        (b"\x01" * 31, RejectReason.LENGTH),
        (bytes(range(33)), RejectReason.LENGTH),
        (b"\xff" * 28 + b"\x01\x02\x03\x04", None),  # 87.5 %: allowed
        (bytes(range(32)), None),
    ],
)
def test_classify(raw: bytes, reason: RejectReason | None) -> None:
    assert classify(raw) is reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (TEST_PATTERN, RejectReason.TEST_PATTERN),
        (b"\x00" * 32, RejectReason.ALL_EQUAL),
        (b"\xff" * 30 + b"\x00\x01", RejectReason.MOSTLY_FF),
    ],
)
def test_a_rejected_sample_raises_is_counted_and_is_not_health_tested(
    raw: bytes, reason: RejectReason
) -> None:
    source, _, device, _ = started_source()
    before = source.snapshot()
    device.outputs.append(raw)
    with pytest.raises(SampleRejectedError) as info:
        source.sample()
    assert isinstance(info.value, DeviceError)  # a device failure: counts toward the breaker
    assert info.value.reason is reason
    assert raw.hex() not in str(info.value)
    after = source.snapshot()
    assert after.rejected[reason] == 1
    assert after.rejected_total == 1
    assert after.released == before.released
    assert after.health.samples == before.health.samples  # never fed to the health tests


def test_each_reason_is_counted_separately() -> None:
    source, bench, device, _ = started_source()
    device.outputs += [TEST_PATTERN, TEST_PATTERN, b"\x07" * 32, CommunicationError("CRC")]
    for _ in range(3):
        with pytest.raises(SampleRejectedError):
            source.sample()
    with pytest.raises(CommunicationError):
        source.sample()
    rejected = source.snapshot().rejected
    assert rejected[RejectReason.TEST_PATTERN] == 2
    assert rejected[RejectReason.ALL_EQUAL] == 1
    assert rejected[RejectReason.COMMUNICATION] == 1
    assert rejected[RejectReason.MOSTLY_FF] == 0
    device.outputs += [bench.good_sample(), bench.good_sample()]  # one to hold, one to release
    assert len(source.sample()) == 32  # rejections are not sticky; health failures are


def test_the_start_up_test_needs_1024_bytes_before_the_first_release() -> None:
    bench = Bench(seed=2)
    raws = [bench.good_sample() for _ in range(STARTUP_RANDOMS + 2)]
    device = Scripted(raws)
    source = TrngSource(device)
    assert not source.started
    first = source.sample()
    # 32 start-up samples discarded, the 33rd released once the 34th has passed the checks
    assert device.calls == STARTUP_RANDOMS + 2
    assert first == hashlib.sha256(raws[STARTUP_RANDOMS]).digest()
    assert first not in {hashlib.sha256(r).digest() for r in raws[:STARTUP_RANDOMS]}
    snap = source.snapshot()
    assert (snap.read, snap.discarded, snap.released) == (34, 32, 1)
    assert snap.health.samples_usable == 64
    assert snap.health.samples_discarded == STARTUP_SAMPLES
    assert snap.health.state is HealthState.STEADY


def test_a_stuck_block_is_caught_on_its_second_copy_and_the_first_is_never_released() -> None:
    source, bench, device, held = started_source(conditioning=False)
    block = bench.good_sample()
    device.outputs += [block, block]
    assert source.sample() == held  # released only now that ``block`` passed the checks
    with pytest.raises(SampleRejectedError) as info:
        source.sample()
    assert info.value.reason is RejectReason.REPEATED
    snap = source.snapshot()
    assert snap.released == 2  # ``block`` was held back, then dropped with the failure
    assert snap.rejected[RejectReason.REPEATED] == 1


@pytest.mark.parametrize("period", [2, 3, 8])
def test_a_cycle_is_caught_at_its_first_repeat_and_nothing_is_released_twice(period: int) -> None:
    source, bench, device, held = started_source(conditioning=False)
    cycle = [bench.good_sample() for _ in range(period)]
    device.outputs += cycle * 3
    released = [source.sample() for _ in range(period)]
    assert released == [held, *cycle[: period - 1]]  # each block at most once, so far
    with pytest.raises(SampleRejectedError) as info:
        source.sample()  # cycle[0] again: caught, and cycle[-1] (held back) is dropped
    assert info.value.reason is RejectReason.REPEATED
    for _ in range(2 * period - 1):  # every later copy is rejected too
        with pytest.raises(SampleRejectedError):
            source.sample()
    snap = source.snapshot()
    assert snap.rejected[RejectReason.REPEATED] == 2 * period
    assert snap.released == 2 + period - 1  # never a second copy; cycle[-1] never at all
    device.outputs += [bench.good_sample(), bench.good_sample()]
    released.append(source.sample())
    assert len(set(released)) == len(released)
    assert cycle[-1] not in released


def test_the_history_survives_a_reopen_so_a_replayed_stream_is_refused() -> None:
    bench = Bench(seed=5)
    stream = [bench.good_sample() for _ in range(STARTUP_RANDOMS + 10)]
    source = TrngSource(Scripted(stream), conditioning=False)
    released = [source.sample() for _ in range(9)]  # stream[32..40]; stream[41] held
    source.detach()  # closed: the held sample is dropped, the history kept
    for start in (0, STARTUP_RANDOMS, STARTUP_RANDOMS + 9):  # replays of any part of it
        replay = Scripted(stream[start:])
        source.attach(replay)
        with pytest.raises(SampleRejectedError) as info:
            source.sample()
        assert info.value.reason is RejectReason.REPEATED
        assert replay.calls == 1  # caught on the very first sample, during the start-up test
    fresh = Scripted(bench.good_sample() for _ in range(STARTUP_RANDOMS + 2))
    source.attach(fresh)
    released.append(source.sample())
    assert released[:9] == stream[STARTUP_RANDOMS : STARTUP_RANDOMS + 9]
    assert len(set(released)) == len(released)
    assert stream[-1] not in released  # held at the detach, dropped, refused on every replay


def test_the_repeat_history_is_bounded() -> None:
    """4,096 digests of 16 bytes by default; the oldest is forgotten first (the documented
    limit: a cycle longer than the history is not seen by this check)."""
    assert DEFAULT_REPEAT_HISTORY == 4096
    assert REPEAT_DIGEST_BYTES == 16
    assert TrngSource().history.capacity == DEFAULT_REPEAT_HISTORY
    bench = Bench(seed=6)
    capacity = 40
    raws = [bench.good_sample() for _ in range(STARTUP_RANDOMS + 20)]
    device = Scripted(raws)
    source = TrngSource(device, conditioning=False, repeat_history=capacity)
    for _ in range(19):
        source.sample()
    history = source.history
    assert len(history) == capacity  # 52 samples read, 40 remembered
    assert raws[-capacity] in history
    assert raws[-capacity - 1] not in history  # forgotten: replaying it would pass this check
    device.outputs += [raws[-capacity - 1], raws[-1]]
    source.sample()  # the forgotten one passes (remembered again, evicting the oldest) ...
    assert raws[-capacity] not in history
    with pytest.raises(SampleRejectedError):
        source.sample()  # ... a remembered one does not
    assert len(history) == capacity


def test_the_history_keeps_digests_never_sample_bytes_nor_served_output() -> None:
    history = RepeatHistory(4)
    raw = bytes(range(32))
    assert history.add(raw)
    assert not history.add(raw)
    digest = RepeatHistory.digest(raw)
    assert len(digest) == REPEAT_DIGEST_BYTES
    assert digest not in (raw[:16], condition(raw)[:16])  # not a prefix of what was served
    assert raw in history
    assert b"other" not in history
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="repeat history"):
            RepeatHistory(bad)  # type: ignore[arg-type]


def test_conditioning_off_returns_the_raw_sample() -> None:
    source, bench, device, held = started_source(conditioning=False)
    device.outputs.append(bench.good_sample())
    assert source.sample() == held
    assert not source.snapshot().conditioning


def test_conditioning_on_by_default_returns_sha256_of_the_raw_sample() -> None:
    source, bench, device, held = started_source()
    device.outputs.append(bench.good_sample())
    assert source.sample() == hashlib.sha256(held).digest()
    assert source.conditioning


def test_a_health_test_failure_is_a_device_failure_and_sticks_until_reattached() -> None:
    source, bench, device, _ = started_source()
    device.outputs += [bytes(range(29)) + b"\x09" * 3, b"\x09" + bytes(range(100, 131))]
    source.sample()  # three 0x09 at the end of one sample: still below the RCT cut-off of 4
    with pytest.raises(SourceHealthError, match="repetition count") as info:
        source.sample()  # the fourth starts the next sample: the test carries across samples
    assert isinstance(info.value, DeviceError)
    assert source.snapshot().health_failures == 1
    calls = device.calls
    with pytest.raises(SourceHealthError):
        source.sample()
    assert device.calls == calls  # a FAILED source does not even ask the device
    fresh = Scripted(bench.good_sample() for _ in range(STARTUP_RANDOMS + 2))
    source.attach(fresh)
    assert not source.started  # the start-up test runs again on the new device
    source.sample()
    assert fresh.calls == STARTUP_RANDOMS + 2
    snap = source.snapshot()
    assert snap.health.restarts == 1
    assert snap.health.failures == 1


def test_a_failure_during_start_up_releases_nothing() -> None:
    bench = Bench(seed=3)
    outputs: list[bytes | Exception] = [bench.good_sample() for _ in range(10)]
    outputs.append(b"\x01" * 4 + bytes(range(50, 78)))
    device = Scripted(outputs)
    source = TrngSource(device)
    with pytest.raises(SourceHealthError):
        source.sample()
    assert source.snapshot().released == 0


def test_a_custom_tracker_with_a_longer_start_up_is_honoured() -> None:
    bench = Bench(seed=4)
    tracker = HealthTracker(startup_samples=1024 + 16)  # ends in the middle of sample 33
    device = Scripted(bench.good_sample() for _ in range(35))
    source = TrngSource(device, tracker=tracker)
    source.sample()
    assert device.calls == 35  # sample 33 straddled the end of the start-up: discarded too
    assert source.snapshot().discarded == 33


def test_no_device_is_a_programming_error() -> None:
    source = TrngSource()
    with pytest.raises(RuntimeError, match="no device"):
        source.sample()

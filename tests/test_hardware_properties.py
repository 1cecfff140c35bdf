"""Property: under any mix of bus and chip faults, ``random()`` returns exactly what the chip's
RNG produced (never garbage) or raises a DeviceError (never anything untyped), and once the
faults are gone the very next call works."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lokey.errors import DeviceError
from sim.atecc608a import (
    BrownOut,
    ChipFault,
    CorruptResponseCrc,
    ExtraBusy,
    ForcedStatus,
    LockState,
    LostCommand,
    Status,
    WakeIgnored,
    WrongCount,
)
from sim.i2c_bus import (
    BitFlip,
    CorruptByte,
    Fault,
    Latency,
    Nack,
    Schedule,
    SdaLow,
    StuckBus,
    TruncatedRead,
)
from tests.hardware_helpers import ADDRESS, make_driver_rig

# Distinct 32-byte blocks the chip's RNG is scripted with: a sample must be one of them.
BLOCKS = tuple(bytes((i, 255 - i)) * 16 for i in range(96))
CALLS = 4

seeds = st.integers(0, 2**16)
schedules = st.one_of(
    st.builds(Schedule.first, st.integers(1, 25)),
    st.builds(Schedule.every, st.integers(1, 6)),
    st.builds(Schedule.chance, st.floats(0.0, 1.0), seeds),
)
addresses = st.sampled_from([ADDRESS, None])
bus_faults: st.SearchStrategy[Fault] = st.one_of(
    st.builds(Nack, addresses, schedules),
    st.builds(BitFlip, addresses, schedules, bits=st.integers(1, 3), seed=seeds),
    st.builds(CorruptByte, addresses, schedules, value=st.none() | st.integers(0, 255), seed=seeds),
    st.builds(TruncatedRead, addresses, schedules, after=st.integers(0, 40)),
    st.builds(Latency, st.floats(0.0, 0.01), address=addresses),
    st.just(StuckBus(ADDRESS)),
    st.builds(SdaLow, errno=st.sampled_from([5, 11, 110])),
)
counts = st.integers(1, 3)
chip_faults: st.SearchStrategy[ChipFault] = st.one_of(
    st.builds(
        ForcedStatus,
        count=counts,
        status=st.sampled_from([s for s in Status if s not in (Status.SUCCESS, Status.AFTER_WAKE)]),
    ),
    st.builds(CorruptResponseCrc, count=counts),
    st.builds(WrongCount, count=counts, value=st.none() | st.integers(0, 255)),
    st.builds(LostCommand, count=counts),
    st.builds(BrownOut, count=counts),
    st.builds(ExtraBusy, count=counts, seconds=st.floats(0.0, 0.02)),
    st.builds(WakeIgnored, count=st.integers(1, 25)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timing=st.sampled_from(["instant", "typical", "maximum"]),
    wire=st.lists(bus_faults, max_size=3),
    chip=st.lists(chip_faults, max_size=2),
)
def test_random_is_exact_or_a_device_error_and_recovers(
    timing: str, wire: list[Fault], chip: list[ChipFault]
) -> None:
    rig = make_driver_rig(timing, lock=LockState.CONFIG_LOCKED)
    rig.chip.control.script_random(*BLOCKS)
    for fault in wire:
        rig.bus.faults.inject(fault)
    for chip_fault in chip:
        rig.chip.control.inject(chip_fault)
    outcomes: list[Any] = []
    for _ in range(CALLS):
        try:
            sample = rig.driver.random()
        except DeviceError as error:  # anything else fails the test: an untyped escape
            outcomes.append(type(error))
            continue
        assert len(sample) == 32
        assert sample in BLOCKS, f"garbage returned as a sample: {sample.hex()}"
        outcomes.append(sample)
    samples = [o for o in outcomes if isinstance(o, bytes)]
    assert len(set(samples)) == len(samples)  # no response was ever handed out twice
    rig.bus.faults.clear()
    rig.chip.control.clear_faults()
    assert rig.driver.random() in BLOCKS

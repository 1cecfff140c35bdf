"""The bus trace records every message as it happened on the wire, and survives JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from sim.clock import VirtualClock
from sim.i2c_bus import DEFAULT_TRACE_CAPACITY, Trace, TraceRecord, VirtualI2CBus


class Counter:
    """Answers reads with 0, 1, 2 … (continuing across reads); acknowledges unless told not to."""

    def __init__(self) -> None:
        self.next = 0
        self.ack = True

    def bus_address(self, attached_at: int) -> int:
        return attached_at

    def i2c_write(self, data: bytes) -> bool:
        return self.ack

    def i2c_read(self, length: int) -> bytes | None:
        if not self.ack:
            return None
        out = bytes((self.next + i) & 0xFF for i in range(length))
        self.next += length
        return out

    def i2c_stop(self) -> None:
        pass

    def wake_pulse(self) -> None:
        pass


def wired(**kwargs: bool | int) -> tuple[VirtualI2CBus, VirtualClock, Counter]:
    clock = VirtualClock(start=10.0)
    bus = VirtualI2CBus(clock, **kwargs)
    dev = Counter()
    bus.attach(0x60, dev)
    return bus, clock, dev


def test_each_message_is_recorded_with_transfer_index_time_and_bytes() -> None:
    bus, clock, _ = wired()
    bus.i2c_rdwr(i2c_msg.write(0x60, [0x03, 0x07]), i2c_msg.read(0x60, 3))
    clock.advance(0.5)
    bus.i2c_rdwr(i2c_msg.read(0x60, 2))
    assert bus.trace.records() == [
        TraceRecord(10.0, 0, 0, 0x60, "w", b"\x03\x07", "ack", ()),
        TraceRecord(10.0, 0, 1, 0x60, "r", b"\x00\x01\x02", "ack", ()),
        TraceRecord(10.5, 1, 0, 0x60, "r", b"\x03\x04", "ack", ()),
    ]


def test_nack_is_recorded_and_messages_after_it_are_not() -> None:
    bus, _, dev = wired()
    dev.ack = False
    with pytest.raises(OSError, match="0x60"):
        bus.i2c_rdwr(i2c_msg.read(0x60, 4), i2c_msg.write(0x60, [1]))
    with pytest.raises(OSError, match="0x42"):
        bus.i2c_rdwr(i2c_msg.write(0x42, [0xAB]))
    records = bus.trace.records()
    assert [(r.transfer, r.index, r.address, r.direction, r.data, r.outcome) for r in records] == [
        (0, 0, 0x60, "r", b"", "nack"),
        (1, 0, 0x42, "w", b"\xab", "nack"),
    ]


def test_wake_pulse_is_recorded_as_wake_with_the_bytes_sent() -> None:
    bus, _, _ = wired()
    with pytest.raises(OSError, match="wake pulse"):
        bus.i2c_rdwr(i2c_msg.write(0x00, [0x01]))
    (record,) = bus.trace.records()
    assert (record.address, record.direction, record.data, record.outcome) == (
        0x00,
        "w",
        b"\x01",
        "wake",
    )


def test_trace_keeps_only_the_newest_records_up_to_its_capacity() -> None:
    bus, _, _ = wired(trace=3)
    for value in range(5):
        bus.i2c_rdwr(i2c_msg.write(0x60, [value]))
    assert bus.trace.capacity == 3
    assert [r.data for r in bus.trace.records()] == [b"\x02", b"\x03", b"\x04"]
    assert [r.transfer for r in bus.trace.records()] == [2, 3, 4]


def test_default_trace_capacity_is_65536() -> None:
    bus, _, _ = wired()
    assert bus.trace.capacity == DEFAULT_TRACE_CAPACITY == 65_536


@pytest.mark.parametrize("setting", [False, 0])
def test_disabled_trace_records_nothing(setting: bool | int) -> None:
    bus, _, _ = wired(trace=setting)
    bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.read(0x60, 1))
    assert not bus.trace.enabled
    assert bus.trace.records() == []


@pytest.mark.parametrize("setting", [-1, 1.5, "big"])
def test_invalid_trace_setting_is_refused(setting: object) -> None:
    with pytest.raises(ValueError, match="trace"):
        VirtualI2CBus(VirtualClock(), trace=setting)  # type: ignore[arg-type]


def test_clear_forgets_records_but_transfer_numbers_keep_counting() -> None:
    bus, _, _ = wired()
    bus.i2c_rdwr(i2c_msg.write(0x60, [0]))
    bus.trace.clear()
    assert len(bus.trace) == 0
    bus.i2c_rdwr(i2c_msg.write(0x60, [1]))
    (record,) = bus.trace.records()
    assert record.transfer == 1


def test_json_form_uses_the_short_stable_keys_and_lowercase_hex() -> None:
    record = TraceRecord(1.25, 7, 2, 0x60, "r", b"\xab\xcd", "error:EIO", ("sda_low",))
    assert json.loads(record.to_json()) == {
        "t": 1.25,
        "xfer": 7,
        "i": 2,
        "addr": 96,
        "dir": "r",
        "data": "abcd",
        "outcome": "error:EIO",
        "faults": ["sda_low"],
    }
    assert "\n" not in record.to_json()


def test_jsonl_has_one_record_per_line() -> None:
    bus, _, _ = wired()
    bus.i2c_rdwr(i2c_msg.write(0x60, [0]), i2c_msg.read(0x60, 2))
    lines = bus.trace.to_jsonl().splitlines()
    assert [TraceRecord.from_json(line) for line in lines] == bus.trace.records()


def test_bus_trace_round_trips_through_a_file(tmp_path: Path) -> None:
    bus, clock, _ = wired()
    bus.i2c_rdwr(i2c_msg.write(0x60, [0x03, 0x07, 0x1B]))
    clock.advance(0.023)
    bus.i2c_rdwr(i2c_msg.read(0x60, 35))
    with pytest.raises(OSError, match="wake pulse"):
        bus.i2c_rdwr(i2c_msg.write(0x00, [0]))
    path = tmp_path / "trace.jsonl"
    bus.trace.write_jsonl(path)
    assert Trace.read_jsonl(path).records() == bus.trace.records()
    assert Trace.read_jsonl(str(path)).records() == bus.trace.records()


def test_empty_trace_round_trips() -> None:
    assert Trace.read_jsonl(Trace().to_jsonl()).records() == []


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('{"t":1,"xfer":0,"i":0,"addr":96,"dir":"x","data":"","outcome":"ack","faults":[]}', "dir"),
        (
            '{"t":1,"xfer":0,"i":0,"addr":96,"dir":"w","data":"zz","outcome":"ack","faults":[]}',
            "data",
        ),
        (
            '{"t":1,"xfer":-1,"i":0,"addr":96,"dir":"w","data":"","outcome":"ack","faults":[]}',
            "xfer",
        ),
        (
            '{"t":"1","xfer":0,"i":0,"addr":96,"dir":"w","data":"","outcome":"ack","faults":[]}',
            "'t'",
        ),
        (
            '{"t":1,"xfer":0,"i":0,"addr":96,"dir":"w","data":"","outcome":"ack","faults":[1]}',
            "faults",
        ),
        ('{"t":1,"xfer":0,"i":0,"addr":96,"dir":"w","data":""}', "outcome"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_trace_lines_are_refused_naming_the_problem(line: str, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        TraceRecord.from_json(line)


def test_malformed_jsonl_reports_the_line_number() -> None:
    good = TraceRecord(0.0, 0, 0, 0x60, "w", b"", "ack").to_json()
    text = good + "\n\n" + '{"t":0}' + "\n"
    with pytest.raises(ValueError, match="line 3"):
        Trace.read_jsonl(text)


_records = st.builds(
    TraceRecord,
    time=st.floats(allow_nan=False, allow_infinity=False),
    transfer=st.integers(min_value=0, max_value=2**63),
    index=st.integers(min_value=0, max_value=41),
    address=st.integers(min_value=0, max_value=0x7F),
    direction=st.sampled_from(["w", "r"]),
    data=st.binary(max_size=64),
    outcome=st.one_of(st.sampled_from(["ack", "nack", "wake", "error:EIO"]), st.text(max_size=12)),
    faults=st.lists(st.text(max_size=16), max_size=4).map(tuple),
)


@given(_records)
def test_any_record_round_trips_through_json(record: TraceRecord) -> None:
    assert TraceRecord.from_json(record.to_json()) == record


@given(st.lists(_records, max_size=20))
def test_any_trace_round_trips_through_json_lines(records: list[TraceRecord]) -> None:
    trace = Trace.from_records(records)
    assert Trace.read_jsonl(trace.to_jsonl()).records() == records

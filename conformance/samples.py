"""What a sample served by ``GET /generate`` must look like, whatever the chip is doing.

A controller may refuse to serve (503) while its chip is faulty; what it must never do is hand
out bytes a healthy chip cannot produce. The checks are deliberately blunt, so that a false alarm
on real random data is out of the question (the chance that 32 random bytes trip any of them is
below 2^-150): the unlocked chip's test pattern, a block of one repeated byte, more than 90 %
0xFF (a floating bus, a truncated read padded by the pull-up), and one sample served twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_FF_FRACTION",
    "SAMPLE_BYTES",
    "TEST_PATTERN",
    "repeated_sample",
    "sample_problem",
    "samples_of",
]

SAMPLE_BYTES: Final = 32
#: Random while the config zone is unlocked (spec/atecc608a.md §5): FF FF 00 00 eight times.
TEST_PATTERN: Final = bytes.fromhex("ffff0000" * 8)
MAX_FF_FRACTION: Final = 0.9
_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")


def sample_problem(sample: object) -> str | None:
    """Why ``sample`` (one element of ``/generate``'s ``data``) is bad, or None if it is fine."""
    if not isinstance(sample, str):
        return f"not a hex string: {sample!r}"
    if not _HEX.fullmatch(sample):
        return f"not {2 * SAMPLE_BYTES} hex characters: {sample!r}"
    data = bytes.fromhex(sample)
    if data == TEST_PATTERN:
        return f"the unlocked chip's test pattern (FFFF0000 x 8): {sample}"
    if len(set(data)) == 1:
        return f"all {SAMPLE_BYTES} bytes equal 0x{data[0]:02X}: {sample}"
    if data.count(0xFF) > MAX_FF_FRACTION * SAMPLE_BYTES:
        return f"{data.count(0xFF)} of {SAMPLE_BYTES} bytes are 0xFF (a floating bus?): {sample}"
    return None


def samples_of(body: object, count: int) -> list[object]:
    """The samples of a ``/generate?count=N`` 200 body (a string for 1, a list otherwise).

    Raises AssertionError when the body does not have that shape.
    """
    assert isinstance(body, dict), f"/generate: expected a JSON object, got {body!r}"
    data = body.get("data")
    if count == 1 and isinstance(data, str):
        return [data]
    assert isinstance(data, list), f"/generate?count={count}: 'data' is not a list: {body!r}"
    assert len(data) == count, f"/generate?count={count}: {len(data)} samples: {body!r}"
    return list(data)


def repeated_sample(samples: Iterable[str]) -> str | None:
    """A sample that occurs twice (case-insensitively), or None."""
    seen: set[str] = set()
    for sample in samples:
        key = sample.lower()
        if key in seen:
            return sample
        seen.add(key)
    return None

"""Usage accounting per source: lifetime totals and the most recent active hours.

The reference keeps ``usage_stats`` per request in bbolt (service-api.md §5); LoKey keeps one
small record per source instead: two totals and at most :data:`RECENT_HOURS` hourly buckets,
so recording a request is O(1) and the record never grows.
"""

from __future__ import annotations

import bisect
import builtins
import math
import struct
from dataclasses import dataclass

from lokey.store.base import Usage, UsageBucket

__all__ = ["HOUR", "RECENT_HOURS", "UsageRecord"]

HOUR = 3600
# Two days of hourly history: enough for a daily pattern and its predecessor.
RECENT_HOURS = 48

_TOTALS = struct.Struct(">QQ")
_BUCKET = struct.Struct(">qQQ")  # signed start: a test clock may sit before 1970


@dataclass(frozen=True)
class UsageRecord:
    """Totals plus ``(start, bytes, requests)`` buckets, oldest first, at most RECENT_HOURS."""

    bytes: int = 0
    requests: int = 0
    buckets: tuple[tuple[int, int, int], ...] = ()

    def add(self, now: float, nbytes: int) -> UsageRecord:
        start = math.floor(now / HOUR) * HOUR
        if self.buckets and self.buckets[-1][0] == start:  # the usual case: the current hour
            _, old_bytes, old_requests = self.buckets[-1]
            latest = (start, old_bytes + nbytes, old_requests + 1)
            return UsageRecord(self.bytes + nbytes, self.requests + 1, (*self.buckets[:-1], latest))
        buckets = list(self.buckets)
        starts = [b[0] for b in buckets]
        index = bisect.bisect_left(starts, start)
        if index < len(buckets) and buckets[index][0] == start:
            _, old_bytes, old_requests = buckets[index]
            buckets[index] = (start, old_bytes + nbytes, old_requests + 1)
        else:
            buckets.insert(index, (start, nbytes, 1))
        return UsageRecord(self.bytes + nbytes, self.requests + 1, tuple(buckets[-RECENT_HOURS:]))

    def usage(self) -> Usage:
        recent = tuple(UsageBucket(float(s), b, r) for s, b, r in self.buckets)
        return Usage(bytes=self.bytes, requests=self.requests, recent=recent)

    def encode(self) -> builtins.bytes:
        parts = [_TOTALS.pack(self.bytes, self.requests)]
        parts.extend(_BUCKET.pack(*bucket) for bucket in self.buckets)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: builtins.bytes | memoryview) -> UsageRecord:
        total_bytes, requests = _TOTALS.unpack_from(data)
        buckets = tuple(_BUCKET.iter_unpack(data[_TOTALS.size :]))
        return cls(total_bytes, requests, buckets)

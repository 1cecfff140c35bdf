"""No byte twice across SIGKILL: a consumer process killed at random moments, restarted.

The child (``tests.store_helpers.crash_child``) prints every chunk only after ``take()``
returned, so each printed line is a chunk that left the store. Whatever instant the kill lands
on (inside a commit, between commit and print), the next run must not serve any of those bytes
again, and the queue's counters must agree with what is left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

from lokey.store import LmdbStore
from tests.store_helpers import unique_items

REPO = Path(__file__).resolve().parent.parent
RUNS = 8
ITEMS = 40_000  # 1.25 MiB: more than eight runs can drain before their kill


def run_child(
    path: Path, sync: bool, seed: int, lines_before_kill: int, delay: float
) -> list[bytes]:
    """Start a consumer, read some of its lines, wait ``delay`` seconds, SIGKILL it."""
    code = (
        "from tests.store_helpers import crash_child; "
        f"crash_child({str(path)!r}, sync={sync}, seed={seed})"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    text = "".join(child.stdout.readline() for _ in range(lines_before_kill))
    time.sleep(delay)  # a few milliseconds, seeded: the kill lands anywhere in the next takes
    child.send_signal(signal.SIGKILL)
    text += child.stdout.read()  # lines already in the pipe were handed out too
    child.wait()
    lines = text.split("\n")
    assert lines[-1] == "", "a line was cut: writes below PIPE_BUF should be atomic"
    return [bytes.fromhex(line) for line in lines[:-1]]


def test_sigkill_never_serves_a_byte_twice(tmp_path: Path) -> None:
    path = tmp_path / "api.db"
    items = unique_items(0, ITEMS)
    stream = b"".join(items)
    store = LmdbStore(path, sync=False)
    store.push("trng", items)
    store.close()

    rng = random.Random(20240611)
    served: list[bytes] = []
    for run in range(RUNS):
        lines = rng.choice([0, 1, rng.randint(2, 40), rng.randint(40, 400)])
        delay = rng.uniform(0, 0.004)
        served += run_child(path, sync=run % 2 == 0, seed=run, lines_before_kill=lines, delay=delay)
    assert len(served) > RUNS  # the children did get to work

    store = LmdbStore(path, sync=False)
    stats = store.stats("trng")
    rest = store.take("trng", len(stream), partial=True, consume=False, account=False)
    store.close()
    consumed = len(stream) - len(rest)
    assert rest == stream[consumed:]  # what is left is exactly the unconsumed tail
    assert stats.consumed_bytes == consumed
    assert stats.bytes == len(rest)
    spans = sorted((stream.find(chunk), len(chunk)) for chunk in served)
    assert all(start >= 0 for start, _ in spans)
    for (start, size), (next_start, _) in pairwise(spans):
        assert start + size <= next_start, "a byte was served twice"
    assert spans[-1][0] + spans[-1][1] <= consumed
    assert sum(size for _, size in spans) <= consumed  # served + remaining <= pushed
    assert os.path.getsize(path) > 0

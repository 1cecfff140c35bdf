"""Leases: at most one API instance runs each poller and seeding loop (issue 11).

Several API processes may share one store (Redis). Two of them polling the same controller
would only split its samples, but two seeding the same Fortuna, or both topping up one queue,
would waste work and blur every per-instance counter; so each job runs only in the process
that holds its lease. :class:`LeaseKeeper` renews every job's lease every third of its
lifetime and remembers, on the local monotonic clock, until when it may trust each one.

The local deadline is counted from the moment the renew call **started** (the store's timer
may have started any time after that) and covers only 80 % of the lease, so a process that
cannot reach the store stops running a job well before another process can take the lease
over. A store only one process uses (LMDB, memory) grants every lease: no loop runs and
:meth:`LeaseKeeper.held` is always True.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable
from typing import Final

import anyio.to_thread

from lokey.clock import Clock
from lokey.store import QueueStore

__all__ = [
    "FORTUNA_POLL",
    "LEASE_SAFETY",
    "LeaseKeeper",
    "fortuna_seed_lease",
    "holder_id",
    "trng_poll_lease",
    "virtio_seed_lease",
]

log = logging.getLogger("lokey.services.api")

#: The share of a lease the holder trusts: the rest absorbs the renew call's own latency and
#: clock-rate differences between this host and the store's.
LEASE_SAFETY: Final = 0.8
RENEWALS_PER_LEASE: Final = 3  # renewed every ttl/3: two renewals may fail before it is lost
FORTUNA_POLL: Final = "fortuna-poll"
#: Renewing or releasing every lease at once may take at most this long (the store's own call
#: timeout is longer: a store that does not answer must not hold a round, or a shutdown).
ROUND_DEADLINE_FRACTION: Final = 0.5
RELEASE_DEADLINE_S: Final = 2.0


#: lokey.store.base.check_lease's limit on a lease name.
MAX_LEASE_NAME: Final = 200


def _named(job: str, url: str) -> str:
    """``job url``; a URL too long for a lease name (a host name may have 253 characters) is
    replaced by its digest, which every API instance computes alike."""
    name = f"{job} {url}"
    if len(name) <= MAX_LEASE_NAME:
        return name
    return f"{job} sha256:{hashlib.sha256(url.encode()).hexdigest()}"


def trng_poll_lease(url: str) -> str:
    return _named("trng-poll", url)


def fortuna_seed_lease(url: str) -> str:
    return _named("fortuna-seed", url)


def virtio_seed_lease(url: str) -> str:
    """Named after the VirtIO service: API instances feeding different VMs' rings (one VirtIO
    per hypervisor) each seed their own."""
    return _named("virtio-seed", url)


def holder_id() -> str:
    """This process among the API instances: host, pid and a few random hex digits (a pid
    can be reused after a restart, and two containers may both be pid 1 on one host name)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseKeeper:
    """Takes and renews the leases ``names`` for ``holder`` on ``store``.

    Store calls block, so they run in worker threads; :meth:`renew` is one round (one store
    call per lease), :meth:`run` repeats it every ``ttl_s / 3``, :meth:`release` gives up what
    is held (at shutdown, so another instance takes over at once instead of after ``ttl_s``).
    """

    def __init__(
        self, store: QueueStore, holder: str, ttl_s: float, clock: Clock, names: Iterable[str] = ()
    ) -> None:
        self.store = store
        self.holder = holder
        self.ttl_s = ttl_s
        self.clock = clock
        self.shared = bool(store.shared)
        self.names: list[str] = []
        self._deadlines: dict[str, float] = {}
        self._calls = 0  # lease calls still running in worker threads
        self._calls_lock = threading.Lock()
        self._no_calls = threading.Event()
        self._no_calls.set()
        self._failures = 0
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / RENEWALS_PER_LEASE

    def held(self, name: str) -> bool:
        """True while this process may run the job ``name``."""
        if not self.shared:
            return True
        deadline = self._deadlines.get(name)
        return deadline is not None and self.clock.monotonic() < deadline

    def view(self) -> dict[str, bool]:
        return {name: self.held(name) for name in self.names}

    async def renew(self) -> None:
        """One round: take or renew every lease, all at once, for at most half a lease. A call
        that fails or is late leaves its old deadline to run out (the store may be
        unreachable: never assume the lease)."""
        if not self.shared:
            return
        with anyio.move_on_after(self.ttl_s * ROUND_DEADLINE_FRACTION):
            async with anyio.create_task_group() as group:
                for name in self.names:
                    group.start_soon(self._renew_one, name)

    async def _renew_one(self, name: str) -> None:
        started = self.clock.monotonic()
        with self._calls_lock:
            self._calls += 1
            self._no_calls.clear()
        try:
            ok = await anyio.to_thread.run_sync(self._lease, name, abandon_on_cancel=True)
        except Exception as exc:  # the store down must not stop the renewing
            self._failures += 1
            if self._failures % 100 == 1:
                log.warning("lease %r not renewed (%d failures): %s", name, self._failures, exc)
            return
        was_held = self.held(name)
        if ok:
            self._deadlines[name] = started + self.ttl_s * LEASE_SAFETY
            if not was_held:
                log.info("took the lease %r: this instance runs it now", name)
        else:
            self._deadlines.pop(name, None)
            if was_held:
                log.warning("lost the lease %r to another instance", name)

    def _lease(self, name: str) -> bool:
        """The store call, in a worker thread; counted until it returns, even when the round
        that made it was cancelled (see :meth:`release`)."""
        try:
            return self.store.lease(name, self.holder, self.ttl_s)
        finally:
            with self._calls_lock:
                self._calls -= 1
                if not self._calls:
                    self._no_calls.set()

    async def run(self) -> None:
        """Renew forever (only for a shared store; otherwise there is nothing to do)."""
        if not self.shared:
            return
        while True:
            await self.renew()
            await asyncio.sleep(self.renew_every_s)

    async def release(self) -> None:
        """Give up every lease held (shutdown), all at once and for at most
        RELEASE_DEADLINE_S: a lease not released expires by itself, a hung shutdown does
        not. Failures are logged, not raised."""
        if not self.shared:
            return
        self._deadlines.clear()
        with anyio.move_on_after(RELEASE_DEADLINE_S) as scope:
            # A renewal cut off by the shutdown may still reach the store: wait for it, or it
            # would take its lease back after the release, and the others would wait a ttl.
            # Then every name is released, held or not: a late renewal's lease is not in
            # _deadlines, and releasing a lease someone else holds changes nothing.
            await anyio.to_thread.run_sync(self._no_calls.wait, abandon_on_cancel=True)
            async with anyio.create_task_group() as group:
                for name in self.names:
                    group.start_soon(self._release_one, name)
        if scope.cancelled_caught:
            log.warning("leases not released in %g s (they expire)", RELEASE_DEADLINE_S)

    async def _release_one(self, name: str) -> None:
        try:
            await anyio.to_thread.run_sync(
                self.store.release_lease, name, self.holder, abandon_on_cancel=True
            )
        except Exception as exc:  # it expires on its own anyway
            log.warning("lease %r not released (it expires by itself): %s", name, exc)

"""Fork safety for every live generator and accumulator in this process (fortuna.md §5, "Fork").

After ``os.fork()`` the child holds a byte-for-byte copy of the parent's memory, generator key
and counter included, so without help parent and child (and every sibling forked from the same
parent) would emit the same stream: CVE-2013-1445, where PyCrypto children shared their
parent's state for up to 100 ms. ``os.register_at_fork(after_in_child=...)`` runs a hook in the
child before any Python code of the child runs; the hook tells every registered object that it
now lives in a new process (:meth:`ForkAware._after_fork_in_child`). What each object does there
is up to it: a seeded :class:`~lokey.fortuna.generator.Generator` reseeds itself from
``os.urandom``, every object replaces its locks (another thread of the parent may have held one
at the moment of the fork; that thread does not exist in the child).

Why this must be process-global state, created at import time: a fork copies the whole process,
so the set of objects to repair is "every generator alive in this process", which no instance
and no caller can enumerate; and ``os.register_at_fork`` hooks can never be removed, so the
hook is registered exactly once, when this module is first imported, and it holds the objects
only weakly (a registry must not keep a generator, and its key, alive). This set is the only
mutable module-level state in :mod:`lokey.fortuna`.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "register"]


class ForkAware(Protocol):
    """An object that repairs its own state in a freshly forked child."""

    def _after_fork_in_child(self) -> None: ...


_LIVE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Have ``obj._after_fork_in_child()`` called in every child forked while ``obj`` lives."""
    _LIVE.add(obj)


def _after_fork_in_child() -> None:
    # Every object gets its repair even if an earlier one failed; the first failure is then
    # re-raised, which Python reports through sys.unraisablehook (fork hooks cannot fail the
    # fork). Generators never raise here: they fall back to "unseeded" themselves.
    first: BaseException | None = None
    for obj in list(_LIVE):
        try:
            obj._after_fork_in_child()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


os.register_at_fork(after_in_child=_after_fork_in_child)

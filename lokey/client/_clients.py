""":class:`Client` and :class:`AsyncClient`: the same methods, one blocking, one awaitable.

Each method builds a :class:`~lokey.client._calls.Call`, sends it through ``_send`` (the one
place where httpx's transport errors become :class:`ApiUnavailableError`) and reads the answer
with :meth:`Call.result`; ``_call`` adds the optional wait-and-retry on :class:`NoDataError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Self, TypeVar

import anyio
import httpx

from lokey.client import _calls
from lokey.client._calls import Call
from lokey.client._errors import NoDataError
from lokey.client._models import (
    Format,
    Health,
    QueueConfig,
    SeedingSource,
    Source,
    Status,
    VirtioConfig,
)

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT_S", "AsyncClient", "Client"]

T = TypeVar("T")

DEFAULT_BASE_URL: Final = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S: Final = 10.0


def _budget(retry_no_data: float) -> float:
    if not (math.isfinite(retry_no_data) and retry_no_data >= 0):
        raise ValueError(
            f"retry_no_data must be a finite number of seconds >= 0, got {retry_no_data!r}"
        )
    return float(retry_no_data)


class Client:
    """A blocking client for the LoKey API (port 8080); close it, or use it in ``with``.

    ``timeout`` bounds each request (seconds, or an ``httpx.Timeout``); ``transport`` replaces
    the network (an ``httpx.BaseTransport``, e.g. ``httpx.MockTransport`` in tests).
    ``retry_no_data`` > 0 makes the data methods wait, as the server's ``Retry-After`` says, for
    up to that many seconds in all before a :class:`NoDataError` is raised; ``sleep`` is how
    they wait.
    """

    def __init__(
        self,
        base_url: str | httpx.URL = DEFAULT_BASE_URL,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        retry_no_data: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._retry_no_data = _budget(retry_no_data)
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    @property
    def base_url(self) -> httpx.URL:
        return self._http.base_url

    # -- data --------------------------------------------------------------------------------

    def ints(
        self,
        fmt: Format,
        limit: int,
        *,
        source: Source = "fortuna",
        offset: int = 0,
        consume: bool | None = None,
    ) -> list[int]:
        """Exactly ``limit`` values of ``fmt`` (big-endian; signed ones two's complement).

        ``offset`` skips that many values, which stay queued; ``consume`` overrides the server's
        default (``False``, a peek, needs ``ALLOW_PEEK=true`` on the server). Raises
        ``ValueError`` for an unknown ``fmt`` before sending anything.
        """
        return self._call(_calls.data_ints(fmt, limit, source, offset, consume))

    def random_bytes(
        self,
        limit: int,
        *,
        source: Source = "fortuna",
        offset: int = 0,
        consume: bool | None = None,
    ) -> bytes:
        """Exactly ``limit`` bytes (the ``binary`` format); the rest as :meth:`ints`."""
        return self._call(_calls.data_bytes(limit, source, offset, consume))

    # -- status ------------------------------------------------------------------------------

    def status(self) -> Status:
        return self._call(_calls.status())

    def health(self) -> Health:
        return self._call(_calls.health())

    def ready(self) -> bool:
        """Whether the API can serve data from at least one queue."""
        return self._call(_calls.ready())

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        return self._call(_calls.metrics())

    # -- configuration -----------------------------------------------------------------------

    def queue_config(self) -> QueueConfig:
        return self._call(_calls.queue_config())

    def set_queue_config(self, *, trng: int, fortuna: int, virtio: int) -> QueueConfig:
        """Resize the three queues (items, 10..1,000,000 each)."""
        return self._call(_calls.set_queue_config(trng, fortuna, virtio))

    def consume_default(self) -> bool:
        return self._call(_calls.consume_default())

    def set_consume_default(self, consume: bool) -> bool:
        """Whether data requests that do not say consume (delete-on-read) by default."""
        return self._call(_calls.set_consume_default(consume))

    def virtio_config(self) -> VirtioConfig:
        return self._call(_calls.virtio_config())

    def set_virtio_config(
        self,
        seeding_source: SeedingSource,
        *,
        queue_size: int,
        seed_interval_seconds: int | None = None,
    ) -> VirtioConfig:
        """Switch the VirtIO seeding source and ring size (and interval, 10..3600 s)."""
        return self._call(
            _calls.set_virtio_config(seeding_source, queue_size, seed_interval_seconds)
        )

    # -- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: Call[T]) -> T:
        budget = self._retry_no_data
        while True:
            try:
                return call.result(self._send(call))
            except NoDataError as error:
                wait = _calls.no_data_wait(error, budget)
                if wait is None:
                    raise
                budget -= wait
                self._sleep(wait)

    def _send(self, call: Call[T]) -> httpx.Response:
        try:
            return self._http.request(call.method, call.path, json=call.body)
        except httpx.TransportError as exc:
            raise _calls.unavailable(call, self._http.base_url, exc) from exc


class AsyncClient:
    """:class:`Client` for ``async`` code: the same arguments and methods, awaitable; close it
    with :meth:`aclose` or use it in ``async with``. ``sleep`` is awaited (default
    ``anyio.sleep``, so asyncio and trio both work)."""

    def __init__(
        self,
        base_url: str | httpx.URL = DEFAULT_BASE_URL,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_no_data: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._retry_no_data = _budget(retry_no_data)
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    @property
    def base_url(self) -> httpx.URL:
        return self._http.base_url

    # -- data --------------------------------------------------------------------------------

    async def ints(
        self,
        fmt: Format,
        limit: int,
        *,
        source: Source = "fortuna",
        offset: int = 0,
        consume: bool | None = None,
    ) -> list[int]:
        """See :meth:`Client.ints`."""
        return await self._call(_calls.data_ints(fmt, limit, source, offset, consume))

    async def random_bytes(
        self,
        limit: int,
        *,
        source: Source = "fortuna",
        offset: int = 0,
        consume: bool | None = None,
    ) -> bytes:
        """See :meth:`Client.random_bytes`."""
        return await self._call(_calls.data_bytes(limit, source, offset, consume))

    # -- status ------------------------------------------------------------------------------

    async def status(self) -> Status:
        return await self._call(_calls.status())

    async def health(self) -> Health:
        return await self._call(_calls.health())

    async def ready(self) -> bool:
        return await self._call(_calls.ready())

    async def metrics(self) -> str:
        return await self._call(_calls.metrics())

    # -- configuration -----------------------------------------------------------------------

    async def queue_config(self) -> QueueConfig:
        return await self._call(_calls.queue_config())

    async def set_queue_config(self, *, trng: int, fortuna: int, virtio: int) -> QueueConfig:
        return await self._call(_calls.set_queue_config(trng, fortuna, virtio))

    async def consume_default(self) -> bool:
        return await self._call(_calls.consume_default())

    async def set_consume_default(self, consume: bool) -> bool:
        return await self._call(_calls.set_consume_default(consume))

    async def virtio_config(self) -> VirtioConfig:
        return await self._call(_calls.virtio_config())

    async def set_virtio_config(
        self,
        seeding_source: SeedingSource,
        *,
        queue_size: int,
        seed_interval_seconds: int | None = None,
    ) -> VirtioConfig:
        call = _calls.set_virtio_config(seeding_source, queue_size, seed_interval_seconds)
        return await self._call(call)

    # -- plumbing ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, call: Call[T]) -> T:
        budget = self._retry_no_data
        while True:
            try:
                return call.result(await self._send(call))
            except NoDataError as error:
                wait = _calls.no_data_wait(error, budget)
                if wait is None:
                    raise
                budget -= wait
                await self._sleep(wait)

    async def _send(self, call: Call[T]) -> httpx.Response:
        try:
            return await self._http.request(call.method, call.path, json=call.body)
        except httpx.TransportError as exc:
            raise _calls.unavailable(call, self._http.base_url, exc) from exc

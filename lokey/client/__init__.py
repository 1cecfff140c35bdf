"""Clients for the LoKey API service (port 8080, spec/service-api.md §1): random data in every
format, status, health and configuration, typed, with the API's errors as exceptions.

    from lokey.client import Client, NoDataError

    with Client("http://127.0.0.1:8080", retry_no_data=5.0) as lokey:
        key = lokey.random_bytes(32)                   # exactly 32 bytes, consumed
        dice = lokey.ints("uint8", 10, source="trng")  # exactly 10 values, 0..255
        print(lokey.status().fortuna.queue_bytes, lokey.health().ok)

and the same methods, awaited, on :class:`AsyncClient`::

    async with AsyncClient() as lokey:
        values = await lokey.ints("int64", 4)

Data is always exactly what was asked for: when the queue holds less, nothing is consumed and
:class:`NoDataError` (``retry_after`` seconds) is raised, unless ``retry_no_data`` lets the
client wait for it. The server's refusals are :class:`InvalidRequestError` (the message names
the field), other error answers :class:`ApiError`, and no answer at all (connection refused,
timeout) :class:`ApiUnavailableError`; all derive from :class:`lokey.errors.LokeyError`.
"""

from __future__ import annotations

from lokey.client._clients import DEFAULT_BASE_URL, DEFAULT_TIMEOUT_S, AsyncClient, Client
from lokey.client._errors import ApiError, ApiUnavailableError, InvalidRequestError, NoDataError
from lokey.client._models import (
    FORMATS,
    Database,
    Format,
    Health,
    HealthTests,
    LegacyApt,
    Monobit,
    QueueConfig,
    QueueStats,
    RepetitionCount,
    SeedingSource,
    Source,
    Status,
    TrngQuality,
    VirtioConfig,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT_S",
    "FORMATS",
    "ApiError",
    "ApiUnavailableError",
    "AsyncClient",
    "Client",
    "Database",
    "Format",
    "Health",
    "HealthTests",
    "InvalidRequestError",
    "LegacyApt",
    "Monobit",
    "NoDataError",
    "QueueConfig",
    "QueueStats",
    "RepetitionCount",
    "SeedingSource",
    "Source",
    "Status",
    "TrngQuality",
    "VirtioConfig",
]

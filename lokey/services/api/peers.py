"""The API's HTTP calls to the controller, Fortuna and VirtIO services (spec §1.9, §0).

Every call has a timeout (``LOKEY_HTTP_TIMEOUT_S``, default 5 s; the reference had none), so a
dead dependency degrades the API and never hangs it. Answers are checked before use: a sample
that is not 32 bytes of hex, or a Fortuna body of the wrong length, is a :class:`PeerError`
like a refused connection, never data in a queue.

A peer answering **503** is *not ready* (a controller validating its chip, an unseeded
Fortuna): :class:`PeerUnavailableError` carries its ``Retry-After`` so callers wait instead of
counting a failure; everything else that goes wrong is a :class:`PeerError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import httpx

from lokey.errors import LokeyError

__all__ = [
    "MAX_SAMPLES_PER_CALL",
    "SAMPLE_BYTES",
    "STATUS_TIMEOUT_S",
    "PeerError",
    "PeerUnavailableError",
    "Peers",
]

SAMPLE_BYTES: Final = 32  # one ATECC608A Random response (atecc608a.md §9; spec §2)
MAX_SAMPLES_PER_CALL: Final = 100  # the controller's /generate count limit (spec §2)
MAX_RETRY_AFTER_S: Final = 60.0  # a peer's Retry-After beyond this is not taken literally
SEED_PIECE_BYTES: Final = 4096  # one VirtIO /seed entry; the ring is byte-granular anyway
#: Status reads (health checks, the VirtIO level in /status and /metrics) wait at most this
#: long, so /api/v1/health answers within Docker's 3 s HEALTHCHECK timeout (spec §0).
STATUS_TIMEOUT_S: Final = 2.0


class PeerError(LokeyError):
    """A call to another LoKey service failed (connection, timeout, status, or a bad answer)."""

    def __init__(self, peer: str, message: str) -> None:
        super().__init__(f"{peer}: {message}")
        self.peer = peer


class PeerUnavailableError(PeerError):
    """The peer answered 503: not ready yet; ``retry_after_s`` says when to ask again."""

    def __init__(self, peer: str, message: str, retry_after_s: float) -> None:
        super().__init__(peer, message)
        self.retry_after_s = retry_after_s


def _retry_after(response: httpx.Response) -> float:
    text = response.headers.get("retry-after", "")
    try:
        value = float(text)
    except ValueError:
        return 1.0
    return min(MAX_RETRY_AFTER_S, value) if value > 0 else 1.0


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"HTTP {response.status_code}: {body['error']}"
    return f"HTTP {response.status_code}"


class Peers:
    """One ``httpx.AsyncClient`` (created by the app's lifespan) and the peers' base URLs.

    ``controller`` and ``fortuna`` take one base URL or several (``CONTROLLER_ADDR`` and
    ``FORTUNA_ADDR`` lists); the calls take the instance's ``base``, by default the first.
    ``virtio`` None: VirtIO is disabled (``VIRTIO_ADDR=``); its calls raise PeerError.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        controller: str | Sequence[str],
        fortuna: str | Sequence[str],
        virtio: str | None,
    ) -> None:
        self._client = client
        self.controllers = (controller,) if isinstance(controller, str) else tuple(controller)
        self.fortunas = (fortuna,) if isinstance(fortuna, str) else tuple(fortuna)
        if not self.controllers or not self.fortunas:
            raise ValueError("at least one controller and one Fortuna base URL")
        self.virtio = virtio

    @property
    def controller(self) -> str:
        return self.controllers[0]

    @property
    def fortuna(self) -> str:
        return self.fortunas[0]

    async def _call(
        self,
        peer: str,
        method: str,
        url: str,
        *,
        json_body: object = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        limit = self._timeout() if timeout is None else min(timeout, self._timeout())
        try:
            # httpx times each connect/read/write; the deadline bounds the whole call, so a
            # peer that trickles its answer a byte at a time cannot hold a job (or /health)
            async with asyncio.timeout(limit):
                response = await self._client.request(method, url, json=json_body)
        except (TimeoutError, httpx.TimeoutException):
            raise PeerError(peer, f"no answer within {limit:g} s ({method} {url})") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise PeerError(peer, f"{type(exc).__name__} ({method} {url})") from None
        if response.status_code == 503:
            raise PeerUnavailableError(peer, _error_text(response), _retry_after(response))
        if response.status_code != 200:
            raise PeerError(peer, f"{_error_text(response)} ({method} {url})")
        return response

    def _timeout(self) -> float:
        """The client's timeout (``LOKEY_HTTP_TIMEOUT_S``), used as a whole-call deadline."""
        read = self._client.timeout.read
        return read if read is not None else STATUS_TIMEOUT_S

    @staticmethod
    def _json(peer: str, response: httpx.Response) -> dict[str, object]:
        try:
            body = response.json()
        except ValueError:  # json.JSONDecodeError included
            raise PeerError(peer, "the answer is not JSON") from None
        if not isinstance(body, dict):
            raise PeerError(peer, "the answer is not a JSON object")
        return body

    # -- controller ------------------------------------------------------------------------------

    async def samples(self, count: int, *, base: str | None = None) -> list[bytes]:
        """``count`` fresh 32-byte TRNG samples (one or more ``/generate`` calls) from the
        controller at ``base`` (default: the first)."""
        base = self.controller if base is None else base
        out: list[bytes] = []
        while len(out) < count:
            n = min(MAX_SAMPLES_PER_CALL, count - len(out))
            response = await self._call("controller", "GET", f"{base}/generate?count={n}")
            data = self._json("controller", response).get("data")
            texts = [data] if n == 1 else data
            if not isinstance(texts, list) or len(texts) != n:
                raise PeerError("controller", f"expected {n} samples in the answer")
            for text in texts:
                try:
                    sample = bytes.fromhex(text) if isinstance(text, str) else b""
                except ValueError:
                    sample = b""
                if len(sample) != SAMPLE_BYTES:
                    raise PeerError("controller", "a sample is not 32 bytes of hex")
                out.append(sample)
        return out

    # -- Fortuna ---------------------------------------------------------------------------------

    async def fortuna_bytes(self, size: int, *, base: str | None = None) -> bytes:
        """``size`` bytes from Fortuna's ``/generate`` in raw form (spec §3, LoKey's binary)."""
        base = self.fortuna if base is None else base
        response = await self._call("fortuna", "GET", f"{base}/generate?size={size}&format=binary")
        if len(response.content) != size:
            raise PeerError("fortuna", f"expected {size} bytes, got {len(response.content)}")
        return response.content

    async def seed_fortuna(
        self, seeds: Sequence[bytes], *, base: str | None = None
    ) -> dict[str, object]:
        """``POST /seed``; Fortuna's answer (``status`` reseeded / accepted)."""
        base = self.fortuna if base is None else base
        body = {"seeds": [seed.hex() for seed in seeds]}
        response = await self._call("fortuna", "POST", f"{base}/seed", json_body=body)
        return self._json("fortuna", response)

    # -- VirtIO ----------------------------------------------------------------------------------

    def _virtio(self) -> str:
        if self.virtio is None:
            raise PeerError("virtio", "disabled (VIRTIO_ADDR is empty)")
        return self.virtio

    async def virtio_queue(self, *, timeout: float | None = None) -> dict[str, object]:
        """VirtIO's ``GET /config/queue`` (its ring's size and level)."""
        response = await self._call(
            "virtio", "GET", f"{self._virtio()}/config/queue", timeout=timeout
        )
        return self._json("virtio", response)

    async def resize_virtio(self, queue_size: int) -> dict[str, object]:
        response = await self._call(
            "virtio", "PUT", f"{self._virtio()}/config/queue", json_body={"queue_size": queue_size}
        )
        return self._json("virtio", response)

    async def seed_virtio(self, data: bytes) -> dict[str, object]:
        """Append ``data`` to VirtIO's ring (``POST /seed``, in 4 KiB entries)."""
        pieces = [
            data[i : i + SEED_PIECE_BYTES].hex() for i in range(0, len(data), SEED_PIECE_BYTES)
        ]
        response = await self._call(
            "virtio", "POST", f"{self._virtio()}/seed", json_body={"seeds": pieces}
        )
        return self._json("virtio", response)

    # -- health ----------------------------------------------------------------------------------

    async def healthy(self, peer: str, base: str | None = None) -> bool:
        """``GET {addr}/health`` answered 200 (spec §1.7); False for VirtIO when disabled."""
        if base is None:
            base = {"controller": self.controller, "fortuna": self.fortuna, "virtio": self.virtio}[
                peer
            ]
        if base is None:
            return False
        try:
            await self._call(peer, "GET", f"{base}/health", timeout=STATUS_TIMEOUT_S)
        except PeerError:
            return False
        return True

    async def instance_health(self) -> dict[str, dict[str, bool]]:
        """Every controller and Fortuna instance's ``/health``, all asked at once (so the
        answer still comes within STATUS_TIMEOUT_S), by base URL."""
        calls = [("controller", url) for url in self.controllers]
        calls += [("fortuna", url) for url in self.fortunas]
        results = await asyncio.gather(*(self.healthy(peer, url) for peer, url in calls))
        out: dict[str, dict[str, bool]] = {"controller": {}, "fortuna": {}}
        for (peer, url), ok in zip(calls, results, strict=True):
            out[peer][url] = ok
        return out

    async def health(self) -> dict[str, bool]:
        """Per peer: True when every instance of it answered 200."""
        instances, virtio = await asyncio.gather(self.instance_health(), self.healthy("virtio"))
        return {
            "controller": all(instances["controller"].values()),
            "fortuna": all(instances["fortuna"].values()),
            "virtio": virtio,
        }

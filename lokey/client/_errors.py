"""The client's exceptions: what the API said (:class:`ApiError` and its two common cases) and
that it could not be asked at all (:class:`ApiUnavailableError`)."""

from __future__ import annotations

from lokey.errors import LokeyError

__all__ = ["ApiError", "ApiUnavailableError", "InvalidRequestError", "NoDataError"]


class ApiError(LokeyError):
    """The API answered, but not with what was asked for.

    ``status_code`` is the HTTP status (200 when a successful answer had the wrong shape);
    ``message`` is the server's ``{"error": ...}`` text, or a description of what was wrong.
    """

    def __init__(self, message: str, *, status_code: int, method: str, path: str) -> None:
        super().__init__(f"{status_code} from {method} {path}: {message}")
        self.message = message
        self.status_code = status_code
        self.method = method
        self.path = path


class InvalidRequestError(ApiError):
    """400 or 413: the request was refused as written; ``message`` names the field and the
    rule (e.g. ``limit: Input should be greater than or equal to 1``). Retrying cannot help."""


class NoDataError(ApiError):
    """503 ``No data available``: the queue holds fewer bytes than the whole request needs, and
    nothing was consumed. ``retry_after`` is the server's ``Retry-After`` in seconds (``None``
    if it sent none). The ``Client(retry_no_data=...)`` option waits and retries for you."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        retry_after: float | None,
    ) -> None:
        super().__init__(message, status_code=status_code, method=method, path=path)
        self.retry_after = retry_after


class ApiUnavailableError(LokeyError):
    """No answer: the connection was refused or dropped, or the timeout passed (the
    ``httpx.TransportError`` is chained as ``__cause__``)."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        super().__init__(message)
        self.method = method
        self.url = url

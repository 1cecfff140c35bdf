"""LoKey's exception tree: one small hierarchy, so callers can catch what they can handle.

``OSError`` from a bus becomes a :class:`DeviceError` at exactly one seam (the transport, in a
later issue); everything else LoKey raises on purpose derives from :class:`LokeyError`.
"""

from __future__ import annotations

__all__ = ["InsufficientDataError", "LokeyError", "NotApplicableError", "QualityError"]


class LokeyError(Exception):
    """Base of every error LoKey raises on purpose."""


class QualityError(LokeyError):
    """A randomness test cannot give a verdict on the data it was given."""


class InsufficientDataError(QualityError, ValueError):
    """Fewer bits than a test needs; ``needed`` says how many it does."""

    def __init__(self, test: str, needed: int, given: int) -> None:
        super().__init__(f"{test} needs at least {needed:,} bits, got {given:,}")
        self.test = test
        self.needed = needed
        self.given = given


class NotApplicableError(QualityError):
    """The data is long enough but the test's own applicability rule excludes it.

    Example: SP 800-22 random excursions needs at least 500 cycles (§2.14.7).
    """

    def __init__(self, test: str, reason: str) -> None:
        super().__init__(f"{test} does not apply: {reason}")
        self.test = test
        self.reason = reason

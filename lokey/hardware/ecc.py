"""Typed values of the ATECC608A's P-256 commands (spec/atecc608a.md §10.1, §10.3).

:class:`PublicKey` (X ‖ Y) and :class:`Signature` (R ‖ S) hold exactly the 64 bytes the chip
sends and takes, big-endian halves of 32 bytes each (§10.3). Conversions to and from the
``cryptography`` package are methods that import it when called: the controller service loads
this module with the driver and must not load ``cryptography`` (tests/test_service_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

__all__ = [
    "DIGEST_SIZE",
    "KEY_SLOTS",
    "POINT_SIZE",
    "NonceTarget",
    "PublicKey",
    "Signature",
]

#: §10.3: a P-256 public key is X ‖ Y and a signature R ‖ S, 32 bytes each, big-endian.
POINT_SIZE: Final = 64
_HALF: Final = POINT_SIZE // 2
#: §10.3: Sign and Verify take a 32-byte message digest, signed as is (no further hashing).
DIGEST_SIZE: Final = 32
#: §7.1: data slots 0..15 (key ids of GenKey, Sign and ECDH).
KEY_SLOTS: Final = 16


class NonceTarget(IntEnum):
    """Where a Nonce pass-through puts its input: param1 bits 7:6 (§10.1)."""

    TEMPKEY = 0x00
    MESSAGE_DIGEST = 0x40
    ALTERNATE_KEY = 0x80


def _raw(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != POINT_SIZE:
        shown = f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else repr(value)
        raise ValueError(f"{name} must be exactly {POINT_SIZE} bytes, got {shown}")
    return bytes(value)


def _half(name: str, value: int) -> bytes:
    if not 0 <= value < 1 << (8 * _HALF):
        raise ValueError(f"{name} does not fit in {_HALF} bytes")
    return value.to_bytes(_HALF, "big")


@dataclass(frozen=True)
class PublicKey:
    """A P-256 public key as the chip sends it: ``raw`` = X ‖ Y, 64 bytes (§10.3).

    ``x`` and ``y`` are the coordinates as integers (big-endian halves). The constructor checks
    only the length; :meth:`to_cryptography` also checks that the point is on the curve.
    """

    raw: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _raw("public key", self.raw))

    def __bytes__(self) -> bytes:
        return self.raw

    @property
    def x(self) -> int:
        return int.from_bytes(self.raw[:_HALF], "big")

    @property
    def y(self) -> int:
        return int.from_bytes(self.raw[_HALF:], "big")

    def to_cryptography(self) -> EllipticCurvePublicKey:
        """The key as ``cryptography``'s ``EllipticCurvePublicNumbers`` on SECP256R1.

        ValueError if the point is not on the curve.
        """
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        numbers = ec.EllipticCurvePublicNumbers(self.x, self.y, ec.SECP256R1())
        try:
            return numbers.public_key()
        except ValueError:
            raise ValueError(f"public key {self.raw.hex()} is not a point on P-256") from None

    @classmethod
    def from_cryptography(cls, key: EllipticCurvePublicKey) -> PublicKey:
        """The 64 bytes X ‖ Y of a ``cryptography`` P-256 public key (ValueError otherwise)."""
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ValueError(f"key must be a SECP256R1 public key, got {key!r}")
        numbers = key.public_numbers()
        return cls(_half("x", numbers.x) + _half("y", numbers.y))


@dataclass(frozen=True)
class Signature:
    """An ECDSA P-256 signature as the chip sends it: ``raw`` = R ‖ S, 64 bytes (§10.3).

    ``r`` and ``s`` are the integers (big-endian halves).
    """

    raw: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _raw("signature", self.raw))

    def __bytes__(self) -> bytes:
        return self.raw

    @property
    def r(self) -> int:
        return int.from_bytes(self.raw[:_HALF], "big")

    @property
    def s(self) -> int:
        return int.from_bytes(self.raw[_HALF:], "big")

    def to_der(self) -> bytes:
        """The DER ``ECDSA-Sig-Value`` (``cryptography``'s ``encode_dss_signature``)."""
        from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
            encode_dss_signature,
        )

        return encode_dss_signature(self.r, self.s)

    @classmethod
    def from_der(cls, der: bytes) -> Signature:
        """R ‖ S of a DER signature (``decode_dss_signature``); ValueError if R or S is too big."""
        from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
            decode_dss_signature,
        )

        r, s = decode_dss_signature(der)
        return cls(_half("r", r) + _half("s", s))

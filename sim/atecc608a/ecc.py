"""NIST P-256 arithmetic for GenKey, Sign, Verify and ECDH, through the ``cryptography`` package.

Wire formats are the chip's (spec §10.3): a public key is X ‖ Y and a signature R ‖ S, 32 bytes
each, big-endian. Private keys are integers in 1..n-1. Nothing here knows about slots or the bus;
:mod:`sim.atecc608a.engine` applies the access rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# ``cryptography`` is imported in the functions that use it: a service on the emulator that
# never runs an ECC command does not load it (tests/test_service_imports.py).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CURVE_ORDER",
    "KEY_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "ecdh",
    "public_key",
    "scalar_from_block",
    "sign_digest",
    "valid_scalar",
    "verify_digest",
]

# The order n of the P-256 base point (FIPS 186-4, D.1.2.3).
CURVE_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KEY_SIZE = 32
PUBLIC_KEY_SIZE = 64
SIGNATURE_SIZE = 64


def _prehashed() -> ec.ECDSA:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: PLC0415

    return ec.ECDSA(Prehashed(hashes.SHA256()))


def valid_scalar(scalar: int) -> bool:
    return 1 <= scalar < CURVE_ORDER


def scalar_from_block(block: bytes) -> int:
    """A private key from 32 noise-source bytes: always in 1..n-1 (bias below 2**-128)."""
    return int.from_bytes(block, "big") % (CURVE_ORDER - 1) + 1


def _private(scalar: int) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    return ec.derive_private_key(scalar, ec.SECP256R1())


def _encode_public(key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = key.public_numbers()
    return numbers.x.to_bytes(KEY_SIZE, "big") + numbers.y.to_bytes(KEY_SIZE, "big")


def _decode_public(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    """The public key X ‖ Y names, or None when the point is not on P-256."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    x = int.from_bytes(raw[:KEY_SIZE], "big")
    y = int.from_bytes(raw[KEY_SIZE:PUBLIC_KEY_SIZE], "big")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        return None


def public_key(scalar: int) -> bytes:
    """The 64-byte X ‖ Y public key of a private key."""
    return _encode_public(_private(scalar).public_key())


def sign_digest(scalar: int, digest: bytes) -> bytes:
    """ECDSA over a 32-byte digest as is (no further hashing): R ‖ S, random k.

    k comes from the OS through ``cryptography``, not from the chip's noise source: a ``seed=``
    chip repeats its keys but not its signatures (both are valid either way), and scripted or
    faulty RNG output does not reach k (a chip whose RNG fails its self-test refuses Sign).
    """
    from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
        decode_dss_signature,
    )

    der = _private(scalar).sign(digest, _prehashed())
    r, s = decode_dss_signature(der)
    return r.to_bytes(KEY_SIZE, "big") + s.to_bytes(KEY_SIZE, "big")


def verify_digest(public: bytes, digest: bytes, signature: bytes) -> bool | None:
    """True if R ‖ S signs ``digest`` under X ‖ Y; None if the public key is not on the curve."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: PLC0415
        encode_dss_signature,
    )

    key = _decode_public(public)
    if key is None:
        return None
    r = int.from_bytes(signature[:KEY_SIZE], "big")
    s = int.from_bytes(signature[KEY_SIZE:SIGNATURE_SIZE], "big")
    if not (valid_scalar(r) and valid_scalar(s)):
        return False  # R and S must lie in 1..n-1 (FIPS 186-4 §6.4.2)
    try:
        key.verify(encode_dss_signature(r, s), digest, _prehashed())
    except InvalidSignature:
        return False
    return True


def ecdh(scalar: int, peer: bytes) -> bytes | None:
    """The 32-byte shared secret (X of scalar * peer), or None if the peer is not on the curve."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    key = _decode_public(peer)
    if key is None:
        return None
    return _private(scalar).exchange(ec.ECDH(), key)

"""The driver's P-256 commands against the emulator, checked by the host's ``cryptography``.

The bus comes from :func:`lokey.backends.open_bus` with a fully locked emulated chip (GenKey
refuses while the zones are unlocked, spec/atecc608a.md §10.3) on a virtual clock, so every busy
time the driver waits is free. Slots follow the factory config (§12): slots 0-2 are P-256
private keys; slot 0 may sign external digests (SlotConfig bit 0) and slot 1 may also run ECDH
with the secret in clear (bit 2 set, bit 3 clear), so signatures use slot 0 and ECDH slot 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from lokey.backends import open_bus
from lokey.errors import ExecutionError
from lokey.hardware.commands import Atecc608aDriver, PublicKey, Signature
from lokey.hardware.transport import Transport

SIGN_SLOT = 0
ECDH_SLOT = 1
PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
MESSAGE = b"LoKey issue 10: sign, verify and ECDH on the chip"
DIGEST = hashlib.sha256(MESSAGE).digest()
HOST_KEY = ec.derive_private_key(0x5EED_0F_10_C0FFEE, ec.SECP256R1())


def _url(timing: str, lock: str = "locked") -> str:
    return f"sim://atecc608a?lock={lock}&timing={timing}&clock=virtual&seed=10"


def _open(timing: str = "instant", lock: str = "locked") -> Iterator[Atecc608aDriver]:
    with open_bus(_url(timing, lock)) as opened:
        driver = Atecc608aDriver(Transport(opened.bus, opened.clock))
        try:
            yield driver
        finally:
            driver.close()


@pytest.fixture(params=["instant", "maximum"])
def chip(request: pytest.FixtureRequest) -> Iterator[Atecc608aDriver]:
    """A locked chip; ``maximum`` keeps every command busy for its whole §4 maximum."""
    yield from _open(request.param)


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes((data[index] ^ 0x01,)) + data[index + 1 :]


def test_genkey_then_public_key_agree(chip: Atecc608aDriver) -> None:
    created = chip.genkey(SIGN_SLOT)
    assert chip.public_key(SIGN_SLOT) == created
    created.to_cryptography()  # a point on P-256
    replaced = chip.genkey(SIGN_SLOT)
    assert replaced != created  # GenKey 0x04 creates a new key every time
    assert chip.public_key(SIGN_SLOT) == replaced


def test_a_chip_signature_verifies_on_the_host_and_on_the_chip(chip: Atecc608aDriver) -> None:
    public = chip.genkey(SIGN_SLOT)
    signature = chip.sign_digest(SIGN_SLOT, DIGEST)
    host_public = public.to_cryptography()
    host_public.verify(signature.to_der(), DIGEST, PREHASHED)  # raises if it does not verify
    with pytest.raises(InvalidSignature):
        host_public.verify(signature.to_der(), _flip(DIGEST), PREHASHED)
    assert chip.verify_digest(DIGEST, signature, public) is True


def test_a_host_signature_verifies_on_the_chip_and_tampering_does_not(
    chip: Atecc608aDriver,
) -> None:
    signature = Signature.from_der(HOST_KEY.sign(DIGEST, PREHASHED))
    public = PublicKey.from_cryptography(HOST_KEY.public_key())
    assert chip.verify_digest(DIGEST, signature, public) is True
    assert chip.verify_digest(_flip(DIGEST, 31), signature, public) is False
    assert chip.verify_digest(DIGEST, Signature(_flip(signature.raw, 40)), public) is False
    other = PublicKey.from_cryptography(ec.derive_private_key(7, ec.SECP256R1()).public_key())
    assert chip.verify_digest(DIGEST, signature, other) is False


def test_ecdh_on_the_chip_equals_ecdh_on_the_host(chip: Atecc608aDriver) -> None:
    chip_public = chip.genkey(ECDH_SLOT)
    secret = chip.ecdh(ECDH_SLOT, PublicKey.from_cryptography(HOST_KEY.public_key()))
    assert len(secret) == 32
    assert secret == HOST_KEY.exchange(ec.ECDH(), chip_public.to_cryptography())


def test_genkey_on_an_unlocked_chip_is_refused() -> None:
    for driver in _open(lock="unlocked"):
        with pytest.raises(ExecutionError, match="GenKey"):
            driver.genkey(SIGN_SLOT)

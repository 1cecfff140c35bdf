"""Keys and ECC on the emulator: GenKey, Sign, Verify, ECDH, Nonce/TempKey (spec §10, §7.3, §11).

Every exchange goes over the virtual I2C bus with a virtual clock; the host side of each check
(public-key derivation, signature verification, signing, ECDH) is the ``cryptography`` package.
The rules pinned here are the spec's (§10.3 and decision 30) plus the emulator's documented
choices in ``sim/atecc608a/engine.py``.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from sim.atecc608a import LockState, Status, TimingModel
from sim.atecc608a.faults import RngHealthFailure
from sim.atecc608a.memory import Memory
from tests.atecc_helpers import Op, Rig, command, frame, make_rig, packet, status

OK = Status.SUCCESS
MISCOMPARE = Status.MISCOMPARE
PARSE = Status.PARSE_ERROR
EXEC = Status.EXECUTION_ERROR
HEALTH = Status.HEALTH_TEST_ERROR
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 order
CURVE = ec.SECP256R1()
PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
DIGEST = hashlib.sha256(b"LoKey issue 10").digest()
# The factory image (§12), on every lock preset: slots 0-2 are P-256 private keys (KeyConfig
# 0x0033). SlotConfig 0x2083 (slot 0: sign only), 0x2087 (slot 1: + ECDH),
# 0x208F (slot 2: + ECDH result to slot 3); bit 13 lets GenKey write all three.
SIGN_ONLY, ECDH_SLOT, ECDH_TO_NEXT = 0, 1, 2


def locked() -> Rig:
    return make_rig(timing="instant", lock=LockState.LOCKED)


def payload(reply: bytes) -> bytes:
    assert reply == frame(reply[1:-2]), f"not a well-formed group: {reply.hex()}"
    return reply[1:-2]


def host_key(scalar: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(scalar, CURVE)


def xy(key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def from_xy(raw: bytes) -> ec.EllipticCurvePublicKey:
    x, y = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return ec.EllipticCurvePublicNumbers(x, y, CURVE).public_key()


def host_sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(digest, PREHASHED))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def host_verify(public: bytes, digest: bytes, signature: bytes) -> bool:
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        from_xy(public).verify(encode_dss_signature(r, s), digest, PREHASHED)
    except InvalidSignature:
        return False
    return True


def genkey(rig: Rig, slot: int) -> bytes:
    return payload(rig.run(packet(Op.GENKEY, 0x04, slot)))


def load_digest(rig: Rig, digest: bytes = DIGEST, target: int = 0x40) -> None:
    """Nonce pass-through (§10.1): 0x03 TempKey, 0x43 Message-Digest buffer, 0x83 Alternate."""
    assert rig.run(packet(Op.NONCE, 0x03 | target, 0, digest)) == status(OK)


def info_state(rig: Rig) -> tuple[int, int]:
    reply = payload(rig.run(command("Info State")))
    return reply[0], reply[1]


def slot_bytes(rig: Rig, slot: int) -> bytes:
    start, size = Memory.slot_span(slot)
    return rig.chip.control.data[start : start + size]


# --- GenKey (0x40) -------------------------------------------------------------------------------


def test_factory_slots_0_to_2_are_the_private_key_slots_on_every_lock_preset() -> None:
    for lock in LockState:
        control = make_rig(timing="instant", lock=lock).chip.control
        assert control.private_key_slots() == (0, 1, 2)
        assert not any(control.has_private_key(slot) for slot in range(16))


def test_vector_genkey_private_slot_0_then_public_slot_0_return_the_same_key() -> None:
    rig = locked()
    created = payload(rig.run(command("GenKey private slot 0")))
    assert len(created) == 64
    assert payload(rig.run(command("GenKey public slot 0"))) == created
    assert rig.chip.control.public_key(0) == created
    assert rig.chip.control.has_private_key(0)


def test_genkey_stores_the_key_cryptography_derives_from_the_noise_source() -> None:
    # The private key is the noise block reduced into 1..n-1 (sim/atecc608a/ecc.py).
    rig = locked()
    block = bytes(range(0x40, 0x60))
    rig.chip.control.script_random(block)
    expected = xy(host_key(int.from_bytes(block, "big") % (N - 1) + 1).public_key())
    assert genkey(rig, 1) == expected
    assert rig.chip.control.public_key(1) == expected
    # Layout: four zero pad bytes, then the 32-byte key, as PrivWrite's 36-byte value.
    assert slot_bytes(rig, 1)[:4] == bytes(4)


def test_genkey_public_matches_cryptography_for_an_installed_key() -> None:
    rig = locked()
    scalar = 0x1234_5678_9ABC_DEF0 << 100
    public = rig.chip.control.set_private_key(2, scalar)
    assert public == xy(host_key(scalar).public_key())
    assert payload(rig.run(packet(Op.GENKEY, 0x00, 2))) == public


def test_a_new_genkey_replaces_the_key_and_keys_survive_power_cycles() -> None:
    rig = locked()
    first, second = genkey(rig, 0), genkey(rig, 0)
    assert first != second
    rig.chip.control.power_cycle()
    assert payload(rig.run(packet(Op.GENKEY, 0x00, 0))) == second


def test_seeded_chips_generate_the_same_key() -> None:
    keys = {genkey(make_rig(timing="instant", lock="locked", seed=7), 0) for _ in range(2)}
    assert len(keys) == 1


def test_info_keyvalid_follows_the_slot(locked_rig: Rig) -> None:
    def key_valid(slot: int) -> int:
        return payload(locked_rig.run(packet(Op.INFO, 0x01, slot)))[0]

    assert key_valid(0) == 0  # decision 17
    genkey(locked_rig, 0)
    assert (key_valid(0), key_valid(1), key_valid(3)) == (1, 0, 0)


def test_genkey_on_a_config_locked_chip_needs_no_genkey_bit() -> None:
    # Data zone unlocked: any P-256 private-key slot may get a key (ATECC508A datasheet).
    rig = make_rig(timing="instant", lock=LockState.CONFIG_LOCKED)
    rig.chip.control.configure_private_key_slot(0, genkey=False)
    assert genkey(rig, 0) == rig.chip.control.public_key(0)


@pytest.mark.parametrize(
    ("param1", "param2", "data"),
    [
        (0x08, 0, b""),  # digest mode: not modelled
        (0x10, 0, b""),  # public-key digest mode: not modelled
        (0x0C, 0, b""),
        (0x05, 0, b""),
        (0x04, 16, b""),  # no slot 16
        (0x04, 0xFFFF, b""),  # the 608's TempKey target: not modelled
        (0x04, 0, bytes(3)),  # OtherData only belongs to the digest modes
        (0x00, 0, bytes(1)),
    ],
)
def test_genkey_bad_mode_key_id_or_length_is_parse_error(
    param1: int, param2: int, data: bytes
) -> None:
    rig = locked()
    before = rig.chip.control.data
    assert rig.run(packet(Op.GENKEY, param1, param2, data)) == status(PARSE)
    assert rig.chip.control.data == before


@pytest.mark.parametrize("mode", [0x04, 0x00])
@pytest.mark.parametrize("slot", [0, 3, 8, 15])
def test_genkey_while_the_config_zone_is_unlocked_is_execution_error(mode: int, slot: int) -> None:
    rig = make_rig(timing="instant")  # §7.3, §10.3 [HW cryptoauthlib #25]
    assert rig.run(packet(Op.GENKEY, mode, slot)) == status(EXEC)
    assert rig.chip.control.data == bytes(len(rig.chip.control.data))


@pytest.mark.parametrize("slot", [3, 7, 8, 9, 14, 15])
@pytest.mark.parametrize("mode", [0x04, 0x00])
def test_genkey_on_a_slot_that_is_not_a_p256_private_key_is_execution_error(
    slot: int, mode: int
) -> None:
    rig = locked()  # factory KeyConfig 0x001C / 0x003C: KeyType 7 (decision 30)
    assert rig.run(packet(Op.GENKEY, mode, slot)) == status(EXEC)


def test_genkey_on_a_private_non_p256_or_public_p256_slot_is_execution_error() -> None:
    rig = locked()
    rig.chip.control.write_config(96 + 2 * 4, (0x0001 | 7 << 2).to_bytes(2, "little"))
    rig.chip.control.write_config(96 + 2 * 5, (4 << 2).to_bytes(2, "little"))  # Private = 0
    assert rig.run(packet(Op.GENKEY, 0x04, 4)) == status(EXEC)
    assert rig.run(packet(Op.GENKEY, 0x04, 5)) == status(EXEC)


def test_genkey_on_a_locked_data_zone_needs_the_genkey_bit_and_an_unlocked_slot() -> None:
    rig = locked()
    rig.chip.control.configure_private_key_slot(5, genkey=False)
    assert rig.run(packet(Op.GENKEY, 0x04, 5)) == status(EXEC)
    rig.chip.control.configure_private_key_slot(6)
    genkey(rig, 6)
    assert rig.run(packet(Op.LOCK, 0x02 | 6 << 2)) == status(OK)  # KeyConfig Lockable
    assert rig.run(packet(Op.GENKEY, 0x04, 6)) == status(EXEC)
    assert payload(rig.run(packet(Op.GENKEY, 0x00, 6))) == rig.chip.control.public_key(6)


def test_genkey_public_needs_a_key_and_pubinfo() -> None:
    rig = locked()
    assert rig.run(packet(Op.GENKEY, 0x00, 0)) == status(EXEC)  # nothing generated yet
    rig.chip.control.configure_private_key_slot(4, pub_info=False)
    genkey(rig, 4)  # mode 0x04 always answers the public key
    assert rig.run(packet(Op.GENKEY, 0x00, 4)) == status(EXEC)


def test_genkey_after_an_rng_health_failure_answers_0x08_and_stores_nothing() -> None:
    rig = locked()
    rig.chip.control.inject(RngHealthFailure())
    assert rig.run(packet(Op.GENKEY, 0x04, 0)) == status(HEALTH)
    assert not rig.chip.control.has_private_key(0)


# --- private keys never leave through Read / Write (§7.3) ---------------------------------------


@pytest.mark.parametrize("param1", [0x82, 0x02])
def test_read_of_a_private_key_slot_is_refused(param1: int) -> None:
    rig = locked()
    genkey(rig, 0)
    assert rig.run(packet(Op.READ, param1, 0 << 3)) == status(EXEC)


def test_read_of_a_private_key_slot_is_refused_even_without_is_secret() -> None:
    rig = locked()
    rig.chip.control.configure_private_key_slot(5)
    rig.chip.control.write_config(20 + 2 * 5, (0x2003).to_bytes(2, "little"))  # IsSecret = 0
    genkey(rig, 5)
    assert rig.run(packet(Op.READ, 0x82, 5 << 3)) == status(EXEC)
    rig.chip.control.write_config(96 + 2 * 5, (0x001C).to_bytes(2, "little"))  # not a key now
    assert len(payload(rig.run(packet(Op.READ, 0x82, 5 << 3)))) == 32


def test_write_to_a_private_key_slot_is_refused() -> None:
    rig = locked()
    assert rig.run(packet(Op.WRITE, 0x82, 0 << 3, bytes(32))) == status(EXEC)


# --- Nonce pass-through and the TempKey flags (§10.1, §6) -----------------------------------------


def test_nonce_pass_through_to_tempkey_sets_valid_and_source_input(locked_rig: Rig) -> None:
    assert info_state(locked_rig) == (0, 0)
    load_digest(locked_rig, target=0x00)
    byte0, byte1 = info_state(locked_rig)
    assert byte0 & 0x10  # SourceFlag = input
    assert byte1 & 0x80  # TempKey.Valid


def test_nonce_random_sets_tempkey_valid_with_source_random(locked_rig: Rig) -> None:
    assert len(payload(locked_rig.run(packet(Op.NONCE, 0x00, 0, bytes(20))))) == 32
    byte0, byte1 = info_state(locked_rig)
    assert not byte0 & 0x10
    assert byte1 & 0x80


@pytest.mark.parametrize("target", [0x40, 0x80])
def test_nonce_pass_through_to_a_buffer_leaves_tempkey_alone(target: int) -> None:
    rig = locked()
    load_digest(rig, target=target)
    assert not info_state(rig)[1] & 0x80
    assert not rig.chip.control.state().tempkey_valid


def test_nonce_pass_through_target_0xc0_is_parse_error(locked_rig: Rig) -> None:
    assert locked_rig.run(packet(Op.NONCE, 0xC3, 0, DIGEST)) == status(PARSE)


# --- Sign (0x41) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("nonce_target", "sign_mode"), [(0x00, 0x80), (0x40, 0xA0)])
def test_sign_external_verifies_with_cryptography(nonce_target: int, sign_mode: int) -> None:
    rig = locked()
    public = genkey(rig, SIGN_ONLY)
    assert rig.run(command("Random"))[0] == 0x23  # cryptoauthlib updates the seed first
    load_digest(rig, target=nonce_target)
    signature = payload(rig.run(packet(Op.SIGN, sign_mode, SIGN_ONLY)))
    assert len(signature) == 64
    assert host_verify(public, DIGEST, signature)
    assert not host_verify(public, hashlib.sha256(DIGEST).digest(), signature)  # no re-hashing


def test_sign_uses_the_source_its_mode_names() -> None:
    rig = locked()
    public = genkey(rig, 0)
    other = hashlib.sha256(b"other").digest()
    load_digest(rig, DIGEST, target=0x00)
    load_digest(rig, other, target=0x40)
    assert host_verify(public, DIGEST, payload(rig.run(packet(Op.SIGN, 0x80, 0))))
    assert host_verify(public, other, payload(rig.run(packet(Op.SIGN, 0xA0, 0))))


def test_sign_with_64_byte_tempkey_signs_its_first_32_bytes() -> None:
    rig = locked()
    public = genkey(rig, 0)
    assert rig.run(packet(Op.NONCE, 0x23, 0, DIGEST + bytes(32))) == status(OK)
    assert host_verify(public, DIGEST, payload(rig.run(packet(Op.SIGN, 0x80, 0))))


def test_sign_with_an_installed_key_verifies_under_the_host_public_key() -> None:
    rig = locked()
    key = host_key(0xC0FFEE)
    rig.chip.control.set_private_key(1, 0xC0FFEE)
    load_digest(rig)
    signature = payload(rig.run(packet(Op.SIGN, 0xA0, 1)))
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    key.public_key().verify(encode_dss_signature(r, s), DIGEST, PREHASHED)


def test_sign_without_a_digest_is_execution_error() -> None:
    rig = locked()
    genkey(rig, 0)
    assert rig.run(packet(Op.SIGN, 0x80, 0)) == status(EXEC)
    assert rig.run(packet(Op.SIGN, 0xA0, 0)) == status(EXEC)
    load_digest(rig, target=0x80)  # the Alternate-Key buffer is no digest source
    assert rig.run(packet(Op.SIGN, 0xA0, 0)) == status(EXEC)


def test_sign_of_a_random_nonce_tempkey_is_execution_error() -> None:
    rig = locked()
    genkey(rig, 0)
    rig.run(packet(Op.NONCE, 0x00, 0, bytes(20)))
    assert rig.run(packet(Op.SIGN, 0x80, 0)) == status(EXEC)  # SourceFlag = random


def test_the_digest_is_lost_with_sleep() -> None:
    rig = locked()
    genkey(rig, 0)
    load_digest(rig)
    rig.wake()
    rig.sleep()  # §1.8: SRAM (TempKey, Message-Digest buffer) is lost
    assert rig.run(packet(Op.SIGN, 0xA0, 0)) == status(EXEC)


def test_sign_forbidden_cases_are_execution_errors() -> None:
    rig = locked()
    load_digest(rig)
    assert rig.run(packet(Op.SIGN, 0xA0, 0)) == status(EXEC)  # no key generated yet
    assert rig.run(packet(Op.SIGN, 0xA0, 3)) == status(EXEC)  # not a private-key slot
    rig.chip.control.configure_private_key_slot(4, external_sign=False)
    genkey(rig, 4)
    assert rig.run(packet(Op.SIGN, 0xA0, 4)) == status(EXEC)  # SlotConfig b0 clear
    genkey(rig, 0)
    for internal in (0x00, 0x40):  # needs a GenDig/GenKey TempKey: never here
        assert rig.run(packet(Op.SIGN, internal, 0)) == status(EXEC)


@pytest.mark.parametrize("lock", [LockState.UNLOCKED, LockState.CONFIG_LOCKED])
def test_sign_and_ecdh_need_both_zones_locked(lock: LockState) -> None:
    rig = make_rig(timing="instant", lock=lock)
    if lock is LockState.CONFIG_LOCKED:
        genkey(rig, ECDH_SLOT)
    load_digest(rig)
    peer = xy(host_key(5).public_key())
    assert rig.run(packet(Op.SIGN, 0xA0, ECDH_SLOT)) == status(EXEC)
    assert rig.run(packet(Op.ECDH, 0x0C, ECDH_SLOT, peer)) == status(EXEC)


@pytest.mark.parametrize(
    ("param1", "param2", "data"),
    [(0x81, 0, b""), (0xC0, 0, b""), (0x20, 0, b""), (0x80, 16, b""), (0xA0, 0, bytes(32))],
)
def test_sign_bad_mode_key_id_or_length_is_parse_error(
    param1: int, param2: int, data: bytes
) -> None:
    rig = locked()
    genkey(rig, 0)
    load_digest(rig)
    assert rig.run(packet(Op.SIGN, param1, param2, data)) == status(PARSE)


# --- Verify (0x45) external ----------------------------------------------------------------------


@pytest.mark.parametrize(("nonce_target", "mode"), [(0x00, 0x02), (0x40, 0x22)])
def test_verify_external_match_and_miscompare(nonce_target: int, mode: int) -> None:
    rig = locked()
    key = host_key(0xBADC0DE)
    public = xy(key.public_key())
    signature = host_sign(key, DIGEST)
    load_digest(rig, target=nonce_target)

    def verify(sig: bytes, pub: bytes = public) -> bytes:
        return rig.run(packet(Op.VERIFY, mode, 0x0004, sig + pub))

    assert verify(signature) == status(OK)
    tampered = bytes((signature[0] ^ 0x01,)) + signature[1:]
    assert verify(tampered) == status(MISCOMPARE)
    r, s_ = signature[:32], signature[32:]
    n = N.to_bytes(32, "big")
    for bad in (r + bytes(32), bytes(32) + s_, n + s_, r + n, r + b"\xff" * 32):
        assert verify(bad) == status(MISCOMPARE)  # R or S outside 1..n-1 (FIPS 186-4 §6.4.2)
    assert verify(bytes(64), bytes(64)) == status(EXEC)  # (0, 0) is not on P-256
    assert verify(signature, xy(host_key(2).public_key())) == status(MISCOMPARE)
    assert verify(signature) == status(OK)  # the digest is not consumed


def test_verify_of_a_chip_signature_round_trips() -> None:
    rig = locked()
    public = genkey(rig, 0)
    load_digest(rig)
    signature = payload(rig.run(packet(Op.SIGN, 0xA0, 0)))
    assert rig.run(packet(Op.VERIFY, 0x22, 4, signature + public)) == status(OK)
    load_digest(rig, hashlib.sha256(b"another message").digest())
    assert rig.run(packet(Op.VERIFY, 0x22, 4, signature + public)) == status(MISCOMPARE)


def test_verify_works_once_the_config_zone_is_locked() -> None:
    rig = make_rig(timing="instant", lock=LockState.CONFIG_LOCKED)
    key = host_key(99)
    load_digest(rig)
    data = host_sign(key, DIGEST) + xy(key.public_key())
    assert rig.run(packet(Op.VERIFY, 0x22, 4, data)) == status(OK)


def test_verify_errors() -> None:
    key = host_key(99)
    data = host_sign(key, DIGEST) + xy(key.public_key())
    unlocked = make_rig(timing="instant")
    load_digest(unlocked)
    assert unlocked.run(packet(Op.VERIFY, 0x22, 4, data)) == status(EXEC)
    rig = locked()
    assert rig.run(packet(Op.VERIFY, 0x22, 4, data)) == status(EXEC)  # no digest
    load_digest(rig)
    off_curve = data[:64] + data[64:96] + (int.from_bytes(data[96:], "big") ^ 1).to_bytes(32)
    assert rig.run(packet(Op.VERIFY, 0x22, 4, off_curve)) == status(EXEC)
    assert rig.run(packet(Op.VERIFY, 0x22, 3, data)) == status(PARSE)  # key type
    assert rig.run(packet(Op.VERIFY, 0x22, 4, data[:127])) == status(PARSE)
    for mode in (0x00, 0x01, 0x03, 0x07, 0x82, 0x12):  # not modelled, or reserved bits
        assert rig.run(packet(Op.VERIFY, mode, 4, data)) == status(PARSE)


# --- ECDH (0x43) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0x0C, 0x00])
def test_ecdh_clear_output_equals_the_host_side_secret(mode: int) -> None:
    rig = locked()
    chip_public = from_xy(genkey(rig, ECDH_SLOT))
    peer = host_key(0x5EED)
    secret = payload(rig.run(packet(Op.ECDH, mode, ECDH_SLOT, xy(peer.public_key()))))
    assert secret == peer.exchange(ec.ECDH(), chip_public)
    assert len(secret) == 32


def test_ecdh_compatible_mode_with_write_ecdh_writes_slot_plus_one() -> None:
    rig = locked()
    chip_public = from_xy(genkey(rig, ECDH_TO_NEXT))
    peer = host_key(0xABCDEF)
    before = slot_bytes(rig, ECDH_TO_NEXT + 1)
    assert rig.run(packet(Op.ECDH, 0x00, ECDH_TO_NEXT, xy(peer.public_key()))) == status(OK)
    after = slot_bytes(rig, ECDH_TO_NEXT + 1)
    assert after[:32] == peer.exchange(ec.ECDH(), chip_public)
    assert after[32:] == before[32:]
    # Mode 0x0C still gives it in clear.
    assert (
        payload(rig.run(packet(Op.ECDH, 0x0C, ECDH_TO_NEXT, xy(peer.public_key())))) == (after[:32])
    )


def test_ecdh_copy_to_slot_mode_writes_the_next_data_slot() -> None:
    rig = locked()
    chip_public = from_xy(genkey(rig, ECDH_TO_NEXT))  # slot 2; slot 3 is a data slot
    peer = host_key(77)
    assert rig.run(packet(Op.ECDH, 0x04, ECDH_TO_NEXT, xy(peer.public_key()))) == status(OK)
    assert slot_bytes(rig, ECDH_TO_NEXT + 1)[:32] == peer.exchange(ec.ECDH(), chip_public)
    assert rig.chip.control.public_key(ECDH_TO_NEXT) == xy(chip_public)  # its own key untouched


def test_ecdh_copy_to_slot_never_overwrites_a_private_key() -> None:
    """The secret is known to the host: written over slot 2's key it would give away all but
    four bytes of it. Slot 1's next slot is the key slot 2: refused, nothing written."""
    rig = locked()
    genkey(rig, ECDH_SLOT)
    victim = genkey(rig, ECDH_TO_NEXT)
    before = slot_bytes(rig, ECDH_TO_NEXT)
    peer = xy(host_key(79).public_key())
    for mode in (0x04, 0x00):  # copy to slot + 1, and legacy mode with SlotConfig b3 set
        if mode == 0x00:
            rig.chip.control.configure_private_key_slot(ECDH_SLOT, ecdh_to_next=True)
        assert rig.run(packet(Op.ECDH, mode, ECDH_SLOT, peer)) == status(EXEC)
    assert slot_bytes(rig, ECDH_TO_NEXT) == before
    assert rig.chip.control.public_key(ECDH_TO_NEXT) == victim


def test_ecdh_copy_to_tempkey_sets_tempkey() -> None:
    rig = locked()
    genkey(rig, ECDH_SLOT)
    assert not rig.chip.control.state().tempkey_valid
    peer = xy(host_key(78).public_key())
    assert rig.run(packet(Op.ECDH, 0x08, ECDH_SLOT, peer)) == status(OK)
    byte0, byte1 = info_state(rig)
    assert byte1 & 0x80  # valid
    assert byte0 & 0x0F == ECDH_SLOT  # KeyId
    assert not byte0 & 0x10  # SourceFlag random


def test_ecdh_errors() -> None:
    rig = locked()
    peer = xy(host_key(3).public_key())
    assert rig.run(packet(Op.ECDH, 0x0C, ECDH_SLOT, peer)) == status(EXEC)  # no key yet
    genkey(rig, SIGN_ONLY)
    genkey(rig, ECDH_SLOT)
    assert rig.run(packet(Op.ECDH, 0x0C, SIGN_ONLY, peer)) == status(EXEC)  # SlotConfig b2
    assert rig.run(packet(Op.ECDH, 0x0C, 3, peer)) == status(EXEC)  # not a key slot
    assert rig.run(packet(Op.ECDH, 0x0D, ECDH_SLOT, peer)) == status(EXEC)  # TempKey source
    off_curve = peer[:32] + (int.from_bytes(peer[32:], "big") ^ 1).to_bytes(32)
    assert rig.run(packet(Op.ECDH, 0x0C, ECDH_SLOT, off_curve)) == status(EXEC)
    for mode in (0x0E, 0x02, 0x10, 0x8C):  # encrypted output (not modelled), reserved bits
        assert rig.run(packet(Op.ECDH, mode, ECDH_SLOT, peer)) == status(PARSE)
    assert rig.run(packet(Op.ECDH, 0x0C, ECDH_SLOT, peer[:63])) == status(PARSE)
    assert rig.run(packet(Op.ECDH, 0x0C, 16, peer)) == status(PARSE)


def test_ecdh_protection_in_chipoptions_forbids_clear_output() -> None:
    rig = locked()
    genkey(rig, ECDH_SLOT)
    rig.chip.control.write_config(91, b"\x01")  # ChipOptions b9:8 = 01
    peer = xy(host_key(4).public_key())
    assert rig.run(packet(Op.ECDH, 0x0C, ECDH_SLOT, peer)) == status(EXEC)
    assert rig.run(packet(Op.ECDH, 0x08, ECDH_SLOT, peer)) == status(OK)


def test_ecdh_to_the_slot_after_15_is_refused() -> None:
    rig = locked()
    rig.chip.control.configure_private_key_slot(15, ecdh_to_next=True)
    genkey(rig, 15)
    assert rig.run(packet(Op.ECDH, 0x00, 15, xy(host_key(9).public_key()))) == status(EXEC)


# --- timing (§4) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opcode", "max_ms"), [(Op.GENKEY, 115), (Op.SIGN, 115), (Op.VERIFY, 105), (Op.ECDH, 75)]
)
def test_ecc_commands_are_busy_for_their_m0_maximum(opcode: int, max_ms: float) -> None:
    rig = make_rig(timing=TimingModel.maximum(), lock=LockState.LOCKED)
    rig.chip.control.set_private_key(1, 1234)
    rig.run(packet(Op.NONCE, 0x43, 0, DIGEST))
    key = host_key(5)
    groups: dict[int, tuple[bytes, int]] = {  # the group and its response's count byte
        Op.GENKEY: (packet(Op.GENKEY, 0x04, 1), 67),
        Op.SIGN: (packet(Op.SIGN, 0xA0, 1), 67),
        Op.VERIFY: (packet(Op.VERIFY, 0x22, 4, host_sign(key, DIGEST) + xy(key.public_key())), 4),
        Op.ECDH: (packet(Op.ECDH, 0x0C, 1, xy(key.public_key())), 35),
    }
    group, count = groups[opcode]
    rig.wake()
    rig.send(group)
    rig.clock.advance(max_ms / 1000 - 1e-4)
    assert not rig.ready()
    rig.clock.advance(2e-4)
    reply = rig.response()
    assert reply[0] == count
    if count == 4:
        assert reply == status(OK)

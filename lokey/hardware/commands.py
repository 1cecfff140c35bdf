"""Typed ATECC608A commands over a :class:`~lokey.hardware.transport.Transport`.

Each method is one operation (one wake, commands, idle) and returns typed values (P-256 keys and
signatures are :mod:`lokey.hardware.ecc`'s :class:`PublicKey` and :class:`Signature`). The
driver writes to the chip only when a method whose name says so is called (``write_config_word``,
``lock_config``, ``counter(increment=True)``, ``genkey``): no hidden provisioning, unlike the Go
reference's ``FORCE_CONFIG`` (spec/atecc608a.md §17.6). Its other departures from that
reference (§17): the lock state comes from a Read of config word 0x15, never the SHA opcode
(§17.1); Random returns all 32 bytes (§17.2); every response is count- and CRC-checked by the
transport (§17.3); and the Info revision is checked.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final

from lokey.errors import (
    CommunicationError,
    DeviceStatusError,
    SelfTestError,
    UnsupportedDeviceError,
)
from lokey.hardware.crc import crc16
from lokey.hardware.ecc import (
    DIGEST_SIZE,
    KEY_SLOTS,
    POINT_SIZE,
    NonceTarget,
    PublicKey,
    Signature,
)
from lokey.hardware.packets import Opcode, Status, raise_for_status
from lokey.hardware.transport import Transport

__all__ = [
    "CONFIG_SIZE",
    "SELFTEST_ALL",
    "TEST_PATTERN",
    "Atecc608aDriver",
    "LockState",
    "NonceTarget",
    "PublicKey",
    "Signature",
    "config_summary",
    "is_test_pattern",
]

#: §5: what Random (and Nonce) return while the config zone is unlocked: FF FF 00 00, eight times.
TEST_PATTERN: Final = bytes.fromhex("ffff0000") * 8
#: §7.1: the config zone is 128 bytes, 4 blocks of 32, 32 words of 4.
CONFIG_SIZE: Final = 128
#: §10.2: SelfTest bitmap of every engine (RNG 0x01, ECDSA 0x02, ECDH 0x08, AES 0x10, SHA 0x20).
SELFTEST_ALL: Final = 0x3B

_RANDOM_SIZE: Final = 32  # §5
_WORD: Final = 4  # §7.1: 4-byte access
_BLOCK: Final = 32  # §7.1: 32-byte access
_CONFIG_WORDS: Final = CONFIG_SIZE // _WORD
_CONFIG_BLOCKS: Final = CONFIG_SIZE // _BLOCK
_ZONE_CONFIG: Final = 0x00  # §7.1: Read/Write param1 bits 1:0
_WIDE: Final = 0x80  # §7.1: param1 bit 7 = 32-byte access
_INFO_REVISION: Final = 0x00  # §6: Info mode 0
_FAMILY_INDEX: Final = 2  # §6: byte 2 of the revision is the family id
_FAMILY_608: Final = 0x60  # §6: ATECC608A (00 00 60 02) and ATECC608B (00 00 60 03)
_LOCK_WORD: Final = 0x15  # §7.2: config word 0x15 = bytes 84-87 (UserExtra ... LockConfig)
_LOCK_VALUE_INDEX: Final = 2  # byte 86 within word 0x15 (§7.4: data + OTP lock)
_LOCK_CONFIG_INDEX: Final = 3  # byte 87 within word 0x15 (§7.4: config lock)
_UNLOCKED: Final = 0x55  # §7.4
_READ_ONLY_WORDS: Final = range(4)  # §7.3: bytes 0-15 (serial, revision) are never writable
_LOCK_CONFIG_SUMMARY: Final = 0x00  # §7.5: lock config, verify the summary CRC in param2
_LOCK_CONFIG_NO_SUMMARY: Final = 0x80  # §7.5: lock config without the check
_COUNTER_READ: Final = 0x00  # §8
_COUNTER_INCREMENT: Final = 0x01
_SHA_START: Final = 0x00  # §9
_SHA_UPDATE: Final = 0x01
# §9: End with output only (bits 7:6 = 11): the digest is returned and written nowhere, so a
# hash through the driver leaves TempKey and the Message-Digest buffer as they were.
_SHA_END_OUTPUT_ONLY: Final = 0xC2
_SHA_BLOCK: Final = 64  # §9: Update takes exactly one 64-byte block (cryptoauthlib style)
_SHA_DIGEST: Final = 32
_NONCE_PASS_THROUGH: Final = 0x03  # §10.1: param1 bits 1:0 = 3, input copied as is
_NONCE_64_BYTES: Final = 0x20  # §10.1 / §4: param1 bit 5 = 64-byte input
_NONCE_SIZES: Final = (32, 64)  # §10.1
_GENKEY_PRIVATE: Final = 0x04  # §10.3: create a private key in the slot, return its public key
_GENKEY_PUBLIC: Final = 0x00  # §10.3: the public key of the private key already in the slot
# §10.3: Sign external (0x80) of the digest in the Message-Digest buffer (bit 5), as
# cryptoauthlib does on a 608.
_SIGN_EXTERNAL_MSGDIGBUF: Final = 0xA0
# §10.3: Verify external (mode 0x02) of the digest in the Message-Digest buffer (bit 5)
_VERIFY_EXTERNAL_MSGDIGBUF: Final = 0x22
_VERIFY_KEY_P256: Final = 0x0004  # §10.3: param2 = key type P-256
_ECDH_OUTPUT_CLEAR: Final = 0x0C  # §10.3 / §4: copy target 0x0C = output buffer, in clear
_SHARED_SECRET: Final = 32  # §10.3: the X coordinate of the shared point


def is_test_pattern(sample: bytes) -> bool:
    """Whether ``sample`` is the unlocked chip's diagnostic Random output (§5), not entropy."""
    return bytes(sample) == TEST_PATTERN


def config_summary(config: bytes) -> int:
    """The Lock summary CRC of a 128-byte config image (§7.5: CRC-16 over all 128 bytes).

    It covers bytes 0-15 too, so it depends on the chip's serial number; compute it over the
    image read back from the chip (:meth:`Atecc608aDriver.read_config`) after the writes.
    """
    if len(config) != CONFIG_SIZE:
        raise ValueError(f"config must be {CONFIG_SIZE} bytes, got {len(config)}")
    return crc16(config)


@dataclass(frozen=True)
class LockState:
    """The two zone locks (§7.4), decided as cryptoauthlib's ``atcab_is_locked`` does."""

    config_locked: bool
    data_locked: bool


def _index(name: str, value: object, count: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise ValueError(f"{name} must be an integer 0..{count - 1}, got {value!r}")
    return value


def _sized(name: str, value: object, *sizes: int) -> bytes:
    """``value`` as bytes if it is bytes-like of one of ``sizes`` (ValueError naming ``name``)."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) not in sizes:
        wanted = " or ".join(str(size) for size in sizes)
        raise ValueError(f"{name} must be exactly {wanted} bytes, got {len(value)}")
    return bytes(value)


def _typed(name: str, value: object, kind: type[PublicKey] | type[Signature]) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")


class Atecc608aDriver:
    """The commands LoKey uses, over one :class:`Transport` (which it owns: ``close`` closes it).

    Thread-safe: every method runs inside one transport session, which holds the transport's
    lock. Use :meth:`session` to run several methods under one wake (provisioning, say); the
    transport still idles and re-wakes inside it whenever the watchdog budget requires.
    """

    def __init__(self, transport: Transport) -> None:
        if not isinstance(transport, Transport):
            raise ValueError(f"transport must be a Transport, got {transport!r}")
        self._transport = transport

    def __repr__(self) -> str:
        return f"Atecc608aDriver({self._transport!r})"

    @property
    def transport(self) -> Transport:
        return self._transport

    def session(self) -> contextlib.AbstractContextManager[None]:
        """Hold the chip for several calls: one wake, idle at the end (sleep after an error)."""
        return self._transport.session()

    # -- identity ---------------------------------------------------------------------------------

    def revision(self) -> bytes:
        """Info mode 0: the 4-byte revision (``00 00 60 02`` 608A, ``00 00 60 03`` 608B, §6).

        Raises :class:`UnsupportedDeviceError` unless byte 2 is the 608 family id 0x60: the
        driver's timings and rules are the 608's, and the Go reference never checked (§17).
        """
        revision = self._transport.execute(
            Opcode.INFO, _INFO_REVISION, 0, payload_length=4, command="Info(revision)"
        )
        if revision[_FAMILY_INDEX] != _FAMILY_608:
            raise UnsupportedDeviceError(
                f"Info revision {revision.hex(' ')}: family 0x{revision[_FAMILY_INDEX]:02X}, "
                f"not an ATECC608 (0x{_FAMILY_608:02X}); wrong part or wrong I2C address",
                revision=revision,
            )
        return revision

    def serial_number(self) -> bytes:
        """The 9-byte serial number: config bytes 0-3 ‖ 8-12 (§11), from one block read."""
        block = self.read_config_block(0)
        return block[0:4] + block[8:13]

    # -- random -----------------------------------------------------------------------------------

    def random(self) -> bytes:
        """Random (mode 0x00): all 32 bytes of the response, never trimmed (§5, §17.2).

        While the config zone is unlocked these are the test pattern (:func:`is_test_pattern`);
        deciding what to do with it is the caller's business.
        """
        return self._transport.execute(
            Opcode.RANDOM, 0x00, 0, payload_length=_RANDOM_SIZE, command="Random"
        )

    # -- config zone ------------------------------------------------------------------------------

    def read_config_word(self, word: int) -> bytes:
        """Read 4 config bytes at ``word`` (0..31; bytes ``4*word .. 4*word+3``, §7.2)."""
        word = _index("word", word, _CONFIG_WORDS)
        return self._transport.execute(
            Opcode.READ,
            _ZONE_CONFIG,
            word,
            payload_length=_WORD,
            command=f"Read(config word 0x{word:02X})",
        )

    def read_config_block(self, block: int) -> bytes:
        """Read 32 config bytes of ``block`` (0..3; param2 = block << 3, §7.2)."""
        block = _index("block", block, _CONFIG_BLOCKS)
        return self._transport.execute(
            Opcode.READ,
            _ZONE_CONFIG | _WIDE,
            block << 3,
            payload_length=_BLOCK,
            command=f"Read(config block {block})",
        )

    def read_config(self) -> bytes:
        """The whole 128-byte config zone: four 32-byte reads under one wake."""
        with self.session():
            return b"".join(self.read_config_block(block) for block in range(_CONFIG_BLOCKS))

    def lock_state(self) -> LockState:
        """Read config word 0x15 (bytes 84-87) and decide the locks as ``atcab_is_locked``.

        Config locked ⇔ byte 87 ≠ 0x55; data locked ⇔ byte 86 ≠ 0x55 (§7.4). A Read (opcode
        0x02), never the SHA opcode 0x47 the Go reference sent by mistake (§17.1).
        """
        word = self.read_config_word(_LOCK_WORD)
        return LockState(
            config_locked=word[_LOCK_CONFIG_INDEX] != _UNLOCKED,
            data_locked=word[_LOCK_VALUE_INDEX] != _UNLOCKED,
        )

    def write_config_word(self, word: int, data: bytes) -> None:
        """Write 4 config bytes at ``word`` (4..31 except 0x15) while the config is unlocked.

        Words 0-3 (serial number, revision) are never writable and word 0x15 (UserExtra,
        UserExtraAdd and the lock bytes) changes only through UpdateExtra and Lock (§7.3); the
        driver refuses both before touching the bus. On a locked config the chip answers
        :class:`~lokey.errors.ExecutionError`.
        """
        word = _index("word", word, _CONFIG_WORDS)
        if word in _READ_ONLY_WORDS:
            raise ValueError(
                f"word 0x{word:02X} is read-only: config bytes 0-15 (serial number, revision) "
                "are never writable (spec §7.3)"
            )
        if word == _LOCK_WORD:
            raise ValueError(
                "word 0x15 (bytes 84-87) is not writable with Write: UserExtra/UserExtraAdd change "
                "through UpdateExtra and the lock bytes through Lock (spec §7.3)"
            )
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) != _WORD:
            raise ValueError(f"data must be exactly {_WORD} bytes, got {data!r}")
        self._transport.execute_status(
            Opcode.WRITE,
            _ZONE_CONFIG,
            word,
            bytes(data),
            command=f"Write(config word 0x{word:02X})",
        )

    def lock_config(self, summary_crc: int | None) -> None:
        """Lock the config zone (irreversible).

        With ``summary_crc`` (see :func:`config_summary`) the chip locks only if its config
        still has exactly that CRC (mode 0x00, §7.5), so a write that went wrong cannot be
        frozen in. ``None`` must be passed explicitly to lock unchecked (mode 0x80).
        """
        if summary_crc is None:
            mode, param2, name = _LOCK_CONFIG_NO_SUMMARY, 0, "Lock(config, unchecked)"
        else:
            if (
                isinstance(summary_crc, bool)
                or not isinstance(summary_crc, int)
                or not 0 <= summary_crc <= 0xFFFF
            ):
                raise ValueError(
                    f"summary_crc must be a 16-bit CRC 0..0xFFFF or None, got {summary_crc!r}"
                )
            mode, param2 = _LOCK_CONFIG_SUMMARY, summary_crc
            name = f"Lock(config, summary 0x{summary_crc:04X})"
        # Not idempotent: a resend after a damaged reply would answer "already locked" (0x0F).
        self._transport.execute_status(Opcode.LOCK, mode, param2, command=name, idempotent=False)

    # -- self test, counters, SHA -----------------------------------------------------------------

    def self_test(self, tests: int = SELFTEST_ALL) -> int:
        """Run the SelfTest engines in ``tests`` (§10.2); the bitmap of failed ones, 0 = pass.

        ``tests`` 0 reads the failure register instead of running anything. A failed test puts
        the chip in Failure state (most commands then raise :class:`~lokey.errors.SelfTestError`)
        until a later SelfTest or wake passes; this method runs in Failure state too, so it is
        both the diagnosis and the way out. A non-zero result (or register) is confirmed by that
        Failure state, so a status byte that looks like a bitmap (a lost command's 0x11, §3)
        raises its typed error instead of being reported as broken engines.
        """
        if isinstance(tests, bool) or not isinstance(tests, int) or tests & ~SELFTEST_ALL:
            raise ValueError(
                f"tests must be a SelfTest bitmap within 0x{SELFTEST_ALL:02X}, got {tests!r}"
            )
        with self.session():
            result = self._self_test(tests)
            if result:
                self._confirm_failure_state(result)
            return result

    def _confirm_failure_state(self, result: int) -> None:
        """Return if the chip is in Failure state (§10.2); else raise ``result`` as a status.

        §2.2: a one-byte result has the shape of a status group, and 0x01, 0x03, 0x08 and 0x11
        are valid bitmaps as well as statuses (0x11 is the wake group of a lost command, §3).
        Asking the failure register cannot settle it: its answer is one byte too, and a second
        lost command answers 0x11 again. Failed engines put the chip in Failure state, where
        every command but a config Read and SelfTest answers status 0x07; Info's answer is a
        4-byte payload, so any other status there is unambiguous (and raises its own error).
        """
        try:
            self._transport.execute(
                Opcode.INFO, _INFO_REVISION, 0, payload_length=4, command="Info(Failure state?)"
            )
        except SelfTestError:
            return  # the failure is real
        raise_for_status(result, command="SelfTest")
        raise CommunicationError(
            f"SelfTest: 0x{result:02X}, but the chip is not in Failure state: a status, "
            "not a result"
        )

    def _self_test(self, tests: int) -> int:
        result = self._transport.execute(
            Opcode.SELF_TEST,
            tests,
            0,
            payload_length=1,
            command=f"SelfTest(0x{tests:02X})",
            allow_failure_state=True,  # §10.2: SelfTest is how a chip leaves Failure state
        )[0]
        # Failed tests are a subset of those asked for (of all of them for a register read);
        # a byte with other bits (0x05, 0x07, 0x0F ...) can only be a status.
        if result & ~(tests or SELFTEST_ALL):
            raise_for_status(result, command="SelfTest")
            raise DeviceStatusError(result, f"SelfTest: unknown status 0x{result:02X}")
        return result

    def counter(self, counter_id: int, *, increment: bool = False) -> int:
        """Read (or increment, then read) monotonic counter 0 or 1 (§8; value 0..2,097,151)."""
        counter_id = _index("counter_id", counter_id, 2)
        if not isinstance(increment, bool):
            raise ValueError(f"increment must be a bool, got {increment!r}")
        mode = _COUNTER_INCREMENT if increment else _COUNTER_READ
        value = self._transport.execute(
            Opcode.COUNTER,
            mode,
            counter_id,
            payload_length=4,
            command=f"Counter({'increment' if increment else 'read'} {counter_id})",
            idempotent=not increment,  # a resent increment would count twice
        )
        return int.from_bytes(value, "little")

    def sha256(self, message: bytes) -> bytes:
        """SHA-256 of ``message`` computed by the chip: Start, Update per 64 bytes, End (§9).

        End uses mode 0xC2 (output only), so TempKey and the Message-Digest buffer are left
        alone. Long messages are fine: the transport idles and re-wakes between blocks when the
        watchdog budget requires it, and idle keeps the SHA context (§1.8).
        """
        if not isinstance(message, bytes | bytearray | memoryview):
            raise ValueError(f"message must be bytes, got {type(message).__name__}")
        data = bytes(message)
        whole = len(data) - len(data) % _SHA_BLOCK
        transport = self._transport
        with self.session():
            transport.execute_status(Opcode.SHA, _SHA_START, 0, command="SHA(start)")
            for offset in range(0, whole, _SHA_BLOCK):
                transport.execute_status(
                    Opcode.SHA,
                    _SHA_UPDATE,
                    _SHA_BLOCK,
                    data[offset : offset + _SHA_BLOCK],
                    command="SHA(update)",
                    idempotent=False,  # a resent block would be hashed twice
                )
            tail = data[whole:]
            return transport.execute(
                Opcode.SHA,
                _SHA_END_OUTPUT_ONLY,
                len(tail),
                tail,
                payload_length=_SHA_DIGEST,
                command="SHA(end)",
                idempotent=False,  # End consumes the context; a resend would fail (0x0F)
            )

    # -- P-256: Nonce pass-through, GenKey, Sign, Verify, ECDH ------------------------------------

    def nonce_load(self, data: bytes, *, target: NonceTarget = NonceTarget.TEMPKEY) -> None:
        """Nonce pass-through (mode 0x03): copy 32 bytes, or 64 (param1 bit 5), into ``target``.

        ``target`` is TempKey (0x00), the Message-Digest buffer (0x40) or the Alternate-Key
        buffer (0x80), param1 bits 7:6 (§10.1); param2 0x0000. The chip answers one status byte.
        The buffers survive idle but not sleep (§1.8): load and use them in one
        :meth:`session`.
        """
        data = _sized("data", data, *_NONCE_SIZES)
        try:
            if isinstance(target, bool) or not isinstance(target, int):
                raise ValueError
            target = NonceTarget(target)
        except ValueError:
            raise ValueError(f"target must be a NonceTarget, got {target!r}") from None
        mode = _NONCE_PASS_THROUGH | target | (_NONCE_64_BYTES if len(data) == 64 else 0)
        self._transport.execute_status(
            Opcode.NONCE,
            mode,
            0,
            data,
            command=f"Nonce(pass-through {len(data)} bytes to {target.name})",
        )

    def genkey(self, slot: int) -> PublicKey:
        """GenKey mode 0x04: create a new private key in ``slot``; its public key (§10.3).

        Replaces the slot's key. The chip refuses (0x0F, :class:`~lokey.errors.ExecutionError`)
        while the zones are unlocked or where the slot is no P-256 private-key slot. Not resent
        after a damaged answer (it would replace the key again): :meth:`public_key` recovers it.
        """
        slot = _index("slot", slot, KEY_SLOTS)
        raw = self._transport.execute(
            Opcode.GENKEY,
            _GENKEY_PRIVATE,
            slot,
            payload_length=POINT_SIZE,
            command=f"GenKey(private, slot {slot})",
            idempotent=False,
        )
        return PublicKey(raw)

    def public_key(self, slot: int) -> PublicKey:
        """GenKey mode 0x00: the public key of the private key stored in ``slot`` (§10.3)."""
        slot = _index("slot", slot, KEY_SLOTS)
        raw = self._transport.execute(
            Opcode.GENKEY,
            _GENKEY_PUBLIC,
            slot,
            payload_length=POINT_SIZE,
            command=f"GenKey(public, slot {slot})",
        )
        return PublicKey(raw)

    def sign_digest(self, slot: int, digest: bytes) -> Signature:
        """ECDSA-sign the 32-byte ``digest`` (signed as is, §10.3) with the key in ``slot``.

        One wake, as cryptoauthlib does on a 608 (§10.3): Random first, "so the RNG seed is
        updated" (the chip draws the ECDSA nonce k from its DRBG; the 32 random bytes are
        discarded), then Nonce pass-through into the Message-Digest buffer (param1 0x43), then
        Sign param1 0xA0 (external, digest from that buffer), param2 = ``slot``. The extra Random
        costs at most 23 ms (§4) and matches the reference library byte for byte. Sign is not
        resent after a damaged answer: whether the chip keeps the digest after a Sign is not
        public (§10), and a resend without one would only answer 0x0F.
        """
        slot = _index("slot", slot, KEY_SLOTS)
        digest = _sized("digest", digest, DIGEST_SIZE)
        with self.session():
            self.random()
            self.nonce_load(digest, target=NonceTarget.MESSAGE_DIGEST)
            raw = self._transport.execute(
                Opcode.SIGN,
                _SIGN_EXTERNAL_MSGDIGBUF,
                slot,
                payload_length=POINT_SIZE,
                command=f"Sign(external, slot {slot})",
                idempotent=False,
            )
        return Signature(raw)

    def verify_digest(self, digest: bytes, signature: Signature, public_key: PublicKey) -> bool:
        """Whether ``signature`` of the 32-byte ``digest`` verifies under ``public_key`` (§10.3).

        One wake: Nonce pass-through into the Message-Digest buffer (param1 0x43), then Verify
        mode 0x22 (external, digest from that buffer), param2 0x0004 (P-256), data = R ‖ S ‖
        X ‖ Y. Status 0x00 is True, 0x01 (miscompare) False; any other status raises its typed
        error (§3) and one the spec does not name :class:`~lokey.errors.DeviceStatusError`. A
        public key that is not on P-256 (a damaged key almost always is not) is refused by the
        chip (0x0F): :class:`~lokey.errors.ExecutionError`, not False.
        """
        digest = _sized("digest", digest, DIGEST_SIZE)
        _typed("signature", signature, Signature)
        _typed("public_key", public_key, PublicKey)
        name = "Verify(external)"
        with self.session():
            self.nonce_load(digest, target=NonceTarget.MESSAGE_DIGEST)
            status = self._transport.execute(
                Opcode.VERIFY,
                _VERIFY_EXTERNAL_MSGDIGBUF,
                _VERIFY_KEY_P256,
                signature.raw + public_key.raw,
                payload_length=1,
                command=name,
                idempotent=False,  # a resend may find the digest gone (§10: not public)
            )[0]
        if status == Status.SUCCESS:
            return True
        if status == Status.MISCOMPARE:
            return False
        raise_for_status(status, command=name)
        raise DeviceStatusError(status, f"{name}: unknown status 0x{status:02X}")

    def ecdh(self, slot: int, peer: PublicKey) -> bytes:
        """ECDH mode 0x0C: the 32-byte shared secret (X of the shared point) in clear (§10.3).

        param2 = ``slot`` (the private key), data = the peer's X ‖ Y. The chip refuses (0x0F)
        where the slot does not allow ECDH or the config demands encrypted output (§11).
        """
        slot = _index("slot", slot, KEY_SLOTS)
        _typed("peer", peer, PublicKey)
        return self._transport.execute(
            Opcode.ECDH,
            _ECDH_OUTPUT_CLEAR,
            slot,
            peer.raw,
            payload_length=_SHARED_SECRET,
            command=f"ECDH(slot {slot}, clear output)",
        )

    # -- power ------------------------------------------------------------------------------------

    def idle(self) -> None:
        """Idle the chip (keeps TempKey and RNG state, stops the watchdog, §1.8)."""
        self._transport.idle()

    def sleep(self) -> None:
        """Put the chip to sleep (loses all volatile state, §1.8)."""
        self._transport.sleep()

    def close(self) -> None:
        """Sleep the chip and close the bus; idempotent."""
        self._transport.close()

    def __enter__(self) -> Atecc608aDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

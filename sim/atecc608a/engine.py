"""The command engine: what each opcode does to the chip's memory and volatile state.

Pure logic with no time and no bus: :class:`sim.atecc608a.chip.ATECC608A` parses the I/O group,
applies timing, the watchdog and faults, and calls :meth:`Engine.execute` with a well-formed,
CRC-checked command. Section numbers refer to ``spec/atecc608a.md``; "decision N" to its §18.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sim.atecc608a import ecc
from sim.atecc608a.constants import (
    COUNTER_MAX,
    OTP_SIZE,
    SELFTEST_ALL,
    TEST_PATTERN,
    Opcode,
    Status,
)
from sim.atecc608a.crc import crc16
from sim.atecc608a.memory import (
    LOCK_CONFIG_BYTE,
    LOCK_VALUE_BYTE,
    USER_EXTRA_ADD_BYTE,
    USER_EXTRA_BYTE,
    Memory,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Engine", "TempKey", "Volatile"]

# §11 KeyConfig / SlotConfig bits used by the access rules.
_KEYCONFIG_PRIVATE = 0x0001
_KEYCONFIG_KEYTYPE_SHIFT = 2
_KEYTYPE_P256 = 4
_KEYCONFIG_LOCKABLE = 0x0020
_SLOTCONFIG_ENCRYPT_READ = 0x0040
_SLOTCONFIG_IS_SECRET = 0x0080
_SLOTCONFIG_WRITE_CONFIG_SHIFT = 12
_KEYCONFIG_PUBINFO = 0x0002
# SlotConfig of a P-256 private-key slot. ReadKey bits 3:0 as §11 lists them: b0 external sign,
# b1 internal sign, b2 ECDH, b3 ECDH result written to slot + 1. GenKey permission is
# WriteConfig bit 1 = SlotConfig bit 13 (ATECC508A datasheet Table 2-10, and the only reading
# under which the §12 factory image and the §13 TLS templates, 0x2083 / 0x2087 / 0x2F87, allow
# GenKey); §11's "b8 GenKey, b9 PrivWrite" copies two cryptoauthlib defines that no library code
# uses and that contradict the datasheet, so the emulator does not follow them.
_SLOTCONFIG_EXTERNAL_SIGN = 0x0001
_SLOTCONFIG_ECDH = 0x0004
_SLOTCONFIG_ECDH_TO_NEXT = 0x0008
_SLOTCONFIG_GENKEY = 0x2000
_CHIPOPTIONS_ECDH_PROTECTION_SHIFT = 8  # §11 ChipOptions b9:8; 0 = clear output allowed

_GENKEY_PUBLIC = 0x00
_GENKEY_PRIVATE = 0x04
_SIGN_EXTERNAL = 0x80
_SOURCE_MSGDIGBUF = 0x20  # Sign param1 / Verify mode bit 5 (§4, §10.3)
_VERIFY_EXTERNAL = 0x02
_VERIFY_KEY_TYPE_P256 = 0x0004
_ECDH_SOURCE_TEMPKEY = 0x01
_ECDH_ENCRYPT_OUTPUT = 0x02
_ECDH_COPY_MASK = 0x0C
_ECDH_COPY_COMPATIBLE = 0x00
_ECDH_COPY_SLOT = 0x04
_ECDH_COPY_TEMPKEY = 0x08
_ECDH_COPY_OUTPUT = 0x0C
_MAX_SLOT = 15
_DIGEST_SIZE = 32

_NONCE_NUMIN_SIZE = 20  # §10.1
_SHA_BLOCK = 64  # §9: at most 64 message bytes per SHA command
_CONFIG_WORDS = 32  # 128 bytes / 4
_OTP_WORDS = OTP_SIZE // 4


def _status(code: int) -> bytes:
    return bytes((code,))


PARSE_ERROR = _status(Status.PARSE_ERROR)
EXECUTION_ERROR = _status(Status.EXECUTION_ERROR)
SUCCESS = _status(Status.SUCCESS)
MISCOMPARE = _status(Status.MISCOMPARE)
HEALTH_ERROR = _status(Status.HEALTH_TEST_ERROR)
SELFTEST_ERROR = _status(Status.SELFTEST_ERROR)


@dataclass
class TempKey:
    """TempKey and its flags (§6 Info State encoding)."""

    value: bytes = b""
    valid: bool = False
    key_id: int = 0
    source_input: bool = False  # SourceFlag: 0 = random, 1 = input (pass-through)
    gen_dig: bool = False
    gen_key: bool = False
    no_mac: bool = False


@dataclass
class Volatile:
    """SRAM state: lost on sleep, watchdog expiry and power loss; kept across idle (§1.8)."""

    tempkey: TempKey = field(default_factory=TempKey)
    message_digest: bytes | None = None
    alternate_key: bytes | None = None
    sha: hashlib._Hash | None = None
    eeprom_rng: bool = False
    sram_rng: bool = False


@dataclass(frozen=True)
class Command:
    opcode: int
    param1: int
    param2: int
    data: bytes


class Engine:
    """Executes commands against :class:`Memory` and :class:`Volatile` state.

    ``rng_bytes`` supplies the noise source's 32-byte blocks (a seeded DRBG or the OS CSPRNG) for
    the opcode that asks for them; ``health_trips`` is asked before each RNG use whether an
    injected health-test failure fires now, and if so whether sleep clears it (else None).
    """

    def __init__(
        self,
        memory: Memory,
        rng_bytes: Callable[[int], bytes],
        health_trips: Callable[[], bool | None],
    ) -> None:
        self.memory = memory
        self.volatile = Volatile()
        self._rng_bytes = rng_bytes
        self._health_trips = health_trips
        # Fault-driven RNG and self-test state, set through the control surface.
        self.health_latched = False
        self.health_clears_on_sleep = False
        self.selftest_broken = 0  # SelfTest bitmap of engines that fail when tested
        self.failure = 0  # latched Failure-state bitmap (§10.2)
        self.failure_at_wake = 0  # transient failures the next wake's self-test reports
        self.latch = False  # Info mode 4 persistent latch
        self._handlers: dict[int, Callable[[Command], bytes]] = {
            Opcode.INFO: self._info,
            Opcode.RANDOM: self._random,
            Opcode.READ: self._read,
            Opcode.WRITE: self._write,
            Opcode.LOCK: self._lock,
            Opcode.UPDATE_EXTRA: self._update_extra,
            Opcode.COUNTER: self._counter,
            Opcode.SHA: self._sha,
            Opcode.NONCE: self._nonce,
            Opcode.SELF_TEST: self._self_test,
            Opcode.GENKEY: self._genkey,
            Opcode.SIGN: self._sign,
            Opcode.VERIFY: self._verify,
            Opcode.ECDH: self._ecdh,
        }

    # --- entry point --------------------------------------------------------------------------
    def supports(self, opcode: int) -> bool:
        return opcode in self._handlers

    def execute(self, command: Command) -> bytes:
        """The response payload: a data block, or one status byte (a 4-byte group)."""
        handler = self._handlers.get(command.opcode)
        if handler is None:
            # Decision 12: MAC, GenDig, DeriveKey, CheckMac, PrivWrite, AES, KDF, SecureBoot ...
            return PARSE_ERROR
        if self.failure and not self._allowed_in_failure_state(command):
            return SELFTEST_ERROR
        return handler(command)

    @staticmethod
    def _allowed_in_failure_state(command: Command) -> bool:
        # §10.2: in Failure state only a config-zone Read and SelfTest still run.
        if command.opcode == Opcode.SELF_TEST:
            return True
        return command.opcode == Opcode.READ and command.param1 & 0x03 == 0

    # --- power transitions --------------------------------------------------------------------
    def lose_volatile(self) -> None:
        """Sleep or watchdog expiry: SRAM contents are gone (§1.8)."""
        self.volatile = Volatile()

    def power_loss(self) -> None:
        """Power cycle or brown-out: SRAM and the persistent latch are gone; health recovers."""
        self.lose_volatile()
        self.latch = False
        self.health_latched = False
        self.health_clears_on_sleep = False

    def wake_self_test(self, power_on_test: bool) -> None:
        """At wake from sleep, failed tests run again and clear if they now pass (§10.2)."""
        rerun = self.failure | (SELFTEST_ALL if power_on_test else 0)
        self.failure = (rerun & self.selftest_broken) | self.failure_at_wake
        self.failure_at_wake = 0

    # --- RNG ------------------------------------------------------------------------------------
    def _rng_block(self, opcode: int) -> bytes | None:
        """32 bytes from the noise source, or None when the health test has failed (§5)."""
        if self.health_latched:
            return None
        clears_on_sleep = self._health_trips()
        if clears_on_sleep is not None:
            self.health_latched = True  # until a power cycle (decision 16), or sleep if asked
            self.health_clears_on_sleep = clears_on_sleep
            return None
        self.volatile.sram_rng = True
        if not self.memory.config_locked:
            return TEST_PATTERN  # §5: the diagnostic pattern until the config zone is locked
        return self._rng_bytes(opcode)

    def _random(self, cmd: Command) -> bytes:
        # Decision 14: mode 0x00 and 0x01 alike; anything else, or param2 != 0, is a parse error.
        if cmd.param1 not in (0x00, 0x01) or cmd.param2 or cmd.data:
            return PARSE_ERROR
        block = self._rng_block(Opcode.RANDOM)
        if block is None:
            return HEALTH_ERROR
        if cmd.param1 == 0x00:
            self.volatile.eeprom_rng = True
        return block

    # --- Info (§6) ------------------------------------------------------------------------------
    def _info(self, cmd: Command) -> bytes:
        if cmd.data:
            return PARSE_ERROR
        mode, param2 = cmd.param1, cmd.param2
        if mode == 0x00:
            return bytes(self.memory.config[4:8])  # RevNum equals the Info revision
        if mode == 0x01:
            if param2 > 15:
                return PARSE_ERROR
            return bytes((int(self.private_key(param2) is not None), 0, 0, 0))  # decision 17
        if mode == 0x02:
            return self._info_state()
        if mode == 0x04:
            if param2 == 0x0000:
                return bytes((int(self.latch), 0, 0, 0))  # decision 20
            if param2 in (0x0002, 0x0003):
                self.latch = param2 == 0x0003
                return SUCCESS
            return PARSE_ERROR
        return PARSE_ERROR  # mode 3 GPIO on an I2C part (decision 19), or unknown modes

    def _info_state(self) -> bytes:
        tk = self.volatile.tempkey
        byte0 = (
            (tk.key_id & 0x0F)
            | tk.source_input << 4
            | tk.gen_dig << 5
            | tk.gen_key << 6
            | tk.no_mac << 7
        )
        byte1 = self.volatile.eeprom_rng | self.volatile.sram_rng << 1 | tk.valid << 7
        return bytes((byte0, byte1, 0, 0))  # decision 18

    # --- Read / Write (§7.2, §7.3) --------------------------------------------------------------
    def _read(self, cmd: Command) -> bytes:
        if cmd.param1 & ~0x83 or cmd.data:
            return PARSE_ERROR
        zone = cmd.param1 & 0x03
        wide = bool(cmd.param1 & 0x80)
        span = self._locate(zone, cmd.param2, wide)
        if isinstance(span, bytes):
            return span
        memory = self.memory
        if zone == 0:
            return bytes(memory.config[span])
        if not memory.data_locked:
            return EXECUTION_ERROR  # §7.3 / decision 21: data and OTP unreadable until locked
        if zone == 1:
            return bytes(memory.otp[span])
        slot = (cmd.param2 >> 3) & 0x0F
        slot_config = memory.slot_config(slot)
        if slot_config & (_SLOTCONFIG_IS_SECRET | _SLOTCONFIG_ENCRYPT_READ):
            return EXECUTION_ERROR  # clear reads of secret slots are refused
        if memory.holds_p256_private_key(slot):
            return EXECUTION_ERROR  # §7.3 / §10.3: a private key never leaves the chip
        chunk = bytes(memory.data[span])
        return chunk.ljust(32 if wide else 4, b"\x00")

    def _locate(self, zone: int, address: int, wide: bool) -> slice | bytes:
        """The byte range an address names, or a parse-error payload (decision 23)."""
        width = 32 if wide else 4
        if zone in (0, 1):
            words = _CONFIG_WORDS if zone == 0 else _OTP_WORDS
            if address >= words:
                return PARSE_ERROR
            # 32-byte access ignores the word offset bits (decision 23)
            start = (address & ~0x07) * 4 if wide else address * 4
            return slice(start, start + width)
        if zone == 2:
            slot = (address >> 3) & 0x0F
            block = address >> 8
            offset = address & 0x07
            slot_start, size = Memory.slot_span(slot)
            start = block * 32 + (0 if wide else offset * 4)
            if start >= size or (not wide and start + 4 > size):
                return PARSE_ERROR
            end = min(start + width, size)
            return slice(slot_start + start, slot_start + end)
        return PARSE_ERROR

    def _write(self, cmd: Command) -> bytes:
        if cmd.param1 & ~0xC3:
            return PARSE_ERROR
        zone = cmd.param1 & 0x03
        wide = bool(cmd.param1 & 0x80)
        encrypted = bool(cmd.param1 & 0x40)
        width = 32 if wide else 4
        if len(cmd.data) != width + (32 if encrypted else 0):
            return PARSE_ERROR
        span = self._locate(zone, cmd.param2, wide)
        if isinstance(span, bytes):
            return span
        if encrypted:
            return EXECUTION_ERROR  # needs a GenDig-derived TempKey, which is not modelled yet
        memory = self.memory
        value = cmd.data[:width]
        if zone == 0:
            if memory.config_locked:
                return EXECUTION_ERROR
            # Decision 22: bytes 0-15, word 0x15 (84-87) and blocks 0 and 2 only change through
            # manufacturing, UpdateExtra and Lock.
            start = span.start
            if start < 16 or (not wide and start == 84) or (wide and start in (0, 64)):
                return EXECUTION_ERROR
            memory.config[span] = value
            return SUCCESS
        if not memory.config_locked:
            return EXECUTION_ERROR  # §7.3: no data/OTP writes before the config lock
        if not memory.data_locked:
            if not wide:
                return EXECUTION_ERROR  # §7.3: 32-byte writes only while data is unlocked
            target = memory.otp if zone == 1 else memory.data
            target[span] = value[: span.stop - span.start]
            return SUCCESS
        if zone == 1:
            return EXECUTION_ERROR  # OTP is read-only once the data/OTP zone is locked
        slot = (cmd.param2 >> 3) & 0x0F
        if not self._clear_write_allowed(slot):
            return EXECUTION_ERROR
        memory.data[span] = value[: span.stop - span.start]
        return SUCCESS

    def _clear_write_allowed(self, slot: int) -> bool:
        memory = self.memory
        if memory.slot_locked(slot):
            return False
        key_config = memory.key_config(slot)
        key_type = (key_config >> _KEYCONFIG_KEYTYPE_SHIFT) & 0x07
        if key_config & _KEYCONFIG_PRIVATE and key_type == _KEYTYPE_P256:
            return False  # private keys change only through GenKey / PrivWrite
        write_config = memory.slot_config(slot) >> _SLOTCONFIG_WRITE_CONFIG_SHIFT
        # ATECC508A/608 WriteConfig for Write: 0000 Always, 0001 PubInvalid; x1xx needs
        # encryption; the remaining codes mean Never.
        return write_config in (0b0000, 0b0001)

    # --- Lock (§7.5) --------------------------------------------------------------------------
    def _lock(self, cmd: Command) -> bytes:
        if cmd.param1 & 0x40 or cmd.data:
            return PARSE_ERROR  # decision 25
        zone = cmd.param1 & 0x03
        check_summary = not cmd.param1 & 0x80
        memory = self.memory
        if zone == 0:
            if memory.config_locked:
                return EXECUTION_ERROR
            if check_summary and crc16(memory.config) != cmd.param2:
                return EXECUTION_ERROR  # decision 24
            memory.config[LOCK_CONFIG_BYTE] = 0x00
            memory.load_counters_from_config()
            return SUCCESS
        if zone == 1:
            if not memory.config_locked or memory.data_locked:
                return EXECUTION_ERROR
            if check_summary and crc16(bytes(memory.data) + bytes(memory.otp)) != cmd.param2:
                return EXECUTION_ERROR
            memory.config[LOCK_VALUE_BYTE] = 0x00
            return SUCCESS
        if zone == 2:
            slot = (cmd.param1 >> 2) & 0x0F
            lockable = memory.key_config(slot) & _KEYCONFIG_LOCKABLE
            if not memory.data_locked or not lockable or memory.slot_locked(slot):
                return EXECUTION_ERROR
            memory.lock_slot(slot)  # decision 26: no summary check in slot mode
            return SUCCESS
        return PARSE_ERROR  # zone value 3

    # --- UpdateExtra and Counter (§8) ---------------------------------------------------------
    def _update_extra(self, cmd: Command) -> bytes:
        if cmd.data or cmd.param2 > 0xFF:
            return PARSE_ERROR
        if cmd.param1 not in (0, 1):
            # Mode 2 (limited-use counter decrement) is not modelled: an unsupported request.
            return PARSE_ERROR
        offset = USER_EXTRA_BYTE if cmd.param1 == 0 else USER_EXTRA_ADD_BYTE
        if self.memory.config[offset] != 0x00:
            return EXECUTION_ERROR  # decision 27: each byte can be set once
        self.memory.config[offset] = cmd.param2
        return SUCCESS

    def _counter(self, cmd: Command) -> bytes:
        if cmd.param1 not in (0, 1) or cmd.param2 > 1 or cmd.data:
            return PARSE_ERROR
        if not self.memory.config_locked:
            return EXECUTION_ERROR  # §7.3: counters work only once the config is locked
        counters = self.memory.counters
        if cmd.param1 == 1:
            if counters[cmd.param2] >= COUNTER_MAX:
                return EXECUTION_ERROR
            counters[cmd.param2] += 1
        return counters[cmd.param2].to_bytes(4, "little")

    # --- SHA (§9) -------------------------------------------------------------------------------
    def _sha(self, cmd: Command) -> bytes:
        mode = cmd.param1 & 0x07
        target = cmd.param1 & 0xC0
        volatile = self.volatile
        if cmd.param1 & 0x38 or (target and mode != 0x02):
            return PARSE_ERROR
        if mode == 0x00:
            if cmd.param2 or cmd.data:
                return PARSE_ERROR
            volatile.sha = hashlib.sha256()
            return SUCCESS
        if mode in (0x01, 0x02):
            if cmd.param2 != len(cmd.data) or len(cmd.data) > _SHA_BLOCK:
                return PARSE_ERROR  # decision 29: count must equal param2
            if mode == 0x01 and not cmd.data:
                return PARSE_ERROR
            if volatile.sha is None:
                return EXECUTION_ERROR  # decision 29: no Start
            volatile.sha.update(cmd.data)
            if mode == 0x01:
                return SUCCESS
            digest = volatile.sha.digest()
            volatile.sha = None
            if target == 0x00:
                volatile.tempkey = TempKey(value=digest, valid=True, source_input=True)
            elif target == 0x40:
                volatile.message_digest = digest
            return digest
        # Public (3), HMAC (4, 5) and context read/write (6, 7) are not modelled yet.
        return PARSE_ERROR

    # --- Nonce (§10.1) ------------------------------------------------------------------------
    def _nonce(self, cmd: Command) -> bytes:
        mode = cmd.param1 & 0x03
        target = cmd.param1 & 0xC0
        wide_input = bool(cmd.param1 & 0x20)
        if cmd.param1 & 0x1C or cmd.param2 & 0x7FFF:
            return PARSE_ERROR
        if mode == 0x03:
            if len(cmd.data) != (64 if wide_input else 32) or target == 0xC0:
                return PARSE_ERROR
            value = bytes(cmd.data)
            if target == 0x00:
                self.volatile.tempkey = TempKey(value=value, valid=True, source_input=True)
            elif target == 0x40:
                self.volatile.message_digest = value
            else:
                self.volatile.alternate_key = value
            return SUCCESS
        if mode == 0x02 or target or wide_input or len(cmd.data) != _NONCE_NUMIN_SIZE:
            return PARSE_ERROR
        rand_out = self._rng_block(Opcode.NONCE)
        if rand_out is None:
            return HEALTH_ERROR
        if mode == 0x00:
            self.volatile.eeprom_rng = True
        # §10.1: TempKey = SHA-256(RandOut ‖ NumIn ‖ 0x16 ‖ mode ‖ LSB of param2)
        message = rand_out + cmd.data + bytes((Opcode.NONCE, cmd.param1, cmd.param2 & 0xFF))
        tempkey = hashlib.sha256(message).digest()
        self.volatile.tempkey = TempKey(value=tempkey, valid=True, source_input=False)
        # 608: param2 bit 15 (TempKey calculation mode) returns TempKey itself
        return tempkey if cmd.param2 & 0x8000 else rand_out

    # --- SelfTest (§10.2) ---------------------------------------------------------------------
    def _self_test(self, cmd: Command) -> bytes:
        if cmd.param2 or cmd.data or cmd.param1 & ~SELFTEST_ALL:
            return PARSE_ERROR
        if cmd.param1 == 0x00:
            return bytes((self.failure,))  # read the failure register
        failed = cmd.param1 & self.selftest_broken
        self.failure = (self.failure & ~cmd.param1) | failed
        return bytes((failed,))

    # --- keys and ECC: GenKey, Sign, Verify, ECDH (§10.3, decision 30) ------------------------
    # Parse errors (0x03) come first, whatever the state (§3): an unmodelled mode, a key id above
    # 15 (0xFFFF, the 608's TempKey target, is not modelled), or a wrong data length (decision 7).
    # Then the state (0x0F): §7.3 / §10.3 "fails with 0x0F while the zones are unlocked"; a slot
    # that is not a P-256 private key, a permission bit that is clear, no valid key, or no digest
    # (decision 30).

    def private_key(self, slot: int) -> int | None:
        """The valid P-256 private key a slot holds (KeyConfig Private + KeyType 4), or None."""
        memory = self.memory
        if not memory.holds_p256_private_key(slot):
            return None
        scalar = memory.private_scalar(slot)
        return scalar if ecc.valid_scalar(scalar) else None

    def _genkey(self, cmd: Command) -> bytes:
        mode, slot = cmd.param1, cmd.param2
        if mode not in (_GENKEY_PUBLIC, _GENKEY_PRIVATE) or slot > _MAX_SLOT or cmd.data:
            return PARSE_ERROR  # digest (0x08), public-key digest (0x10), MAC: not modelled
        memory = self.memory
        if not memory.config_locked or not memory.holds_p256_private_key(slot):
            return EXECUTION_ERROR
        if mode == _GENKEY_PUBLIC:
            scalar = self.private_key(slot)
            if scalar is None or not memory.key_config(slot) & _KEYCONFIG_PUBINFO:
                return EXECUTION_ERROR  # PubInfo = 0: the public key may never be computed
            return ecc.public_key(scalar)
        if memory.data_locked and (
            not memory.slot_config(slot) & _SLOTCONFIG_GENKEY or memory.slot_locked(slot)
        ):
            # Once the data zone is locked GenKey needs WriteConfig bit 1 and an unlocked slot;
            # before that, any P-256 private-key slot may get a key (ATECC508A datasheet).
            return EXECUTION_ERROR
        block = self._rng_block(Opcode.GENKEY)
        if block is None:
            return HEALTH_ERROR
        scalar = ecc.scalar_from_block(block)
        memory.store_private_scalar(slot, scalar)
        return ecc.public_key(scalar)

    def _signing_key(self, slot: int, permission: int) -> int | None:
        """The key of a fully locked chip's slot, if SlotConfig grants ``permission``."""
        memory = self.memory
        if not (memory.config_locked and memory.data_locked):
            return None  # [I] Sign and ECDH use stored keys only once both zones are locked
        if not memory.slot_config(slot) & permission:
            return None
        return self.private_key(slot)

    def _external_digest(self, msgdigbuf: bool) -> bytes | None:
        """The digest Nonce pass-through (or SHA End) loaded; None if there is none (0x0F).

        TempKey must be valid with SourceFlag = Input: a random Nonce's TempKey is refused. The
        source is not consumed [I]: the same digest can be signed or verified again.
        """
        if msgdigbuf:
            buffer = self.volatile.message_digest
            return None if buffer is None else buffer[:_DIGEST_SIZE]
        tempkey = self.volatile.tempkey
        if not (tempkey.valid and tempkey.source_input):
            return None
        return tempkey.value[:_DIGEST_SIZE]

    def _sign(self, cmd: Command) -> bytes:
        mode, slot = cmd.param1, cmd.param2
        external = mode & ~_SOURCE_MSGDIGBUF == _SIGN_EXTERNAL
        internal = mode in (0x00, 0x40)  # bit 6: include the serial number
        if not (external or internal) or slot > _MAX_SLOT or cmd.data:
            return PARSE_ERROR
        if not self.memory.config_locked:
            return EXECUTION_ERROR
        if internal:
            # Internal Sign needs a TempKey made by GenDig or GenKey, which this emulator does not
            # model, so its prerequisite can never be met: 0x0F, as on a chip without one.
            return EXECUTION_ERROR
        scalar = self._signing_key(slot, _SLOTCONFIG_EXTERNAL_SIGN)
        digest = self._external_digest(bool(mode & _SOURCE_MSGDIGBUF))
        if scalar is None or digest is None:
            return EXECUTION_ERROR
        return ecc.sign_digest(scalar, digest)

    def _verify(self, cmd: Command) -> bytes:
        if cmd.param1 & ~_SOURCE_MSGDIGBUF != _VERIFY_EXTERNAL:
            return PARSE_ERROR  # stored, validate, invalidate and MAC modes: not modelled
        size = ecc.SIGNATURE_SIZE + ecc.PUBLIC_KEY_SIZE
        if cmd.param2 != _VERIFY_KEY_TYPE_P256 or len(cmd.data) != size:
            return PARSE_ERROR
        if not self.memory.config_locked:
            return EXECUTION_ERROR
        digest = self._external_digest(bool(cmd.param1 & _SOURCE_MSGDIGBUF))
        if digest is None:
            return EXECUTION_ERROR
        signature, public = cmd.data[: ecc.SIGNATURE_SIZE], cmd.data[ecc.SIGNATURE_SIZE :]
        verified = ecc.verify_digest(public, digest, signature)
        if verified is None:
            return EXECUTION_ERROR  # [I] a public key that is not on P-256 cannot be used
        return SUCCESS if verified else MISCOMPARE

    def _ecdh(self, cmd: Command) -> bytes:
        mode, slot = cmd.param1, cmd.param2
        if mode & ~0x0F or slot > _MAX_SLOT or len(cmd.data) != ecc.PUBLIC_KEY_SIZE:
            return PARSE_ERROR
        if mode & _ECDH_ENCRYPT_OUTPUT:
            # §10.3 names the encrypted output (secret + nonce) but not the cipher: not modelled.
            return PARSE_ERROR
        memory = self.memory
        if not memory.config_locked or mode & _ECDH_SOURCE_TEMPKEY:
            return EXECUTION_ERROR  # TempKey never holds a private key here (GenKey 0xFFFF)
        scalar = self._signing_key(slot, _SLOTCONFIG_ECDH)
        if scalar is None:
            return EXECUTION_ERROR
        copy = mode & _ECDH_COPY_MASK
        if copy == _ECDH_COPY_COMPATIBLE:
            # Legacy mode: SlotConfig b3 sends the secret to slot + 1, else it is output in clear.
            to_next = memory.slot_config(slot) & _SLOTCONFIG_ECDH_TO_NEXT
            copy = _ECDH_COPY_SLOT if to_next else _ECDH_COPY_OUTPUT
        protection = (memory.chip_options >> _CHIPOPTIONS_ECDH_PROTECTION_SHIFT) & 0x03
        if copy == _ECDH_COPY_OUTPUT and protection:
            return EXECUTION_ERROR  # ChipOptions forbids the secret in clear
        if copy == _ECDH_COPY_SLOT and (
            slot == _MAX_SLOT  # there is no slot 16
            # [I] never over a private key or a locked slot: the secret is known to the host,
            # so writing it over a key would hand that key (all but 4 bytes) to the caller
            or memory.holds_p256_private_key(slot + 1)
            or memory.slot_locked(slot + 1)
        ):
            return EXECUTION_ERROR
        secret = ecc.ecdh(scalar, cmd.data)
        if secret is None:
            return EXECUTION_ERROR  # [I] the peer's key is not on P-256
        if copy == _ECDH_COPY_OUTPUT:
            return secret
        if copy == _ECDH_COPY_TEMPKEY:
            self.volatile.tempkey = TempKey(value=secret, valid=True, key_id=slot)
        else:
            start, _size = Memory.slot_span(slot + 1)
            memory.data[start : start + len(secret)] = secret
        return SUCCESS

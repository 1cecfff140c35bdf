"""The typed control surface of the emulated chip, separate from the bytes on the bus.

Tests use it the way Zephyr tests use an emulator's backend API: set lock presets, power-cycle,
script the noise source, inject chip faults and inspect state, without sending a single command.
Nothing here is reachable from the bus.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sim.atecc608a import ecc
from sim.atecc608a.faults import ChipFault, SelfTestFailure
from sim.atecc608a.memory import (
    KEY_CONFIG_OFFSET,
    LOCK_CONFIG_BYTE,
    LOCK_VALUE_BYTE,
    SLOT_CONFIG_OFFSET,
    UNLOCKED,
)

if TYPE_CHECKING:
    from sim.atecc608a.chip import ATECC608A, _InstalledFault

__all__ = [
    "ChipControl",
    "ChipState",
    "CommandRecord",
    "FaultHandle",
    "LockState",
    "apply_lock_state",
]

_LOCKED = 0x00  # §7.4

# §11 / engine.py: what configure_private_key_slot composes.
_SC_EXTERNAL_SIGN, _SC_INTERNAL_SIGN, _SC_ECDH, _SC_ECDH_TO_NEXT = 0x01, 0x02, 0x04, 0x08
_SC_IS_SECRET = 0x0080
_SC_GENKEY = 0x2000  # WriteConfig bit 1 (see engine.py)
_KC_PRIVATE_P256_LOCKABLE = 0x0031  # Private, KeyType 4, Lockable
_KC_PUBINFO = 0x0002


class LockState(enum.Enum):
    """Lock presets (§7.4): which of LockConfig (byte 87) and LockValue (byte 86) are 0x00."""

    UNLOCKED = "unlocked"
    CONFIG_LOCKED = "config-locked"
    LOCKED = "locked"

    @classmethod
    def parse(cls, value: LockState | str) -> LockState:
        """The preset a value names; anything else raises ValueError listing the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown lock state {value!r}; choose one of {choices}") from None


def apply_lock_state(config: bytearray, preset: LockState) -> None:
    """Write a preset's LockConfig (byte 87) and LockValue (byte 86) into a config image."""
    config[LOCK_CONFIG_BYTE] = UNLOCKED if preset is LockState.UNLOCKED else _LOCKED
    config[LOCK_VALUE_BYTE] = _LOCKED if preset is LockState.LOCKED else UNLOCKED


@dataclass(frozen=True)
class CommandRecord:
    """One command the chip parsed: what came in and the shape of what went out.

    Response payloads are not kept (they may be random bytes); ``status`` is the status byte of
    a 4-byte group, None for a data response or when there was no response at all.
    """

    t: float
    opcode: int | None
    param1: int | None
    param2: int | None
    data_length: int
    status: int | None
    response_length: int
    faults: tuple[str, ...]


PowerState = Literal["sleep", "idle", "waking", "busy", "awake"]
_POWER_STATES: dict[str, PowerState] = {"sleep": "sleep", "idle": "idle", "awake": "awake"}


@dataclass(frozen=True)
class ChipState:
    """A snapshot of the chip for assertions."""

    power: PowerState
    config_locked: bool
    data_locked: bool
    failure: int  # latched self-test failure bitmap; non-zero means Failure state
    health_failed: bool
    latch: bool
    tempkey_valid: bool
    sha_in_progress: bool
    pending_input: bytes
    output: bytes
    read_pointer: int
    watchdog_remaining_s: float | None
    moved_to_address: int | None
    counters: tuple[int, int]
    commands_executed: int


@dataclass(frozen=True)
class FaultHandle:
    """What :meth:`ChipControl.inject` returns; pass it to :meth:`ChipControl.remove`."""

    fault: ChipFault
    _installed: _InstalledFault

    @property
    def fired(self) -> int:
        """How many commands (or wake pulses) the fault has affected so far."""
        return self._installed.fired

    @property
    def active(self) -> bool:
        return self._installed.remaining != 0


class ChipControl:
    """Test-side handle on one :class:`~sim.atecc608a.chip.ATECC608A` (``chip.control``)."""

    def __init__(self, chip: ATECC608A) -> None:
        self._chip = chip

    # --- inspection ---------------------------------------------------------------------------
    def state(self) -> ChipState:
        chip = self._chip
        with chip._lock:
            now = chip._clock.monotonic()
            chip._advance(now)
            power: PowerState = _POWER_STATES[chip._power.value]
            remaining: float | None = None
            if power == "awake":
                remaining = chip._wake_at + chip._watchdog_s - now
                if now < chip._ready_at:
                    power = "waking"
                elif now < chip._busy_until:
                    power = "busy"
            engine, memory = chip._engine, chip._memory
            return ChipState(
                power=power,
                config_locked=memory.config_locked,
                data_locked=memory.data_locked,
                failure=engine.failure,
                health_failed=engine.health_latched,
                latch=engine.latch,
                tempkey_valid=engine.volatile.tempkey.valid,
                sha_in_progress=engine.volatile.sha is not None,
                pending_input=bytes(chip._input),
                output=chip._output,
                read_pointer=chip._pointer,
                watchdog_remaining_s=remaining,
                moved_to_address=chip._moved_to,
                counters=(memory.counters[0], memory.counters[1]),
                commands_executed=chip._commands_executed,
            )

    def commands(self) -> list[CommandRecord]:
        """Every command parsed since construction (the newest 4,096)."""
        with self._chip._lock:
            return list(self._chip._log)

    @property
    def config(self) -> bytes:
        with self._chip._lock:
            return bytes(self._chip._memory.config)

    @property
    def otp(self) -> bytes:
        with self._chip._lock:
            return bytes(self._chip._memory.otp)

    @property
    def data(self) -> bytes:
        with self._chip._lock:
            return bytes(self._chip._memory.data)

    # --- keys (§10.3) ----------------------------------------------------------------------------
    # The private key itself is never handed out: tests see what a host may learn (the public
    # key, whether a key is valid) plus a manufacturing-style way to install a known key.

    def private_key_slots(self) -> tuple[int, ...]:
        """Slots whose KeyConfig says P-256 private key (Private = 1, KeyType = 4).

        On the factory image (§12), and so on every ``lock=`` preset: slots 0, 1 and 2.
        """
        with self._chip._lock:
            memory = self._chip._memory
            return tuple(slot for slot in range(16) if memory.holds_p256_private_key(slot))

    def has_private_key(self, slot: int) -> bool:
        """Whether the slot holds a valid P-256 private key (Info KeyValid, decision 17)."""
        _check_slot(slot)
        with self._chip._lock:
            return self._chip._engine.private_key(slot) is not None

    def public_key(self, slot: int) -> bytes | None:
        """The 64-byte X || Y public key of the slot's private key, or None if it holds none."""
        _check_slot(slot)
        with self._chip._lock:
            scalar = self._chip._engine.private_key(slot)
        return None if scalar is None else ecc.public_key(scalar)

    def set_private_key(self, slot: int, key: int | bytes) -> bytes:
        """Install a known private key (manufacturing-style, like an unchecked PrivWrite).

        The slot must already be a P-256 private-key slot; locks and permissions are bypassed.
        Returns the public key (X || Y), so a test can compute host-side answers.
        """
        _check_slot(slot)
        scalar = int.from_bytes(key, "big") if isinstance(key, bytes) else key
        if isinstance(key, bytes) and len(key) != ecc.KEY_SIZE:
            raise ValueError(f"a private key is {ecc.KEY_SIZE} bytes, got {len(key)}")
        if not ecc.valid_scalar(scalar):
            raise ValueError("a P-256 private key must lie in 1..n-1")
        with self._chip._lock:
            memory = self._chip._memory
            if not memory.holds_p256_private_key(slot):
                raise ValueError(f"slot {slot} is not configured as a P-256 private-key slot")
            memory.store_private_scalar(slot, scalar)
        return ecc.public_key(scalar)

    def configure_private_key_slot(
        self,
        slot: int,
        *,
        external_sign: bool = True,
        internal_sign: bool = True,
        ecdh: bool = True,
        ecdh_to_next: bool = False,
        genkey: bool = True,
        pub_info: bool = True,
    ) -> None:
        """Make ``slot`` a P-256 private-key slot (SlotConfig/KeyConfig), bypassing the locks.

        SlotConfig gets IsSecret plus the chosen ReadKey bits (b0 external sign, b1 internal
        sign, b2 ECDH, b3 ECDH to slot + 1) and WriteConfig bit 1 (bit 13, GenKey); KeyConfig
        Private, KeyType 4, Lockable and PubInfo. Slot 0 with the defaults minus ECDH is the
        factory's 0x2083 / 0x0033.
        """
        _check_slot(slot)
        slot_config = (
            _SC_IS_SECRET
            | (_SC_EXTERNAL_SIGN if external_sign else 0)
            | (_SC_INTERNAL_SIGN if internal_sign else 0)
            | (_SC_ECDH if ecdh else 0)
            | (_SC_ECDH_TO_NEXT if ecdh_to_next else 0)
            | (_SC_GENKEY if genkey else 0)
        )
        key_config = _KC_PRIVATE_P256_LOCKABLE | (_KC_PUBINFO if pub_info else 0)
        self.write_config(SLOT_CONFIG_OFFSET + 2 * slot, slot_config.to_bytes(2, "little"))
        self.write_config(KEY_CONFIG_OFFSET + 2 * slot, key_config.to_bytes(2, "little"))

    # --- presets and power --------------------------------------------------------------------
    def set_lock_state(self, state: LockState | str) -> None:
        """Set LockConfig/LockValue directly, as a chip provisioned elsewhere would have them.

        Locking the config zone this way starts the counters from their encoded values, as the
        Lock command does.
        """
        preset = LockState.parse(state)
        with self._chip._lock:
            memory = self._chip._memory
            was_config_locked = memory.config_locked
            apply_lock_state(memory.config, preset)
            if memory.config_locked and not was_config_locked:
                memory.load_counters_from_config()

    def write_config(self, offset: int, data: bytes) -> None:
        """Overwrite config bytes, bypassing every access rule (manufacturing-style)."""
        if offset < 0 or offset + len(data) > 128:
            raise ValueError(f"config bytes {offset}..{offset + len(data) - 1} lie outside 0..127")
        with self._chip._lock:
            self._chip._memory.config[offset : offset + len(data)] = data

    def set_i2c_address(self, address: int) -> None:
        """Program I2C_Address (byte 16); like on the chip it applies at the next sleep (§1.1)."""
        if not 0x01 <= address <= 0x7F:
            raise ValueError(f"I2C address must be 7-bit 0x01..0x7F, got 0x{address:02X}")
        self.write_config(16, bytes((address << 1,)))

    def power_cycle(self) -> None:
        """Remove and restore power: asleep, SRAM, latch and health-test latch cleared."""
        with self._chip._lock:
            self._chip._power_loss()

    def script_random(self, *blocks: bytes) -> None:
        """Queue exact 32-byte noise-source outputs for the next RNG commands (locked chip).

        Random, Nonce (random modes) and GenKey (mode 0x04: the key is the block reduced into
        1..n-1) each take one block.
        """
        for block in blocks:
            if len(block) != 32:
                raise ValueError(f"scripted RNG output must be 32 bytes, got {len(block)}")
        with self._chip._lock:
            self._chip._scripted.extend(bytes(b) for b in blocks)

    # --- faults -----------------------------------------------------------------------------------
    def inject(self, fault: ChipFault) -> FaultHandle:
        if not isinstance(fault, ChipFault):
            raise TypeError(f"expected a sim.atecc608a fault, got {type(fault).__name__}")
        from sim.atecc608a.chip import _InstalledFault  # noqa: PLC0415 (cycle: chip uses us)

        chip = self._chip
        with chip._lock:
            chip._advance(chip._clock.monotonic())  # the watchdog may have put it to sleep
            engine = chip._engine
            installed = _InstalledFault(fault)
            chip._faults.append(installed)
            if isinstance(fault, SelfTestFailure):
                if fault.persistent:
                    # Broken hardware: every run of these tests fails until the fault is removed.
                    engine.selftest_broken |= fault.tests
                    engine.failure |= fault.tests
                    installed.fired += 1
                else:
                    if chip._power.value == "sleep":
                        # A sleeping chip fails the self-test of its next wake (wake group
                        # 04 07 40 C2, decision 2); the wake after that passes again.
                        engine.failure_at_wake |= fault.tests
                    else:
                        engine.failure |= fault.tests  # clears when the tests run again
                    chip._retire(installed)  # the failure has happened; its state lives on
            return FaultHandle(fault, installed)

    def remove(self, handle: FaultHandle) -> None:
        """Uninstall a fault; a spent one (used up, or latched) is already gone."""
        chip = self._chip
        with chip._lock:
            if handle._installed in chip._faults:
                chip._faults.remove(handle._installed)
                self._forget(handle.fault)

    def clear_faults(self) -> None:
        """Remove every injected fault.

        Latched chip states (a failed health test, Failure state) persist until what clears
        them on real silicon: a power cycle, or a wake whose self-test passes.
        """
        chip = self._chip
        with chip._lock:
            for installed in chip._faults:
                self._forget(installed.fault)
            chip._faults.clear()

    @property
    def faults(self) -> tuple[ChipFault, ...]:
        with self._chip._lock:
            return tuple(installed.fault for installed in self._chip._faults)

    def _forget(self, fault: ChipFault) -> None:
        if isinstance(fault, SelfTestFailure) and fault.persistent:
            self._chip._engine.selftest_broken &= ~fault.tests


def _check_slot(slot: int) -> None:
    if not 0 <= slot <= 15:
        raise ValueError(f"slot must be 0..15, got {slot}")

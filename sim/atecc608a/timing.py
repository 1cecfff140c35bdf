"""How long the emulated chip takes: wake delay, watchdog, and per-opcode busy times.

Three models (spec §4 and decision 13): ``typical`` (the default: rates look like a real chip),
``maximum`` (the datasheet's M0/M1/M2 maxima, for worst-case tests) and ``instant`` (no busy time
or wake delay, for unit tests). Busy time is what the chip spends NACKing after a command; the
watchdog budget check always uses the maximum column, as the silicon does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sim.atecc608a.constants import Opcode

__all__ = ["CLOCK_DIVIDERS", "EXEC_MAX_MS", "TimingModel"]

# ChipMode bits 7:3 (§11): clock divider M0 = 0x00, M1 = 0x28, M2 = 0x68 (byte values).
CLOCK_DIVIDERS: Mapping[int, int] = MappingProxyType({0x00: 0, 0x28: 1, 0x68: 2})

# §4: cryptoauthlib maximum execution times in ms at clock divider M0, M1, M2.
EXEC_MAX_MS: Mapping[int, tuple[float, float, float]] = MappingProxyType(
    {
        Opcode.READ: (5, 5, 5),
        Opcode.MAC: (55, 55, 55),
        Opcode.WRITE: (45, 45, 45),
        Opcode.GENDIG: (25, 35, 35),
        Opcode.NONCE: (20, 20, 20),
        Opcode.LOCK: (35, 35, 35),
        Opcode.RANDOM: (23, 23, 23),
        Opcode.DERIVE_KEY: (50, 50, 50),
        Opcode.UPDATE_EXTRA: (10, 10, 10),
        Opcode.COUNTER: (25, 25, 25),
        Opcode.CHECK_MAC: (40, 40, 40),
        Opcode.INFO: (5, 5, 5),
        Opcode.GENKEY: (115, 215, 653),
        Opcode.SIGN: (115, 220, 665),
        Opcode.ECDH: (75, 172, 531),
        Opcode.VERIFY: (105, 295, 1085),
        Opcode.PRIV_WRITE: (50, 50, 50),
        Opcode.SHA: (36, 42, 75),
        Opcode.AES: (27, 27, 27),
        Opcode.KDF: (165, 165, 165),
        Opcode.SELF_TEST: (250, 625, 2324),
        Opcode.SECURE_BOOT: (80, 160, 480),
    }
)

# Decision 13: typical busy times, well below the M0 maxima. Opcodes not listed use their M0
# maximum. Nonce runs the RNG and a SHA-256; UpdateExtra and Counter increment write EEPROM;
# SelfTest runs several engines ([I], below its 250 ms maximum).
_TYPICAL_MS: Mapping[int, float] = MappingProxyType(
    {
        Opcode.RANDOM: 2.0,
        Opcode.INFO: 0.5,
        Opcode.READ: 0.5,
        Opcode.WRITE: 8.0,
        Opcode.LOCK: 10.0,
        Opcode.SHA: 0.5,
        Opcode.NONCE: 2.0,
        Opcode.UPDATE_EXTRA: 8.0,
        Opcode.COUNTER: 5.0,
        Opcode.SELF_TEST: 30.0,
    }
)

# An unknown opcode or a bad CRC is answered after parsing only ([I]): a short fixed time.
_PARSE_MS_TYPICAL = 0.1
_PARSE_MS_MAXIMUM = 1.0
_UNKNOWN_OPCODE_MAX_MS = 5.0


@dataclass(frozen=True)
class TimingModel:
    """Frozen timing parameters of one emulated chip.

    ``busy_ms`` overrides per-opcode busy times; ``jitter`` makes each busy time a uniform draw
    between the model's value and the maximum at the chip's clock divider (decision 13's
    "optional random jitter"), from the chip's seed when it has one. The watchdog is 1.3 s in
    every model; ``replace(model, watchdog_s=0.7)`` gives the datasheet minimum (§1.7).
    """

    name: str
    wake_delay_s: float
    watchdog_s: float = 1.3  # §1.7: 1.3 s typical (0.7 min, 1.7 max); ChipMode bit 2 -> x10
    parse_s: float = _PARSE_MS_TYPICAL / 1000
    use_maximum: bool = False
    zero_busy: bool = False
    jitter: bool = False
    busy_ms: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for name in ("wake_delay_s", "watchdog_s", "parse_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"TimingModel.{name} must be >= 0, got {value!r}")
        if self.watchdog_s == 0:
            raise ValueError("TimingModel.watchdog_s must be > 0")
        object.__setattr__(self, "busy_ms", MappingProxyType(dict(self.busy_ms)))

    @classmethod
    def typical(cls) -> TimingModel:
        """Decision 13's default: ready 800 µs after the wake pulse, typical busy times.

        Derive variants with :func:`dataclasses.replace`, e.g. ``replace(m, jitter=True)``.
        """
        return cls(name="typical", wake_delay_s=800e-6)

    @classmethod
    def maximum(cls) -> TimingModel:
        """Datasheet worst case: 1500 µs wake delay (tWHI), the maxima of §4 as busy times."""
        return cls(
            name="maximum",
            wake_delay_s=1500e-6,
            parse_s=_PARSE_MS_MAXIMUM / 1000,
            use_maximum=True,
        )

    @classmethod
    def instant(cls) -> TimingModel:
        """No wake delay and no busy time; the watchdog still runs (it is part of the protocol)."""
        return cls(name="instant", wake_delay_s=0.0, parse_s=0.0, zero_busy=True)

    @classmethod
    def named(cls, name: str) -> TimingModel:
        """The model called ``typical``, ``maximum`` or ``instant`` (for URLs and settings)."""
        factories = {"typical": cls.typical, "maximum": cls.maximum, "instant": cls.instant}
        try:
            return factories[name]()
        except KeyError:
            raise ValueError(
                f"unknown timing model {name!r}; choose one of {', '.join(factories)}"
            ) from None

    def exec_max_s(self, opcode: int, divider: int = 0) -> float:
        """The maximum execution time (§4) used by the watchdog budget check (decision 8)."""
        row = EXEC_MAX_MS.get(opcode)
        return (row[divider] if row else _UNKNOWN_OPCODE_MAX_MS) / 1000

    def busy_s(self, opcode: int, divider: int = 0) -> float:
        """How long the chip NACKs after accepting this opcode, before jitter."""
        if opcode in self.busy_ms:
            return self.busy_ms[opcode] / 1000
        if self.zero_busy:
            return 0.0
        if self.use_maximum:
            return self.exec_max_s(opcode, divider)
        typical = _TYPICAL_MS.get(opcode)
        return typical / 1000 if typical is not None else self.exec_max_s(opcode, divider)

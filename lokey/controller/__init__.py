"""The controller: TRNG source, circuit breaker and device recovery state machine.

Pure cores on an injected clock (:mod:`.source`, :mod:`.breaker`, :mod:`.machine`), one thin
worker thread (:mod:`.runner`), and the factory that opens the real chip (:mod:`.device`).
See ``machine``'s docstring for the state diagram.
"""

from lokey.controller.breaker import (
    DEFAULT_BREAKER_OPEN_S,
    DEFAULT_BREAKER_THRESHOLD,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from lokey.controller.device import BorrowedBus, ChipDevice, ChipInfo, atecc_factory
from lokey.controller.errors import (
    CircuitOpenError,
    DeviceUnavailableError,
    RejectReason,
    SampleRejectedError,
    SourceHealthError,
)
from lokey.controller.machine import (
    ALLOWED_TRANSITIONS,
    DEFAULT_COOLDOWN_S,
    DEFAULT_INITIAL_BACKOFF_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_VALIDATION_SAMPLES,
    MAX_COUNT,
    Controller,
    ControllerConfig,
    ControllerStatus,
    DeviceFactory,
    DeviceState,
    Sample,
    Transition,
    TransitionLog,
)
from lokey.controller.runner import ControllerRunner
from lokey.controller.source import (
    SAMPLE_BYTES,
    TEST_PATTERN,
    Device,
    RandomDevice,
    SourceSnapshot,
    TrngSource,
    classify,
    condition,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_BREAKER_OPEN_S",
    "DEFAULT_BREAKER_THRESHOLD",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_INITIAL_BACKOFF_S",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_VALIDATION_SAMPLES",
    "MAX_COUNT",
    "SAMPLE_BYTES",
    "TEST_PATTERN",
    "BorrowedBus",
    "BreakerSnapshot",
    "BreakerState",
    "ChipDevice",
    "ChipInfo",
    "CircuitBreaker",
    "CircuitOpenError",
    "Controller",
    "ControllerConfig",
    "ControllerRunner",
    "ControllerStatus",
    "Device",
    "DeviceFactory",
    "DeviceState",
    "DeviceUnavailableError",
    "Permit",
    "RandomDevice",
    "RejectReason",
    "Sample",
    "SampleRejectedError",
    "SourceHealthError",
    "SourceSnapshot",
    "Transition",
    "TransitionLog",
    "TrngSource",
    "atecc_factory",
    "classify",
    "condition",
]

"""Service settings: one pydantic-settings object per service, read once at the edge.

The variable names and defaults are the Go reference's (spec/service-api.md §6.2 controller,
§6.3 Fortuna, §6.4 VirtIO); LoKey's own additions start with ``LOKEY_``. Values are validated at
start-up with messages that name the variable and the rule
(``CONTROLLER_RECOVERY_COOLDOWN_SECONDS must be > 0, got '0'``), where the reference silently
fell back to a default or crashed later.

:func:`load_controller_settings` / :func:`load_fortuna_settings` read a mapping (``os.environ``
in production, a dict in tests) and raise :class:`SettingsError` with one line per problem;
``ControllerSettings()`` / ``FortunaSettings()`` read the process environment directly and raise
pydantic's ``ValidationError``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lokey.backends import ENV_BUS_URL, ENV_I2C_BUS_NUMBER, bus_url_from_env, parse_bus_url

if TYPE_CHECKING:
    from lokey.store.url import StoreUrl

    _StoreUrlField = StoreUrl
else:
    # pydantic needs the field's type when the class is built, but importing lokey.store
    # loads LMDB, which the controller, Fortuna and VirtIO processes never need (the
    # validator below returns a StoreUrl, so the value is one all the same)
    _StoreUrlField = Any

__all__ = [
    "API_ENV",
    "CONTROLLER_ENV",
    "FORTUNA_ENV",
    "VIRTIO_ENV",
    "ApiSettings",
    "ControllerSettings",
    "FortunaSettings",
    "LogLevel",
    "ServiceSettings",
    "SettingsError",
    "VirtioSettings",
    "load_api_settings",
    "load_controller_settings",
    "load_fortuna_settings",
    "load_virtio_settings",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR")
MAX_COOLDOWN_S: Final = 86_400.0  # one day: anything longer is a typo (and 1e308 overflows)
MAX_BREAKER_MINUTES: Final = 1_440.0  # one day
MAX_RESEED_INTERVAL_HOURS: Final = 8_760.0  # one year: anything longer is a typo
MAX_AMPLIFICATION_FACTOR: Final = 1_000_000  # only reported by /info; bounded against typos


_EXPLICIT: ContextVar[bool] = ContextVar("lokey_settings_explicit", default=False)


class SettingsError(ValueError):
    """The environment does not describe a service that can start; the message says why."""


def _log_level(value: object) -> object:
    """``WARN`` (the reference's spelling) is ``WARNING``; case and blanks do not matter."""
    if not isinstance(value, str):
        return value
    text = value.strip().upper()
    if not text:
        return "INFO"
    if text not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)} (any case)")
    return "WARNING" if text == "WARN" else text


def _cors_origin(value: str) -> str:
    text = value.strip()
    if any(c == "," or not 0x20 <= ord(c) <= 0x7E for c in text):
        raise ValueError("must be one origin (or *) in printable ASCII, without commas")
    return text


class ServiceSettings(BaseSettings):
    """What every LoKey service reads (``LOG_LEVEL``, ``LOKEY_CORS_ORIGIN``) and from where.

    Sources: keyword arguments, then the process environment; never ``.env`` or secret files.
    While a ``load_*_settings(env)`` call builds an instance, only its mapping counts.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True
    )

    log_level: Annotated[LogLevel, BeforeValidator(_log_level)] = Field(
        default="INFO", validation_alias="LOG_LEVEL"
    )
    cors_origin: Annotated[str, AfterValidator(_cors_origin)] = Field(
        default="", validation_alias="LOKEY_CORS_ORIGIN"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _EXPLICIT.get():
            return (init_settings,)
        return (init_settings, env_settings)

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


_Settings = TypeVar("_Settings", bound=ServiceSettings)


def _set_blank(data: object, name: str) -> object:
    """``name`` set but blank in the process environment means "off" (a model ``before``
    validator's body): blank values are otherwise ignored, so the default would win."""
    if (
        not _EXPLICIT.get()
        and isinstance(data, dict)
        and name not in data
        and not os.environ.get(name, "x").strip()
    ):
        return {**data, name: ""}
    return data


def _values(
    names: tuple[str, ...], env: Mapping[str, str], *, blank_means_off: str | None = None
) -> dict[str, str]:
    """The non-blank variables of ``names`` in ``env``; ``blank_means_off`` is kept blank."""
    values = {name: env[name] for name in names if env.get(name, "").strip()}
    if blank_means_off is not None and blank_means_off in env and not env[blank_means_off].strip():
        values[blank_means_off] = ""
    return values


def _load(cls: type[_Settings], values: dict[str, str]) -> _Settings:
    """Build ``cls`` from ``values`` (environment names) alone; SettingsError lists problems."""
    token = _EXPLICIT.set(True)
    try:
        return cls(**values)  # type: ignore[arg-type]  # keys are the environment names
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    finally:
        _EXPLICIT.reset(token)


class ControllerSettings(ServiceSettings):
    """Environment of the controller service (spec/service-api.md §6.2 plus ``LOKEY_*``).

    ``force_config`` keeps the raw ``FORCE_CONFIG`` text: only exactly ``true`` provisions
    (:attr:`provision_at_startup`), as in the reference; anything else never writes the chip.
    ``DISABLE_AUTO_CONFIG`` is not read: LoKey never configures a chip on its own.
    """

    port: int = Field(default=8081, ge=1, le=65535, validation_alias="PORT")
    lokey_bus_url: str | None = Field(default=None, validation_alias=ENV_BUS_URL)
    i2c_bus_number: str | None = Field(default=None, validation_alias=ENV_I2C_BUS_NUMBER)
    force_config: str = Field(default="", validation_alias="FORCE_CONFIG")
    recovery_cooldown_s: float = Field(
        default=30.0,
        gt=0,
        le=MAX_COOLDOWN_S,
        allow_inf_nan=False,
        validation_alias="CONTROLLER_RECOVERY_COOLDOWN_SECONDS",
    )
    recovery_validation_attempts: int = Field(
        default=3, gt=0, le=1_000, validation_alias="CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS"
    )
    breaker_cooldown_minutes: float = Field(
        default=5.0,
        gt=0,
        le=MAX_BREAKER_MINUTES,
        allow_inf_nan=False,
        validation_alias="CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES",
    )
    fallback: bool = Field(default=False, validation_alias="LOKEY_CONTROLLER_FALLBACK")

    @model_validator(mode="after")
    def _check_bus(self) -> ControllerSettings:
        url = bus_url_from_env(self._bus_env())  # raises ValueError naming the variable
        where = ENV_BUS_URL if self.lokey_bus_url else "the default bus"
        if parse_bus_url(url).options.get("clock") == "virtual":
            raise ValueError(
                f"{where}: {url!r} asks for clock=virtual, which the service cannot run on "
                "(its worker sleeps on the clock); tests pass a clock to the app factory instead"
            )
        return self

    def _bus_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.lokey_bus_url is not None:
            env[ENV_BUS_URL] = self.lokey_bus_url
        if self.i2c_bus_number is not None:
            env[ENV_I2C_BUS_NUMBER] = self.i2c_bus_number
        return env

    @property
    def bus_url(self) -> str:
        """LOKEY_BUS_URL, else /dev/i2c-$I2C_BUS_NUMBER, else the emulator (backends' rule)."""
        return bus_url_from_env(self._bus_env())

    @property
    def provision_at_startup(self) -> bool:
        """``FORCE_CONFIG`` is exactly ``true`` (spec §6.2): write the template and lock."""
        return self.force_config == "true"

    @property
    def breaker_open_s(self) -> float:
        return self.breaker_cooldown_minutes * 60.0


#: The environment variables the controller reads (for documentation and ``load_*``).
CONTROLLER_ENV: Final = tuple(
    str(field.validation_alias) for field in ControllerSettings.model_fields.values()
)


def load_controller_settings(env: Mapping[str, str]) -> ControllerSettings:
    """The controller's settings from ``env`` only (never the process environment).

    Blank values count as unset, like ``VAR=`` lines in compose files. Raises
    :class:`SettingsError` whose message has one line per problem, each naming the variable.
    """
    values = _values(CONTROLLER_ENV, env)
    return _load(ControllerSettings, values)


def _seed_file(value: Path | None) -> Path | None:
    """A file path whose directory exists; the Fortuna core checks the file itself."""
    if value is None:
        return None
    text = str(value)
    if any(c in text for c in "\r\n\x00"):
        raise ValueError("must be a file path without line breaks or NUL characters")
    path = value.expanduser()
    if path.is_dir():
        raise ValueError("is a directory; name a file in it (e.g. fortuna.seed)")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"names a file in {str(parent)!r}, which is not an existing directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot be written: the directory {str(parent)!r} is not writable")
    return path


class FortunaSettings(ServiceSettings):
    """Environment of the Fortuna service (spec/service-api.md §6.3 plus ``LOKEY_*``).

    ``AMPLIFICATION_FACTOR`` is only reported by ``/info`` (as in the reference);
    ``FORTUNA_MAX_RESEED_INTERVAL_HOURS`` is the health rule's limit. ``CONTROLLER_URL`` (set
    by the reference image, unused there too) is not read. ``LOKEY_FORTUNA_SEED_FILE`` names
    the 64-byte seed file (spec/fortuna.md §4); unset, the service starts unseeded and waits
    for its first ``POST /seed``.
    """

    port: int = Field(default=8082, ge=1, le=65535, validation_alias="PORT")
    amplification_factor: int = Field(
        default=4, gt=0, le=MAX_AMPLIFICATION_FACTOR, validation_alias="AMPLIFICATION_FACTOR"
    )
    max_reseed_interval_hours: float = Field(
        default=1.0,
        gt=0,
        le=MAX_RESEED_INTERVAL_HOURS,
        allow_inf_nan=False,
        validation_alias="FORTUNA_MAX_RESEED_INTERVAL_HOURS",
    )
    seed_file: Annotated[Path | None, AfterValidator(_seed_file)] = Field(
        default=None, validation_alias="LOKEY_FORTUNA_SEED_FILE"
    )

    @property
    def max_reseed_interval_s(self) -> float:
        return self.max_reseed_interval_hours * 3600.0


#: The environment variables the Fortuna service reads (for documentation and ``load_*``).
FORTUNA_ENV: Final = tuple(
    str(field.validation_alias) for field in FortunaSettings.model_fields.values()
)


def load_fortuna_settings(env: Mapping[str, str]) -> FortunaSettings:
    """The Fortuna service's settings from ``env`` only (never the process environment).

    Blank values count as unset. Raises :class:`SettingsError` whose message has one line per
    problem, each naming the variable.
    """
    values = _values(FORTUNA_ENV, env)
    return _load(FortunaSettings, values)


DEFAULT_PIPE_PATH: Final = "/var/run/lokey/virtio-rng"  # spec §6.4 (documentation and compose)
MIN_QUEUE_SIZE: Final = 10
MAX_QUEUE_SIZE: Final = 1_000_000
MIN_PIPE_SIZE: Final = 4_096  # one page: the kernel's smallest pipe buffer
MAX_PIPE_SIZE: Final = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size for non-root
ENV_PIPE_PATH: Final = "VIRTIO_PIPE_PATH"


def _pipe_path(value: object) -> object:
    """Blank disables the named pipe (spec §6.4); anything else is a path without NUL/newlines."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if any(c in text for c in "\r\n\x00"):
        raise ValueError("must be a file path without line breaks or NUL characters")
    return Path(text).expanduser()


def _pipe_mode(value: object) -> object:
    """Octal permission bits (``0660``, ``660`` or ``0o660``), at most 0777."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError("must be octal permission bits such as 0660")
        number = int(text, 8)
    else:
        raise ValueError("must be octal permission bits such as 0660")
    if not 0 <= number <= 0o777:
        raise ValueError("must be octal permission bits between 0000 and 0777")
    return number


class VirtioSettings(ServiceSettings):
    """Environment of the VirtIO service (spec/service-api.md §6.4 plus ``LOKEY_*``).

    ``VIRTIO_QUEUE_SIZE`` is the ring's capacity in items (10..1,000,000). ``VIRTIO_PIPE_PATH``
    names the FIFO the writer feeds (default ``/var/run/lokey/virtio-rng``); set but blank, it
    disables the pipe (the one variable where blank is not "unset"). ``LOKEY_VIRTIO_PIPE_MODE``
    (octal, default 0660: not world-writable, unlike the reference's 0666) and
    ``LOKEY_VIRTIO_PIPE_SIZE`` (the kernel pipe buffer, bytes) are LoKey's. ``RNG_DEVICE`` is
    not read: the service never opens ``/dev/hwrng``.
    """

    port: int = Field(default=8083, ge=1, le=65535, validation_alias="PORT")
    queue_size: int = Field(
        default=15_000,
        ge=MIN_QUEUE_SIZE,
        le=MAX_QUEUE_SIZE,
        validation_alias="VIRTIO_QUEUE_SIZE",
    )
    pipe_path: Annotated[Path | None, BeforeValidator(_pipe_path)] = Field(
        default=Path(DEFAULT_PIPE_PATH), validation_alias=ENV_PIPE_PATH
    )
    pipe_mode: Annotated[int, BeforeValidator(_pipe_mode)] = Field(
        default=0o660, validation_alias="LOKEY_VIRTIO_PIPE_MODE"
    )
    pipe_size: int = Field(
        default=4_096, ge=MIN_PIPE_SIZE, le=MAX_PIPE_SIZE, validation_alias="LOKEY_VIRTIO_PIPE_SIZE"
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_pipe_path_disables(cls, data: object) -> object:
        """``VIRTIO_PIPE_PATH=`` in the process environment disables the pipe."""
        return _set_blank(data, ENV_PIPE_PATH)

    @property
    def pipe_enabled(self) -> bool:
        return self.pipe_path is not None


#: The environment variables the VirtIO service reads (for documentation and ``load_*``).
VIRTIO_ENV: Final = tuple(
    str(field.validation_alias) for field in VirtioSettings.model_fields.values()
)


def load_virtio_settings(env: Mapping[str, str]) -> VirtioSettings:
    """The VirtIO service's settings from ``env`` only (never the process environment).

    Blank values count as unset, except ``VIRTIO_PIPE_PATH``: present and blank, it disables
    the named pipe. Raises :class:`SettingsError` whose message has one line per problem,
    each naming the variable.
    """
    values = _values(VIRTIO_ENV, env, blank_means_off=ENV_PIPE_PATH)
    return _load(VirtioSettings, values)


SeedingSource = Literal["trng", "fortuna", "both"]
ENV_VIRTIO_ADDR: Final = "VIRTIO_ADDR"
MAX_INTERVAL_MS: Final = 3_600_000  # one hour: a slower poll is a typo
# scheme://host[:port]: a DNS name or IPv4 address, or a bracketed IPv6 address
_BASE_URL: Final = re.compile(r"https?://(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
MIN_VIRTIO_POLL_MS: Final = 10  # each check is an HTTP call to VirtIO: at most 100 per second
MAX_TIMEOUT_S: Final = 300.0
MAX_LOW_WATER: Final = 1 << 30  # 1 GiB of Fortuna output waiting in the queue is plenty
MAX_SEED_SAMPLES: Final = 256  # the Fortuna service's /seed cap (seeds per request)
MIN_FIRST_SEED_SAMPLES: Final = 2  # design.md "Fortuna start-up": >= 64 bytes = two samples
MIN_API_KEY_LENGTH: Final = 16
MAX_API_KEY_LENGTH: Final = 4_096
MAX_RATE_PER_S: Final = 1_000_000.0
MAX_RATE_BURST: Final = 1_000_000
MAX_INSTANCES: Final = 64  # controllers or Fortunas per API: one poll loop each, all on one loop
MIN_LEASE_SECONDS: Final = 0.5  # renewed every third of it: shorter leaves no room for a slow store
MAX_LEASE_SECONDS: Final = 300.0  # a failed-over poller waits up to this long: longer is a typo
ENV_STORE_URL: Final = "STORE_URL"


def _address(value: object) -> object:
    """An ``http(s)://host[:port]`` base URL: no path, query, fragment or credentials."""
    if value is None:
        return None
    text = str(value).strip().rstrip("/")
    if not text:
        return None
    example = "an http:// or https:// base URL such as http://127.0.0.1:8081"
    if _BASE_URL.fullmatch(text) is None:
        raise ValueError(
            f"must be {example}: a host and an optional port, without a path, query, fragment, "
            "credentials or spaces"
        )
    import httpx  # noqa: PLC0415 - only the API (which uses httpx anyway) has addresses

    port = httpx.URL(text).port
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"must be {example} (port 1..65535)")
    return text


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _addresses(value: object) -> object:
    """One base URL (:func:`_address`'s rule and messages) or a comma-separated list of them:
    blanks around commas and empty entries are ignored, a duplicate is refused (it would poll
    one chip twice and count it as two), at least one and at most :data:`MAX_INSTANCES`."""
    if isinstance(value, tuple | list):
        value = ",".join(str(item) for item in value)
    if not isinstance(value, str):
        return value
    parts = [part.strip() for part in value.split(",")]
    if len(parts) == 1:
        single = _address(parts[0])
        if single is None:
            raise ValueError("must name at least one base URL")
        return (single,)
    parts = [part for part in parts if part]  # "a,b," is two, as with LOKEY_API_KEYS
    if not parts:
        raise ValueError("must name at least one base URL")
    if len(parts) > MAX_INSTANCES:
        raise ValueError(f"names {len(parts)} base URLs; at most {MAX_INSTANCES} are allowed")
    import httpx  # noqa: PLC0415 - as in _address

    seen: list[str] = []
    origins: dict[tuple[str, str, int], str] = {}
    for position, part in enumerate(parts, start=1):
        try:
            url = _address(part)
        except ValueError as exc:
            raise ValueError(f"entry {position} ({part!r}) {exc}") from None
        assert isinstance(url, str)
        # the same instance however written: host case and an explicit default port
        parsed = httpx.URL(url)
        origin = (parsed.scheme, parsed.host, parsed.port or _DEFAULT_PORTS[parsed.scheme])
        if origin in origins:
            raise ValueError(f"names {origins[origin]} twice (each instance once)")
        origins[origin] = url
        seen.append(url)
    return tuple(seen)


def _store_url(value: object) -> object:
    """``STORE_URL`` parsed (:func:`lokey.store.parse_store_url`); blank is unset."""
    if value is None:
        return None
    from lokey.store.url import StoreUrl, parse_store_url  # noqa: PLC0415 - see _StoreUrlField

    if isinstance(value, StoreUrl):
        return value
    text = str(value).strip()
    if not text:
        return None
    return parse_store_url(text)


def _bool_word(value: object) -> object:
    """``true``/``false`` in any case (also 1/0, yes/no), as an operator would write them."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip().lower()
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text not in words:
        raise ValueError("must be true or false")
    return words[text]


Flag = Annotated[bool, BeforeValidator(_bool_word)]


class ApiSettings(ServiceSettings):
    """Environment of the API service (spec/service-api.md §6.1 plus LoKey's additions).

    Queue sizes and the VirtIO seeding source and interval are also persisted in the store and
    changeable at run time: a variable that is **set** wins at start-up (the operator's intent);
    an unset one leaves the persisted value, else the default (:attr:`explicit`).
    ``VIRTIO_ADDR`` set but blank disables VirtIO seeding (``/api/v1/health`` then reports
    ``virtio: false``). ``GIN_MODE`` is accepted and ignored (it is simply not read).
    """

    port: int = Field(default=8080, ge=1, le=65535, validation_alias="PORT")
    cors_origin: Annotated[str, AfterValidator(_cors_origin)] = Field(
        default="*", validation_alias="LOKEY_CORS_ORIGIN"
    )
    db_path: Path = Field(default=Path("/data/api.db"), validation_alias="DB_PATH")
    db_implementation: str = Field(default="lmdb", validation_alias="DB_IMPLEMENTATION")
    db_sync: Flag = Field(default=True, validation_alias="DB_SYNC")
    #: repr=False: a Redis URL may hold a password (StoreUrl.display hides it)
    store_url: Annotated[_StoreUrlField | None, BeforeValidator(_store_url)] = Field(
        default=None, validation_alias=ENV_STORE_URL, repr=False
    )
    controller_addrs: Annotated[tuple[str, ...], BeforeValidator(_addresses)] = Field(
        default=("http://controller:8081",), validation_alias="CONTROLLER_ADDR"
    )
    fortuna_addrs: Annotated[tuple[str, ...], BeforeValidator(_addresses)] = Field(
        default=("http://fortuna:8082",), validation_alias="FORTUNA_ADDR"
    )
    virtio_addr: Annotated[str | None, BeforeValidator(_address)] = Field(
        default="http://virtio:8083", validation_alias=ENV_VIRTIO_ADDR
    )
    trng_queue_size: int = Field(
        default=1_000_000, ge=MIN_QUEUE_SIZE, le=MAX_QUEUE_SIZE, validation_alias="TRNG_QUEUE_SIZE"
    )
    fortuna_queue_size: int = Field(
        default=1_000_000,
        ge=MIN_QUEUE_SIZE,
        le=MAX_QUEUE_SIZE,
        validation_alias="FORTUNA_QUEUE_SIZE",
    )
    virtio_queue_size: int = Field(
        default=500_000, ge=MIN_QUEUE_SIZE, le=MAX_QUEUE_SIZE, validation_alias="VIRTIO_QUEUE_SIZE"
    )
    trng_poll_interval_ms: int = Field(
        default=100, ge=1, le=MAX_INTERVAL_MS, validation_alias="TRNG_POLL_INTERVAL_MS"
    )
    fortuna_poll_interval_ms: int = Field(
        default=100, ge=1, le=MAX_INTERVAL_MS, validation_alias="FORTUNA_POLL_INTERVAL_MS"
    )
    virtio_poll_interval_ms: int = Field(
        default=100,
        ge=MIN_VIRTIO_POLL_MS,
        le=MAX_INTERVAL_MS,
        validation_alias="VIRTIO_POLL_INTERVAL_MS",
    )
    virtio_seeding_source: SeedingSource = Field(
        default="trng", validation_alias="VIRTIO_SEEDING_SOURCE"
    )
    virtio_seed_interval_s: int = Field(
        default=30, ge=10, le=3600, validation_alias="VIRTIO_SEED_INTERVAL_SECONDS"
    )
    trng_apt_window_size: int | None = Field(default=None, validation_alias="TRNG_APT_WINDOW_SIZE")
    fortuna_seed_interval_s: float = Field(
        default=30.0,
        ge=1,
        le=MAX_COOLDOWN_S,
        allow_inf_nan=False,
        validation_alias="FORTUNA_SEED_INTERVAL_SECONDS",
    )
    fortuna_seed_samples: int = Field(
        default=32,
        ge=MIN_FIRST_SEED_SAMPLES,
        le=MAX_SEED_SAMPLES,
        validation_alias="FORTUNA_SEED_SAMPLES",
    )
    allow_peek: Flag = Field(default=False, validation_alias="ALLOW_PEEK")
    http_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        validation_alias="LOKEY_HTTP_TIMEOUT_S",
    )
    trng_poll_samples: int = Field(
        default=4, ge=1, le=100, validation_alias="LOKEY_TRNG_POLL_SAMPLES"
    )
    fortuna_low_water_bytes: int = Field(
        default=4 << 20, ge=0, le=MAX_LOW_WATER, validation_alias="LOKEY_FORTUNA_LOW_WATER_BYTES"
    )
    virtio_seed_bytes: int = Field(
        default=16 << 10, ge=32, le=1 << 20, validation_alias="LOKEY_VIRTIO_SEED_BYTES"
    )
    virtio_trng_reserve_bytes: int = Field(
        default=32 << 10, ge=0, le=MAX_LOW_WATER, validation_alias="LOKEY_VIRTIO_TRNG_RESERVE_BYTES"
    )
    #: Comma-separated bearer tokens; a SecretStr, so no repr or error message shows them.
    api_keys: SecretStr | None = Field(default=None, validation_alias="LOKEY_API_KEYS")
    rate_limit_per_s: float = Field(
        default=0.0,
        ge=0,
        le=MAX_RATE_PER_S,
        allow_inf_nan=False,
        validation_alias="LOKEY_RATE_LIMIT_PER_S",
    )
    rate_limit_burst: int = Field(
        default=20, ge=1, le=MAX_RATE_BURST, validation_alias="LOKEY_RATE_LIMIT_BURST"
    )
    lease_s: float = Field(
        default=5.0,
        ge=MIN_LEASE_SECONDS,
        le=MAX_LEASE_SECONDS,
        allow_inf_nan=False,
        validation_alias="LOKEY_LEASE_SECONDS",
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_virtio_addr_disables(cls, data: object) -> object:
        """``VIRTIO_ADDR=`` in the process environment disables VirtIO seeding (spec §6.1)."""
        return _set_blank(data, ENV_VIRTIO_ADDR)

    @model_validator(mode="after")
    def _check_api_keys(self) -> ApiSettings:
        """Each key: 16..4096 printable ASCII characters, no spaces or commas. The message
        names the variable and the key's position, never the key."""
        if self.api_keys is None:
            return self
        items = self.api_keys.get_secret_value().split(",")
        for position, item in enumerate(items, start=1):
            key = item.strip()
            if not key:
                continue  # "a,b," is two keys
            if not MIN_API_KEY_LENGTH <= len(key) <= MAX_API_KEY_LENGTH or any(
                not 0x21 <= ord(c) <= 0x7E for c in key
            ):
                raise ValueError(
                    f"LOKEY_API_KEYS: key {position} must be {MIN_API_KEY_LENGTH}.."
                    f"{MAX_API_KEY_LENGTH} printable ASCII characters without spaces "
                    "(keys are separated by commas)"
                )
        if not self.api_key_list:
            raise ValueError("LOKEY_API_KEYS: no key given (leave it unset to turn keys off)")
        return self

    @property
    def store(self) -> StoreUrl:
        """The store to open: ``STORE_URL`` when set, else ``DB_IMPLEMENTATION=channel`` ->
        memory, else LMDB at ``DB_PATH`` (the reference's rule)."""
        from lokey.store.url import StoreUrl  # noqa: PLC0415 - see _StoreUrlField

        if self.store_url is not None:
            store: StoreUrl = self.store_url
            return store
        if self.in_memory:
            return StoreUrl("memory")
        return StoreUrl("lmdb", path=self.db_path)

    @property
    def controller_addr(self) -> str:
        """The first controller (the only one unless ``CONTROLLER_ADDR`` lists several)."""
        return self.controller_addrs[0]

    @property
    def fortuna_addr(self) -> str:
        """The first Fortuna (the only one unless ``FORTUNA_ADDR`` lists several)."""
        return self.fortuna_addrs[0]

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The configured API keys (empty: authentication is off)."""
        if self.api_keys is None:
            return ()
        keys = (item.strip() for item in self.api_keys.get_secret_value().split(","))
        return tuple(key for key in keys if key)

    @property
    def in_memory(self) -> bool:
        """``DB_IMPLEMENTATION=channel`` exactly selects the in-memory store (spec §6.1)."""
        return self.db_implementation == "channel"

    @property
    def explicit(self) -> frozenset[str]:
        """The fields whose variables were set (they override persisted run-time values)."""
        return frozenset(self.model_fields_set)


#: The environment variables the API reads (for documentation and ``load_*``).
API_ENV: Final = tuple(str(field.validation_alias) for field in ApiSettings.model_fields.values())


def load_api_settings(env: Mapping[str, str]) -> ApiSettings:
    """The API service's settings from ``env`` only (never the process environment).

    Blank values count as unset, except ``VIRTIO_ADDR``: present and blank, it disables VirtIO
    seeding. Raises :class:`SettingsError` whose message has one line per problem, each naming
    the variable.
    """
    values = _values(API_ENV, env, blank_means_off=ENV_VIRTIO_ADDR)
    return _load(ApiSettings, values)


#: Variables whose value an error message must not repeat (a Redis URL may hold a password).
_UNSHOWN_INPUTS: Final = frozenset({ENV_STORE_URL})


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        context = error.get("ctx") or {}
        if error["type"] in {"greater_than", "less_than_equal", "greater_than_equal"}:
            rule = {"greater_than": ">", "less_than_equal": "<=", "greater_than_equal": ">="}
            bound = next(iter(context.values()), "?")
            message = f"must be {rule[error['type']]} {bound}"
        if where in _UNSHOWN_INPUTS:
            lines.append(f"{where} {message[:1].lower()}{message[1:]}")
        elif where:
            lines.append(f"{where} {message[:1].lower()}{message[1:]} (got {error['input']!r})")
        else:
            lines.append(message)
    return "invalid settings: " + "; ".join(lines)

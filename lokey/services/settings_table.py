"""The configuration table in the README, generated from the settings classes.

``python -m lokey.services.settings_table`` prints one Markdown table: every environment
variable each service reads, its default and its rule, straight from the pydantic fields (so
a new setting or a changed default cannot be missed), with a one-line meaning from
:data:`MEANINGS`. ``tests/test_settings_table.py`` checks that the README holds exactly this
output between its two markers; ``--write README.md`` refreshes it.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lokey.services.settings import (
    ApiSettings,
    ControllerSettings,
    FortunaSettings,
    ServiceSettings,
    VirtioSettings,
)

__all__ = ["BEGIN", "END", "MEANINGS", "main", "render"]

BEGIN: Final = "<!-- settings-table: begin (python -m lokey.services.settings_table) -->"
END: Final = "<!-- settings-table: end -->"

SERVICES: Final[tuple[tuple[str, type[ServiceSettings]], ...]] = (
    ("controller", ControllerSettings),
    ("fortuna", FortunaSettings),
    ("virtio", VirtioSettings),
    ("api", ApiSettings),
)

#: One line per variable: what it means (the spec section where the reference defines it).
MEANINGS: Final = {
    "PORT": "port to listen on",
    "LOG_LEVEL": "DEBUG, INFO, WARN/WARNING or ERROR",
    "LOKEY_CORS_ORIGIN": "CORS origin sent on every answer (empty: no CORS headers)",
    "LOKEY_BUS_URL": "bus URL: sim://atecc608a[?...], /dev/i2c-N, i2c://path, spy+...",
    "I2C_BUS_NUMBER": "N selects /dev/i2c-N when LOKEY_BUS_URL is unset",
    "FORCE_CONFIG": "exactly `true`: write and lock the RNG configuration at start-up",
    "CONTROLLER_RECOVERY_COOLDOWN_SECONDS": "cool-down after a recovery before healthy",
    "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS": "validation samples after a recovery",
    "CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES": "how long the breaker stays open",
    "LOKEY_CONTROLLER_FALLBACK": "serve labelled OS-CSPRNG samples while the chip is down",
    "AMPLIFICATION_FACTOR": "reported by /info only",
    "FORTUNA_MAX_RESEED_INTERVAL_HOURS": "/health is 503 after this long without a reseed",
    "LOKEY_FORTUNA_SEED_FILE": "64-byte seed file: restarts are seeded at once",
    "VIRTIO_QUEUE_SIZE": "ring capacity in 32-byte items (api: fallback for the reported size)",
    "VIRTIO_PIPE_PATH": "named pipe for QEMU (set and empty: no pipe)",
    "LOKEY_VIRTIO_PIPE_MODE": "permission bits of the pipe (octal)",
    "LOKEY_VIRTIO_PIPE_SIZE": "kernel pipe buffer in bytes",
    "DB_PATH": "LMDB file (a directory gets database.db)",
    "DB_IMPLEMENTATION": "exactly `channel`: in-memory store instead of LMDB",
    "DB_SYNC": "fsync every group commit (false: survives crashes, not power loss)",
    "STORE_URL": "queue store: lmdb:///path, memory:// or redis://host:6379/0 (wins over DB_*)",
    "CONTROLLER_ADDR": "controller base URL, or several comma-separated (one poller each)",
    "FORTUNA_ADDR": "Fortuna base URL, or several comma-separated (each seeded apart)",
    "VIRTIO_ADDR": "VirtIO base URL (set and empty: no VirtIO seeding)",
    "TRNG_QUEUE_SIZE": "TRNG queue capacity in items (32-byte samples)",
    "FORTUNA_QUEUE_SIZE": "Fortuna queue capacity in items",
    "TRNG_POLL_INTERVAL_MS": "pause between controller polls",
    "FORTUNA_POLL_INTERVAL_MS": "pause between regular Fortuna polls",
    "VIRTIO_POLL_INTERVAL_MS": "how often VirtIO's ring level is checked",
    "VIRTIO_SEEDING_SOURCE": "where VirtIO's bytes come from: trng, fortuna or both",
    "VIRTIO_SEED_INTERVAL_SECONDS": "VirtIO top-up interval",
    "TRNG_APT_WINDOW_SIZE": "legacy APT metric window (256..2048, else 512)",
    "FORTUNA_SEED_INTERVAL_SECONDS": "Fortuna seeding interval",
    "FORTUNA_SEED_SAMPLES": "32-byte samples per seeding round",
    "ALLOW_PEEK": "allow reads without consuming (diagnostics only)",
    "LOKEY_HTTP_TIMEOUT_S": "deadline of every call to another service",
    "LOKEY_TRNG_POLL_SAMPLES": "samples per controller poll",
    "LOKEY_FORTUNA_LOW_WATER_BYTES": "top Fortuna up in 1 MiB requests below this (0: never)",
    "LOKEY_VIRTIO_SEED_BYTES": "most bytes sent to VirtIO per round",
    "LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "TRNG bytes kept for API clients before VirtIO gets any",
    "LOKEY_API_KEYS": "comma-separated bearer keys (>= 16 chars) for data and config routes",
    "LOKEY_RATE_LIMIT_PER_S": "data requests a second per client, token bucket (0: no limit)",
    "LOKEY_RATE_LIMIT_BURST": "the rate limit's bucket size (requests at once)",
    "LOKEY_LEASE_SECONDS": "shared store: how long a poller's lease lasts unrenewed (failover)",
}


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is None or value is PydanticUndefined or value == "":
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    if isinstance(value, int) and field.validation_alias == "LOKEY_VIRTIO_PIPE_MODE":
        return f"{value:04o}"
    return str(value)


def _rule(field: FieldInfo) -> str:
    choices = typing.get_args(field.annotation)
    if typing.get_origin(field.annotation) is typing.Literal:
        return " / ".join(str(c) for c in choices)
    bounds = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds.append(f">= {item.ge:,}")
        elif isinstance(item, annotated_types.Gt):
            bounds.append(f"> {item.gt:,}")
        elif isinstance(item, annotated_types.Le):
            bounds.append(f"<= {item.le:,}")
    return ", ".join(bounds)


def render() -> str:
    """The table, one row per (service, variable), services in start-up order."""
    lines = ["| service | variable | default | rule | meaning |", "|---|---|---|---|---|"]
    for service, cls in SERVICES:
        for field in cls.model_fields.values():
            name = str(field.validation_alias)
            meaning = MEANINGS.get(name, "")
            lines.append(
                f"| {service} | `{name}` | {_default(field)} | {_rule(field)} | {meaning} |"
            )
    return "\n".join(lines) + "\n"


def _replace(text: str, table: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lokey.services.settings_table")
    parser.add_argument("--write", type=Path, help="replace the table between the markers")
    args = parser.parse_args(argv)
    table = render()
    if args.write is None:
        sys.stdout.write(table)
        return 0
    text = args.write.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.write}: the two settings-table markers are missing", file=sys.stderr)
        return 2
    args.write.write_text(_replace(text, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

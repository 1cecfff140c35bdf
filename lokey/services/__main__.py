"""``python -m lokey.services SERVICE``: run one service in the foreground.

SERVICE is ``controller``, ``fortuna``, ``virtio`` or ``api``. ``lokey serve SERVICE`` execs this
module (the ``lokey`` command and the services are independent siblings of the top layer, so the
command starts a service as a program rather than importing it, as ``lokey up`` starts all four).
Settings come from the environment; invalid settings exit 2 with one line naming each bad
variable; a clean stop (SIGTERM / SIGINT) exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lokey.errors import StoreError
from lokey.services import server
from lokey.services.api import create_api_app
from lokey.services.controller import create_controller_app
from lokey.services.fortuna import create_fortuna_app
from lokey.services.settings import (
    ApiSettings,
    ControllerSettings,
    FortunaSettings,
    SettingsError,
    VirtioSettings,
    load_api_settings,
    load_controller_settings,
    load_fortuna_settings,
    load_virtio_settings,
)
from lokey.services.virtio import create_virtio_app
from lokey.store import resolve_db_path

__all__ = ["EXIT_USAGE", "main"]

EXIT_USAGE = 2


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be an integer, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be in [1, 65,535], got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lokey serve", description="Run one LoKey service.")
    services = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    controller = services.add_parser("controller", help="the chip's TRNG service")
    controller.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    controller.add_argument("--port", type=_port, default=None, help="default: $PORT, else 8081")
    fortuna = services.add_parser("fortuna", help="the Fortuna CSPRNG service")
    fortuna.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    fortuna.add_argument("--port", type=_port, default=None, help="default: $PORT, else 8082")
    virtio = services.add_parser("virtio", help="the VirtIO byte ring (HTTP and named pipe)")
    virtio.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    virtio.add_argument("--port", type=_port, default=None, help="default: $PORT, else 8083")
    api = services.add_parser("api", help="the API: queues, formats, status")
    api.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    api.add_argument("--port", type=_port, default=None, help="default: $PORT, else 8080")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings: ControllerSettings | FortunaSettings | VirtioSettings | ApiSettings
    try:
        if args.service == "api":
            settings = load_api_settings(os.environ)
            if not settings.in_memory:
                resolve_db_path(settings.db_path)  # a clear error now, not a lifespan traceback
        elif args.service == "fortuna":
            settings = load_fortuna_settings(os.environ)
        elif args.service == "virtio":
            settings = load_virtio_settings(os.environ)
        else:
            settings = load_controller_settings(os.environ)
    except (SettingsError, StoreError) as error:
        print(f"lokey serve {args.service}: {error}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log_level_number,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    port = args.port if args.port is not None else settings.port
    if isinstance(settings, ApiSettings):
        app = create_api_app(settings)
    elif isinstance(settings, FortunaSettings):
        app = create_fortuna_app(settings)
    elif isinstance(settings, VirtioSettings):
        app = create_virtio_app(settings)
    else:
        app = create_controller_app(settings)
    return server.run(app, host=args.host, port=port, log_level=settings.log_level)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m lokey.services SERVICE``: run one service in the foreground.

SERVICE is ``controller``, ``fortuna``, ``virtio`` or ``api``. ``lokey serve SERVICE`` execs this
module (the ``lokey`` command and the services are independent siblings of the top layer, so the
command starts a service as a program rather than importing it, as ``lokey up`` starts all four).
Settings come from the environment; invalid settings exit 2 with one line naming each bad
variable; a clean stop (SIGTERM / SIGINT) exits 0.

``python -m lokey.services up [options]`` (what ``lokey up`` execs) runs all four, supervised:
see :mod:`lokey.services.supervisor`. The apps are imported only when one is served, so the
supervisor stays a small process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lokey.services import supervisor

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
    services.add_parser(
        "up", help="all four, supervised (options: python -m lokey.services up --help)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["up"]:
        return supervisor.main(arguments[1:])
    args = _parser().parse_args(arguments)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from lokey.services import apps, server  # noqa: PLC0415 - `up` must not load the apps

    try:
        settings = apps.load_settings(args.service, os.environ)
    except apps.StartupError as error:
        print(f"lokey serve {args.service}: {error}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log_level_number,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: the API's pollers would write ~30 lines a second
    # (an SD card's wear); our own job logs say what matters, so httpx speaks from WARNING.
    logging.getLogger("httpx").setLevel(max(settings.log_level_number, logging.WARNING))
    port = args.port if args.port is not None else settings.port
    apps.limit_heap_retention()
    app = apps.create_app(settings)
    return server.run(app, host=args.host, port=port, log_level=settings.log_level)


if __name__ == "__main__":
    sys.exit(main())

"""The ``lokey`` command.

``lokey assess FILE`` judges a file of raw TRNG bytes with the SP 800-90B health tests and the
SP 800-22 battery. ``lokey provision`` shows, and with ``--yes`` applies, the chip's RNG
configuration. ``lokey serve controller``, ``lokey serve fortuna``, ``lokey serve virtio`` and
``lokey serve api`` run the four services (settings from the environment,
spec/service-api.md §6); ``lokey up`` runs all four on the emulator (or ``--hardware``),
supervised, until Ctrl-C. ``lokey conformance [ARGS...]`` runs the conformance suites
(``python -m conformance``, ARGS passed through) and ``lokey doctor`` checks a bus and the chip
on it (``python -m lokey.doctor``); ``lokey bench [ARGS...]`` runs the benchmarks
(``python -m bench``). Exit status:
0 success (the data passes; provisioning done or nothing to do; the service stopped cleanly),
1 failure (the data fails; the chip refused), 2 the command could not run (bad input, options or
settings, a bus that cannot be opened).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from lokey.backends import bus_url_from_env, open_bus
from lokey.errors import InsufficientDataError, LokeyError
from lokey.hardware.commands import Atecc608aDriver
from lokey.hardware.provisioning import ProvisionPlan, field_of, plan, provision
from lokey.hardware.transport import Transport
from lokey.quality import sp800_22
from lokey.quality.assess import (
    BATTERY_ALPHA,
    SEQUENCE_BITS,
    Assessment,
    TestVerdict,
    assess,
    minimum_bits,
)

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_MAX_BYTES = 64 << 20  # about 500 MB of working memory at most: fits a Raspberry Pi
MIN_ENTROPY = 0.01  # bits per byte; below this the RCT cut-off exceeds any input (> 2,000)
MIN_SEQUENCE_BITS = 1_000  # below this most tests cannot run and p-values are coarse
MAX_SEQUENCE_BITS = 100_000_000
SERVICES_MODULE = "lokey.services"  # `python -m lokey.services SERVICE` runs one service
CONFORMANCE_MODULE = "conformance"  # `python -m conformance ARGS`: the suites
DOCTOR_MODULE = "lokey.doctor"  # `python -m lokey.doctor`: checks a bus and its chip
VERIFY_MODULE = "lokey.verify"  # `python -m lokey.verify uniqueness ARGS`: no byte twice
BENCH_MODULE = "bench"  # `python -m bench ARGS`: every benchmark, one table
SERVICE_PORTS = {"controller": 8081, "fortuna": 8082, "virtio": 8083, "api": 8080}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["conformance"]:
        # everything after the command belongs to pytest, options included (argparse's
        # REMAINDER would still claim a leading --option or -h for itself)
        return _exec_module("lokey conformance", CONFORMANCE_MODULE, arguments[1:])
    if arguments[:1] == ["verify"] and arguments[1:2] != ["-h"] and arguments[1:2] != ["--help"]:
        return _exec_module("lokey verify", VERIFY_MODULE, arguments[1:])
    if arguments[:1] == ["bench"]:
        # python -m bench has its own options and --help (its prog is "lokey bench")
        return _exec_module("lokey bench", BENCH_MODULE, arguments[1:])
    parser = _parser()
    args = parser.parse_args(arguments)
    try:
        status: int = args.run(args, parser)
    except KeyboardInterrupt:
        print("lokey: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        # A bug, not a verdict: never let it exit 1, which means "the data fails".
        traceback.print_exc()
        print(
            "lokey: internal error (the traceback above is a bug: please report it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lokey", description="LoKey: hardware randomness.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    assess_cmd = commands.add_parser(
        "assess",
        help="judge raw random bytes with SP 800-90B health tests and the SP 800-22 battery",
        description=(
            "Judge raw random bytes: SP 800-90B repetition count and adaptive proportion "
            "tests, then the 15 SP 800-22 tests on 1 Mbit sequences. Exit 0 pass, 1 fail, "
            "2 error."
        ),
    )
    assess_cmd.add_argument("file", metavar="FILE", help="file of raw bytes, or - for stdin")
    assess_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    assess_cmd.add_argument(
        "--min-entropy",
        type=_bounded_float("--min-entropy", lower=MIN_ENTROPY, upper=8.0),
        default=8.0,
        metavar="H",
        help="claimed min-entropy per byte for the health-test cut-offs (default 8)",
    )
    assess_cmd.add_argument(
        "--sequence-bits",
        type=_bounded_int("--sequence-bits", lower=MIN_SEQUENCE_BITS, upper=MAX_SEQUENCE_BITS),
        default=SEQUENCE_BITS,
        metavar="N",
        help=f"split the input into sequences of N bits (default {SEQUENCE_BITS:,})",
    )
    assess_cmd.add_argument(
        "--max-bytes",
        type=_bounded_int("--max-bytes", lower=1, upper=1 << 40),
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help=f"refuse inputs larger than N bytes (default {DEFAULT_MAX_BYTES:,}: 64 MiB)",
    )
    assess_cmd.add_argument(
        "--no-progress", action="store_true", help="never draw the progress bar on stderr"
    )
    assess_cmd.set_defaults(run=_assess)

    provision_cmd = commands.add_parser(
        "provision",
        help="show, then (with --yes) write and lock the chip's RNG configuration",
        description=(
            "Compare the chip's config zone with LoKey's RNG template, show every word that "
            "would change and the Lock summary CRC. Nothing is written without --yes; with it "
            "the words are written, read back, and the config zone is locked with the summary "
            "CRC (mode 0x00). Locking is irreversible."
        ),
    )
    provision_cmd.add_argument(
        "--bus",
        metavar="URL",
        default=None,
        help="bus URL (default: LOKEY_BUS_URL, else /dev/i2c-$I2C_BUS_NUMBER, else the emulator)",
    )
    provision_cmd.add_argument(
        "--yes", action="store_true", help="really write and lock (irreversible on a real chip)"
    )
    provision_cmd.set_defaults(run=_provision)

    serve_cmd = commands.add_parser(
        "serve",
        help="run one LoKey service in the foreground",
        description="Run one LoKey service (settings from the environment).",
    )
    services = serve_cmd.add_subparsers(
        title="services", required=True, metavar="SERVICE", dest="service"
    )
    _add_service(
        services,
        "controller",
        8081,
        help="the chip's TRNG service (/health, /info, /generate, /metrics)",
        description=(
            "Serve the ATECC608A as a TRNG on HTTP (spec/service-api.md §2). Settings come "
            "from the environment: PORT, LOKEY_BUS_URL or I2C_BUS_NUMBER (default: the "
            "emulator), FORCE_CONFIG, CONTROLLER_RECOVERY_COOLDOWN_SECONDS, "
            "CONTROLLER_RECOVERY_VALIDATION_ATTEMPTS, CONTROLLER_CIRCUIT_BREAKER_COOLDOWN_MINUTES, "
            "LOG_LEVEL, LOKEY_CONTROLLER_FALLBACK, LOKEY_CORS_ORIGIN."
        ),
    )
    _add_service(
        services,
        "fortuna",
        8082,
        help="the Fortuna CSPRNG service (/seed, /generate, /amplify, /health, /info, /metrics)",
        description=(
            "Serve a Fortuna generator on HTTP (spec/service-api.md §3), seeded through POST "
            "/seed; it answers 503 to /generate until its first seeding. Settings come from the "
            "environment: PORT, AMPLIFICATION_FACTOR, FORTUNA_MAX_RESEED_INTERVAL_HOURS, "
            "LOG_LEVEL, LOKEY_FORTUNA_SEED_FILE, LOKEY_CORS_ORIGIN."
        ),
    )
    _add_service(
        services,
        "virtio",
        8083,
        help="the VirtIO byte ring (/seed, /generate, /stream, /config/queue, /health, /info, "
        "/metrics) and its named pipe",
        description=(
            "Serve a byte ring fed through POST /seed over HTTP (/generate, chunked /stream) "
            "and into a named pipe for QEMU's virtio-rng (spec/service-api.md §4). Settings "
            "come from the environment: PORT, VIRTIO_QUEUE_SIZE, VIRTIO_PIPE_PATH (empty "
            "disables the pipe), LOKEY_VIRTIO_PIPE_MODE, LOKEY_VIRTIO_PIPE_SIZE, LOG_LEVEL, "
            "LOKEY_CORS_ORIGIN."
        ),
    )
    _add_service(
        services,
        "api",
        8080,
        help="the API (/api/v1/data, /api/v1/config/*, /api/v1/status, /api/v1/health, /metrics)",
        description=(
            "Serve random data from the TRNG and Fortuna queues (spec/service-api.md §1): it "
            "polls the controller and Fortuna, seeds Fortuna and VirtIO, and keeps its queues "
            "in LMDB at DB_PATH. Settings come from the environment: PORT, DB_PATH, "
            "DB_IMPLEMENTATION, DB_SYNC, CONTROLLER_ADDR, FORTUNA_ADDR, VIRTIO_ADDR, "
            "TRNG_QUEUE_SIZE, FORTUNA_QUEUE_SIZE, VIRTIO_QUEUE_SIZE, TRNG_POLL_INTERVAL_MS, "
            "FORTUNA_POLL_INTERVAL_MS, VIRTIO_POLL_INTERVAL_MS, VIRTIO_SEEDING_SOURCE, "
            "VIRTIO_SEED_INTERVAL_SECONDS, FORTUNA_SEED_INTERVAL_SECONDS, FORTUNA_SEED_SAMPLES, "
            "TRNG_APT_WINDOW_SIZE, ALLOW_PEEK, LOG_LEVEL and the LOKEY_* variables in the README."
        ),
    )

    up_cmd = commands.add_parser(
        "up",
        help="run all four services, supervised, until Ctrl-C (emulator by default)",
        description=(
            "Start controller, fortuna, virtio and api as supervised child processes (the "
            "emulator with a provisioned chip on typical timing unless --fast or --hardware), "
            "wait until each is healthy, print the URLs, the named pipe and the logs, restart "
            "a service that dies (back-off 1 s doubling to 30 s, or to --max-restart-delay) "
            "and stop everything on Ctrl-C or SIGTERM (exit 0). Files live in the data "
            "directory: api.db, fortuna.seed, the FIFO virtio-rng, logs/SERVICE.log, "
            "lokey-up.json (pids). "
            "Options beat the environment, which beats these defaults: DB_PATH, "
            "LOKEY_FORTUNA_SEED_FILE, VIRTIO_PIPE_PATH, LOKEY_BUS_URL / I2C_BUS_NUMBER and "
            "LOG_LEVEL (default WARNING) are taken from the environment when set; PORT is "
            "ignored and the api always talks to the services started here."
        ),
    )
    bus = up_cmd.add_mutually_exclusive_group()
    bus.add_argument(
        "--fast",
        action="store_true",
        help="emulator with instant timing (default: typical chip timing, like hardware)",
    )
    bus.add_argument(
        "--hardware",
        metavar="DEV",
        default=None,
        help="use the real chip on this i2c-dev node, e.g. /dev/i2c-1 (no chaos API)",
    )
    up_cmd.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help="database, Fortuna seed file, FIFO and logs (default $XDG_STATE_HOME/lokey, "
        "i.e. ~/.local/state/lokey)",
    )
    up_cmd.add_argument(
        "--host", default="127.0.0.1", help="address all four listen on (default 127.0.0.1)"
    )
    for name, port in SERVICE_PORTS.items():
        option = f"--{name}-port"
        up_cmd.add_argument(
            option,
            type=_bounded_int(option, lower=1, upper=65535),
            default=port,
            metavar="PORT",
            help=f"default {port}",
        )
    up_cmd.add_argument(
        "--single-process",
        action="store_true",
        help="run the four apps in one process (less memory, e.g. on a 512 MB Pi; no restarts)",
    )
    up_cmd.add_argument(
        "--max-restart-delay",
        type=_bounded_float("--max-restart-delay", lower=1.0, upper=3600.0),
        default=None,
        metavar="S",
        help="longest wait before restarting a service that keeps exiting (default 30 s; the "
        "wait starts at 1 s and doubles)",
    )
    up_cmd.set_defaults(run=_up)

    conformance_cmd = commands.add_parser(
        "conformance",
        help="run the conformance suites (python -m conformance; arguments passed through)",
        description=(
            "Run the conformance suites against any bus: every argument after the command "
            "goes to python -m conformance unchanged (e.g. --bus /dev/i2c-1)."
        ),
        add_help=False,
    )
    conformance_cmd.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    conformance_cmd.set_defaults(run=_conformance)

    commands.add_parser(
        "verify",
        help="check that no byte is served twice under SIGKILL (python -m lokey.verify)",
        description=(
            "lokey verify uniqueness [--duration S] [--long] [--kill-every S] [--json] ...: "
            "consumers on every path of a `lokey up --fast` stack while services are killed; "
            "every argument goes to python -m lokey.verify unchanged."
        ),
    )

    commands.add_parser(
        "bench",
        help="run the benchmarks: one table of figures, same-run limits and targets "
        "(python -m bench)",
        description=(
            "lokey bench [--only NAME[,NAME]] [--quick] [--json PATH] [--compare OLD.json]: "
            "every argument goes to python -m bench unchanged (lokey bench --help lists them)."
        ),
    )

    doctor_cmd = commands.add_parser(
        "doctor",
        help="check a bus and the chip on it, and say what to fix",
        description="Check the bus, the chip and its configuration (python -m lokey.doctor).",
    )
    doctor_cmd.add_argument(
        "--bus",
        metavar="URL",
        default=None,
        help="bus URL (default: LOKEY_BUS_URL, else /dev/i2c-$I2C_BUS_NUMBER, else the emulator)",
    )
    doctor_cmd.add_argument(
        "--samples",
        type=_bounded_int("--samples", lower=1, upper=1_000_000),
        default=None,
        metavar="N",
        help="Random commands to time and test (default: the doctor's)",
    )
    doctor_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor_cmd.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write every bus message as a JSON-lines trace; replay it with --bus replay://FILE",
    )
    doctor_cmd.set_defaults(run=_doctor)
    return parser


def _add_service(
    services: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    port: int,
    *,
    help: str,
    description: str,
) -> None:
    """``lokey serve NAME [--host] [--port]``: every service takes the same two options."""
    command = services.add_parser(name, help=help, description=description)
    command.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    command.add_argument(
        "--port",
        type=_bounded_int("--port", lower=1, upper=65535),
        default=None,
        help=f"port to listen on (default: $PORT, else {port})",
    )
    command.set_defaults(run=_serve)


def _bounded_float(option: str, *, lower: float, upper: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be a number, got {text!r}") from None
        if not lower <= value <= upper:
            raise argparse.ArgumentTypeError(
                f"{option} must be in [{lower:g}, {upper:g}], got {text}"
            )
        return value

    return parse


def _bounded_int(option: str, *, lower: int, upper: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be an integer, got {text!r}") from None
        if not lower <= value <= upper:
            raise argparse.ArgumentTypeError(
                f"{option} must be in [{lower:,}, {upper:,}], got {text}"
            )
        return value

    return parse


def _assess(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read(args.max_bytes + 1)
        else:
            with open(args.file, "rb") as file:
                data = file.read(args.max_bytes + 1)
    except OSError as error:
        print(f"lokey assess: cannot read {args.file!r}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if len(data) > args.max_bytes:
        print(
            f"lokey assess: {args.file!r} is larger than --max-bytes {args.max_bytes:,}; "
            "assess a slice of it or raise the limit",
            file=sys.stderr,
        )
        return EXIT_USAGE
    show_progress = not args.no_progress and not args.json and sys.stderr.isatty()
    bar = _ProgressBar(sys.stderr) if show_progress else None
    try:
        result = assess(
            data,
            h=args.min_entropy,
            sequence_bits=args.sequence_bits,
            progress=bar.update if bar else None,
        )
    except InsufficientDataError as error:
        print(f"lokey assess: input too short: {error}.", file=sys.stderr)
        print(_minimums_table(), file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print(
            f"lokey assess: out of memory for {len(data):,} bytes; lower --max-bytes or "
            "--sequence-bits",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render(result))
    return EXIT_PASS if result.passed else EXIT_FAIL


def _provision(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        url = args.bus or bus_url_from_env(os.environ)
        opened = open_bus(url)
    except (ValueError, LokeyError) as error:
        print(f"lokey provision: {error}", file=sys.stderr)
        return EXIT_USAGE
    with opened:
        driver = Atecc608aDriver(Transport(opened.bus, opened.clock))
        try:
            current = driver.read_config()
            the_plan = plan(current)
            print(render_plan(the_plan, url))
            if the_plan.already_locked:
                print("The config zone is already locked: nothing to do.")
                return EXIT_PASS
            if not args.yes:
                print("Dry run: nothing was written. Pass --yes to write and lock.")
                return EXIT_PASS
            locked = provision(driver, the_plan)  # exactly the plan shown above, or nothing
        except LokeyError as error:
            print(f"lokey provision: {error}", file=sys.stderr)
            return EXIT_FAIL
        finally:
            driver.close()
    print(f"Config zone locked with summary CRC 0x{locked.summary_crc:04X}.")
    return EXIT_PASS


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Exec ``python -m lokey.services SERVICE``: the service replaces this process.

    ``lokey.cli`` and ``lokey.services`` are independent siblings of the top layer (import
    contract), so the command starts the service as a program, the way ``lokey up`` starts all
    four; signals then reach the server directly and its exit status is the command's.
    """
    argv = [sys.executable, "-m", SERVICES_MODULE, args.service, "--host", args.host]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, argv)
    except OSError as error:
        print(
            f"lokey serve {args.service}: cannot start {SERVICES_MODULE}: {error}", file=sys.stderr
        )
    return EXIT_USAGE


def _up(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Exec ``python -m lokey.services up ...`` (the supervisor lives with the services)."""
    argv = ["up", "--host", args.host]
    for name in SERVICE_PORTS:
        argv += [f"--{name}-port", str(getattr(args, f"{name}_port"))]
    if args.fast:
        argv.append("--fast")
    if args.hardware is not None:
        argv += ["--hardware", args.hardware]
    if args.data_dir is not None:
        argv += ["--data-dir", args.data_dir]
    if args.single_process:
        argv.append("--single-process")
    if args.max_restart_delay is not None:
        argv += ["--max-restart-delay", repr(args.max_restart_delay)]
    return _exec_module("lokey up", SERVICES_MODULE, argv)


def _conformance(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return _exec_module("lokey conformance", CONFORMANCE_MODULE, list(args.args))


def _doctor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    argv: list[str] = []
    if args.bus is not None:
        argv += ["--bus", args.bus]
    if args.samples is not None:
        argv += ["--samples", str(args.samples)]
    if args.json:
        argv.append("--json")
    if args.record is not None:
        argv += ["--record", args.record]
    return _exec_module("lokey doctor", DOCTOR_MODULE, argv)


def _exec_module(command: str, module: str, arguments: Sequence[str]) -> int:
    """Replace this process with ``python -m MODULE ARGUMENTS``; 2 if that cannot happen."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", module, *arguments])
    except OSError as error:
        print(f"{command}: cannot start {module}: {error}", file=sys.stderr)
    return EXIT_USAGE


def render_plan(the_plan: ProvisionPlan, url: str) -> str:
    """The words provisioning would change, field by field, and the summary it locks with."""
    lines = [f"Chip on {url}: config zone {'LOCKED' if the_plan.already_locked else 'unlocked'}"]
    if the_plan.writes:
        lines.append(f"  {'word':>4}  {'bytes':>7}  {'field':<22} {'now':<11} {'template':<11}")
        for write in the_plan.writes:
            span = f"{write.offset}-{write.offset + 3}"
            lines.append(
                f"  0x{write.word:02X}  {span:>7}  {field_of(write.offset):<22} "
                f"{write.current.hex(' '):<11} {write.new.hex(' '):<11}"
            )
    else:
        lines.append("  bytes 16-127 already match the RNG template: no writes needed")
    lines.append(f"  Lock summary CRC after the writes: 0x{the_plan.summary_crc:04X} (mode 0x00)")
    return "\n".join(lines)


def _minimums_table() -> str:
    shortest = minimum_bits()
    lines = [f"The shortest test needs {shortest} bits ({-(-shortest // 8)} bytes). Per test:"]
    for name, _, minimum in sp800_22.BATTERY:
        lines.append(f"  {name:<27} {minimum:>10,} bits ({-(-minimum // 8):,} bytes)")
    return "\n".join(lines)


def render(result: Assessment) -> str:
    """The human-readable report: health tests, then one table row per SP 800-22 test."""
    health = result.health
    lines = [
        f"{result.size_bytes:,} bytes: {result.sequences} sequence(s) of "
        f"{result.sequence_bits:,} bits"
        + (f" ({result.unused_bits:,} trailing bits not tested)" if result.unused_bits else ""),
        "",
        f"SP 800-90B health tests (H = {health.h:g} bits/byte, alpha = {_alpha(health.alpha)})",
        f"  repetition count    cut-off {health.rct_cutoff:>4}  failing runs    "
        f"{health.rct_events:>6}  (healthy source: {health.rct_expected:.2g})",
        f"  adaptive proportion cut-off {health.apt_cutoff:>4}  failing windows "
        f"{health.apt_events:>6}  (healthy source: {health.apt_expected:.2g}, W = "
        f"{health.apt_window})",
        f"  start-up (first 1,024 samples): {_STARTUP[health.startup]}",
        f"  verdict: {'PASS' if health.passed else 'FAIL  ' + health.reason}",
        "",
        f"SP 800-22 Rev 1a (p-values at 0.01; verdicts hold the whole battery's false-alarm "
        f"rate at {BATTERY_ALPHA:g})",
        f"  {'test':<27} {'seq':>4} {'p-values':>8} {'min p':>10} {'pass rate':>10}  verdict",
    ]
    lines.extend(_row(verdict) for verdict in result.tests)
    ran = sum(1 for t in result.tests if t.status != "skipped")
    partial = f" ({ran} of {len(result.tests)} tests could run)" if ran < len(result.tests) else ""
    lines += ["", f"RESULT: {'PASS' if result.passed else 'FAIL'}{partial}"]
    return "\n".join(lines)


_STARTUP = {
    "passed": "passed",
    "failed": "FAILED",
    "not run": "not run (fewer than 1,024 samples)",
}


def _alpha(alpha: float) -> str:
    """2^-20 rather than 9.54e-07: alphas are chosen as powers of two (SP 800-90B §4.4)."""
    exponent = math.log2(alpha)
    return f"2^{exponent:.0f}" if exponent == round(exponent) else f"{alpha:.3g}"


def _row(verdict: TestVerdict) -> str:
    if verdict.status == "skipped":
        return (
            f"  {verdict.test:<27} {'-':>4} {'-':>8} {'-':>10} {'-':>10}  skipped: {verdict.reason}"
        )
    rate = f"{verdict.proportion:.4f}" if verdict.proportion is not None else "-"
    min_p = verdict.min_p if verdict.min_p is not None else float("nan")
    status = "PASS" if verdict.status == "pass" else "FAIL"
    note = f"  ({verdict.reason})" if verdict.reason else ""
    return (
        f"  {verdict.test:<27} {verdict.sequences:>4} {len(verdict.p_values):>8} "
        f"{min_p:>10.6f} {rate:>10}  {status}{note}"
    )


class _ProgressBar:
    """A one-line bar on a terminal's stderr, redrawn in place."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\rassessing [{bar}] {100 * done // max(total, 1):3d}%")
        self._stream.flush()

    def close(self) -> None:
        self._stream.write("\r" + " " * (self.WIDTH + 20) + "\r")
        self._stream.flush()


if __name__ == "__main__":
    sys.exit(main())

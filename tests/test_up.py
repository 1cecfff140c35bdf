"""``lokey up``: the restart policy on a fake clock, the plan, and the whole stack for real.

The policy and the stop sequence run against fake children on a clock that only moves when
slept on, so minutes of back-off take no time. The stack tests start ``lokey up`` as a user
would (a real process on free ports, a temporary data directory) and wait with bounds, never
fixed sleeps.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from lokey import cli
from lokey.services import supervisor
from lokey.services.supervisor import (
    Answer,
    Backoff,
    Console,
    ServicePlan,
    Supervisor,
    UsageError,
    make_plan,
)
from tests.service_helpers import wait_for
from tests.up_helpers import (
    is_running,
    lokey_up,
    read_fifo,
    wait_all_healthy,
)

# -- fakes ---------------------------------------------------------------------------------------


class FakeClock:
    """Time moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@dataclass
class FakeChild:
    pid: int
    clock: FakeClock
    dies_at: float | None  # None: runs until signalled
    ignores_term: bool = False
    code: int | None = None
    signals: list[int] = field(default_factory=list)

    def poll(self) -> int | None:
        if self.code is None and self.dies_at is not None and self.clock.now >= self.dies_at:
            self.code = -signal.SIGKILL
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.code = -signal.SIGKILL
        elif not self.ignores_term and self.code is None:
            self.code = 0


@dataclass
class FakeLauncher:
    """Each start of NAME takes the next lifetime from ``lifetimes[NAME]`` (default: forever)."""

    clock: FakeClock
    lifetimes: dict[str, list[float | None]] = field(default_factory=dict)
    ignores_term: frozenset[str] = frozenset()
    starts: list[tuple[str, float]] = field(default_factory=list)
    children: list[tuple[str, FakeChild]] = field(default_factory=list)

    def launch(self, service: ServicePlan) -> FakeChild:
        remaining = self.lifetimes.get(service.name, [])
        lifetime = remaining.pop(0) if remaining else None
        child = FakeChild(
            pid=1000 + len(self.starts),
            clock=self.clock,
            dies_at=None if lifetime is None else self.clock.now + lifetime,
            ignores_term=service.name in self.ignores_term,
        )
        self.starts.append((service.name, self.clock.now))
        self.children.append((service.name, child))
        return child


def _plans(tmp_path: Path) -> tuple[ServicePlan, ...]:
    return tuple(
        ServicePlan(name, "127.0.0.1", port, f"http://127.0.0.1:{port}", tmp_path / f"{name}.log")
        for name, port in supervisor.DEFAULT_PORTS.items()
    )


def _supervisor(
    tmp_path: Path, launcher: FakeLauncher, probe: Callable[[str, float], Answer | None]
) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    the_supervisor = Supervisor(
        _plans(tmp_path),
        launcher,
        Console(out, live=False),
        clock=launcher.clock,
        probe=probe,
    )
    return the_supervisor, out


def _always_ready(url: str, timeout_s: float) -> Answer | None:
    return Answer(200, "{}")


# -- the policy ----------------------------------------------------------------------------------


def test_backoff_doubles_from_one_second_to_thirty_and_resets_after_a_minute_up() -> None:
    backoff = Backoff()
    assert [backoff.after_exit(0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.after_exit(59.9) == 30  # not long enough
    assert backoff.after_exit(60.0) == 1  # stayed up a minute: a fresh start
    assert backoff.after_exit(3.0) == 2
    assert backoff.after_exit(10_000.0) == 1
    many = Backoff()
    assert [many.after_exit(0.0) for _ in range(2_000)][-1] == 30  # no overflow


def test_a_child_that_keeps_dying_is_restarted_with_backoff_and_the_others_are_left_alone(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock, lifetimes={"fortuna": [None, 0.5, 0.5, 0.5, 100.0, 0.5]})
    the_supervisor, out = _supervisor(tmp_path, launcher, _always_ready)
    assert the_supervisor.start()
    assert [name for name, _ in launcher.starts] == list(supervisor.SERVICES)  # in order
    first_fortuna = next(child for name, child in launcher.children if name == "fortuna")
    first_fortuna.code = -signal.SIGKILL  # killed at t = 0
    while clock.now < 130:
        the_supervisor.tick()
        clock.sleep(0.1)
    starts = [at for name, at in launcher.starts if name == "fortuna"]
    deaths = [0.0] + [
        child.dies_at for name, child in launcher.children if name == "fortuna" and child.dies_at
    ]
    # each restart waits its back-off after the death: 1, 2, 4, 8 s; lived 100 s -> 1 s, 2 s
    delays = [start - death for start, death in zip(starts[1:], deaths, strict=False)]
    assert len(delays) == 6
    for got, want in zip(delays, [1, 2, 4, 8, 1, 2], strict=True):
        assert want <= got <= want + 0.25, delays  # noticed within a tick (0.1 s) or two
    assert [name for name, _ in launcher.starts].count("fortuna") == 7
    assert all(name == "fortuna" for name, _ in launcher.starts[4:])  # nobody else restarted
    text = out.getvalue()
    assert "fortuna exited (killed by SIGKILL) after 0.0 s; restarting in 1 s" in text
    assert "restarting in 8 s" in text
    assert "fortuna restarted (pid" in text
    assert "fortuna is ready again" in text


def test_stop_terms_in_reverse_order_and_kills_a_child_that_ignores_sigterm_after_10_s(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock, ignores_term=frozenset({"virtio"}))
    the_supervisor, out = _supervisor(tmp_path, launcher, _always_ready)
    assert the_supervisor.start()
    began = clock.now
    the_supervisor.stop()
    children = dict(launcher.children)
    assert children["api"].signals == [signal.SIGTERM]
    assert children["virtio"].signals == [signal.SIGTERM, signal.SIGKILL]
    # fortuna and the controller got their SIGTERM only after virtio's 10 s: no more waiting,
    # SIGKILL for any that does not stop at once (these do)
    assert children["fortuna"].signals == [signal.SIGTERM]
    assert children["controller"].signals == [signal.SIGTERM]
    assert 10.0 <= clock.now - began <= 10.5
    assert all(child.code is not None for child in children.values())
    assert "killing virtio" in out.getvalue()


def test_stop_is_sigterm_only_when_every_child_stops_and_a_second_request_forces(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock)
    the_supervisor, _ = _supervisor(tmp_path, launcher, _always_ready)
    assert the_supervisor.start()
    the_supervisor.stop()
    assert [child.signals for _, child in launcher.children] == [[signal.SIGTERM]] * 4
    assert clock.now < 1.0

    stubborn = FakeLauncher(FakeClock(), ignores_term=frozenset(supervisor.SERVICES))
    forced, _ = _supervisor(tmp_path, stubborn, _always_ready)
    assert forced.start()
    forced.request_stop()
    forced.request_stop()  # a second Ctrl-C: no grace period
    forced.stop()
    assert stubborn.clock.now < 1.0
    assert all(child.signals[-1] == signal.SIGKILL for _, child in stubborn.children)


def test_a_child_that_dies_before_it_is_ready_stops_the_start_with_status_2(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock, lifetimes={"virtio": [0.3]})
    (tmp_path / "virtio.log").write_text("lokey serve virtio: VIRTIO_PIPE_PATH is wrong\n")

    def ready_unless_virtio(url: str, timeout_s: float) -> Answer | None:
        return None if ":8083" in url else Answer(200, "{}")

    the_supervisor, out = _supervisor(tmp_path, launcher, ready_unless_virtio)
    assert the_supervisor.run() == supervisor.EXIT_NOT_STARTED
    assert [name for name, _ in launcher.starts] == ["controller", "fortuna", "virtio"]
    assert "virtio stopped before it was ready" in out.getvalue()
    assert "VIRTIO_PIPE_PATH is wrong" in out.getvalue()  # the end of its log
    assert all(child.code is not None for _, child in launcher.children)


def test_a_controller_that_answers_but_stays_unhealthy_is_reported_and_the_rest_starts(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock)

    def controller_503(url: str, timeout_s: float) -> Answer | None:
        if ":8081" in url:
            return Answer(503, '{"status": "unhealthy", "reason": "config zone unlocked"}')
        return Answer(503, "{}")  # fortuna and the api are ready when they answer at all

    the_supervisor, out = _supervisor(tmp_path, launcher, controller_503)
    launcher_virtio_ok = the_supervisor.probe

    def probe(url: str, timeout_s: float) -> Answer | None:
        return Answer(200, "{}") if ":8083" in url else launcher_virtio_ok(url, timeout_s)

    the_supervisor.probe = probe
    assert the_supervisor.start()
    assert clock.now >= supervisor.START_TIMEOUT_S
    assert "controller NOT READY after 60 s: 503 config zone unlocked" in " ".join(
        out.getvalue().split()
    )


def test_console_redraws_one_status_line_on_a_terminal_and_prints_only_events_otherwise() -> None:
    live = io.StringIO()
    console = Console(live, live=True)
    console.status("[1/4] controller: waiting")
    console.event("ready")
    assert live.getvalue() == "\r\x1b[K[1/4] controller: waiting\r\x1b[Kready\n"
    plain = io.StringIO()
    quiet = Console(plain, live=False)
    quiet.status("[1/4] controller: waiting")
    quiet.event("ready")
    assert plain.getvalue() == "ready\n"


# -- the plan ------------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    supervisor.add_up_arguments(parser)
    return parser.parse_args(argv)


def test_the_plan_puts_the_files_in_the_data_dir_and_points_the_api_at_its_peers(
    tmp_path: Path,
) -> None:
    plan = make_plan(_args("--data-dir", str(tmp_path), "--api-port", "9000"), {"PORT": "1"})
    env = plan.env
    assert env["DB_PATH"] == str(tmp_path / "api.db")
    assert env["LOKEY_FORTUNA_SEED_FILE"] == str(tmp_path / "fortuna.seed")
    assert env["VIRTIO_PIPE_PATH"] == str(tmp_path / "virtio-rng")
    assert env["LOKEY_BUS_URL"] == "sim://atecc608a?lock=config-locked"  # typical timing
    assert env["CONTROLLER_ADDR"] == "http://127.0.0.1:8081"
    assert env["VIRTIO_ADDR"] == "http://127.0.0.1:8083"
    assert env["LOG_LEVEL"] == "WARNING"
    assert "PORT" not in env
    assert plan.service("api").health_url == "http://127.0.0.1:9000/api/v1/health"
    assert plan.service("virtio").log_path == tmp_path / "logs" / "virtio.log"


def test_options_beat_the_environment_which_beats_the_defaults(tmp_path: Path) -> None:
    user = {
        "LOKEY_BUS_URL": "/dev/i2c-7",
        "DB_PATH": "/elsewhere/api.db",
        "VIRTIO_PIPE_PATH": "",  # set and empty: no pipe
        "LOG_LEVEL": "DEBUG",
        "CONTROLLER_ADDR": "http://far-away:8081",
        "TRNG_QUEUE_SIZE": "100",
    }
    fast = make_plan(_args("--fast", "--data-dir", str(tmp_path), "--host", "0.0.0.0"), user)
    assert fast.env["LOKEY_BUS_URL"] == "sim://atecc608a?lock=config-locked&timing=instant"
    assert fast.env["DB_PATH"] == "/elsewhere/api.db"
    assert fast.env["VIRTIO_PIPE_PATH"] == ""
    assert fast.pipe_path is None
    assert fast.env["LOG_LEVEL"] == "DEBUG"
    assert fast.env["TRNG_QUEUE_SIZE"] == "100"
    assert fast.env["CONTROLLER_ADDR"] == "http://127.0.0.1:8081"  # the one started here
    from_env = make_plan(_args("--data-dir", str(tmp_path)), user)
    assert from_env.env["LOKEY_BUS_URL"] == "/dev/i2c-7"
    assert "from the environment" in from_env.bus_label
    hardware = make_plan(
        _args("--hardware", "/dev/i2c-1", "--data-dir", str(tmp_path)), {"I2C_BUS_NUMBER": "3"}
    )
    assert hardware.env["LOKEY_BUS_URL"] == "/dev/i2c-1"
    assert "I2C_BUS_NUMBER" not in hardware.env


def test_max_restart_delay_caps_the_backoff_of_the_plan(tmp_path: Path) -> None:
    default = make_plan(_args("--data-dir", str(tmp_path)), {})
    assert default.max_restart_delay_s == supervisor.BACKOFF_MAX_S
    capped = make_plan(_args("--data-dir", str(tmp_path), "--max-restart-delay", "2.5"), {})
    backoff = Backoff(maximum_s=capped.max_restart_delay_s)
    assert [backoff.after_exit(0.1) for _ in range(4)] == [1, 2, 2.5, 2.5]


def test_the_default_data_dir_is_per_user_state(tmp_path: Path) -> None:
    assert supervisor.default_data_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "lokey"
    assert (
        supervisor.default_data_dir({"XDG_STATE_HOME": "relative"})
        == Path("~/.local/state/lokey").expanduser()
    )
    assert supervisor.default_data_dir({}) == Path("~/.local/state/lokey").expanduser()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--api-port", "8081"), "--api-port 8081 is also --controller-port"),
        (("--hardware", "sim://atecc608a"), "--hardware must name an i2c-dev node"),
        (("--hardware", " "), "--hardware must name an i2c-dev node"),
    ],
)
def test_plans_that_cannot_work_are_refused_naming_the_option(
    tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        make_plan(_args(*argv, "--data-dir", str(tmp_path)), {})


# -- the command, for real ----------------------------------------------------------------------


def test_the_cli_and_the_supervisor_take_the_same_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def help_of(main: Callable[[list[str]], int], argv: list[str]) -> str:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        return capsys.readouterr().out

    def options(help_text: str) -> set[str]:
        return set(re.findall(r"--[a-z][a-z-]+", help_text))

    via_cli = options(help_of(cli.main, ["up", "--help"]))
    direct = options(help_of(supervisor.main, ["--help"]))
    assert via_cli == direct
    assert direct >= {
        "--fast",
        "--hardware",
        "--data-dir",
        "--host",
        "--single-process",
        "--api-port",
        "--controller-port",
        "--fortuna-port",
        "--virtio-port",
        "--max-restart-delay",
    }
    top = help_of(cli.main, ["--help"])
    for command in ("up", "conformance", "doctor"):
        assert re.search(rf"^\s+{command}\s", top, re.M), top


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--api-port", "70000"], "--api-port"),
        (["--virtio-port", "0"], "--virtio-port"),
        (["--fortuna-port", "http"], "--fortuna-port"),
        (["--fast", "--hardware", "/dev/i2c-1"], "--hardware"),
        (["--max-restart-delay", "0.5"], "--max-restart-delay"),
        (["--max-restart-delay", "nan"], "--max-restart-delay"),
        (["--max-restart-delay", "soon"], "--max-restart-delay"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    for main, args in ((cli.main, ["up", *argv]), (supervisor.main, argv)):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 2
        assert option in capsys.readouterr().err


def test_a_data_dir_that_cannot_be_written_exits_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert supervisor.main(["--fast", "--data-dir", str(blocker / "data")]) == 2
    assert f"--data-dir {blocker / 'data'}: cannot create it" in capsys.readouterr().err
    assert supervisor.main(["--fast", "--data-dir", str(blocker)]) == 2
    assert f"--data-dir {blocker}: not a directory" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        assert supervisor.main(["--fast", "--data-dir", str(locked)]) == 2
        assert f"--data-dir {locked}: not writable" in capsys.readouterr().err


def test_a_port_in_use_exits_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = ["--fast", "--data-dir", str(tmp_path), "--fortuna-port", str(port)]
        assert supervisor.main(argv) == 2
    assert f"--fortuna-port {port}: 127.0.0.1:{port} is already in use" in capsys.readouterr().err
    assert not (tmp_path / "logs" / "controller.log").exists()  # nothing was started


def test_lokey_up_runs_the_stack_restarts_a_killed_service_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    with lokey_up(
        tmp_path,
        "--fast",
        # a small TRNG reserve, so VirtIO (and so the FIFO) gets chip bytes within seconds
        LOKEY_VIRTIO_TRNG_RESERVE_BYTES="256",
        LOKEY_TRNG_POLL_SAMPLES="8",
        DB_SYNC="false",
    ) as up:
        output = up.output()
        assert "LoKey is up on the emulator, instant timing (--fast)." in output
        assert str(up.data_dir / "virtio-rng") in output
        assert str(up.data_dir / "logs" / "api.log") in output
        assert re.search(r"memory\s+\d+ MB RSS in 4 processes", output), output
        wait_all_healthy(up)
        pids = up.pids()
        assert len(set(pids.values())) == 4

        answers: list[httpx.Response] = []

        def served() -> bool:
            answers.append(
                httpx.post(
                    up.url("api", "/api/v1/data"),
                    json={"format": "uint8", "limit": 4, "source": "trng"},
                    timeout=5,
                )
            )
            return answers[-1].status_code == 200

        wait_for(served, "POST /api/v1/data from the trng queue", timeout_s=20, interval_s=0.2)
        values = answers[-1].json()
        assert len(values) == 4
        assert all(0 <= value <= 255 for value in values)

        fifo = up.data_dir / "virtio-rng"
        assert fifo.is_fifo()
        data = read_fifo(fifo, timeout_s=20)
        assert len(data) >= 32, "no bytes from the FIFO within 20 s"
        assert len(set(data)) > 1
        seeding = httpx.get(up.url("api", "/api/v1/status"), timeout=5).json()["seeding"]
        # the FIFO's bytes are the chip's: consumed from the api's TRNG queue, sent to VirtIO
        assert seeding["virtio"]["source"] == "trng"
        assert seeding["virtio"]["seeded_bytes"] >= len(data)

        os.kill(pids["fortuna"], signal.SIGKILL)
        up.wait_output("fortuna is ready again", timeout_s=20)
        restarted = up.pids()
        assert restarted["fortuna"] != pids["fortuna"]
        assert restarted["controller"] == pids["controller"]
        assert httpx.get(up.url("fortuna", "/health"), timeout=5).status_code in (200, 503)
        assert "fortuna exited (killed by SIGKILL)" in up.output()

        assert up.stop() == 0, up.output()
        final = up.output()
        assert "lokey up: stopped" in final
        for name in ("api", "virtio", "fortuna", "controller"):
            assert f"stopped {name} (exit status 0)" in final
        for pid in [*pids.values(), restarted["fortuna"]]:
            assert not is_running(pid), f"pid {pid} outlived lokey up"
        assert not (up.data_dir / "lokey-up.json").exists()


def test_single_process_serves_all_four_health_endpoints_in_one_small_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with lokey_up(tmp_path, "--fast", "--single-process", DB_SYNC="false") as up:
        wait_all_healthy(up)
        assert set(up.pids().values()) == {up.process.pid}  # one process (the cli exec'd it)
        found = re.search(r"memory\s+(\d+) MB RSS \(one process\)", up.output())
        assert found, up.output()
        rss_mb = int(found.group(1))
        print(f"single-process RSS: {rss_mb} MB")
        assert 20 <= rss_mb <= 300  # the four separate processes take about 300 MB together
        assert (up.data_dir / "virtio-rng").is_fifo()
        assert supervisor.main(["--fast", "--data-dir", str(up.data_dir)]) == 2  # one per dir
        assert f"--data-dir {up.data_dir} is in use by another lokey up (pid {up.process.pid})" in (
            capsys.readouterr().err
        )
        assert up.stop() == 0, up.output()
        assert "stopped controller" in up.output()


def test_the_children_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    with lokey_up(tmp_path, "--fast", DB_SYNC="false") as up:
        pids = up.pids()
        up.process.kill()  # no chance to stop anything: the kernel tells the children
        up.process.wait()

        def all_gone() -> bool:
            return not any(is_running(pid) for pid in pids.values())

        wait_for(all_gone, "the children to exit after the supervisor died", timeout_s=15)


@pytest.mark.parametrize(
    ("argv", "module", "passed"),
    [
        (
            ["conformance", "--bus", "/dev/i2c-1", "-k", "wake", "-h"],
            "conformance",
            ["--bus", "/dev/i2c-1", "-k", "wake", "-h"],
        ),
        (["conformance"], "conformance", []),
        (
            ["doctor", "--bus", "sim://atecc608a", "--samples", "5", "--json"],
            "lokey.doctor",
            ["--bus", "sim://atecc608a", "--samples", "5", "--json"],
        ),
        (["doctor"], "lokey.doctor", []),
        (
            ["up", "--fast", "--data-dir", "d", "--api-port", "9000", "--single-process"],
            "lokey.services",
            [
                "up",
                "--host",
                "127.0.0.1",
                "--controller-port",
                "8081",
                "--fortuna-port",
                "8082",
                "--virtio-port",
                "8083",
                "--api-port",
                "9000",
                "--fast",
                "--data-dir",
                "d",
                "--single-process",
            ],
        ),
        (
            ["verify", "uniqueness", "--duration", "5", "--json"],
            "lokey.verify",
            ["uniqueness", "--duration", "5", "--json"],
        ),
        (
            ["up", "--hardware", "/dev/i2c-1"],
            "lokey.services",
            [
                "up",
                "--host",
                "127.0.0.1",
                "--controller-port",
                "8081",
                "--fortuna-port",
                "8082",
                "--virtio-port",
                "8083",
                "--api-port",
                "8080",
                "--hardware",
                "/dev/i2c-1",
            ],
        ),
    ],
)
def test_up_conformance_and_doctor_exec_their_module_with_the_arguments(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], module: str, passed: list[str]
) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, args: list[str]) -> None:
        calls.append((path, list(args)))
        raise OSError(2, "not really")

    monkeypatch.setattr(os, "execv", fake_execv)
    assert cli.main(argv) == 2  # exec "failed": the could-not-run status
    assert calls == [(sys.executable, [sys.executable, "-m", module, *passed])]

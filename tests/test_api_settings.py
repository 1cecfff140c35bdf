"""Starting the API service: its environment (spec/service-api.md §6.1), the CLI, one real process.

``load_api_settings`` reads a mapping; ``ApiSettings()`` reads the process environment. Bad values
stop the start-up with a message naming the variable (exit status 2 from ``lokey serve api``),
where the reference fell back to defaults or crashed later. The real process runs with every
peer at a refused address: it must still answer, report itself degraded and stop cleanly.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import httpx
import pytest

from lokey import cli
from lokey.services import __main__ as services_main
from lokey.services.settings import API_ENV, ApiSettings, SettingsError, load_api_settings
from tests.api_helpers import api_settings, dead_address, running_api
from tests.service_helpers import free_port, serve


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any API variable (the tests set what they need)."""
    for name in (*API_ENV, "GIN_MODE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_the_references() -> None:
    s = load_api_settings({})
    assert s.port == 8080
    assert s.db_path == Path("/data/api.db")
    assert not s.in_memory
    assert s.controller_addr == "http://controller:8081"
    assert s.fortuna_addr == "http://fortuna:8082"
    assert s.virtio_addr == "http://virtio:8083"
    assert (s.trng_queue_size, s.fortuna_queue_size, s.virtio_queue_size) == (
        1_000_000,
        1_000_000,
        500_000,
    )
    assert (s.trng_poll_interval_ms, s.fortuna_poll_interval_ms, s.virtio_poll_interval_ms) == (
        100,
        100,
        100,
    )
    assert s.virtio_seeding_source == "trng"
    assert s.virtio_seed_interval_s == 30
    assert s.fortuna_seed_interval_s == 30
    assert s.fortuna_seed_samples == 32
    assert s.db_sync is True
    assert s.allow_peek is False
    assert s.cors_origin == "*"
    assert s.virtio_trng_reserve_bytes == 32 << 10
    assert s.explicit == frozenset()


def test_the_reference_variable_names_are_read() -> None:
    reference = {
        "PORT",
        "DB_PATH",
        "DB_IMPLEMENTATION",
        "CONTROLLER_ADDR",
        "FORTUNA_ADDR",
        "VIRTIO_ADDR",
        "TRNG_QUEUE_SIZE",
        "FORTUNA_QUEUE_SIZE",
        "VIRTIO_QUEUE_SIZE",
        "TRNG_POLL_INTERVAL_MS",
        "FORTUNA_POLL_INTERVAL_MS",
        "VIRTIO_POLL_INTERVAL_MS",
        "VIRTIO_SEEDING_SOURCE",
        "VIRTIO_SEED_INTERVAL_SECONDS",
        "TRNG_APT_WINDOW_SIZE",
        "FORTUNA_SEED_INTERVAL_SECONDS",
    }
    assert reference <= set(API_ENV)


@pytest.mark.parametrize(
    ("env", "attribute", "value"),
    [
        ({"PORT": "9000"}, "port", 9000),
        ({"TRNG_QUEUE_SIZE": "10"}, "trng_queue_size", 10),
        ({"FORTUNA_QUEUE_SIZE": "1000000"}, "fortuna_queue_size", 1_000_000),
        ({"VIRTIO_QUEUE_SIZE": "15000"}, "virtio_queue_size", 15_000),
        ({"VIRTIO_SEEDING_SOURCE": "both"}, "virtio_seeding_source", "both"),
        ({"VIRTIO_SEEDING_SOURCE": "fortuna"}, "virtio_seeding_source", "fortuna"),
        ({"VIRTIO_SEED_INTERVAL_SECONDS": "10"}, "virtio_seed_interval_s", 10),
        ({"VIRTIO_SEED_INTERVAL_SECONDS": "3600"}, "virtio_seed_interval_s", 3600),
        ({"FORTUNA_SEED_INTERVAL_SECONDS": "5"}, "fortuna_seed_interval_s", 5.0),
        ({"DB_SYNC": "false"}, "db_sync", False),
        ({"DB_SYNC": "TRUE"}, "db_sync", True),
        ({"ALLOW_PEEK": "true"}, "allow_peek", True),
        ({"CONTROLLER_ADDR": "http://10.0.0.2:8081/"}, "controller_addr", "http://10.0.0.2:8081"),
        ({"FORTUNA_ADDR": "https://fortuna.lan"}, "fortuna_addr", "https://fortuna.lan"),
        ({"LOKEY_CORS_ORIGIN": "https://a.example"}, "cors_origin", "https://a.example"),
        ({"LOKEY_CORS_ORIGIN": "http://a.example:8080"}, "cors_origin", "http://a.example:8080"),
        ({"TRNG_QUEUE_SIZE": "  "}, "trng_queue_size", 1_000_000),  # blank is unset
        ({"CONTROLLER_ADDR": "http://127.0.0.1:1"}, "controller_addr", "http://127.0.0.1:1"),
        ({"FORTUNA_ADDR": "http://fortuna:65535"}, "fortuna_addr", "http://fortuna:65535"),
        ({"VIRTIO_ADDR": "http://[::1]:8083"}, "virtio_addr", "http://[::1]:8083"),
        ({"VIRTIO_ADDR": "https://virtio.lan/"}, "virtio_addr", "https://virtio.lan"),
        ({"FORTUNA_SEED_INTERVAL_SECONDS": "1"}, "fortuna_seed_interval_s", 1.0),
        ({"VIRTIO_POLL_INTERVAL_MS": "10"}, "virtio_poll_interval_ms", 10),
        ({"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "0"}, "virtio_trng_reserve_bytes", 0),
        ({"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "4096"}, "virtio_trng_reserve_bytes", 4096),
        ({"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": str(1 << 30)}, "virtio_trng_reserve_bytes", 1 << 30),
    ],
)
def test_accepted_values(env: dict[str, str], attribute: str, value: object) -> None:
    assert getattr(load_api_settings(env), attribute) == value


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TRNG_QUEUE_SIZE": "5"}, "TRNG_QUEUE_SIZE"),
        ({"TRNG_QUEUE_SIZE": "1000001"}, "TRNG_QUEUE_SIZE"),
        ({"TRNG_QUEUE_SIZE": "0"}, "TRNG_QUEUE_SIZE"),
        ({"FORTUNA_QUEUE_SIZE": "9"}, "FORTUNA_QUEUE_SIZE"),
        ({"VIRTIO_QUEUE_SIZE": "2000000"}, "VIRTIO_QUEUE_SIZE"),
        ({"VIRTIO_SEED_INTERVAL_SECONDS": "5"}, "VIRTIO_SEED_INTERVAL_SECONDS"),
        ({"VIRTIO_SEED_INTERVAL_SECONDS": "3601"}, "VIRTIO_SEED_INTERVAL_SECONDS"),
        ({"CONTROLLER_ADDR": "ftp://x"}, "CONTROLLER_ADDR"),
        ({"FORTUNA_ADDR": "fortuna:8082"}, "FORTUNA_ADDR"),
        ({"VIRTIO_ADDR": "ftp://virtio"}, "VIRTIO_ADDR"),
        ({"VIRTIO_SEEDING_SOURCE": "x"}, "VIRTIO_SEEDING_SOURCE"),
        ({"DB_SYNC": "maybe"}, "DB_SYNC"),
        ({"ALLOW_PEEK": "sometimes"}, "ALLOW_PEEK"),
        ({"PORT": "0"}, "PORT"),
        ({"TRNG_POLL_INTERVAL_MS": "0"}, "TRNG_POLL_INTERVAL_MS"),
        ({"FORTUNA_SEED_INTERVAL_SECONDS": "-1"}, "FORTUNA_SEED_INTERVAL_SECONDS"),
        ({"FORTUNA_SEED_INTERVAL_SECONDS": "0"}, "FORTUNA_SEED_INTERVAL_SECONDS"),
        ({"FORTUNA_SEED_INTERVAL_SECONDS": "0.5"}, "FORTUNA_SEED_INTERVAL_SECONDS"),
        ({"VIRTIO_POLL_INTERVAL_MS": "9"}, "VIRTIO_POLL_INTERVAL_MS"),
        ({"VIRTIO_POLL_INTERVAL_MS": "1"}, "VIRTIO_POLL_INTERVAL_MS"),
        ({"TRNG_QUEUE_SIZE": "ten"}, "TRNG_QUEUE_SIZE"),
        ({"LOKEY_CORS_ORIGIN": "https://a.example,https://b.example"}, "LOKEY_CORS_ORIGIN"),
        ({"LOKEY_CORS_ORIGIN": "https://b\u00fccher.example"}, "LOKEY_CORS_ORIGIN"),
        ({"LOKEY_CORS_ORIGIN": "https://a.example\r\nX-Evil: 1"}, "LOKEY_CORS_ORIGIN"),
        ({"LOKEY_CORS_ORIGIN": "https://a.example\x7f"}, "LOKEY_CORS_ORIGIN"),
        ({"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "-1"}, "LOKEY_VIRTIO_TRNG_RESERVE_BYTES"),
        (
            {"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": str((1 << 30) + 1)},
            "LOKEY_VIRTIO_TRNG_RESERVE_BYTES",
        ),
        ({"LOKEY_VIRTIO_TRNG_RESERVE_BYTES": "32k"}, "LOKEY_VIRTIO_TRNG_RESERVE_BYTES"),
    ],
)
def test_refused_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_api_settings(env)
    assert variable in str(caught.value)
    assert repr(next(iter(env.values()))) in str(caught.value)  # and the value it got


BAD_ADDRESSES = {
    "ftp-scheme": "ftp://host:8081",
    "no-scheme": "host:8081",
    "scheme-relative": "//host:8081",
    "no-host": "http://:8081",
    "nothing-after-scheme": "http://",
    "port-0": "http://host:0",
    "port-65536": "http://host:65536",
    "port-99999": "http://host:99999",
    "port-not-a-number": "http://host:abc",
    "path": "http://host:8081/api",
    "query": "http://host:8081?x=1",
    "empty-query": "http://host:8081?",
    "fragment": "http://host:8081#top",
    "empty-fragment": "http://host:8081#",
    "credentials": "http://user:secret@host:8081",
    "user-only": "http://user@host:8081",
    "inner-space": "http://ho st:8081",
    "tab": "http://ho\tst:8081",
    "non-ascii-host": "http://h\u00f6st:8081",
    "control-character": "http://host\x7f:8081",
}


@pytest.mark.parametrize("variable", ["CONTROLLER_ADDR", "FORTUNA_ADDR", "VIRTIO_ADDR"])
@pytest.mark.parametrize("value", BAD_ADDRESSES.values(), ids=list(BAD_ADDRESSES))
def test_peer_addresses_are_http_base_urls_and_nothing_more(variable: str, value: str) -> None:
    """Every call is ``{address}/path``: anything after the port would corrupt each URL."""
    with pytest.raises(SettingsError) as caught:
        load_api_settings({variable: value})
    assert variable in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        load_api_settings({"TRNG_QUEUE_SIZE": "5", "DB_SYNC": "maybe"})
    assert "TRNG_QUEUE_SIZE" in str(caught.value)
    assert "DB_SYNC" in str(caught.value)


def test_a_blank_virtio_addr_disables_virtio(clean_env: pytest.MonkeyPatch) -> None:
    assert load_api_settings({"VIRTIO_ADDR": ""}).virtio_addr is None
    assert load_api_settings({"VIRTIO_ADDR": "   "}).virtio_addr is None
    assert load_api_settings({}).virtio_addr == "http://virtio:8083"
    clean_env.setenv("VIRTIO_ADDR", "")
    assert ApiSettings().virtio_addr is None
    clean_env.delenv("VIRTIO_ADDR")
    assert ApiSettings().virtio_addr == "http://virtio:8083"


def test_api_settings_reads_the_process_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRNG_QUEUE_SIZE", "20")
    clean_env.setenv("DB_IMPLEMENTATION", "channel")
    clean_env.setenv("GIN_MODE", "release")  # accepted and ignored
    settings = ApiSettings()
    assert settings.trng_queue_size == 20
    assert settings.in_memory
    assert "trng_queue_size" in settings.explicit
    assert "fortuna_queue_size" not in settings.explicit


def test_load_api_settings_ignores_the_process_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRNG_QUEUE_SIZE", "20")
    assert load_api_settings({}).trng_queue_size == 1_000_000


@pytest.mark.parametrize(
    ("value", "in_memory"),
    [("channel", True), ("lmdb", False), ("bolt", False), ("Channel", False), ("", False)],
)
def test_only_exactly_channel_selects_the_in_memory_store(value: str, in_memory: bool) -> None:
    assert load_api_settings({"DB_IMPLEMENTATION": value}).in_memory is in_memory


def test_gin_mode_is_accepted_and_ignored() -> None:
    assert load_api_settings({"GIN_MODE": "release"}) == load_api_settings({})


# -- lokey serve api -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRNG_QUEUE_SIZE", "5"),
        ("VIRTIO_SEED_INTERVAL_SECONDS", "5"),
        ("CONTROLLER_ADDR", "ftp://x"),
        ("VIRTIO_SEEDING_SOURCE", "x"),
        ("DB_SYNC", "maybe"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
    value: str,
) -> None:
    clean_env.setenv("DB_PATH", str(tmp_path / "api.db"))
    clean_env.setenv(variable, value)
    assert services_main.main(["api", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lokey serve api: ")
    assert variable in err
    assert not (tmp_path / "api.db").exists()


def test_a_db_path_that_cannot_be_created_exits_2_naming_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    db_path = blocker / "api.db"  # a path under a regular file: unwritable, even for root
    clean_env.setenv("DB_PATH", str(db_path))
    assert services_main.main(["api", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lokey serve api: ")
    assert str(blocker) in err


def test_a_db_path_that_is_not_a_file_exits_2_naming_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    (directory / "database.db").mkdir(parents=True)  # DB_PATH/database.db is a directory
    clean_env.setenv("DB_PATH", str(directory))
    assert services_main.main(["api", "--port", str(free_port())]) == 2
    assert str(directory / "database.db") in capsys.readouterr().err


def test_missing_db_path_directories_are_created_0750(tmp_path: Path) -> None:
    db_path = tmp_path / "a" / "b" / "api.db"
    old_umask = os.umask(0o022)
    try:
        with running_api(api_settings(tmp_path, DB_PATH=str(db_path))) as client:
            assert client.get("/api/v1/status").json()["database"]["path"] == str(db_path)
    finally:
        os.umask(old_umask)
    assert db_path.is_file()
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750


def test_lokey_serve_api_execs_the_service_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        calls.append((path, argv))
        raise OSError(8, "Exec format error")

    monkeypatch.setattr(os, "execv", fake_execv)
    assert cli.main(["serve", "api", "--port", "9004"]) == 2
    assert calls == [
        (
            sys.executable,
            [
                sys.executable,
                "-m",
                "lokey.services",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                "9004",
            ],
        )
    ]


def test_lokey_serve_api_runs_degraded_without_peers_and_stops_cleanly(tmp_path: Path) -> None:
    db_path = tmp_path / "db" / "api.db"
    with serve(
        "api",
        tmp_path,
        settings_names=API_ENV,
        DB_PATH=str(db_path),
        CONTROLLER_ADDR=dead_address(),
        FORTUNA_ADDR=dead_address(),
        VIRTIO_ADDR=dead_address(),
        LOKEY_HTTP_TIMEOUT_S="1",
        DB_SYNC="false",
    ) as served:
        health = httpx.get(f"{served.base}/api/v1/health", timeout=5.0)
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        assert body["details"]["api"] is True
        assert body["details"]["database"] is True
        assert body["details"]["controller"] is False
        empty = httpx.post(
            f"{served.base}/api/v1/data",
            json={"format": "uint8", "limit": 1, "source": "trng"},
            timeout=5.0,
        )
        assert empty.status_code == 503
        assert db_path.is_file()
        assert served.stop() == 0
    output = served.output()
    assert "Traceback" not in output


# -- CONTROLLER_ADDR / FORTUNA_ADDR lists, STORE_URL, LOKEY_LEASE_SECONDS (issue 11) ---------------


@pytest.mark.parametrize("variable", ["CONTROLLER_ADDR", "FORTUNA_ADDR"])
def test_peer_address_lists_are_comma_separated_with_blanks_ignored(variable: str) -> None:
    settings = load_api_settings({variable: " http://a.lan:1/ ,http://b.lan:2,  http://[::1]:3 ,"})
    attribute = "controller_addrs" if variable == "CONTROLLER_ADDR" else "fortuna_addrs"
    assert getattr(settings, attribute) == ("http://a.lan:1", "http://b.lan:2", "http://[::1]:3")
    assert getattr(settings, attribute.removesuffix("s")) == "http://a.lan:1"  # the first


@pytest.mark.parametrize("variable", ["CONTROLLER_ADDR", "FORTUNA_ADDR"])
def test_a_duplicate_peer_address_is_refused_naming_it(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable} names http://a.lan:1 twice"):
        load_api_settings({variable: "http://a.lan:1,http://b.lan:2,http://a.lan:1/"})


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("http://Pi-1.lan:8081,http://pi-1.LAN:8081", "http://Pi-1.lan:8081"),
        ("http://pi-1.lan,http://pi-1.lan:80", "http://pi-1.lan"),
        ("https://pi-1.lan:443,https://pi-1.lan", "https://pi-1.lan:443"),
    ],
)
def test_the_same_peer_written_two_ways_is_a_duplicate(value: str, named: str) -> None:
    """Host names are case-blind and a default port is no port: both spellings would poll one
    chip in two loops under two leases."""
    with pytest.raises(SettingsError, match=f"names {re.escape(named)} twice"):
        load_api_settings({"CONTROLLER_ADDR": value})


@pytest.mark.parametrize("variable", ["CONTROLLER_ADDR", "FORTUNA_ADDR"])
def test_a_bad_entry_in_a_peer_address_list_is_named_by_its_position(variable: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable} entry 2 \\('ftp://b'\\) must be"):
        load_api_settings({variable: "http://a.lan:1, ftp://b"})


def test_a_peer_address_list_holds_one_to_64_entries() -> None:
    many = ",".join(f"http://pi{n}.lan:8081" for n in range(65))
    with pytest.raises(SettingsError, match="names 65 base URLs; at most 64"):
        load_api_settings({"CONTROLLER_ADDR": many})
    assert (
        len(load_api_settings({"CONTROLLER_ADDR": many.rpartition(",")[0]}).controller_addrs) == 64
    )
    with pytest.raises(SettingsError, match="CONTROLLER_ADDR must name at least one base URL"):
        load_api_settings({"CONTROLLER_ADDR": " , ,"})


def test_one_bad_peer_address_keeps_the_single_address_message() -> None:
    with pytest.raises(SettingsError) as caught:
        load_api_settings({"CONTROLLER_ADDR": "ftp://x"})
    assert str(caught.value) == (
        "invalid settings: CONTROLLER_ADDR must be an http:// or https:// base URL such as "
        "http://127.0.0.1:8081: a host and an optional port, without a path, query, fragment, "
        "credentials or spaces (got 'ftp://x')"
    )


@pytest.mark.parametrize(("value", "seconds"), [("0.5", 0.5), ("5", 5.0), ("300", 300.0)])
def test_lease_seconds_accepts_half_a_second_to_five_minutes(value: str, seconds: float) -> None:
    assert load_api_settings({"LOKEY_LEASE_SECONDS": value}).lease_s == seconds


@pytest.mark.parametrize("value", ["0.4", "301", "nan", "inf", "-1", "five"])
def test_lease_seconds_outside_its_bounds_is_refused_naming_it(value: str) -> None:
    with pytest.raises(SettingsError, match="LOKEY_LEASE_SECONDS"):
        load_api_settings({"LOKEY_LEASE_SECONDS": value})


@pytest.mark.parametrize(
    ("value", "kind"),
    [("memory://", "memory"), ("lmdb:///data/x.db", "lmdb"), ("redis://h:6379/1", "redis")],
)
def test_store_url_selects_the_store(value: str, kind: str) -> None:
    settings = load_api_settings({"STORE_URL": value, "DB_IMPLEMENTATION": "channel"})
    assert settings.store_url is not None
    assert settings.store.kind == settings.store_url.kind == kind

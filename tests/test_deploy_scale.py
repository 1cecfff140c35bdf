"""The scale-out deployment files (issue 11, docs/scale-out.md) stay true to the code.

``deploy/compose.pi.yaml`` runs one published controller; ``deploy/compose.scale.yaml`` runs
Redis, Fortuna instances, API instances and nginx. Every LoKey service there starts a real
``lokey serve`` service, sets only its real settings and passes its loader; every API instance
has the same store and the same peer lists (the leases are named after those URLs), and the lists
name exactly the Fortuna services of the file; nginx balances over exactly the API services;
Redis runs with the durable configuration the Redis store accepts without a warning. The
systemd examples (``deploy/systemd/scale-out``) set real settings and start real services.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lokey.services.settings import load_api_settings
from lokey.store import parse_store_url
from lokey.store.redis_store import restart_can_roll_back
from tests.test_deploy import (
    DEPLOY,
    LOADERS,
    SYSTEMD,
    VENV_LOKEY,
    _allowed_names,
    _check_serve_command,
    _compose,
    _env_file,
    _environment,
    _localised,
    _mapping,
    _port,
    _strings,
    _unit,
    _volume_targets,
)

PI = DEPLOY / "compose.pi.yaml"
SCALE = DEPLOY / "compose.scale.yaml"
NGINX = DEPLOY / "nginx" / "lokey-api.conf"
REDIS_CONF = DEPLOY / "redis" / "lokey.conf"
SCALE_OUT = SYSTEMD / "scale-out"


def _lokey_services(path: Path) -> dict[str, str]:
    """Compose service name -> the LoKey service it serves (``serve NAME``)."""
    kinds = {}
    for name, service in _compose(path).items():
        command = _strings(service.get("command", []))
        if command[:1] == ["serve"]:
            _check_serve_command(command, command[1])
            assert dict(zip(command[2::2], command[3::2], strict=True))["--host"] == "0.0.0.0"
            kinds[name] = command[1]
    return kinds


def test_a_pi_runs_only_its_controller_published_on_its_port() -> None:
    (service,) = _compose(PI).values()
    assert _lokey_services(PI) == {"controller": "controller"}
    env = _environment(service)
    LOADERS["controller"](env)
    port = _port("controller", env)
    assert _strings(service["ports"]) == [f"{port}:{port}"]
    assert _strings(service["devices"]) == ["/dev/i2c-1:/dev/i2c-1"]


@pytest.mark.parametrize("path", [PI, SCALE], ids=lambda p: p.name)
def test_scale_out_compose_sets_only_real_settings_that_pass_the_loaders(
    path: Path, tmp_path: Path
) -> None:
    services = _compose(path)
    for name, kind in _lokey_services(path).items():
        env = _environment(services[name])
        unknown = set(env) - _allowed_names(kind)
        assert not unknown, f"{path.name} {name}: not settings of {kind}: {sorted(unknown)}"
        targets = _volume_targets(services[name])
        LOADERS[kind](_localised(env, {t: tmp_path / name / t.strip("/") for t in targets}))


def test_every_api_instance_shares_one_redis_store_and_the_same_peer_lists() -> None:
    services = _compose(SCALE)
    kinds = _lokey_services(SCALE)
    apis = [name for name, kind in kinds.items() if kind == "api"]
    assert len(apis) >= 2
    shared = {"STORE_URL", "CONTROLLER_ADDR", "FORTUNA_ADDR"}
    views = {name: {k: _environment(services[name])[k] for k in shared} for name in apis}
    assert len({tuple(sorted(view.items())) for view in views.values()}) == 1, views
    env = _environment(services[apis[0]])
    store = parse_store_url(env["STORE_URL"])
    assert store.kind == "redis"
    assert str(urlsplit(env["STORE_URL"]).hostname) in services  # the compose network's Redis
    settings = load_api_settings(env)
    fortunas = {name for name, kind in kinds.items() if kind == "fortuna"}
    named = {str(urlsplit(url).hostname): urlsplit(url).port for url in settings.fortuna_addrs}
    assert set(named) == fortunas, "FORTUNA_ADDR names exactly the Fortuna services"
    for name, port in named.items():
        assert port == _port("fortuna", _environment(services[name]))
    assert len(settings.controller_addrs) >= 2  # one entry per Pi


def test_nginx_balances_over_exactly_the_api_services() -> None:
    kinds = _lokey_services(SCALE)
    services = _compose(SCALE)
    upstream = dict(re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):([0-9]+)", NGINX.read_text(), re.M))
    apis = {name for name, kind in kinds.items() if kind == "api"}
    assert set(upstream) == apis
    for name, port in upstream.items():
        assert int(port) == _port("api", _environment(services[name]))
    lb = next(s for n, s in services.items() if n not in kinds and "nginx" in str(s["image"]))
    mounted = [entry.split(":")[0] for entry in _strings(lb["volumes"])]
    assert f"./{NGINX.relative_to(DEPLOY)}" in mounted
    # data answers are consumed once: nginx must never cache them
    assert re.search(r"^\s*proxy_cache off;", NGINX.read_text(), re.M)


def _redis_conf() -> dict[str, str]:
    settings = {}
    for line in REDIS_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            settings[key] = value.strip()
    return settings


def test_redis_runs_with_the_durable_configuration() -> None:
    conf = _redis_conf()
    # every consumption fsynced before Redis answers; no snapshot to roll back to
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "always"
    assert conf["save"] == '""'
    assert conf["maxmemory-policy"] == "noeviction"
    as_config_get = {name: conf[name].strip('"') for name in ("save", "appendonly", "appendfsync")}
    assert not restart_can_roll_back(as_config_get)  # the store's own check has no warning
    redis = _compose(SCALE)["redis"]
    (config_path,) = _strings(redis["command"])[1:]
    mounts = {entry.split(":")[1]: entry.split(":")[0] for entry in _strings(redis["volumes"])}
    assert mounts[config_path] == f"./{REDIS_CONF.relative_to(DEPLOY)}"


def test_systemd_scale_out_env_lines_are_real_api_settings_that_pass_the_loader(
    tmp_path: Path,
) -> None:
    lines = {}
    for line in (SCALE_OUT / "api.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            lines[name] = value
    assert set(lines) <= _allowed_names("api")
    base, _ = _env_file("api")
    env = {k: v for k, v in base.items() if k not in {"DB_PATH"}} | lines
    env = {k: v.replace("/var/lib/lokey", str(tmp_path)) for k, v in env.items()}
    settings = load_api_settings(env)
    assert settings.store_url is not None
    assert settings.store_url.kind == "redis"
    for url in (*settings.controller_addrs, *settings.fortuna_addrs):
        assert urlsplit(url).hostname not in ("127.0.0.1", "localhost"), url


@pytest.mark.parametrize("service", ["controller", "fortuna"])
def test_systemd_drop_ins_make_the_service_listen_on_the_network(service: str) -> None:
    unit = _unit(f"scale-out/lokey-{service}.service.d/listen-on-the-network.conf")
    starts = _mapping(unit["Service"])["ExecStart"]
    assert isinstance(starts, list)
    assert starts[0] == ""  # resets the unit's ExecStart instead of adding a second one
    argv = shlex.split(starts[1])
    assert argv[0] == VENV_LOKEY
    assert _check_serve_command(argv[1:], service)["--host"] == "0.0.0.0"


def test_the_api_drop_in_orders_it_after_a_local_redis() -> None:
    unit = _unit("scale-out/lokey-api.service.d/redis.conf")
    assert unit["Unit"]["Wants"] == ["redis-server.service"]
    assert unit["Unit"]["After"] == ["redis-server.service"]

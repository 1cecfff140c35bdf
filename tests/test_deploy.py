"""The deployment files (``deploy/``) and the Raspberry Pi guide stay true to the code.

Every variable the systemd env examples and the compose files set is a real setting of that
service and passes its ``load_*_settings`` loader; the example env files show the real defaults
and every setting; each unit and compose service starts a ``lokey serve`` service the CLI knows;
the compose health checks probe the routes the apps really serve; only the controller gets the
I2C node; nothing runs privileged or as root.

PyYAML is not a dependency, so the compose files are read by :func:`parse_yaml_subset`, a small
reader for the plain subset they are kept to (block mappings and sequences, JSON-style lists and
strings, plain scalars, comments). It refuses anything else (anchors, tags, flow mappings,
block scalars, unquoted numbers with a leading zero, YAML 1.1 booleans such as ``yes``), so a
file that grows beyond the subset fails here instead of being misread.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from starlette.routing import Route

from lokey import cli
from lokey.services.api import create_api_app
from lokey.services.controller import create_controller_app
from lokey.services.fortuna import create_fortuna_app
from lokey.services.settings import (
    API_ENV,
    CONTROLLER_ENV,
    FORTUNA_ENV,
    VIRTIO_ENV,
    ServiceSettings,
    load_api_settings,
    load_controller_settings,
    load_fortuna_settings,
    load_virtio_settings,
)
from lokey.services.virtio import create_virtio_app
from lokey.store import resolve_db_path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
ENV_DIR = SYSTEMD / "env"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_EMULATOR = DEPLOY / "compose.emulator.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
GUIDE = ROOT / "docs" / "raspberry-pi.md"

SERVICES = ("controller", "fortuna", "virtio", "api")
VENV_LOKEY = "/opt/lokey/.venv/bin/lokey"
I2C_NODE = "/dev/i2c-1"

Loader = Callable[[Mapping[str, str]], ServiceSettings]
LOADERS: dict[str, Loader] = {
    "controller": load_controller_settings,
    "fortuna": load_fortuna_settings,
    "virtio": load_virtio_settings,
    "api": load_api_settings,
}
SETTING_NAMES: dict[str, frozenset[str]] = {
    "controller": frozenset(CONTROLLER_ENV),
    "fortuna": frozenset(FORTUNA_ENV),
    "virtio": frozenset(VIRTIO_ENV),
    "api": frozenset(API_ENV),
}
IGNORED_NAMES: dict[str, frozenset[str]] = {"api": frozenset({"GIN_MODE"})}  # spec §6.1
HEALTH_PATHS = {
    "controller": "/health",
    "fortuna": "/health",
    "virtio": "/health",
    "api": "/api/v1/health",
}


def _allowed_names(service: str) -> frozenset[str]:
    return SETTING_NAMES[service] | IGNORED_NAMES.get(service, frozenset())


# -- a reader for the YAML subset of the compose files ---------------------------------------------


class SubsetError(ValueError):
    """The text uses YAML this reader does not accept (or is not YAML at all)."""


_KEY = re.compile(r"([A-Za-z0-9_.-]+):(?:[ ]+(.*))?")
_PLAIN_START = re.compile(r"[^-?:,\[\]{}#&*!|>'\"%@`\s]")
_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}
_INTEGER = re.compile(r"[-+]?[0-9]+")


def _strip_comment(line: str) -> str:
    """``line`` without a ``#`` comment (a ``#`` at the start or after a blank, outside quotes)."""
    quote = ""
    escaped = False
    for index, char in enumerate(line):
        if quote == '"':
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quote = ""
        elif quote == "'":
            if char == "'":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def _scalar(text: str, number: int) -> object:
    """A value on one line: a JSON-style list or string, a quoted or a plain scalar."""
    where = f"line {number}"
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubsetError(f"{where}: lists must be JSON arrays of strings: {exc}") from None
        if not all(isinstance(item, str) for item in items):
            raise SubsetError(f"{where}: lists must hold strings only")
        return list(items)
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubsetError(
                f"{where}: double-quoted strings must be JSON strings: {exc}"
            ) from None
        if not isinstance(value, str):
            raise SubsetError(f"{where}: expected one string")
        return value
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'") or "'" in text[1:-1].replace("''", ""):
            raise SubsetError(f"{where}: unterminated single-quoted string")
        return text[1:-1].replace("''", "'")
    if _PLAIN_START.match(text) is None:
        raise SubsetError(f"{where}: {text!r} needs YAML this reader does not accept")
    if ": " in text or text.endswith(":"):
        raise SubsetError(f"{where}: a plain value may not contain ': ' (quote it)")
    if text in {"true", "false"}:
        return text == "true"
    if text in {"null", "~"}:
        return None
    if text.lower() in _YAML11_BOOLEANS:
        raise SubsetError(f"{where}: {text!r} is a boolean in YAML 1.1 only: quote it")
    if _INTEGER.fullmatch(text):
        if text.lstrip("+-").startswith("0") and text.lstrip("+-") != "0":
            raise SubsetError(f"{where}: {text!r} is octal in YAML 1.1, decimal in 1.2: quote it")
        return int(text)
    return text


Line = tuple[int, str, int]  # indentation, content, line number


def _block(lines: list[Line], start: int, indent: int) -> tuple[object, int]:
    """The mapping or sequence whose entries start at ``lines[start]``, at ``indent``."""
    index = start
    if lines[index][1] == "-" or lines[index][1].startswith("- "):
        items: list[object] = []
        while index < len(lines) and lines[index][0] == indent:
            _, content, number = lines[index]
            if not content.startswith("- "):
                break
            item = content[2:].strip()
            if _KEY.fullmatch(item) or item.startswith("- "):
                raise SubsetError(f"line {number}: only scalars may be sequence entries")
            items.append(_scalar(item, number))
            index += 1
        return items, index
    mapping: dict[str, object] = {}
    while index < len(lines) and lines[index][0] == indent:
        _, content, number = lines[index]
        match = _KEY.fullmatch(content)
        if match is None:
            raise SubsetError(f"line {number}: expected 'key: value', got {content!r}")
        key, rest = match.group(1), match.group(2)
        if key in mapping:
            raise SubsetError(f"line {number}: duplicate key {key!r}")
        index += 1
        if rest:
            mapping[key] = _scalar(rest, number)
        elif index < len(lines) and lines[index][0] > indent:
            mapping[key], index = _block(lines, index, lines[index][0])
        elif index < len(lines) and lines[index][0] == indent and lines[index][1][:2] == "- ":
            mapping[key], index = _block(lines, index, indent)
        else:
            mapping[key] = None
        if index < len(lines) and lines[index][0] > indent:
            raise SubsetError(f"line {lines[index][2]}: unexpected indentation")
    return mapping, index


def parse_yaml_subset(text: str) -> dict[str, object]:
    """The document in ``text`` (a mapping at the top), or SubsetError naming the line."""
    lines: list[Line] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw:
            raise SubsetError(f"line {number}: tab characters")
        if raw.strip() in {"---", "..."}:
            raise SubsetError(f"line {number}: one document only, without markers")
        content = _strip_comment(raw).rstrip()
        if content.strip():
            lines.append((len(content) - len(content.lstrip(" ")), content.strip(), number))
    if not lines:
        raise SubsetError("empty document")
    document, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise SubsetError(f"line {lines[end][2]}: indented less than the document")
    if not isinstance(document, dict):
        raise SubsetError("the document must be a mapping")
    return document


def _mapping(value: object) -> dict[str, object]:
    assert isinstance(value, dict), value
    return value


def _strings(value: object) -> list[str]:
    assert isinstance(value, list), value
    assert all(isinstance(item, str) for item in value), value
    return [str(item) for item in value]


def _text(value: object) -> str:
    assert isinstance(value, str), value
    return value


def _compose(path: Path) -> dict[str, dict[str, object]]:
    services = _mapping(parse_yaml_subset(path.read_text()).get("services"))
    return {name: _mapping(service) for name, service in services.items()}


def _environment(service: Mapping[str, object]) -> dict[str, str]:
    """A compose service's environment block; every value a string (as compose passes it)."""
    block = _mapping(service.get("environment", {}))
    return {name: _text(value) for name, value in block.items()}


def _volume_targets(service: Mapping[str, object]) -> dict[str, str]:
    """Container path -> source of a compose service's short-syntax volumes."""
    targets = {}
    for entry in _strings(service.get("volumes", [])):
        source, target, *_ = entry.split(":")
        targets[target] = source
    return targets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: 1\nb:\n  c: [\"x\", \"y\"]\n  d: 'it''s'\n",
            {"a": 1, "b": {"c": ["x", "y"], "d": "it's"}},
        ),
        ('a:\n- x # note\n- "y"\nb: http://h:1\n', {"a": ["x", "y"], "b": "http://h:1"}),
        ('# only\nk: "a # b"  # c\nv:\nw: true\n', {"k": "a # b", "v": None, "w": True}),
    ],
)
def test_subset_reader_reads_what_yaml_would(text: str, expected: dict[str, object]) -> None:
    assert parse_yaml_subset(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a: &anchor 1\n",
        "a: {b: 1}\n",
        "a: |\n  text\n",
        "a: 0660\n",
        "a: yes\n",
        "a: b: c\n",
        "a: 1\n  b: 2\n",
        "a: 1\na: 2\n",
        "a:\n- b: 1\n",
        "a: [1, 2]\n",
    ],
)
def test_subset_reader_refuses_what_it_might_misread(text: str) -> None:
    with pytest.raises(SubsetError):
        parse_yaml_subset(text)


# -- example env files ----------------------------------------------------------------------------

_ACTIVE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_COMMENTED = re.compile(r"#([A-Z][A-Z0-9_]*)=(.*)")


def _env_file(service: str) -> tuple[dict[str, str], dict[str, str]]:
    """(active, commented-out) assignments of ``deploy/systemd/env/SERVICE.env``."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for number, line in enumerate((ENV_DIR / f"{service}.env").read_text().splitlines(), 1):
        where = f"{service}.env line {number}"
        if not line.strip() or (line.startswith("#") and not _COMMENTED.fullmatch(line)):
            continue
        match = _ACTIVE.fullmatch(line) or _COMMENTED.fullmatch(line)
        assert match is not None, f"{where}: neither NAME=value nor #NAME=value: {line!r}"
        name, value = match.groups()
        # systemd, compose and a shell must all read the same thing: no quotes, no blanks
        assert not re.search(r"[\s\"'$`\\]", value), f"{where}: quote-free, blank-free values"
        assert name not in active, f"{where}: {name} twice"
        assert name not in commented, f"{where}: {name} twice"
        (active if match.re is _ACTIVE else commented)[name] = value
    return active, commented


def _localised(env: Mapping[str, str], roots: Mapping[str, Path]) -> dict[str, str]:
    """``env`` with paths under each root (``/var/lib/lokey``...) moved to a local directory."""
    result = dict(env)
    for name, value in env.items():
        for root, local in roots.items():
            if value == root or value.startswith(root + "/"):
                local.mkdir(parents=True, exist_ok=True)
                result[name] = str(local) + value[len(root) :]
    return result


@pytest.mark.parametrize("service", SERVICES)
def test_env_files_set_only_real_settings(service: str) -> None:
    active, commented = _env_file(service)
    unknown = (set(active) | set(commented)) - _allowed_names(service)
    assert not unknown, f"{service}.env: not settings of the {service} service: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_env_files_list_every_setting(service: str) -> None:
    active, commented = _env_file(service)
    missing = SETTING_NAMES[service] - set(active) - set(commented)
    assert not missing, f"{service}.env does not mention {sorted(missing)}"


@pytest.mark.parametrize("service", SERVICES)
def test_env_file_values_pass_the_loader(service: str, tmp_path: Path) -> None:
    active, _ = _env_file(service)
    roots = {"/var/lib/lokey": tmp_path / "state", "/run/lokey": tmp_path / "run"}
    env = _localised(active, roots)
    settings = LOADERS[service](env)
    if service == "api":
        resolve_db_path(load_api_settings(env).db_path)  # what `lokey serve api` checks too
    fields = {
        str(field.validation_alias): name for name, field in type(settings).model_fields.items()
    }
    chosen = {fields[name] for name, value in active.items() if value and name in fields}
    assert chosen <= settings.model_fields_set  # every active line is read, none ignored


@pytest.mark.parametrize("service", SERVICES)
def test_commented_values_are_the_real_defaults(service: str) -> None:
    _, commented = _env_file(service)
    load = LOADERS[service]
    defaults = load({})
    fields = {
        str(field.validation_alias): name for name, field in type(defaults).model_fields.items()
    }
    for variable, value in commented.items():
        field = fields[variable]
        shown = getattr(load({variable: value}), field)
        assert shown == getattr(defaults, field), (
            f"{service}.env: #{variable}={value} is not the default"
        )


# -- systemd units --------------------------------------------------------------------------------


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (in order) of ``deploy/systemd/NAME``."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate((SYSTEMD / name).read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        assert not stripped.endswith("\\"), f"{name} line {number}: no continuation lines"
        if stripped.startswith("["):
            current = sections.setdefault(stripped.strip("[]"), {})
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{name} line {number}: not Key=Value: {line!r}"
        assert current is not None, f"{name} line {number}: outside a [Section]"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: Mapping[str, Mapping[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, got {values}"
    return values[0]


def _words(unit: Mapping[str, Mapping[str, list[str]]], section: str, key: str) -> list[str]:
    return [word for value in unit.get(section, {}).get(key, []) for word in value.split()]


def _check_serve_command(argv: list[str], service: str) -> dict[str, str]:
    """``serve SERVICE --option value...`` names a service and options ``lokey`` accepts."""
    assert argv[:2] == ["serve", service], argv
    options = argv[2:]
    assert len(options) % 2 == 0, argv
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])  # an unknown service is a usage error (exit 2), not help
    assert exit_info.value.code == 0, f"`lokey {' '.join(argv)}` is refused"
    for option in pairs:
        assert option.startswith("--"), option
        assert option in help_text.getvalue(), option
    return pairs


def _port(service: str, env: Mapping[str, str]) -> int:
    """The port ``service`` listens on with ``env`` (its PORT, else the default)."""
    port = getattr(LOADERS[service]({k: v for k, v in env.items() if k == "PORT"}), "port")  # noqa: B009
    assert isinstance(port, int)
    return port


@pytest.mark.parametrize("service", SERVICES)
def test_units_start_a_lokey_serve_service(service: str) -> None:
    unit = _unit(f"lokey-{service}.service")
    argv = shlex.split(_one(unit, "Service", "ExecStart"))
    assert argv[0] == VENV_LOKEY
    options = _check_serve_command(argv[1:], service)
    assert "--host" in options
    assert _one(unit, "Service", "EnvironmentFile") == f"/etc/lokey/{service}.env"
    assert (ENV_DIR / f"{service}.env").is_file()


@pytest.mark.parametrize("service", SERVICES)
def test_units_run_as_lokey_restart_with_back_off_and_are_hardened(service: str) -> None:
    unit = _unit(f"lokey-{service}.service")
    service_section = {key: values[-1] for key, values in unit["Service"].items()}
    assert service_section["User"] == "lokey"
    assert service_section["Restart"] == "on-failure"
    assert service_section["RestartSec"]
    assert "RestartMaxDelaySec" in service_section
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
    }.items():
        assert service_section.get(key) == value, f"lokey-{service}: {key}={value}"
    assert _one(unit, "Unit", "PartOf") == "lokey.target"
    assert _one(unit, "Install", "WantedBy") == "lokey.target"


def test_only_the_controller_may_open_the_i2c_node() -> None:
    for service in SERVICES:
        unit = _unit(f"lokey-{service}.service")
        allowed = unit["Service"].get("DeviceAllow", [])
        if service == "controller":
            assert allowed == [f"{I2C_NODE} rw"]
            assert _one(unit, "Service", "DevicePolicy") == "closed"
            assert "i2c" in _words(unit, "Service", "SupplementaryGroups")
            assert I2C_NODE in _one(unit, "Service", "ExecStartPre")
        else:
            assert not allowed, f"lokey-{service} may open {allowed}"
            assert _one(unit, "Service", "PrivateDevices") == "yes"


def test_the_target_wants_all_four_and_the_api_starts_after_the_others() -> None:
    target = _unit("lokey.target")
    units = [f"lokey-{service}.service" for service in SERVICES]
    assert sorted(_words(target, "Unit", "Wants")) == sorted(units)
    assert _one(target, "Install", "WantedBy") == "multi-user.target"
    api = _unit("lokey-api.service")
    others = sorted(units[:3])
    assert sorted(_words(api, "Unit", "Wants")) == others
    assert set(others) <= set(_words(api, "Unit", "After"))


def test_env_paths_live_in_the_units_state_and_runtime_directories() -> None:
    places = {
        ("api", "DB_PATH"): ("StateDirectory", "/var/lib"),
        ("fortuna", "LOKEY_FORTUNA_SEED_FILE"): ("StateDirectory", "/var/lib"),
        ("virtio", "VIRTIO_PIPE_PATH"): ("RuntimeDirectory", "/run"),
    }
    for (service, variable), (setting, base) in places.items():
        unit = _unit(f"lokey-{service}.service")
        directory = f"{base}/{_one(unit, 'Service', setting)}"
        path = _env_file(service)[0][variable]
        assert Path(path).parent == Path(directory), f"{variable}={path} is not in {directory}"
        assert directory in _words(unit, "Service", "ReadWritePaths")


def test_the_api_env_reaches_the_other_units() -> None:
    api_env, _ = _env_file("api")
    for service in ("controller", "fortuna", "virtio"):
        unit = _unit(f"lokey-{service}.service")
        host = _check_serve_command(shlex.split(_one(unit, "Service", "ExecStart"))[1:], service)
        address = urlsplit(api_env[f"{service.upper()}_ADDR"])
        assert host["--host"] in {address.hostname, "0.0.0.0"}
        assert address.port == _port(service, _env_file(service)[0])


def test_the_virtio_fifo_is_shared_with_the_qemu_group_only() -> None:
    unit = _unit("lokey-virtio.service")
    env, _ = _env_file("virtio")
    mode = int(env["LOKEY_VIRTIO_PIPE_MODE"], 8)
    assert mode & 0o007 == 0, "others must not open the FIFO"
    assert mode & 0o040, "the group (QEMU) must read it"
    assert _one(unit, "Service", "Group") != "lokey"  # the FIFO's group is the unit's group
    assert _one(unit, "Service", "RuntimeDirectoryPreserve") == "yes"  # never a new FIFO inode


# -- compose --------------------------------------------------------------------------------------


def test_compose_runs_the_four_services_from_one_image() -> None:
    services = _compose(COMPOSE)
    assert sorted(services) == sorted(SERVICES)
    images = {_text(service["image"]) for service in services.values()}
    assert len(images) == 1
    for name, service in services.items():
        build = _mapping(service["build"])
        dockerfile = COMPOSE.parent / _text(build["context"]) / _text(build["dockerfile"])
        assert dockerfile.resolve() == DOCKERFILE.resolve()
        options = _check_serve_command(_strings(service["command"]), name)
        assert options["--host"] == "0.0.0.0"  # reachable on the compose network
        assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_EMULATOR], ids=lambda p: p.name)
def test_compose_environment_sets_only_real_settings(path: Path) -> None:
    for name, service in _compose(path).items():
        unknown = set(_environment(service)) - _allowed_names(name)
        assert not unknown, f"{path.name} {name}: not settings of {name}: {sorted(unknown)}"


@pytest.mark.parametrize("overrides", [(), (COMPOSE_EMULATOR,)], ids=["pi", "emulator"])
def test_compose_environment_passes_the_loaders(
    overrides: tuple[Path, ...], tmp_path: Path
) -> None:
    services = _compose(COMPOSE)
    for override in overrides:
        for name, service in _compose(override).items():
            merged = {**_environment(services[name]), **_environment(service)}
            services[name] = {**services[name], "environment": merged}
    for name, service in services.items():
        roots = {target: tmp_path / name / target.strip("/") for target in _volume_targets(service)}
        env = _localised(_environment(service), roots)
        LOADERS[name](env)
        if name == "api":
            resolve_db_path(load_api_settings(env).db_path)


def test_compose_data_lives_on_volumes() -> None:
    document = parse_yaml_subset(COMPOSE.read_text())
    services = _compose(COMPOSE)
    named = set(_mapping(document["volumes"]))
    for service, variable in (
        ("api", "DB_PATH"),
        ("fortuna", "LOKEY_FORTUNA_SEED_FILE"),
        ("virtio", "VIRTIO_PIPE_PATH"),
    ):
        targets = _volume_targets(services[service])
        directory = str(Path(_environment(services[service])[variable]).parent)
        assert directory in targets, f"{service}: {variable} is not on a volume"
        source = targets[directory]
        assert source.startswith("/") or source in named, f"{service}: volume {source} undeclared"


def test_compose_health_checks_probe_the_real_health_paths() -> None:
    for name, service in _compose(COMPOSE).items():
        check = _strings(_mapping(service["healthcheck"])["test"])
        assert check[:3] == ["CMD", "python", "-c"], "slim images have python, not curl"
        urls = re.findall(r"'(http://[^']+)'", check[3])
        assert len(urls) == 1, check
        assert "urllib.request.urlopen" in check[3], check
        url = urlsplit(urls[0])
        assert url.hostname == "127.0.0.1"
        assert url.port == _port(name, _environment(service))
        assert url.path == HEALTH_PATHS[name]


def _app(service: str) -> FastAPI:
    if service == "controller":
        return create_controller_app(load_controller_settings({"LOKEY_BUS_URL": "sim://atecc608a"}))
    if service == "fortuna":
        return create_fortuna_app(load_fortuna_settings({}))
    if service == "virtio":
        return create_virtio_app(load_virtio_settings({"VIRTIO_PIPE_PATH": ""}))
    return create_api_app(load_api_settings({"DB_IMPLEMENTATION": "channel"}))


@pytest.mark.parametrize("service", SERVICES)
def test_the_health_paths_are_routes_of_the_services(service: str) -> None:
    routes = {
        (route.path, method)
        for route in _app(service).routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    assert (HEALTH_PATHS[service], "GET") in routes  # the app is built, never started


def test_compose_api_waits_for_a_healthy_virtio_and_started_controller_and_fortuna() -> None:
    services = _compose(COMPOSE)
    api = services["api"]
    depends = {
        name: _mapping(value)["condition"] for name, value in _mapping(api["depends_on"]).items()
    }
    # Fortuna's /health is 503 until the API seeds it: waiting for "healthy" would never end;
    # an unhealthy controller (no chip, unprovisioned, breaker open) only degrades the API.
    assert depends == {
        "controller": "service_started",
        "fortuna": "service_started",
        "virtio": "service_healthy",
    }
    env = _environment(api)
    for peer in ("controller", "fortuna", "virtio"):
        address = urlsplit(env[f"{peer.upper()}_ADDR"])
        assert address.hostname == peer
        assert address.port == _port(peer, _environment(services[peer]))


def test_only_the_controller_gets_the_i2c_node_and_its_group() -> None:
    for name, service in _compose(COMPOSE).items():
        if name == "controller":
            assert _strings(service["devices"]) == [f"{I2C_NODE}:{I2C_NODE}"]
            (group,) = _strings(service["group_add"])
            assert re.fullmatch(r"[0-9]+|\$\{[A-Z0-9_]+(:-[0-9]+)?\}", group), group
        else:
            assert "devices" not in service, name
            assert "group_add" not in service, name


def test_the_emulator_override_replaces_the_chip_and_the_host_fifo_directory() -> None:
    base = _compose(COMPOSE)
    override = _compose(COMPOSE_EMULATOR)
    controller = override["controller"]
    url = _environment(controller)["LOKEY_BUS_URL"]
    assert url.startswith("sim://")
    load_controller_settings({**_environment(base["controller"]), **_environment(controller)})
    # compose merges devices and volumes by container path: these replace the base entries
    targets = {entry.split(":")[1] for entry in _strings(controller["devices"])}
    assert targets == {entry.split(":")[1] for entry in _strings(base["controller"]["devices"])}
    fifo = _volume_targets(override["virtio"])
    assert set(fifo) == set(_volume_targets(base["virtio"]))
    named = set(_mapping(parse_yaml_subset(COMPOSE_EMULATOR.read_text())["volumes"]))
    assert set(fifo.values()) <= named


def test_nothing_is_privileged_or_root() -> None:
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"privileged\s*:\s*(true|yes|on)", text, re.I), path
            assert not re.search(r"^\s*(User|Group)=(root|0)\s*$", text, re.M), path
    for path in (COMPOSE, COMPOSE_EMULATOR):
        for name, service in _compose(path).items():
            assert not service.get("privileged"), f"{path.name} {name}"
            assert "cap_add" not in service
            assert service.get("network_mode") != "host"
            assert str(service.get("user", "")).split(":")[0] not in {"root", "0"}


# -- Dockerfile -----------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        instruction, _, arguments = (pending + line).strip().partition(" ")
        result.append((instruction.upper(), arguments.strip()))
        pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    return result


def _final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = _instructions(path)
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_dockerfile_runs_as_a_non_root_user_on_python_slim() -> None:
    stage = _final_stage(DOCKERFILE)
    assert stage[0][1].split()[0] == "python:3.11-slim"
    args = {}
    for name, arguments in stage:
        if name == "ARG" and "=" in arguments:
            key, _, default = arguments.partition("=")
            args[key] = default
    users = [arguments for name, arguments in stage if name == "USER"]
    assert users, "the final stage must set USER"
    user = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], users[-1])
    assert user.split(":")[0] not in {"root", "0", ""}, user
    assert json.loads(dict(stage)["ENTRYPOINT"]) == ["lokey"]


def test_dockerfile_installs_the_wheel_without_dev_tools() -> None:
    instructions = _instructions(DOCKERFILE)
    text = " ".join(arguments for _, arguments in instructions)
    for tool in ("[dev]", "build-essential", "gcc"):
        assert tool not in text
    sources = {
        word
        for name, arguments in instructions
        if name == "COPY" and not arguments.startswith("--")
        for word in arguments.split()[:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert needed <= sources, f"the image build misses {sorted(needed - sources)}"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert {f"!{name}" for name in needed} <= set(ignore), "the build context leaves them out"


# -- the guide ------------------------------------------------------------------------------------


def test_the_guide_matches_the_deployment() -> None:
    guide = GUIDE.read_text()
    fifo = _env_file("virtio")[0]["VIRTIO_PIPE_PATH"]
    assert f"filename={fifo}" in guide  # QEMU
    assert f"<backend model='random'>{fifo}</backend>" in guide  # libvirt
    for line in ("dtparam=i2c_arm=on", "dtparam=i2c_arm_baudrate=100000", "i2cdetect -y 1"):
        assert line in guide
    for service in re.findall(r"lokey serve ([a-z]+)", guide):
        assert service in SERVICES, service
    for path in set(re.findall(r"deploy/[\w./*-]*[\w*]", guide)) - {"deploy/.env"}:  # yours
        assert list(ROOT.glob(path)), f"the guide names {path}, which does not exist"

"""Each service's process loads only the heavy libraries it uses (issue 9: memory targets).

A Raspberry Pi Zero 2 W has 512 MB for the whole stack, and every library a service imports
stays resident: numpy is about 12 MB, cryptography about 7 MB, httpx about 5 MB. So each app
factory is imported only when its service is built (:mod:`lokey.services.apps`), and the heavy
imports are made where they are used. These tests build each service's app in a fresh
interpreter, as ``python -m lokey.services SERVICE`` does, and also run the per-sample work the
service does while it is idle, then check ``sys.modules``: they fail when someone adds an eager
import back. They pin behaviour, not figures: resident sizes are measured by
``bench/bench_memory.py``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.up_helpers import service_env

ROOT = Path(__file__).resolve().parents[1]

# What each probe does after building the app: the work the running service repeats when idle,
# on the code paths that used to pull numpy in.
_WORK = {
    "controller": (
        "from lokey.quality.health import HealthTracker\n"
        "tracker = HealthTracker()\n"
        "for _ in range(40): tracker.feed(os.urandom(32))\n"  # one chip sample at a time
    ),
    "fortuna": (
        "from lokey.fortuna import Generator, check_seed\n"
        "check_seed(os.urandom(32))\n"  # every /seed sample passes the gate
        "generator = Generator()\n"
        "generator.reseed(os.urandom(32))\n"
        "for n in (32, 256, 1 << 20): generator.pseudo_random_data(n)\n"  # polls and top-ups
    ),
    "virtio": "",
    "api": (
        "from lokey.services.api.background import TrngQuality\n"
        "from lokey.services.api.formats import DataFormat, decode\n"
        "from lokey.fortuna import check_seed\n"
        "quality = TrngQuality(512)\n"
        "for _ in range(5): quality.admit([os.urandom(32) for _ in range(40)])\n"
        "quality.legacy(); quality.health()\n"
        "for fmt in DataFormat: decode(fmt, os.urandom(64))\n"
        "check_seed(os.urandom(32))\n"
    ),
}

_PROBE = """
import json, os, sys
from lokey.services import apps
app = apps.create_app(apps.load_settings({name!r}, os.environ))
{work}
print(json.dumps(sorted(sys.modules)))
"""

# (module, why the service must not load it); a module counts with its submodules
_NEVER = [
    ("scipy", "SP 800-22 statistics are for `lokey assess`, never a service"),
    ("lokey.quality.assess", "file assessment is `lokey assess`'s"),
    ("lokey.quality.sp800_22", "file assessment is `lokey assess`'s"),
]
FORBIDDEN: dict[str, list[tuple[str, str]]] = {
    "controller": [
        *_NEVER,
        ("numpy", "health tests on 32-byte samples run in Python"),
        ("cryptography", "Fortuna's AES is not the controller's"),
        ("httpx", "the controller calls no one"),
        ("lmdb", "the store is the API's"),
        ("lokey.store", "the store is the API's"),
        ("lokey.fortuna", "Fortuna is its own service"),
        ("lokey.services.api", "another service"),
        ("lokey.services.fortuna", "another service"),
        ("lokey.services.virtio", "another service"),
    ],
    "fortuna": [
        *_NEVER,
        ("numpy", "the generator builds its counter blocks with bytes operations"),
        ("httpx", "Fortuna calls no one"),
        ("lmdb", "the store is the API's"),
        ("lokey.store", "the store is the API's"),
        ("lokey.quality", "the SP 800-90B tests run in the controller and the API"),
        ("lokey.controller", "another service's core"),
        ("lokey.services.api", "another service"),
        ("lokey.services.controller", "another service"),
        ("lokey.services.virtio", "another service"),
    ],
    "virtio": [
        *_NEVER,
        ("numpy", "the ring is bytes"),
        ("cryptography", "no cipher in VirtIO"),
        ("httpx", "VirtIO calls no one"),
        ("lmdb", "the store is the API's"),
        ("lokey.store", "the store is the API's"),
        ("lokey.fortuna", "Fortuna is its own service"),
        ("lokey.quality", "no health tests in VirtIO"),
        ("lokey.controller", "another service's core"),
        ("lokey.services.api", "another service"),
        ("lokey.services.controller", "another service"),
        ("lokey.services.fortuna", "another service"),
    ],
    "api": [
        *_NEVER,
        ("numpy", "per-poll health tests, legacy metrics and formats run in Python"),
        ("cryptography", "only the seed gate of lokey.fortuna is the API's, not the generator"),
        ("lokey.fortuna.generator", "only the seed gate of lokey.fortuna is the API's"),
        ("lokey.fortuna.accumulator", "only the seed gate of lokey.fortuna is the API's"),
        ("lokey.services.controller", "another service"),
        ("lokey.services.fortuna", "another service"),
        ("lokey.services.virtio", "another service"),
    ],
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """``sys.modules`` of each service's fresh interpreter after building its app (the four
    interpreters run concurrently)."""
    data = tmp_path_factory.mktemp("imports")
    env = service_env(DB_PATH=str(data / "api.db"), LOKEY_FORTUNA_SEED_FILE=str(data / "seed"))
    env.pop("PYTHONPATH", None)
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", _PROBE.format(name=name, work=work)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, work in _WORK.items()
    }
    modules: dict[str, set[str]] = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, f"{name}: {err}"
            modules[name] = set(json.loads(out.splitlines()[-1]))
        yield modules
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _found(modules: set[str], module: str) -> list[str]:
    return sorted(m for m in modules if m == module or m.startswith(module + "."))


@pytest.mark.parametrize(
    ("service", "module", "why"),
    [(service, module, why) for service, rules in FORBIDDEN.items() for module, why in rules],
)
def test_a_service_does_not_import(
    loaded: dict[str, set[str]], service: str, module: str, why: str
) -> None:
    found = _found(loaded[service], module)
    assert not found, f"the {service} service imported {found[:5]} ({why})"


@pytest.mark.parametrize(
    ("service", "module"),
    [
        ("controller", "lokey.services.controller"),
        ("fortuna", "cryptography"),
        ("virtio", "lokey.virtio.ring"),
        ("api", "httpx"),
        ("api", "lmdb"),
        ("api", "lokey.fortuna.gate"),
    ],
)
def test_the_probe_sees_what_a_service_does_import(
    loaded: dict[str, set[str]], service: str, module: str
) -> None:
    """The probes really built the apps (a probe that imported nothing would pass the rest)."""
    assert module in loaded[service]


def test_the_supervisor_imports_no_app() -> None:
    """``lokey up`` (the supervisor process) stays small: it execs the services."""
    code = (
        "import json, sys\n"
        "from lokey.services import __main__\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    modules = set(json.loads(out.splitlines()[-1]))
    for module in ("fastapi", "numpy", "lokey.services.apps", "lokey.services.settings"):
        assert not _found(modules, module), module


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(3) is glibc's")
def test_a_service_process_pins_the_mmap_threshold() -> None:
    """glibc's sliding mmap threshold would keep each 1 MiB Fortuna buffer's heap space."""
    code = "from lokey.services import apps\nprint(apps.limit_heap_retention())\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "True"

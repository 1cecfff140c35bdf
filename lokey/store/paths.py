"""Where the LMDB store lives: ``DB_PATH`` resolution (service-api.md §6.1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from lokey.errors import StoreError

__all__ = ["DATABASE_FILE", "DIRECTORY_MODE", "resolve_db_path"]

# service-api.md §6.1: a DB_PATH that is a directory gets this file name appended ...
DATABASE_FILE: Final = "database.db"
# ... and missing parent directories are created 0750, as the reference's os.MkdirAll.
DIRECTORY_MODE: Final = 0o750
_LOCK_SUFFIX: Final = "-lock"  # LMDB's lock file beside a subdir=False environment


def resolve_db_path(path: Path) -> Path:
    """The database file for ``path``, its parent directories created; StoreError if unusable.

    An existing directory means ``path / "database.db"``. Missing parents are created with mode
    0750 (less the umask, like ``mkdir -p``). The file, or its directory if the file is new,
    must be writable: the error names the path and why, so a bad ``DB_PATH`` fails at start-up.
    """
    path = Path(path)
    if path.is_dir():
        path = path / DATABASE_FILE
    parent = path.parent
    try:
        _make_parents(parent)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory {parent} for the queue store {path}:"
            f" {exc.strerror or exc}"
        ) from exc
    if path.exists() and not path.is_file():
        raise StoreError(f"the queue store path {path} exists and is not a regular file")
    lock = path.with_name(path.name + _LOCK_SUFFIX)
    for existing in (path, lock):
        if existing.exists() and not os.access(existing, os.R_OK | os.W_OK):
            raise StoreError(f"the queue store file {existing} is not readable and writable")
    if not (path.exists() and lock.exists()) and not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the queue store {path}: {parent} is not writable")
    return path


def _make_parents(directory: Path) -> None:
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    if not directory.is_dir():
        raise NotADirectoryError(20, "not a directory", str(directory))
    for item in reversed(missing):
        try:
            item.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            if not item.is_dir():
                raise

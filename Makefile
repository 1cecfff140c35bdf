# LoKey: the two quick-start commands are `make run` and `make test`.
# `make run` is `lokey up` (the whole stack on the emulator; Ctrl-C stops it); pass options
# with ARGS, e.g. `make run ARGS=--fast` or `make run ARGS='--hardware /dev/i2c-1'`.
# Everything lands in .venv, created from the python3 on PATH when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pytest-xdist workers: CI machines have 2 cores
WORKERS ?= auto
# options for `lokey up` (make run)
ARGS ?=

.PHONY: run demo test redis lint format arch type unit conformance bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/lokey up $(ARGS)

# the emulator tour: wake, Info, Random by hand, the bus trace
demo: $(VENV)/.installed
	$(BIN)/python -m sim

test: $(VENV)/.installed-dev redis lint arch type unit conformance

# redis-server for the Redis store's tests (they start their own; no service is started)
redis:
	scripts/ensure-redis

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

arch: $(VENV)/.installed-dev
	$(BIN)/lint-imports

type: $(VENV)/.installed-dev
	$(BIN)/mypy

# LOKEY_REQUIRE_REDIS=1: a missing redis-server fails the Redis tests instead of skipping them
unit: $(VENV)/.installed-dev
	LOKEY_REQUIRE_REDIS=1 $(BIN)/pytest -n $(WORKERS) -q

conformance: $(VENV)/.installed-dev
	LOKEY_REQUIRE_REDIS=1 $(BIN)/pytest -q -p no:cacheprovider conformance --bus 'sim://atecc608a'

# `lokey bench`: one table, JSON saved; ARGS go to it, e.g. make bench ARGS='--only store --quick'
bench: $(VENV)/.installed
	$(BIN)/lokey bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info

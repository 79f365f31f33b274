# Two entry points: `make lab` (workbench) and `make test` (everything CI checks).
# Both create/refresh .venv from pyproject.toml and are no-ops the second time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888
LAB_EXTRA ?=
# Jupyter refuses to run as root unless told to (containers and CI machines run as root)
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test lint typecheck pytest bench browser-deps postgres-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[lab,dev]'
	# bytecode for the library's own source: a machine with PYTHONDONTWRITEBYTECODE=1 would
	# otherwise compile it again in every fresh process (~0.15 s of each cold command)
	$(BIN)/python -m compileall -q master_sdk
	touch $(STAMP)

# Lab serves the project root (products/ and configs/ are editable in Lab) and opens
# notebooks/; no news, no update checks; settings from jupyter/, state in .jupyter/
LAB_ARGS := --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks \
	--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	--LabApp.app_settings_dir=jupyter/lab/settings \
	--LabApp.user_settings_dir=.jupyter/lab/user-settings \
	--LabApp.workspaces_dir=.jupyter/lab/workspaces

lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) $(ROOT_FLAG) $(LAB_ARGS) $(LAB_EXTRA)

browser-deps:
	scripts/ensure-chromium

# the PostgreSQL store tests start their own throwaway server from these binaries
postgres-deps:
	scripts/ensure-postgres

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser-deps postgres-deps
	$(BIN)/pytest

test: lint typecheck pytest

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab,dev,bench]'
	touch $@

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The two commands of the README's quick start, and the checks CI runs.
# Each target sets up what it needs: a virtual environment in .venv with this project installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench setup clean

$(BIN)/secretwarden: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/secretwarden

## demo: run the daemon against the built-in sandbox tenant (Ctrl-C to stop)
demo: setup
	$(BIN)/secretwarden demo

## lint: ruff, mypy --strict and the import-linter layer contracts
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: system packages (prometheus, alertmanager, promtool, systemd-analyze), lint, the whole suite
test: lint
	scripts/install-system-deps
	$(BIN)/pytest

## bench: the benchmark tables (exporter, sandbox start-up, repair times, journal,
## and the 1,000-run memory soak); about 12 minutes, most of it the soak
bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/sandbox_start.py
	$(BIN)/python bench/repair.py
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The two commands of the README's quick start, and the checks CI runs.
# Each target sets up what it needs: a virtual environment in .venv with this project installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench setup clean mutate

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

## bench: the benchmark tables (exporter, sandbox start-up and directory, repair times,
## the 10,000-app inventory, scrapes under a basic-auth attack, the journal, and the
## 1,000-run memory soak, and 100 SIGKILL failovers of the HA lease holder); about 30
## minutes, most of it the soak and the failovers (each waits for a 15 s lease to lapse)
bench: setup
	$(BIN)/python bench/run.py
	$(BIN)/python bench/sandbox_start.py
	$(BIN)/python bench/sandbox_directory.py
	$(BIN)/python bench/repair.py
	$(BIN)/python bench/inventory.py
	$(BIN)/python bench/auth_attack.py
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/soak.py
	scripts/install-azurite
	$(BIN)/python bench/ha_failover.py

## mutate: mutmut over the safety decisions and the credential matching (minutes; not in CI)
mutate: setup
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results
	$(BIN)/python scripts/mutation_score.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache mutants

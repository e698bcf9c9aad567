# The two commands of the README's quick start, and the checks CI runs.
# Each target sets up what it needs: a virtual environment in .venv with this project installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench setup clean mutate dist lock image

$(BIN)/secretwarden: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The runtime dependencies at the locked versions and hashes first, so that the suite
	# runs what the image and the docs' install command install; then the dev tools.
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/secretwarden

# The tool as a user installs it (the lock's runtime dependencies, none of the dev tools,
# which change what gets imported: structlog loads rich when it is installed): what the
# benches that measure the daemon's memory and start-up run.
RELEASE := .venv-release
$(RELEASE)/bin/secretwarden: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(RELEASE)
	$(RELEASE)/bin/pip install --quiet --require-hashes -r requirements.lock
	$(RELEASE)/bin/pip install --quiet --no-deps -e .
	touch $@

## demo: run the daemon against the built-in sandbox tenant (Ctrl-C to stop);
##       ARGS passes flags on, e.g. make demo ARGS="--web.listen-address 127.0.0.1:9900"
demo: setup
	$(BIN)/secretwarden demo $(ARGS)

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
## 1,000-run memory soak, the cost of 1 to 500 targets, and 100 SIGKILL failovers of the HA
## lease holder); about 60 minutes, most of it the soak, the 500-target case of bench/scale.py
## and the failovers (each waits for a 15 s lease to lapse)
bench: setup $(RELEASE)/bin/secretwarden
	$(BIN)/python bench/run.py
	$(BIN)/python bench/sandbox_start.py
	$(BIN)/python bench/sandbox_directory.py
	$(BIN)/python bench/repair.py
	$(BIN)/python bench/inventory.py
	$(BIN)/python bench/auth_attack.py
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/scale.py --exe $(RELEASE)/bin/secretwarden
	scripts/install-azurite
	$(BIN)/python bench/ha_failover.py

## mutate: mutmut over the safety decisions and the credential matching (minutes; not in CI)
mutate: setup
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results
	$(BIN)/python scripts/mutation_score.py

## dist: the wheel and sdist a user can pin, into dist/ (version: daemon.__version__)
dist: setup
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

## lock: re-resolve requirements.lock (exact versions and hashes of the runtime dependencies);
## it keeps the pinned versions that still fit pyproject.toml, UPGRADE=1 takes the newest
lock: setup
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe $(if $(UPGRADE),--upgrade) \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

## image: the container image (Containerfile) from dist/ and the locked wheels; BASE= and
## CONTAINER= (podman, docker or buildah) pick the base image and the builder. --no-cache:
## a cached RUN layer would not see new wheels in the bind mounts
CONTAINER ?= podman
BASE ?= docker.io/library/python:3.11-slim
image: dist
	rm -rf build/wheels
	$(BIN)/pip wheel --quiet --require-hashes --no-deps -r requirements.lock -w build/wheels
	$(CONTAINER) build $(if $(filter docker,$(CONTAINER)),,--format docker) --no-cache \
	  --build-arg BASE=$(BASE) -t secretwarden:$$($(BIN)/python -c \
	  'import daemon; print(daemon.__version__)') -f Containerfile .

clean:
	rm -rf $(VENV) $(RELEASE) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache mutants

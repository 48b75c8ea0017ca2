# Switchboard: `make run` starts a server on embedded defaults, `make test` runs the whole suite.
# Both set up .venv first; on a fresh Debian machine with Python 3.11 nothing else is needed.
# Installs come from the locks in requirements/ (every transitive version); `make lock` refreshes
# them from pyproject.toml.

PYTHON ?= python3.11
ARGS ?=
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# uv installs from the locks: in parallel and without compiling bytecode up front, it takes the
# first `make run` from 35 s (pip, everything) to about 7 s (README: Installing).
UV_PIN := $(shell grep '^uv==' requirements/dev.txt)
INSTALL := $(UV) pip install --quiet --python $(PY)
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
TS_STAMP := tools/ts/node_modules/.installed
BENCH_NODE_STAMP := bench/node/node_modules/.installed
LOCK_ARGS ?=
UV_COMPILE := $(UV) pip compile pyproject.toml --python-version 3.11 --quiet $(LOCK_ARGS)

.PHONY: setup run up test check bench soak services lock clean

# A venv with uv in it. Without pip in the venv when the system's pip can install into it (fast),
# else the usual venv with pip (Debian's python3-venv).
$(UV): requirements/dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	if $(PYTHON) -m pip --version >/dev/null 2>&1; then \
	    $(PYTHON) -m venv --without-pip $(VENV) && \
	    $(PYTHON) -m pip --python $(PY) install --quiet --disable-pip-version-check $(UV_PIN); \
	else \
	    $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet $(UV_PIN); \
	fi
	touch $(UV)

# What the server needs and the embedded MongoDB-compatible server: nothing for tests or benches.
$(RUN_STAMP): $(UV) requirements/run.txt
	$(INSTALL) -r requirements/run.txt
	touch $(RUN_STAMP)

# Everything else: test, lint and bench tools, and the project itself (console scripts).
$(DEV_STAMP): $(RUN_STAMP) requirements/dev.txt pyproject.toml
	$(INSTALL) -r requirements/dev.txt
	$(INSTALL) --no-deps -e .
	touch $(DEV_STAMP)

setup: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(PY) -m server --dev $(ARGS)

# The whole local topology of the Procfile: Redis, the MongoDB-compatible server, web processes.
up: setup services
	$(VENV)/bin/honcho start

# Test-only services that come from Debian packages (installed when missing and we are root).
services:
	@sh tools/install-services.sh

test: setup services $(TS_STAMP) check
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The gate before the tests: lint, formatting and strict typing (configured in pyproject.toml).
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# TypeScript from npm, pinned by tools/ts/package-lock.json: tests/test_ts_types.py type-checks
# server/static/switchboard.d.ts with it (needs Node.js and npm).
$(TS_STAMP): tools/ts/package.json tools/ts/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20"; exit 1; }
	npm ci --prefix tools/ts --no-audit --no-fund
	touch $(TS_STAMP)

# ws from npm, pinned by bench/node/package-lock.json: the Node.js baseline (bench/node/server.js).
$(BENCH_NODE_STAMP): bench/node/package.json bench/node/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20"; exit 1; }
	npm ci --prefix bench/node --no-audit --no-fund
	touch $(BENCH_NODE_STAMP)

bench: setup services $(BENCH_NODE_STAMP)
	$(PY) -m bench.suite

# Re-resolve the locks from pyproject.toml: pins already in them are kept unless pyproject.toml
# rules them out; `make lock LOCK_ARGS=--upgrade` moves every unpinned dependency to its newest.
lock: setup
	$(UV_COMPILE) --extra embedded -o requirements/run.txt
	$(UV_COMPILE) --all-extras -c requirements/run.txt -o requirements/dev.txt

# Fan-out with connection churn for 30 minutes (ARGS="--minutes 5" to shorten), sampled every
# 10 s into bench/results/soak.json and soak.png (docs/reliability.md).
soak: setup services
	$(PY) -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tools/ts/node_modules bench/node/node_modules

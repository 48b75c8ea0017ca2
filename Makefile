# Switchboard: `make run` starts a server on embedded defaults, `make test` runs the whole suite.
# Both set up .venv first; on a fresh Debian machine with Python 3.11 nothing else is needed.

PYTHON ?= python3.11
ARGS ?=
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TS_STAMP := tools/ts/node_modules/.installed

.PHONY: setup run up test bench soak services clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: setup
	$(PY) -m server --dev $(ARGS)

# The whole local topology of the Procfile: Redis, the MongoDB-compatible server, web processes.
up: setup services
	$(VENV)/bin/honcho start

# Test-only services that come from Debian packages (installed when missing and we are root).
services:
	@sh tools/install-services.sh

test: setup services $(TS_STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# TypeScript from npm, pinned by tools/ts/package-lock.json: tests/test_ts_types.py type-checks
# static/switchboard.d.ts with it (needs Node.js and npm).
$(TS_STAMP): tools/ts/package.json tools/ts/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 20"; exit 1; }
	npm ci --prefix tools/ts --no-audit --no-fund
	touch $(TS_STAMP)

bench: setup services
	$(PY) -m bench.suite

# Fan-out with connection churn for 30 minutes (ARGS="--minutes 5" to shorten), sampled every
# 10 s into bench/results/soak.json and soak.png (docs/reliability.md).
soak: setup services
	$(PY) -m bench.soak $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tools/ts/node_modules

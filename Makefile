# Switchboard: `make run` starts a server on embedded defaults, `make test` runs the whole suite.
# Both set up .venv first; on a fresh Debian machine with Python 3.11 nothing else is needed.

PYTHON ?= python3.11
ARGS ?=
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run up test bench services clean

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

test: setup services
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup services
	$(PY) -m bench.suite

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# pip's cache survives between runs, so a warm install is quick.
PIP_INSTALL = $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

# Python sources ruff checks (tools/ and the chart's smoke test included).
PY_SOURCES = api runner client tests bench tools charts/zyra-orchestrator/files

# The suite on every CPU; tests/conftest.py keeps machine-wide tests on one worker.
PYTEST_XDIST ?= -n auto

ZYRA_API_KEYS ?= dev:local-dev-key
ZYRA_PORT     ?= 8000

.PHONY: install run test bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt client/pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[api,dev]'
	$(PIP_INSTALL) -e ./client
	touch $@

install: $(VENV)/.installed

## Start the service on the embedded default (no Redis, no S3, no cluster) on :8000.
run: install
	@echo "zyra-orchestrator on http://127.0.0.1:$(ZYRA_PORT)  (X-API-Key: $(lastword $(subst :, ,$(ZYRA_API_KEYS))))"
	ZYRA_API_KEYS='$(ZYRA_API_KEYS)' ZYRA_PORT=$(ZYRA_PORT) $(BIN)/python -m api

## Run the whole test suite.
test: install
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

## Measure every table of docs/benchmarks.md side by side and write it (BENCH_ARGS=--quick).
bench: install
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check $(PY_SOURCES)

format: install
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

clean:
	rm -rf $(VENV)

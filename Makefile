# The two commands of the README: `make serve` and `make test`. Each sets itself up.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench perf-analyzer clients setup setup-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install --quiet -e .

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

## Run the server on the bundled example models (127.0.0.1:8001).
serve: setup
	$(BIN)/canaryserve serve

## Lint, type-check and run the whole test suite.
test: setup-dev lint
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/python -m protos.generate --check
	$(BIN)/python -m models.build --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmarks (not tests): side-by-side throughput and latency, printed as a table.
bench: setup-dev
	$(BIN)/python -m benchmarks.serving

## Triton's perf_analyzer against canaryserve (installs it with .ci/install-perf-analyzer.sh on first use).
perf-analyzer: setup-dev
	$(BIN)/python -m benchmarks.perf_analyzer

## Install the Node/Go client toolchains (Debian, root) and build the Go client.
clients:
	bash .ci/install-clients.sh
	client/go/build.sh

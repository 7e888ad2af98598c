# Every command CI runs lives here, so local runs and CI runs match.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export RUNYARD_TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
export RUNYARD_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install install-dev serve test lint typecheck check bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e . --group dev

serve: install
	$(BIN)/runyard serve

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: install-dev
	$(BIN)/mypy

check: lint typecheck test

docs: install
	$(BIN)/python -m runyard.cli.docgen > docs/configuration.md

bench: install-dev
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

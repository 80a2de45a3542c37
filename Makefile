# clickbus: `make run` starts the service on its embedded default, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= conf/clickbus.toml

.PHONY: install run test lint bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/clickbus run --config $(CONFIG)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check clickbus tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

fuzz: $(VENV)/.installed-test
	$(BIN)/pip install --quiet atheris
	$(BIN)/python -m tests.fuzz.atheris_edge -max_total_time=$(or $(FUZZ_SECONDS),300)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .hypothesis

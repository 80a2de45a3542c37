# clickbus: `make run` starts the service on its embedded default, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= conf/clickbus.toml

.PHONY: install run test lint bench fuzz clean chromium chaos bench-tools postgresql

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

# The browser test drives Debian's chromium; install it when missing and we may (root). Without it the test skips, saying why.
CHROMIUM := /usr/bin/chromium

chromium:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || echo "chromium: install failed; the browser test will skip"; \
	fi

# The PostgreSQL report store's tests start a throwaway cluster from Debian's binaries; install them when missing
# and we may (root). Without them those tests skip, saying why.

postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || echo "postgresql: install failed; its tests will skip"; \
	fi

# Two workers (pytest-xdist): the suite mostly waits on processes and deadlines, not on the CPU.
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

test: $(VENV)/.installed-test chromium postgresql
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The same three checks as .pre-commit-config.yaml; mypy reads its files (clickbus, tests, bench) from setup.cfg.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check clickbus tests bench
	$(BIN)/ruff format --check clickbus tests bench
	$(BIN)/mypy

# The HTTP benchmarks load with Debian's wrk (pinned to its own core), and set the redirect against nginx's
# `return 302` (nginx-light; apt does not start its service). Without wrk the load is an aiohttp client loop;
# without nginx its rows are left out.
bench-tools:
	@missing=""; command -v wrk >/dev/null || missing="wrk"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || echo "bench-tools: installing$$missing failed"; \
	fi

bench: $(VENV)/.installed-test bench-tools
	$(BIN)/python -m bench --write docs/BENCHMARKS.md

fuzz: $(VENV)/.installed-test
	$(BIN)/pip install --quiet atheris
	$(BIN)/python -m tests.fuzz.atheris_edge -max_total_time=$(or $(FUZZ_SECONDS),300)

# The reliability suite, full length (about 15 minutes); CHAOS_ARGS e.g. `--short`, `--soak-seconds 60`, `soak broker`.
chaos: $(VENV)/.installed-test
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .hypothesis

# Fillmore: `make run` starts the whole stack locally, `make test` runs the test suite.
# Both create the virtualenv (.venv) on first use and reinstall when pyproject.toml changes.

SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The interpreter that creates the venv: python3.11, else any python3 that is at least 3.11.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; \
	done)
endif

# Port of the web process for `make run` (PORT=9000 make run, or make run PORT=9000).
PORT ?= 8000
export PORT

# Extra pytest arguments for `make test`, e.g. make test ARGS='-k orders -x'.
ARGS ?=

.PHONY: .venv run test bench lint format clean

.venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
		if [ -z "$(PYTHON)" ]; then echo "make: no Python >= 3.11 found (python3.11 or python3); set PYTHON=/path/to/python3.11" >&2; exit 1; fi; \
		echo "creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install -e '.[dev]'
	@touch $@

run: .venv
	$(PY) -m tradingsite.runstack

test: .venv
	$(PY) -m tests $(ARGS)

# Benchmarks: figures, not pass/fail timings (docs/performance.md). First the stack over HTTP on
# PostgreSQL + Redis next to the machine's limits (python -m tests.bench; ARGS=--quick for the
# short profile), then the in-process risk gate cost (tests/bench/bench_*.py).
bench: .venv
	$(PY) -m tests.bench $(ARGS)
	$(PY) -m tests tests/bench -q -p no:randomly -o python_files='bench_*.py'

lint: .venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

format: .venv
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

# Removes generated files, including var/ (the local SQLite database and the private Redis
# socket of `make run`). Keeps .venv.
clean:
	rm -rf var build .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

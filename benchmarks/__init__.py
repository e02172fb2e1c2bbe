"""Benchmarks behind ``make bench`` (see ``docs/benchmarks.md``); not tests, never run by ``make test``."""

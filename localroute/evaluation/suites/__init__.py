"""Benchmark suites and how they run.

base.py (a suite, its items and grades), registry.py (math, code; `get_suite`), system.py (the
system scenarios), runner.py (`bench` runs, resumable), store.py (the runs directory), data/
(the packaged problems, sources in data/SOURCES.md).
"""

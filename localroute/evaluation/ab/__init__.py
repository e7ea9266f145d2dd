"""Blind A/B tests between two models: run.py (answer, judge in both orders, `run_ab`),
records.py (the rows both the run and the report read), report.py (the figures and the
report). The statistics (Wilson interval, sign test) are in ../stats.py, shared with reports."""

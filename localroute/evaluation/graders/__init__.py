"""Graders: code.py (a completion run in the sandbox against its tests)."""

"""Changing a role's model on evidence: promote.py (promote, rollback, check-rollback) and
history.py (the record of every change, so a rollback is exact)."""

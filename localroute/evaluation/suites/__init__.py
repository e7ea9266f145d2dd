"""suites of localroute's evaluation."""

"""ab of localroute's evaluation."""

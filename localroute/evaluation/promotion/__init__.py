"""promotion of localroute's evaluation."""

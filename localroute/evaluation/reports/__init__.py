"""reports of localroute's evaluation."""

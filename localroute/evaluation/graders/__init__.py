"""graders of localroute's evaluation."""

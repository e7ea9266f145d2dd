"""validation concern of localroute."""

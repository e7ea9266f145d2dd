"""cli concern of localroute."""

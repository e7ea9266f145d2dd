"""backends concern of localroute."""

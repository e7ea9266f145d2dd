"""config concern of localroute."""

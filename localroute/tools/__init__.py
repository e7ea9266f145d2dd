"""tools concern of localroute."""

"""routing concern of localroute."""

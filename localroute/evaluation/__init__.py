"""evaluation concern of localroute."""

"""client concern of localroute."""

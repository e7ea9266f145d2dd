"""governance concern of localroute."""

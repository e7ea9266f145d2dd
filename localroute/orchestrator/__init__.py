"""orchestrator concern of localroute."""

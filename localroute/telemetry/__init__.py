"""telemetry concern of localroute: events, the store, queries, stats and metrics."""

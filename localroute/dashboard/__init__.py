"""The web dashboard at /ui (docs/dashboard.md): panels over the telemetry store, the governor,
residency and the evaluation runs, drawn in the browser with plotly.js from the plotly wheel."""

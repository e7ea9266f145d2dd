"""`localroute serve`: the routed stack behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from localroute.cli.ask_cmd import RootOpt, parse_mode, tool_roots
from localroute.cli.common import ProfileOpt, UsageError, active_profile, err, run_async
from localroute.config.modes import load_modes
from localroute.server.settings import API_KEY_ENV, ServerSettings, check_bind


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but "
                             "loopback needs an API key."),
    port: int = typer.Option(8808, "--port", min=0, max=65535, help="Port to listen on."),
    profile: str | None = ProfileOpt,
    api_key: str | None = typer.Option(None, "--api-key", envvar=API_KEY_ENV,
                                       help="Require 'Authorization: Bearer KEY' on every "
                                       "endpoint but /health."),
    mode: str | None = typer.Option(None, "--mode", "-m", help="Pin the governance mode for "
                                    "this server (NORMAL, ALERT, DEGRADED, LOCKDOWN, RECOVERY), "
                                    "overriding the sensors; default: the sensors decide, or "
                                    "`localroute mode set`."),
    max_queue: int = typer.Option(8, "--max-queue", min=0, help="Requests allowed to wait per "
                                  "gate beyond its slots; more get 429 with Retry-After."),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes", min=1,
                                       help="Largest request body accepted (413 above)."),
    max_messages: int = typer.Option(256, "--max-messages", min=1,
                                     help="Most messages in one request (413 above)."),
    feedback_file: Path | None = typer.Option(None, "--feedback-file", help="Append POST "
                                              "/v1/feedback entries to this JSONL file."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    root: list[str] | None = RootOpt,
) -> None:
    """Serve `auto` (the routed pipeline), each role and each configured model over the
    OpenAI API: /v1/chat/completions, /v1/models, /health, /ready, /metrics, /v1/feedback."""
    import uvicorn

    from localroute.server.app import create_app

    modes = load_modes()
    # No default root: a server offers file tools only for directories chosen explicitly.
    roots = tool_roots(root, modes, default_to_cwd=False)
    settings = ServerSettings(
        host=host, port=port, api_key=api_key or None,
        mode=parse_mode(mode), max_queue=max_queue,
        max_body_bytes=max_body_bytes, max_messages=max_messages, feedback_path=feedback_file,
        roots=roots.roots)
    try:
        check_bind(settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    active = run_async(active_profile(profile))
    app = create_app(settings, active, modes=modes)
    governor = app.state.localroute.governor
    why = f" ({governor.cause})" if governor.homeostasis.override else ""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    err.print(f"localroute: serving profile '{active.name}' in mode {governor.mode.value}{why} "
              f"at http://{host}:{port}/v1 (model 'auto' or a role: "
              f"{', '.join(active.roles)}); `localroute status` shows the live state",
              highlight=False)
    err.print(f"localroute: {roots.describe()}", highlight=False, markup=False)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)

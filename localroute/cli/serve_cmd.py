"""`localroute serve`: the routed stack behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import typer

from localroute.cli.ask_cmd import RootOpt, parse_mode, tool_roots
from localroute.cli.common import ProfileOpt, UsageError, active_profile, err, run_async
from localroute.config.modes import load_modes
from localroute.server.settings import (
    ALLOW_HOSTS_ENV,
    ALLOW_ORIGINS_ENV,
    API_KEY_ENV,
    ServerSettings,
    check_bind,
    check_names,
)


def read_key_file(path: Path) -> str:
    """The API key in `path` (surrounding whitespace dropped); refused when other users could
    read or change it, or when it is empty."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"--api-key-file {path}: cannot read it ({exc.strerror})") from None
    if mode & 0o077:
        raise UsageError(f"--api-key-file {path}: the file is accessible to other users (mode "
                         f"{mode:04o}); run `chmod 600 {path}`")
    if not key:
        raise UsageError(f"--api-key-file {path}: the file is empty; write the key in it")
    return key


def _api_key(ctx: typer.Context, given: str | None, key_file: Path | None) -> str | None:
    if given and key_file is not None:
        raise UsageError("--api-key and --api-key-file: give one of them")
    if key_file is not None:
        return read_key_file(key_file)
    source = ctx.get_parameter_source("api_key")  # typer's own click: compare by name
    if given and source is not None and source.name == "COMMANDLINE":
        err.print(f"localroute: warning: --api-key on the command line is visible to every user "
                  f"of this machine (`ps`); set {API_KEY_ENV} or use --api-key-file instead",
                  highlight=False)
    return given or None


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but "
                             "loopback needs an API key."),
    port: int = typer.Option(8808, "--port", min=0, max=65535, help="Port to listen on."),
    profile: str | None = ProfileOpt,
    api_key: str | None = typer.Option(None, "--api-key", envvar=API_KEY_ENV,
                                       help="Require 'Authorization: Bearer KEY' on every "
                                       "endpoint but /health (prefer the environment variable "
                                       "or --api-key-file: the command line shows in `ps`)."),
    api_key_file: Path | None = typer.Option(None, "--api-key-file", help="Read the API key "
                                             "from this file (mode 0600 or stricter)."),
    allow_host: list[str] = typer.Option([], "--allow-host", envvar=ALLOW_HOSTS_ENV,
                                         help="Also answer to this Host name (repeatable; e.g. "
                                         "the name a reverse proxy or Docker uses)."),
    allow_origin: list[str] = typer.Option([], "--allow-origin", envvar=ALLOW_ORIGINS_ENV,
                                           help="Let web pages of this origin call the server "
                                           "(CORS; repeatable), e.g. http://localhost:3000."),
    mode: str | None = typer.Option(None, "--mode", "-m", help="Pin the governance mode for "
                                    "this server (NORMAL, ALERT, DEGRADED, LOCKDOWN, RECOVERY), "
                                    "overriding the sensors; default: the sensors decide, or "
                                    "`localroute mode set`."),
    max_queue: int = typer.Option(8, "--max-queue", min=0, help="Requests allowed to wait per "
                                  "gate beyond its slots; more get 429 with Retry-After."),
    max_tool_requests: int = typer.Option(16, "--max-tool-requests", min=1, help="Tool-only "
                                          "answers (no model) running at once; more get 429."),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes", min=1,
                                       help="Largest request body accepted (413 above)."),
    max_messages: int = typer.Option(256, "--max-messages", min=1,
                                     help="Most messages in one request (413 above)."),
    max_header_bytes: int = typer.Option(64 * 1024, "--max-header-bytes", min=1024,
                                         help="Largest request head accepted (431 above)."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1, help="Seconds a "
                                         "client has to send a request head (408 after)."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1, help="Seconds a "
                                       "client has to send a request body (408 after)."),
    max_connections: int = typer.Option(256, "--max-connections", min=1, help="Open "
                                        "connections at once (503 past it)."),
    max_connections_per_client: int = typer.Option(64, "--max-connections-per-client", min=1,
                                                   help="Open connections per client address "
                                                   "(503 past it)."),
    feedback_file: Path | None = typer.Option(None, "--feedback-file", help="Append POST "
                                              "/v1/feedback entries to this JSONL file."),
    feedback_max_bytes: int = typer.Option(10 * 1024 * 1024, "--feedback-max-bytes", min=1024,
                                           help="Rotate the feedback file to FILE.1 past this "
                                           "size."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    root: list[str] | None = RootOpt,
    runs: Path = typer.Option(Path("runs"), "--runs", help="Runs directory whose benchmark "
                              "runs and A/B tests the dashboard (/ui) lists."),
) -> None:
    """Serve `auto` (the routed pipeline), each role and each configured model over the
    OpenAI API: /v1/chat/completions, /v1/models, /health, /ready, /metrics, /v1/feedback;
    and the dashboard at /ui."""
    import uvicorn

    from localroute.server.app import create_app
    from localroute.server.connections import (
        ConnectionLimits,
        bounded_protocol,
        descriptor_bound,
    )

    modes = load_modes()
    # No default root: a server offers file tools only for directories chosen explicitly.
    roots = tool_roots(root, modes, default_to_cwd=False)
    connections = descriptor_bound(max_connections)
    if connections < max_connections:
        err.print(f"localroute: --max-connections lowered to {connections} to stay within this "
                  "process's open-file limit (raise it with `ulimit -n`)", highlight=False)
    settings = ServerSettings(
        host=host, port=port, api_key=_api_key(ctx, api_key, api_key_file),
        mode=parse_mode(mode), max_queue=max_queue, max_tool_requests=max_tool_requests,
        max_body_bytes=max_body_bytes, max_messages=max_messages, feedback_path=feedback_file,
        feedback_max_bytes=feedback_max_bytes, allow_hosts=tuple(allow_host),
        allow_origins=tuple(allow_origin), max_header_bytes=max_header_bytes,
        header_timeout_s=header_timeout, body_timeout_s=body_timeout,
        max_connections=connections,
        max_connections_per_client=min(max_connections_per_client, connections),
        roots=roots.roots, runs_dir=runs)
    try:
        check_bind(settings)
        check_names(settings)
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
    limits = ConnectionLimits(max_total=settings.max_connections,
                              max_per_client=settings.max_connections_per_client,
                              max_header_bytes=settings.max_header_bytes,
                              header_timeout_s=settings.header_timeout_s)
    # The h11 protocol with localroute's bounds (server/connections.py says what each relies
    # on); no WebSocket protocol, since no route speaks it and an upgraded connection would
    # leave the connection counts.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                http=bounded_protocol(limits), ws="none", backlog=settings.max_connections,
                h11_max_incomplete_event_size=settings.max_header_bytes)

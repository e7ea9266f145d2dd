"""The `localroute` command line."""

from __future__ import annotations

import sys
import traceback

import typer

from localroute.cli import (
    ask_cmd,
    bench_cmd,
    eval_cmd,
    models_cmd,
    resources_cmd,
    route_cmd,
    serve_cmd,
    telemetry_cmd,
)
from localroute.cli.common import UsageError, err, state
from localroute.config.loader import ConfigError
from localroute.types import LLMError

app = typer.Typer(
    name="localroute",
    help="Route each request to a tool or the right local model, and check the answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="LOCALROUTE_CONFIG",
        help="models.yaml to use (default: the packaged one).",
    ),
    profile: str | None = typer.Option(
        None, "--profile", "-p", envvar="LOCALROUTE_PROFILE", help="Profile for every command."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    state.config, state.profile, state.debug = config, profile, debug


app.command()(ask_cmd.ask)
app.command()(models_cmd.models)
app.command()(models_cmd.doctor)
app.command()(route_cmd.route)
app.command()(route_cmd.graph)
app.command()(serve_cmd.serve)
app.command("train-router")(eval_cmd.train_router_cmd)
app.add_typer(eval_cmd.eval_app, name="eval")
app.add_typer(telemetry_cmd.telemetry_app, name="telemetry")
app.command()(telemetry_cmd.stats)
app.command()(telemetry_cmd.feedback)
app.add_typer(bench_cmd.bench_app, name="bench")
app.add_typer(bench_cmd.report_app, name="report")
app.command()(resources_cmd.plan)
app.command()(resources_cmd.load)
app.command()(resources_cmd.status)
app.add_typer(resources_cmd.mode_app, name="mode")
app.command("ab")(bench_cmd.ab)
app.command("promote")(bench_cmd.promote_cmd)
app.command("rollback")(bench_cmd.rollback_cmd)
app.command("check-rollback")(bench_cmd.check_rollback_cmd)


def run() -> None:
    """Entry point: one clear line per error, exit 2 for bad input, 1 for failures."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except (ConfigError, UsageError, KeyError, ValueError) as exc:
        _report(exc, 2)
    except LLMError as exc:
        _report(exc, 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        _report(exc, 1)


def _report(exc: BaseException, code: int) -> None:
    if state.debug:
        traceback.print_exception(exc)
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)

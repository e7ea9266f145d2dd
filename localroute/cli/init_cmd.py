"""`localroute init`: find the model servers, propose a role for each model, write models.yaml."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.prompt import Confirm, Prompt
from rich.table import Table

from localroute.backends.discovery import (
    EndpointError,
    Probe,
    discover,
    nothing_found_message,
)
from localroute.cli.common import JsonOpt, UsageError, err, out, print_json, run_async, state
from localroute.config.loader import CONFIG_ENV, load_config, user_config_file
from localroute.onboarding import sizing
from localroute.onboarding.proposal import (
    ROLE_ORDER,
    Candidate,
    Proposal,
    assign,
    candidates,
    propose,
)
from localroute.onboarding.settings import role_settings
from localroute.onboarding.writer import gib, render


def _kind(c: Candidate) -> str:
    if c.embedding:
        return "embedding (not used)"
    return ", ".join(k for k, on in (("coder", c.coder), ("reasoning", c.reasoner)) if on) \
        or "general"


def _candidates_table(cands: list[Candidate], excluded: dict[str, str]) -> Table:
    table = Table(title="models found")
    for col in ("#", "model", "server", "params", "quant", "weights", "context", "kind"):
        table.add_column(col, overflow="fold")
    for c in cands:
        m = c.model
        context = str(m.context_length or m.max_context or "?")
        table.add_row(
            c.key, m.id + (" [dim](too large)[/dim]" if c.key in excluded else ""),
            f"{c.backend} {c.endpoint}", f"{c.params / 1e9:.3g}B" if c.params else "?",
            m.quantization or "?", f"{m.size_bytes / 1e9:.1f} GB" if m.size_bytes else "?",
            context, _kind(c))
    return table


def _proposal_table(proposal: Proposal, cands: dict[str, Candidate]) -> Table:
    table = Table(title="proposed roles")
    for col in ("role", "#", "model", "why"):
        table.add_column(col, overflow="fold")
    for role, choice in proposal.roles.items():
        shared = f" (shares {choice.shares_with})" if choice.shares_with else ""
        table.add_row(role + shared, choice.key, cands[choice.key].model.id, choice.why)
    return table


def _ask_roles(ui: Console, proposal: Proposal, cands: dict[str, Candidate]) -> Proposal:
    ui.print("For each role, press Enter to keep the proposed model or type the # of another.")
    chat = [key for key, c in cands.items() if not c.embedding]
    for role in ROLE_ORDER:
        current = proposal.roles[role].key
        answer = Prompt.ask(f"  {role} [dim]({cands[current].model.id})[/dim]", choices=chat,
                            default=current, console=ui, show_choices=False)
        if answer != current:
            proposal = assign(proposal, role, answer)
    return proposal


def _validated(text: str, target: Path | None) -> None:
    """Load the text with the real loader, from a file beside the target (or a temp dir)."""
    folder = target.parent if target is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".models-", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        load_config(tmp)  # a ConfigError here is a bug of init: it names the key
        if target is not None:
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def init(
    endpoint: list[str] = typer.Option(
        [], "--endpoint", "-e", help="Also probe this server, e.g. http://gpu-box:8000 (repeat)."),
    scan: bool = typer.Option(True, "--scan/--no-scan", help="Probe the default loopback ports "
                              "(LM Studio 1234, Ollama 11434, llama.cpp 8080, vLLM 8000)."),
    to_stdout: bool = typer.Option(False, "--print", help="Write the YAML to stdout, not a file."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept the proposal, ask nothing."),
    out_file: str | None = typer.Option(
        None, "--out", "-o", help="File to write (default: models.yaml in the user config dir)."),
    as_json: bool = JsonOpt,
    budget_gb: float | None = typer.Option(
        None, "--budget", min=0.01, help="Memory budget in GiB for the plan check (default: "
        "this machine's memory minus the OS reserve)."),
) -> None:
    """Find your model servers, propose a role for each model, and write models.yaml."""
    target = None if to_stdout else Path(out_file).expanduser() if out_file else user_config_file()
    if target is not None and target.is_dir():
        raise UsageError(f"--out {target}: is a directory; name the file to write, e.g. "
                         f"{target / 'models.yaml'}")
    if target is not None and target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to replace it "
                         "(or --out FILE to write elsewhere, --print to see the proposal)")
    try:
        probes = run_async(discover(endpoint, scan=scan))
    except EndpointError as exc:
        raise UsageError(str(exc)) from None
    cands = candidates(p.server for p in probes if p.server is not None)
    if not any(not c.embedding for c in cands):
        message = nothing_found_message(probes)
        if as_json:
            print_json({"written": None, "error": message, "probes": _dump(probes)})
        else:
            err.print(message, highlight=False, markup=False)
        raise typer.Exit(1)
    by_key = {c.key: c for c in cands}
    budget_bytes, budget_source = sizing.budget(budget_gb)
    excluded = sizing.too_large(cands, budget_bytes)
    proposal = propose(cands, excluded)
    ui = err if (to_stdout or as_json) else out
    if not as_json:
        ui.print(_candidates_table(cands, excluded))
        ui.print(_proposal_table(proposal, by_key))
    interactive = not (yes or as_json) and sys.stdin.isatty()
    if interactive and not Confirm.ask("Keep every proposed role?", default=True, console=ui):
        proposal = _ask_roles(ui, proposal, by_key)
        ui.print(_proposal_table(proposal, by_key))
    settings = role_settings(proposal, by_key)
    plan, how = sizing.check(proposal, by_key, settings, budget_bytes, budget_source)
    text = render(proposal, by_key, settings, plan, how, probes, date.today().isoformat())
    if not as_json:
        verdict = ("fits" if plan.fits else "does NOT fit" if not plan.errors
                   else "could not be fully sized")
        ui.print(f"memory plan: {gib(plan.total_bytes)} of {gib(plan.budget_bytes)} "
                 f"({budget_source}): {verdict}; headroom {gib(plan.headroom_bytes)}",
                 highlight=False)
    if interactive and target is not None \
            and not Confirm.ask(f"Write {target}?", default=True, console=ui):
        ui.print("nothing written")
        raise typer.Exit(1)
    _validated(text, target)
    if as_json:
        print_json(_report(probes, proposal, by_key, plan.model_dump(), excluded, target,
                           text if target is None else None))
        return
    if target is None:
        sys.stdout.write(text)
        return
    ui.print(f"wrote {target}. Next: `localroute doctor` checks every role, `localroute load` "
             "loads the models, `localroute ask \"...\"` uses them.", highlight=False)
    if state.config or os.environ.get(CONFIG_ENV):
        err.print(f"[yellow]note: --config / {CONFIG_ENV} is set and takes precedence over "
                  f"{target}.[/yellow]", highlight=False)


def _dump(probes: list[Probe]) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in probes]


def _report(probes: list[Probe], proposal: Proposal, cands: dict[str, Candidate],
            plan: dict[str, Any], excluded: dict[str, str], target: Path | None,
            text: str | None) -> dict[str, Any]:
    return {
        "written": str(target) if target is not None else None,
        "probes": _dump(probes),
        "roles": {role: {"model": cands[c.key].model.id, "backend": cands[c.key].backend,
                         "endpoint": cands[c.key].endpoint, "candidate": c.key,
                         "shares_instance_with": c.shares_with, "why": c.why}
                  for role, c in proposal.roles.items()},
        "excluded": {cands[k].model.id: why for k, why in excluded.items()},
        "notes": proposal.notes,
        "plan": plan,
        "yaml": text,
    }

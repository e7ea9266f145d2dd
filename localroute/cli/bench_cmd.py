"""`localroute bench ...`, `report compare`, `ab`, `promote`, `rollback` and `check-rollback`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from localroute.cli.common import (
    JsonOpt,
    ProfileOpt,
    UsageError,
    active_profile,
    err,
    out,
    print_json,
    run_async,
    state,
)
from localroute.evaluation.suites.base import SuiteError

AllowWeakOpt = typer.Option(
    False, "--allow-weak-sandbox", help="code suite: grade even where the sandbox cannot set up "
    "all of its isolation (the missing protections are printed and recorded in the manifest); "
    "without it the run is refused.")

bench_app = typer.Typer(help="Benchmark a role on a suite (math, code, system), or regrade a run.",
                        no_args_is_help=True)
report_app = typer.Typer(help="Reports of bench and A/B runs.", no_args_is_help=True)


def _bench_command(suite: str) -> Callable[..., None]:
    def command(
        role: str = typer.Option(..., "--role", "-r", help="Role to benchmark."),
        samples: int = typer.Option(1, "--samples", "-k", min=1, help="Samples per item (K)."),
        limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="First N items."),
        concurrency: int = typer.Option(1, "--concurrency", min=1, max=64,
                                        help="Samples in flight (the role's gate still applies)."),
        out_dir: Path | None = typer.Option(None, "--out", help="Run directory (default: "
                                            "runs/<suite>-<role>-<config hash>)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --out, skipping "
                                    "samples already logged."),
        retry_errors: bool = typer.Option(False, "--retry-errors", help="With --resume: run "
                                          "samples whose model call failed again."),
        protocol: str = typer.Option("auto", "--protocol", help="math: deepseek-r1, role, or auto "
                                     "(deepseek-r1 for reasoning roles)."),
        temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=2.0),
        max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
        data: Path | None = typer.Option(None, "--data", help="Suite data file (JSONL)."),
        profile: str | None = ProfileOpt,
        allow_weak_sandbox: bool = AllowWeakOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        from localroute.evaluation.suites.runner import BenchOptions, run_bench

        options = BenchOptions(
            suite=suite, role=role, samples=samples, limit=limit, concurrency=concurrency,
            out=out_dir, resume=resume, retry_errors=retry_errors, protocol=protocol,
            temperature=temperature, max_tokens=max_tokens, data=data,
            allow_weak_sandbox=allow_weak_sandbox,
        )
        if retry_errors and not resume:
            raise UsageError("--retry-errors continues an existing run; add --resume")
        if allow_weak_sandbox and suite != "code":
            raise UsageError(f"--allow-weak-sandbox: the {suite} suite runs no graded code")
        weak = _sandbox_notice(allow_weak_sandbox) if suite == "code" else None
        if weak:
            err.print(weak, highlight=False, markup=False)

        async def go() -> Any:
            active = await active_profile(profile)
            return await run_bench(active, options, console=err, quiet=as_json)

        try:
            result = run_async(go())
        except SuiteError as exc:
            raise UsageError(str(exc)) from None
        if as_json:
            print_json(result.model_dump(mode="json"))
            return
        _print_summary(result.model_dump(mode="json"))
        if weak:
            out.print(weak, highlight=False, markup=False)

    command.__doc__ = f"Run the {suite} suite against a role; logs, manifest and reports in --out."
    return command


for _suite in ("math", "code", "system"):
    bench_app.command(_suite)(_bench_command(_suite))


@bench_app.command("regrade")
def regrade_cmd(
    run_dir: Path = typer.Argument(..., help="A bench run directory."),
    allow_weak_sandbox: bool = AllowWeakOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Grade a run's logged outputs again with the current graders; no model is called."""
    from localroute.evaluation.suites.runner import regrade
    from localroute.evaluation.suites.store import RunStore

    code = RunStore(run_dir).exists() and RunStore(run_dir).read_manifest().suite == "code"
    weak = _sandbox_notice(allow_weak_sandbox) if code else None
    if weak:
        err.print(weak, highlight=False, markup=False)
    result, changed = regrade(run_dir, allow_weak_sandbox=allow_weak_sandbox)
    data = result.model_dump(mode="json") | {"changed": changed}
    if as_json:
        print_json(data)
        return
    _print_summary(data)
    out.print(f"{changed} grade(s) changed; new grades in {run_dir / 'regraded.jsonl'}",
              highlight=False)
    if weak:
        out.print(weak, highlight=False, markup=False)


def _sandbox_notice(allow_weak: bool) -> str | None:
    """Refuse a code run before any model call when the sandbox cannot isolate graded code here
    (unless allowed); the line naming the missing protections of an allowed weak run."""
    from localroute.evaluation.sandbox.caps import capabilities, describe_missing
    from localroute.evaluation.sandbox.models import SandboxConfig

    caps = capabilities(SandboxConfig(allow_weak=allow_weak))
    if caps.error:
        raise UsageError(caps.error)
    if not caps.missing:
        return None
    return f"WEAK SANDBOX: graded without {describe_missing(caps.missing)}"


def _print_summary(r: dict[str, Any]) -> None:
    s = r["summary"]
    acc = s["accuracy"]
    rate = "n/a" if acc["rate"] is None else (
        f"{acc['rate']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}]")
    out.print(f"{s['suite']} on {s['role']} ({s['model']}): accuracy {rate} over "
              f"{s['n_samples']} samples of {s['n_items']} items; inference errors "
              f"{s['n_errors']}, ungraded {s['n_ungraded']}; {r['status']}", highlight=False)
    out.print(f"wrote {r['written']} new sample(s), skipped {r['skipped']} already logged; "
              f"reports: {Path(r['out']) / 'report.md'}, {Path(r['out']) / 'report.html'}",
              highlight=False)


@report_app.command("compare")
def compare_cmd(
    run_a: Path = typer.Argument(..., help="Bench run directory A (the baseline)."),
    run_b: Path = typer.Argument(..., help="Bench run directory B."),
    out_file: Path | None = typer.Option(None, "--out", help="Also write the Markdown here."),
    as_json: bool = JsonOpt,
) -> None:
    """Two bench runs of the same suite side by side, with a paired sign test."""
    from localroute.evaluation.reports.compare import compare_runs, render_compare_md
    from localroute.evaluation.suites.store import load_run

    comparison = compare_runs(load_run(run_a), load_run(run_b))
    text = render_compare_md(comparison)
    if out_file is not None:
        out_file.write_text(text, encoding="utf-8")
    if as_json:
        print_json(comparison.model_dump(mode="json"))
        return
    out.print(text, markup=False, highlight=False)


def ab(
    a: str = typer.Option(..., "--a", help="Side A (the current one): a role or a model id."),
    b: str = typer.Option(..., "--b", help="Side B (the candidate): a role or a model id."),
    suite: str | None = typer.Option(None, "--suite", help="math, code or system."),
    queries: Path | None = typer.Option(None, "--queries", help="JSONL rows {id?, query, "
                                        "reference?}."),
    judge: str = typer.Option("validation", "--judge", help="Role that judges."),
    base_role: str | None = typer.Option(None, "--base-role", help="Role whose server and "
                                         "settings serve a side given as a model id."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1),
    concurrency: int = typer.Option(1, "--concurrency", min=1, max=16),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Cap both sides' "
                                          "answers (default: the suite's protocol)."),
    out_dir: Path = typer.Option(Path("runs/ab"), "--out", help="Where ab.jsonl, manifest.json "
                                 "and the reports go."),
    record: Path | None = typer.Option(None, "--record", help="Also write an experiment record "
                                       "(e.g. experiments/E-004-reasoning-model-comparison.md)."),
    title: str = typer.Option("E-004: reasoning model comparison", "--title"),
    hypothesis: str = typer.Option(
        "The candidate (B) answers the benchmark at least as well as the current model (A), as "
        "judged blind and by the objective graders.", "--hypothesis"),
    profile: str | None = ProfileOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Blind A/B test: both sides answer, a judge compares in both orders at temperature 0."""
    from localroute.evaluation.ab import AbOptions, run_ab
    from localroute.evaluation.ab_report import render_ab_md, write_ab, write_experiment_record

    options = AbOptions(a=a, b=b, suite=suite, queries=queries, judge=judge, base_role=base_role,
                        limit=limit, concurrency=concurrency, max_tokens=max_tokens,
                        out=out_dir)

    async def go() -> Any:
        return await run_ab(await active_profile(profile), options)

    try:
        result = run_async(go())
    except SuiteError as exc:
        raise UsageError(str(exc)) from None
    write_ab(result)
    if record is not None:
        write_experiment_record(result, record, title, hypothesis)
    if as_json:
        print_json(result.model_dump(mode="json", exclude={"rows"}))
        return
    out.print(render_ab_md(result), markup=False, highlight=False)


def _explicit_profile(profile: str | None) -> str:
    import os

    name = profile or state.profile or os.environ.get("LOCALROUTE_PROFILE")
    if not name:
        raise UsageError("this command edits one profile of models.yaml: pass --profile NAME")
    return name


def _print_rules(rules: list[Any], fired_word: str = "ok") -> None:
    for rule in rules:
        mark = "[green]✓[/green]" if rule.ok == (fired_word == "ok") else "[red]✗[/red]"
        out.print(f"  {mark} {rule.name}: {rule.detail}", highlight=False)


def promote_cmd(
    role: str = typer.Argument(..., help="Role to change."),
    model: str = typer.Option(..., "--model", help="Candidate model id."),
    evidence: Path = typer.Option(..., "--evidence", help="Bench run of the candidate."),
    budget_gb: float | None = typer.Option(None, "--budget-gb", help="Memory budget (default: "
                                           "25 GB for reasoning roles, else the machine's RAM)."),
    params_b: float | None = typer.Option(None, "--params-b", help="Parameters in billions, "
                                          "when the model id does not say."),
    bits: float | None = typer.Option(None, "--bits", help="Bits per weight, when the "
                                      "quantization does not say."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the rules, change nothing."),
    profile: str | None = ProfileOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Switch a role to a new model when the evidence meets the promotion rules."""
    from localroute.config.loader import config_path, load_config, resolve_profile
    from localroute.evaluation.promotion.promote import promote

    name = _explicit_profile(profile)
    file = config_path(state.config)
    config, source = load_config(file)
    decision = promote(file, resolve_profile(config, name, source), role, model, evidence,
                       budget_gb, params_b, bits, dry_run)
    if as_json:
        print_json(decision.model_dump(mode="json", exclude={"summary"}))
    else:
        if decision.note:
            err.print(f"[yellow]note: {decision.note}[/yellow]", highlight=False)
        out.print(f"promote {role} -> {model}: "
                  + ("allowed" if decision.allowed else "refused"), highlight=False)
        _print_rules(decision.rules)
        if decision.entry:
            out.print(f"changed {file} (history #{decision.entry.seq}: "
                      f"{decision.entry.from_model} -> {decision.entry.to_model})",
                      highlight=False)
    if not decision.allowed:
        raise SystemExit(1)


def rollback_cmd(
    role: str = typer.Argument(..., help="Role whose last promotion to undo."),
    force: bool = typer.Option(False, "--force", help="Restore even if the file changed since."),
    profile: str | None = ProfileOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Restore models.yaml exactly as it was before the role's last promotion."""
    from localroute.config.loader import config_path
    from localroute.evaluation.promotion.promote import rollback

    file = config_path(state.config)
    entry = rollback(file, _explicit_profile(profile), role, force)
    if as_json:
        print_json(entry.model_dump(mode="json"))
        return
    out.print(f"rolled back {role}: {entry.from_model} -> {entry.to_model} in {file} "
              f"(history #{entry.seq}, undoes #{entry.reverts})", highlight=False)


ROLLBACK_EXIT = 3


def check_rollback_cmd(
    role: str = typer.Argument(..., help="Role to check."),
    evidence: Path | None = typer.Option(None, "--evidence", help="Bench run to judge by "
                                         "(default: the newest run of the role's model in "
                                         "--runs)."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Where to look for runs."),
    params_b: float | None = typer.Option(None, "--params-b"),
    bits: float | None = typer.Option(None, "--bits"),
    profile: str | None = ProfileOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Exit 0 when no rollback trigger fires, 3 when one does (1 error, 2 bad input)."""
    from localroute.evaluation.promotion.promote import check_rollback, latest_run
    from localroute.evaluation.suites.store import load_run

    active = run_async(active_profile(profile))
    current = active.role(role)
    chosen = evidence or latest_run(runs, role, current.id)
    if chosen is None:
        raise UsageError(f"no bench run of role '{role}' with model '{current.id}' under {runs}; "
                         "run `localroute bench ... --role ROLE` or pass --evidence RUN")
    check = check_rollback(active, role, load_run(chosen), params_b, bits)
    if as_json:
        print_json(check.model_dump(mode="json"))
    else:
        out.print(f"{role} ({check.model}) by {check.run}: "
                  + ("[red]rollback triggered[/red]" if check.triggered else "[green]ok[/green]"),
                  highlight=False)
        _print_rules(check.triggers, fired_word="fired")
        for note in check.notes:
            err.print(f"[yellow]note: {note}[/yellow]", highlight=False)
    if check.triggered:
        raise SystemExit(ROLLBACK_EXIT)


__all__ = ["ab", "bench_app", "check_rollback_cmd", "promote_cmd", "report_app", "rollback_cmd"]

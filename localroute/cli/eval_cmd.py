"""`localroute eval ...` and `localroute train-router`: measuring routing and grading answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from localroute.cli.common import JsonOpt, ProfileOpt, UsageError, active_profile, out, print_json
from localroute.client.llm_client import LLMClient
from localroute.config.modes import load_modes
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.routing.decision import RoutingDecision
from localroute.routing.training import (
    EvalReport,
    cross_validate,
    evaluate,
    load_rows,
    resolve_dev_path,
    train_router,
)
from localroute.telemetry import events as ev
from localroute.telemetry.wiring import shared_telemetry

eval_app = typer.Typer(help="Evaluate routing and grade model answers.", no_args_is_help=True)


def _report_json(
    report: EvalReport, escalation_rate: float, extra: dict[str, Any]
) -> dict[str, Any]:
    data = report.model_dump()
    p50, p99 = data.pop("latency_ms_p50"), data.pop("latency_ms_p99")
    return {**data, "escalation_rate": escalation_rate,
            "latency_ms": {"p50": p50, "p99": p99}, **extra}


@eval_app.command("routing")
def eval_routing(
    file: Path = typer.Argument(..., help="JSONL rows with 'query' and 'route'."),
    no_model: bool = typer.Option(False, "--no-model", help="Never ask the router model."),
    cv: int | None = typer.Option(None, "--cv", min=2, help="k-fold cross-validation: train on "
                                  "k-1 folds (+ the packaged examples), score the held-out fold."),
    seed: int = typer.Option(0, "--seed", help="Seed for folds and training."),
    profile: str | None = ProfileOpt,
    record: bool = typer.Option(True, "--record/--no-record", help="Record each routing "
                                "decision in telemetry (so `stats` counts them)."),
    as_json: bool = JsonOpt,
) -> None:
    """Routing accuracy, per-route precision/recall, confusion, bypass and escalation rates,
    and stage-1 latency."""
    rows = load_rows(file)
    settings = load_modes().routing
    if cv is not None:
        if not no_model:
            raise UsageError("--cv trains a classifier per fold and never calls the router model; "
                             "add --no-model")
        folds = cross_validate(rows, k=cv, seed=seed)
        result = _report_json(folds.overall, 0.0,
                              {"cv": cv, "fold_accuracy": folds.fold_accuracy})
    else:
        classifier = RouteClassifier.load()
        escalations = [0]
        telemetry = shared_telemetry() if record else None
        sink = _recorder(telemetry) if telemetry is not None else None
        if no_model:
            predict = _fast(classifier, settings, sink)
        else:
            predict = _with_model(classifier, settings, profile, escalations, sink)
        report = evaluate(predict, rows)
        if telemetry is not None:
            telemetry.flush()
        result = _report_json(report, escalations[0] / len(rows),
                              {"artifact": classifier.artifact_id()})
    if as_json:
        print_json(result)
        return
    _print_report(result)


Sink = Callable[[RoutingDecision], None]


def _recorder(telemetry: Any) -> Sink:
    def sink(d: RoutingDecision) -> None:
        telemetry.emit(ev.routing_decision(
            f"eval-{uuid.uuid4().hex}", None, route=d.route, decided_by=d.decided_by,
            confidence=d.confidence, latency_ms=d.latency_ms, escalated=d.escalated,
            escalation_error=d.escalation_error,
            tool=d.tool_call.name if d.tool_call else None, reason=d.reason))

    return sink


def _fast(classifier: RouteClassifier, settings: Any, sink: Sink | None = None) -> Any:
    router = Stage1Router(classifier, settings)

    def predict(query: str) -> tuple[str, str | None]:
        d = router.decide_fast(query)
        if sink is not None:
            sink(d)
        return d.route, d.tool_call.name if d.tool_call else None

    return predict


def _with_model(classifier: RouteClassifier, settings: Any, profile: str | None,
                escalations: list[int], sink: Sink | None) -> Any:
    loop = asyncio.new_event_loop()
    active = loop.run_until_complete(active_profile(profile))
    router = Stage1Router(classifier, settings, LLMClient(active))

    def predict(query: str) -> tuple[str, str | None]:
        d = loop.run_until_complete(router.decide(query))
        escalations[0] += int(d.escalated)
        if sink is not None:
            sink(d)
        return d.route, d.tool_call.name if d.tool_call else None

    return predict


def _print_report(r: dict[str, Any]) -> None:
    out.print(f"accuracy [bold]{r['accuracy']:.3f}[/bold] on {r['n']} rows   bypass "
              f"{r['bypass_rate']:.3f}   escalation {r['escalation_rate']:.3f}   latency p50 "
              f"{r['latency_ms']['p50']:.2f} ms p99 {r['latency_ms']['p99']:.2f} ms")
    table = Table(title="per route")
    for col in ("route", "precision", "recall", "support"):
        table.add_column(col)
    for route, m in r["per_route"].items():
        table.add_row(route, f"{m['precision']:.3f}", f"{m['recall']:.3f}", str(m["support"]))
    out.print(table)
    confusion = Table(title="confusion (rows: gold, columns: predicted)")
    routes = list(r["confusion"])
    confusion.add_column("gold")
    for route in routes:
        confusion.add_column(route)
    for gold in routes:
        confusion.add_row(gold, *(str(r["confusion"][gold][p]) for p in routes))
    out.print(confusion)


@eval_app.command("grade-math")
def grade_math(
    file: Path = typer.Argument(..., help="JSONL rows with 'gold' and 'prediction'."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds per comparison."),
    as_json: bool = JsonOpt,
) -> None:
    """Decide whether each prediction's final answer equals the gold answer."""
    from localroute.evaluation.math_grader import grade_file

    rows = grade_file(file, timeout_s=timeout)
    if as_json:
        print_json(rows)
        return
    for i, row in enumerate(rows, 1):
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[yellow]?[/yellow]"}
        out.print(f"{i:4d} {mark[row['equivalent']]} {row['verdict']}: {row['reason']}",
                  highlight=False)
    agree = sum(1 for r in rows if r["equivalent"])
    out.print(f"{agree}/{len(rows)} equivalent")


@eval_app.command("grade-code")
def grade_code(
    file: Path = typer.Argument(..., help="JSONL rows: id, prompt, entry_point, tests, "
                                "completion."),
    concurrency: int = typer.Option(2, "--concurrency", min=1, max=8),
    allow_weak_sandbox: bool = typer.Option(
        False, "--allow-weak-sandbox", help="Grade even where the sandbox cannot set up all of "
        "its isolation (the missing protections are printed); without it such rows are "
        "sandbox_error."),
    as_json: bool = JsonOpt,
) -> None:
    """Run each completion in the sandbox against its tests; one verdict per row."""
    from localroute.evaluation.graders.code import grade_code_file, summarize
    from localroute.evaluation.sandbox.caps import capabilities, describe_missing
    from localroute.evaluation.sandbox.models import SandboxConfig

    config = SandboxConfig(allow_weak=allow_weak_sandbox)
    results = grade_code_file(file, config, concurrency=concurrency)
    caps = capabilities(config)
    if as_json:
        print_json({"results": results, "summary": summarize(results),
                    "sandbox": caps.model_dump()})
        return
    for row in results:
        out.print(f"{row['id']}: {row['verdict']}  {row.get('reason', '')}", highlight=False,
                  markup=False)
    out.print(f"summary: {summarize(results)}", highlight=False)
    missing = {k: v for row in results for k, v in row["missing_protections"].items()}
    if missing and allow_weak_sandbox:
        out.print(f"WEAK SANDBOX: graded without {describe_missing(missing)}", highlight=False,
                  markup=False)


def train_router_cmd(
    dev: Path | None = typer.Option(None, "--dev", help="Labelled dev JSONL (default: the "
                                    "dev set packaged with localroute)."),
    out_path: Path | None = typer.Option(None, "--out", help="Where to write the artifact "
                                         "(default: the packaged one)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOpt,
) -> None:
    """Train the stage-1 route classifier, reproducibly, on the dev set + packaged examples."""
    report = train_router(resolve_dev_path(dev), out_path, seed=seed)
    if as_json:
        print_json(report.model_dump())
        return
    out.print(f"trained {report.artifact_id} on {report.n_dev} dev + {report.n_handwritten} "
              f"handwritten rows in {report.train_seconds:.1f} s -> {report.out_path}",
              highlight=False)

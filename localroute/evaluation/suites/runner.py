"""Running a suite against a role: the sample log, resume, the manifest and the progress bar."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from localroute.client.llm_client import LLMClient
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.evaluation.reports.summary import RunSummary
from localroute.evaluation.suites.base import BenchItem, Sampling, Suite, SuiteError, file_sha256
from localroute.evaluation.suites.registry import get_suite
from localroute.evaluation.suites.store import (
    RunManifest,
    RunStore,
    RunStoreError,
    SampleError,
    SampleRow,
    Session,
    config_hash,
    now_iso,
    sample_key,
)
from localroute.types import LLMError

DEFAULT_RUNS_DIR = Path("runs")


class BenchOptions(BaseModel):
    suite: str
    role: str
    samples: int = 1
    limit: int | None = None
    concurrency: int = 1
    out: Path | None = None
    resume: bool = False
    retry_errors: bool = False
    protocol: str = "auto"
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    data: Path | None = None
    allow_weak_sandbox: bool = False  # code suite: grade where the sandbox is incomplete


class BenchResult(BaseModel):
    out: str
    written: int
    skipped: int
    status: str
    summary: RunSummary


def git_commit() -> str:
    """The commit of the localroute checkout, '+dirty' when it has changes; 'unknown' outside
    a checkout."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # read-only: never touch the index
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, env=env)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(here), "diff", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=10, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 1 else "")


def package_version() -> str:
    try:
        return version("localroute")
    except PackageNotFoundError:
        return "unknown"


def bench_role(role: ResolvedRole, sampling: Sampling) -> ResolvedRole:
    """The role as benchmarked: the suite's sampling and no fallback, so every sample measures
    the model under test and not whatever a fallback would have answered with."""
    return role.model_copy(update={"temperature": sampling.temperature, "top_p": sampling.top_p,
                                   "max_tokens": sampling.max_tokens, "fallback": ()})


def with_role(profile: ResolvedProfile, role: ResolvedRole) -> ResolvedProfile:
    return profile.model_copy(update={"roles": {**profile.roles, role.name: role}})


class BenchPlan(BaseModel):
    """Everything decided before the first model call."""

    suite_name: str
    role: ResolvedRole
    sampling: Sampling
    items: list[BenchItem]
    config_hash: str
    out: Path
    dataset: dict[str, Any]


def plan(profile: ResolvedProfile, options: BenchOptions) -> tuple[BenchPlan, Suite]:
    if options.samples < 1:
        raise SuiteError(f"--samples must be at least 1, got {options.samples}")
    if options.concurrency < 1:
        raise SuiteError(f"--concurrency must be at least 1, got {options.concurrency}")
    suite = get_suite(options.suite, allow_weak_sandbox=options.allow_weak_sandbox)
    role = profile.role(options.role)
    path = options.data or suite.default_path()
    items = suite.load(path)
    if options.limit is not None:
        if options.limit < 1:
            raise SuiteError(f"--limit must be at least 1, got {options.limit}")
        items = items[: options.limit]
    sampling = suite.sampling(role, options.protocol, options.temperature, options.top_p,
                              options.max_tokens)
    chash = config_hash({
        "suite": suite.name, "template": suite.template_version, "model": role.id,
        "backend": role.backend.value, "endpoint": role.endpoint,
        "quantization": role.quantization, "sampling": sampling.model_dump(),
    })
    out = options.out or DEFAULT_RUNS_DIR / f"{suite.name}-{role.name}-{chash[:8]}"
    dataset = {"path": str(path), "sha256": file_sha256(path), "n_items_used": len(items)}
    return BenchPlan(suite_name=suite.name, role=role, sampling=sampling, items=items,
                     config_hash=chash, out=out, dataset=dataset), suite


def _manifest(p: BenchPlan, suite: Suite, profile: ResolvedProfile, options: BenchOptions,
              existing: RunManifest | None) -> RunManifest:
    if existing is not None:
        if existing.config_hash != p.config_hash:
            raise RunStoreError(
                f"{p.out} holds a run with config {existing.config_hash} (model "
                f"{existing.model}, sampling {existing.sampling}); this run's config is "
                f"{p.config_hash}. Resume with the same settings or choose another --out"
            )
        if existing.dataset.get("sha256") != p.dataset["sha256"]:
            raise RunStoreError(
                f"{p.out}: the dataset changed since this run started ({existing.dataset['path']} "
                "has another sha256); start a new run with another --out"
            )
        items = list(dict.fromkeys([*existing.items, *(i.id for i in p.items)]))
        for old in existing.sessions:
            if old.status == "running":  # that process died without saying so (e.g. killed)
                old.status = "interrupted"
        return existing.model_copy(update={
            "items": items, "limit": options.limit,
            "samples_per_item": max(existing.samples_per_item, options.samples),
            "dataset": {**p.dataset, "n_items_used": len(items)},
        })
    return RunManifest(
        run_id=p.out.name, created_at=now_iso(), suite=p.suite_name, role=p.role.name,
        model=p.role.id, backend=p.role.backend.value, endpoint=p.role.endpoint,
        quantization=p.role.quantization, profile=profile.name, config_file=profile.source,
        sampling=p.sampling.model_dump(), samples_per_item=options.samples, limit=options.limit,
        items=[i.id for i in p.items], dataset=p.dataset, grader_version=suite.grader_version(),
        config_hash=p.config_hash, git_commit=git_commit(), localroute_version=package_version(),
        suite_extra=suite.manifest_extra(),
    )


class _Tracker:
    """Progress bar fields: throughput and errors by kind, besides done/total and ETA."""

    def __init__(self, total: int, console: Console | None, quiet: bool) -> None:
        self.errors: Counter[str] = Counter()
        self.started = time.monotonic()
        self.done = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("{task.fields[errors]}"),
            console=console, disable=quiet, transient=False,
        )
        self.task = self.progress.add_task("bench", total=total, rate="", errors="")

    def advance(self, error: str | None) -> None:
        self.done += 1
        if error:
            self.errors[error] += 1
        elapsed = time.monotonic() - self.started
        rate = f"{self.done / elapsed:.2f} samples/s" if elapsed > 0 else ""
        errors = ("errors " + ", ".join(f"{k}={v}" for k, v in self.errors.items())
                  if self.errors else "")
        self.progress.update(self.task, advance=1, rate=rate, errors=errors)


async def run_bench(
    profile: ResolvedProfile,
    options: BenchOptions,
    console: Console | None = None,
    quiet: bool = False,
    write_reports: bool = True,
) -> BenchResult:
    """Run (or resume) a suite against a role; every sample is logged as soon as it is graded."""
    p, suite = plan(profile, options)
    store = RunStore(p.out)
    existing: RunManifest | None = None
    if store.exists():
        if not options.resume:
            raise RunStoreError(
                f"{p.out} already holds a run; pass --resume to continue it, or --out DIR for a "
                "new one"
            )
        existing = store.read_manifest()
    manifest = _manifest(p, suite, profile, options, existing)
    store.repair_tail()
    done = store.latest()
    if options.retry_errors:
        done = {k: r for k, r in done.items() if r.error is None}
    todo = [
        (item, s) for item in p.items for s in range(options.samples)
        if sample_key(p.suite_name, item.id, s, p.role.id, p.config_hash) not in done
    ]
    session = Session(started_at=now_iso())
    manifest.sessions.append(session)
    store.write_manifest(manifest)

    role = bench_role(p.role, p.sampling)
    client = LLMClient(with_role(profile, role))
    tracker = _Tracker(len(todo), console, quiet)
    gate = asyncio.Semaphore(options.concurrency)
    written = 0

    async def one(item: BenchItem, index: int) -> None:
        nonlocal written
        async with gate:
            row = await _sample(client, suite, p, item, index)
            store.append(row)
            written += 1
            session.rows_written = written
            tracker.advance(row.error.kind if row.error else None)

    try:
        with tracker.progress:
            await asyncio.gather(*(one(item, s) for item, s in todo))
        session.status = "completed"
    except (asyncio.CancelledError, KeyboardInterrupt):
        session.status = "interrupted"
        raise
    except BaseException:
        session.status = "failed"
        raise
    finally:
        session.finished_at = now_iso()
        store.write_manifest(manifest)
        await client.aclose()
    return finish(p.out, written, len(p.items) * options.samples - len(todo), session.status,
                  write_reports)


def finish(out: Path, written: int, skipped: int, status: str, write_reports: bool) -> BenchResult:
    from localroute.evaluation.reports.summary import summarize
    from localroute.evaluation.suites.store import load_run

    run = load_run(out)
    summary = summarize(run)
    if write_reports:
        from localroute.evaluation.reports.html import write_html_report
        from localroute.evaluation.reports.markdown import write_md_report

        write_md_report(run, summary)
        write_html_report(run, summary)
    return BenchResult(out=str(out), written=written, skipped=skipped, status=status,
                       summary=summary)


async def _sample(client: LLMClient, suite: Suite, p: BenchPlan, item: BenchItem,
                  index: int) -> SampleRow:
    messages = suite.messages(item, p.sampling)
    base: dict[str, Any] = {
        "key": sample_key(p.suite_name, item.id, index, p.role.id, p.config_hash),
        "suite": p.suite_name, "item_id": item.id, "sample": index, "model": p.role.id,
        "config_hash": p.config_hash, "role": p.role.name, "subject": item.subject,
        "level": item.level, "messages": messages, "grader_version": suite.grader_version(),
    }
    started = time.perf_counter()
    try:
        response = await client.respond(p.role.name, messages, temperature=p.sampling.temperature)
    except LLMError as exc:
        return SampleRow(**base, error=SampleError(kind=type(exc).__name__, message=str(exc)),
                         latency_s=time.perf_counter() - started)
    # Graders block (sympy workers, the sandbox): keep the event loop free for other samples.
    grade = await asyncio.to_thread(suite.grade, item, response.content)
    return SampleRow(
        **base, output=response.content, reasoning=response.reasoning,
        finish_reason=response.finish_reason, grade=grade,
        prompt_tokens=response.usage.prompt_tokens,
        completion_tokens=response.usage.completion_tokens, latency_s=response.timings.total_s,
        queue_wait_s=response.timings.queue_wait_s, attempts=response.attempts,
    )


def regrade(
    out: Path, write_reports: bool = True, allow_weak_sandbox: bool = False
) -> tuple[BenchResult, int]:
    """Grade every logged output again with the current graders (no model call); the new grades
    go to `regraded.jsonl` and the reports. Returns the result and how many grades changed."""
    store = RunStore(out)
    manifest = store.read_manifest()
    suite = get_suite(manifest.suite, allow_weak_sandbox=allow_weak_sandbox)
    items = {i.id: i for i in suite.load(Path(manifest.dataset["path"]))}
    if file_sha256(Path(manifest.dataset["path"])) != manifest.dataset.get("sha256"):
        raise RunStoreError(
            f"{manifest.dataset['path']} changed since the run; its references would not match "
            "the logged outputs"
        )
    rows = [r for r in store.latest().values() if r.error is None]
    missing = sorted({r.item_id for r in rows} - set(items))
    if missing:
        raise RunStoreError(f"{out}: items {missing[:5]} are not in {manifest.dataset['path']}")
    grades = suite.grade_many([(items[r.item_id], r.output) for r in rows])
    version_now = suite.grader_version()
    regraded = [r.model_copy(update={"grade": g, "grader_version": version_now})
                for r, g in zip(rows, grades, strict=True)]
    changed = sum(
        (a.grade.correct if a.grade else None) != b.grade.correct
        for a, b in zip(rows, regraded, strict=True) if b.grade is not None
    )
    store.write_regraded(regraded)
    manifest.regrades.append({"at": now_iso(), "grader_version": version_now,
                              "rows": len(regraded), "changed": changed})
    store.write_manifest(manifest)
    return finish(out, 0, len(rows), "regraded", write_reports), changed

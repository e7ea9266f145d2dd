"""Promotion and rollback of a role's model, by the ADR's rules, with the evidence of a bench run.

Promote only when the evidence run (of the candidate model) is complete, reaches the accuracy
target (>= 90%), had no inference failures, and the model's memory estimate fits the budget.
Rollback triggers: accuracy < 80%, inference failures, or more than 25 GB for a reasoning model.

The memory estimate is deliberately simple: parameters x bits per weight / 8 (weights only; no
KV cache or runtime overhead). The resources issue adds a full planner that replaces it.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil
from pydantic import BaseModel

from localroute.config.loader import load_config
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.evaluation.promotion.history import (
    History,
    HistoryEntry,
    HistoryError,
    check_editable,
    role_id_span,
    set_role_model,
    sha256,
    validate_text,
)
from localroute.evaluation.reports.summary import RunSummary, summarize
from localroute.evaluation.suites.base import is_reasoning_role
from localroute.evaluation.suites.store import Run, load_run

PROMOTE_MIN_ACCURACY = 0.90
ROLLBACK_MIN_ACCURACY = 0.80
REASONING_MAX_GB = 25.0
# Effective bits per weight of common GGUF quantizations (llama.cpp's quantize table).
GGUF_BITS = {"q2_k": 3.35, "q3_k_m": 3.9, "q4_0": 4.5, "q4_1": 5.0, "q4_k_m": 4.85,
             "q5_0": 5.5, "q5_1": 6.0, "q5_k_m": 5.7, "q6_k": 6.6, "q8_0": 8.5,
             "f16": 16.0, "bf16": 16.0, "fp16": 16.0, "f32": 32.0}
_PARAMS = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


class MemoryEstimate(BaseModel):
    params_b: float | None
    bits: float | None
    gb: float | None
    note: str


class Rule(BaseModel):
    name: str
    ok: bool
    detail: str


class Decision(BaseModel):
    role: str
    model: str
    allowed: bool
    rules: list[Rule]
    summary: RunSummary | None = None
    memory: MemoryEstimate | None = None
    entry: HistoryEntry | None = None
    note: str | None = None


def estimate_memory(model_id: str, quantization: str, params_b: float | None = None,
                    bits: float | None = None) -> MemoryEstimate:
    if params_b is None:
        found = _PARAMS.findall(model_id)
        if found:
            number, unit = found[-1]
            params_b = float(number) / (1000.0 if unit.lower() == "m" else 1.0)
    if bits is None:
        q = quantization.lower()
        match = re.fullmatch(r"(\d+)[ -]?bits?", q)
        bits = float(match.group(1)) if match else GGUF_BITS.get(q)
    if params_b is None or bits is None:
        missing = " and ".join(x for x, v in (("--params-b", params_b), ("--bits", bits))
                               if v is None)
        return MemoryEstimate(params_b=params_b, bits=bits, gb=None,
                              note=f"cannot tell from '{model_id}' / '{quantization}'; pass "
                              f"{missing}")
    return MemoryEstimate(params_b=params_b, bits=bits, gb=round(params_b * bits / 8, 2),
                          note="weights only: parameters x bits / 8 (no KV cache or overhead)")


def default_budget_gb(role: ResolvedRole) -> float:
    if is_reasoning_role(role):
        return REASONING_MAX_GB
    return round(psutil.virtual_memory().total / 1e9, 1)


def promotion_rules(run: Run, summary: RunSummary, model: str, memory: MemoryEstimate,
                    budget_gb: float, min_accuracy: float = PROMOTE_MIN_ACCURACY) -> list[Rule]:
    m = run.manifest
    expected = len(m.items) * m.samples_per_item
    rate = summary.accuracy.rate
    return [
        Rule(name="evidence is for this model", ok=m.model == model,
             detail=f"run {run.root} measured '{m.model}'"),
        Rule(name="evidence is complete", ok=summary.n_samples >= expected > 0,
             detail=f"{summary.n_samples} of {expected} samples logged"),
        Rule(name=f"accuracy >= {min_accuracy:.0%}", ok=rate is not None and rate >= min_accuracy,
             detail=f"{summary.accuracy.fmt()} on {m.suite}"),
        Rule(name="no inference failures", ok=summary.n_errors == 0,
             detail=f"{summary.n_errors} failed call(s) {summary.errors_by_kind or ''}".strip()),
        Rule(name=f"memory estimate <= {budget_gb:g} GB",
             ok=memory.gb is not None and memory.gb <= budget_gb,
             detail=f"{memory.gb} GB ({memory.note})" if memory.gb is not None else memory.note),
    ]


def promote(config: Path, profile: ResolvedProfile, role_name: str, model: str,
            evidence: Path, budget_gb: float | None = None, params_b: float | None = None,
            bits: float | None = None, dry_run: bool = False) -> Decision:
    note = check_editable(config)
    role = profile.role(role_name)
    run = load_run(evidence)
    summary = summarize(run)
    memory = estimate_memory(model, role.quantization, params_b, bits)
    budget = budget_gb if budget_gb is not None else default_budget_gb(role)
    rules = promotion_rules(run, summary, model, memory, budget)
    decision = Decision(role=role_name, model=model, allowed=all(r.ok for r in rules),
                        rules=rules, summary=summary, memory=memory, note=note)
    if not decision.allowed or dry_run:
        return decision
    before = config.read_bytes()
    text = before.decode("utf-8")
    _, _, current = role_id_span(text, profile.name, role_name, str(config))
    if current == model:
        raise HistoryError(f"role '{role_name}' of profile '{profile.name}' already uses '{model}'")
    after = set_role_model(text, profile.name, role_name, model, str(config)).encode("utf-8")
    validate_text(after, config)
    evidence_facts = {"run": str(Path(run.root).resolve()), "suite": run.manifest.suite,
                      "accuracy": summary.accuracy.model_dump(), "errors": summary.n_errors,
                      "config_hash": run.manifest.config_hash, "memory_gb": memory.gb,
                      "budget_gb": budget}
    decision.entry = History(config).record(
        before, after, action="promote", profile=profile.name, role=role_name,
        from_model=current, to_model=model, evidence=evidence_facts)
    return decision


def rollback(config: Path, profile: str, role: str, force: bool = False) -> HistoryEntry:
    """Restore the config as it was before the role's last promotion, byte for byte."""
    check_editable(config)
    history = History(config)
    entry = history.last_change(role, profile)
    if entry is None:
        raise HistoryError(f"no promotion of role '{role}' (profile '{profile}') to roll back in "
                           f"{history.log}")
    current = config.read_bytes()
    if sha256(current) != entry.sha256_after and not force:
        raise HistoryError(
            f"{config} changed after promotion #{entry.seq} ({entry.at}); restoring its snapshot "
            "would also undo those later edits. Review them, then pass --force to restore "
            f"{history.dir / entry.snapshot} anyway"
        )
    restored = history.snapshot_bytes(entry)
    if sha256(restored) != entry.sha256_before:
        raise HistoryError(f"snapshot {entry.snapshot} does not match its recorded checksum")
    return history.record(current, restored, action="rollback", profile=profile, role=role,
                          from_model=entry.to_model, to_model=entry.from_model,
                          evidence={"reverts": entry.seq}, reverts=entry.seq)


class RollbackCheck(BaseModel):
    role: str
    model: str
    run: str
    triggered: bool
    triggers: list[Rule]  # ok=True means the trigger fired
    notes: list[str]


def check_rollback(profile: ResolvedProfile, role_name: str, run: Run,
                   params_b: float | None = None, bits: float | None = None) -> RollbackCheck:
    role = profile.role(role_name)
    summary = summarize(run)
    rate = summary.accuracy.rate
    memory = estimate_memory(role.id, role.quantization, params_b, bits)
    triggers = [
        Rule(name=f"accuracy < {ROLLBACK_MIN_ACCURACY:.0%}",
             ok=rate is None or rate < ROLLBACK_MIN_ACCURACY, detail=summary.accuracy.fmt()),
        Rule(name="inference failures or crashes", ok=summary.n_errors > 0,
             detail=f"{summary.n_errors} {summary.errors_by_kind or ''}".strip()),
    ]
    notes = []
    if is_reasoning_role(role):
        triggers.append(Rule(name=f"memory > {REASONING_MAX_GB:g} GB (reasoning model)",
                             ok=memory.gb is not None and memory.gb > REASONING_MAX_GB,
                             detail=f"{memory.gb} GB ({memory.note})"))
    if run.manifest.model != role.id:
        notes.append(f"the run measured '{run.manifest.model}' but role '{role_name}' now uses "
                     f"'{role.id}'")
    return RollbackCheck(role=role_name, model=role.id, run=run.root,
                         triggered=any(t.ok for t in triggers), triggers=triggers, notes=notes)


def latest_run(runs_dir: Path, role: str, model: str) -> Path | None:
    """The newest bench run under `runs_dir` of this role and model."""
    from localroute.evaluation.suites.store import RunStore, RunStoreError

    found: list[tuple[str, Path]] = []
    for manifest in runs_dir.glob("*/manifest.json"):
        try:
            m = RunStore(manifest.parent).read_manifest()
        except RunStoreError:
            continue
        if m.role == role and m.model == model:
            found.append((m.sessions[-1].started_at if m.sessions else m.created_at,
                          manifest.parent))
    return max(found)[1] if found else None


def config_file_of(profile: ResolvedProfile) -> Path:
    load_config(profile.source)  # the file must still load before it is changed
    return Path(profile.source)

"""The memory planner's verdict on a proposal (localroute/resources/planner.py).

Each loaded instance is sized the planner's way (weights + KV cache + overhead), from the best
facts there are, in this order: the GGUF header of the file a local llama.cpp server serves; the
planner's catalog (or the architecture Ollama reports) with the weights' size the server reports;
the catalog with the reported quantization; and, for a model nobody describes, the reported size
alone (KV cache not counted, and said so).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from localroute.onboarding.proposal import ROLE_ORDER, Candidate, Proposal
from localroute.onboarding.settings import RoleSettings, desired_context
from localroute.resources.catalog import ModelSpec, lookup
from localroute.resources.gguf_header import GGUFError
from localroute.resources.planner import (
    GIB,
    MAX_COMBINATIONS_SHOWN,
    ModelMemory,
    PlanError,
    RolePlan,
    StackPlan,
    fitting_combinations,
    machine_budget,
    overhead_for,
    size_for,
    size_model,
)
from localroute.resources.quant import QuantizationError

PROFILE = "local"


class Sized(BaseModel):
    memory: ModelMemory | None
    how: str  # how the figure was had, or why there is none


def _spec(c: Candidate) -> ModelSpec | None:
    spec = lookup(c.model.id)
    facts = c.model.arch_facts
    if spec is None and facts is not None and c.params:
        spec = ModelSpec(
            key=c.model.id, params=c.params, layers=facts.layers, kv_layers=facts.layers,
            q_heads=facts.q_heads, kv_heads=facts.kv_heads, head_dim=facts.head_dim,
            native_context=c.model.max_context or 0,
            sources={"architecture": f"{c.server} /api/show model_info"})
    return spec


def size_candidate(c: Candidate, context: int, slots: int) -> Sized:
    """One instance of this model holding `slots` sequences of `context` tokens."""
    m = c.model
    problem = ""
    if m.gguf_path and Path(m.gguf_path).is_file():
        try:
            memory = size_for(c.model.id, m.gguf_path, "unknown", context, slots)
            return Sized(memory=memory, how=f"GGUF header of {m.gguf_path}")
        except (PlanError, GGUFError, QuantizationError) as exc:
            problem = str(exc)
    spec = _spec(c)
    quant = m.quantization or "unknown"
    if spec is not None and m.size_bytes:
        memory = size_model(spec, quantization=quant, context_length=context, slots=slots,
                            weight_bytes=m.size_bytes, source=f"catalog:{spec.key}")
        return Sized(memory=memory, how=f"architecture of {spec.key}, weights as reported")
    if spec is not None and m.quantization:
        try:
            memory = size_model(spec, quantization=quant, context_length=context, slots=slots)
            return Sized(memory=memory, how=f"catalog {spec.key} at {quant}")
        except QuantizationError as exc:
            problem = str(exc)
    if m.size_bytes:
        overhead = overhead_for(m.size_bytes)
        memory = ModelMemory(
            model=m.id, source="reported size", quantization=quant, bits_per_weight=0.0,
            params=c.params or 0.0, weight_bytes=m.size_bytes, kv_cache_type="f16",
            kv_bytes_per_token=0.0, context_length=context, slots=slots, kv_bytes=0,
            state_bytes=0, overhead_bytes=overhead, total_bytes=m.size_bytes + overhead,
            citations={"weights": f"size_bytes reported by {c.server}"})
        return Sized(memory=memory, how="weights as reported; KV cache not counted (the "
                                        "architecture is not known to the planner)")
    why = problem or ("the server reports neither the model's size nor a quantization, and "
                      "the planner's catalog does not know it")
    return Sized(memory=None, how=f"not sized: {why}")


def budget(budget_gb: float | None) -> tuple[int, str]:
    if budget_gb is not None:
        return int(budget_gb * GIB), "--budget"
    # A new user file has no memory_budget_gb yet: what this machine can give the models.
    return machine_budget()


def too_large(cands: list[Candidate], budget_bytes: int) -> dict[str, str]:
    """Candidates that do not fit the budget even alone (at one slot of their usual context)."""
    out = {}
    for c in cands:
        context, _ = desired_context(c, "router")
        sized = size_candidate(c, context, 1)
        if sized.memory is not None and sized.memory.total_bytes > budget_bytes:
            out[c.key] = (f"it needs {sized.memory.total_bytes / GIB:.1f} GiB alone, more than "
                          f"the {budget_bytes / GIB:.1f} GiB budget")
    return out


def check(proposal: Proposal, cands: dict[str, Candidate], settings: dict[str, RoleSettings],
          budget_bytes: int, budget_source: str) -> tuple[StackPlan, dict[str, str]]:
    """The planner's StackPlan for the proposal, and how each instance was sized."""
    roles: list[RolePlan] = []
    how: dict[str, str] = {}
    errors: list[str] = []
    for name in ROLE_ORDER:
        choice = proposal.roles[name]
        c = cands[choice.key]
        plan = RolePlan(role=name, model=c.model.id, instance=choice.shares_with or name,
                        shares_instance_with=choice.shares_with, memory=None)
        if choice.shares_with is None:
            values = settings[name].values
            sized = size_candidate(c, values["context_length"], values["max_concurrency"])
            plan.memory, how[name] = sized.memory, sized.how
            if sized.memory is None:
                plan.error = f"role '{name}' ({c.model.id}): {sized.how}"
                errors.append(plan.error)
        roles.append(plan)
    sized_roles = [r for r in roles if r.memory is not None]
    sizes = {r.role: r.memory.total_bytes for r in sized_roles if r.memory is not None}
    total = sum(sizes.values())
    return StackPlan(
        profile=PROFILE, budget_bytes=budget_bytes, budget_source=budget_source,
        kv_cache_type="f16", roles=roles,
        weights_bytes=sum(r.memory.weight_bytes for r in sized_roles if r.memory),
        kv_bytes=sum(r.memory.kv_bytes + r.memory.state_bytes for r in sized_roles if r.memory),
        total_bytes=total, headroom_bytes=budget_bytes - total,
        fits=total <= budget_bytes and not errors,
        combinations=fitting_combinations(sizes, budget_bytes)[:MAX_COMBINATIONS_SHOWN],
        errors=errors,
    ), how

"""The memory planner: weights + KV cache + overhead per loaded instance, against a budget.

weights  = parameters x bits per weight / 8 (exact tensor bytes when the model is a GGUF file)
KV cache = 2 x layers x kv_heads x head_dim x bytes per element x context_length x slots
overhead = compute buffers, est. 3% of the weights, at least 64 MiB and at most 2 GiB
Roles that share an instance are counted once, with the owner's context and concurrency.
"""

from __future__ import annotations

import itertools
import platform
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
from pydantic import BaseModel

from localroute.backends.embedded import locate_model
from localroute.config.schema import BackendKind, ResolvedProfile, ResolvedRole
from localroute.resources.catalog import ModelSpec, catalog_keys, lookup
from localroute.resources.gguf_header import read_gguf
from localroute.resources.quant import QuantizationError, bits_per_weight, kv_bytes_per_element
from localroute.types import LLMError

GIB = 2**30
MIB = 2**20
OVERHEAD_FRACTION = 0.03
OVERHEAD_MIN = 64 * MIB
OVERHEAD_MAX = 2 * GIB
DEFAULT_OS_RESERVE_GB = 4.0
DEFAULT_OS_RESERVE_FRACTION = 0.15
# macOS lets the GPU wire about this share of RAM unless `sysctl iogpu.wired_limit_mb` raises it
# (ollama#2370 and the residency study: 66-75 % depending on RAM; 75 % on the 128 GB machines).
MAC_DEFAULT_WIRED_FRACTION = 0.75
MAX_COMBINATIONS_SHOWN = 8


class PlanError(ValueError):
    """A role the planner cannot size, with what to do about it."""


class ModelMemory(BaseModel):
    """The memory one loaded instance needs."""

    model: str
    source: str  # "catalog:<key>" or "gguf:<path>"
    quantization: str
    bits_per_weight: float
    params: float
    weight_bytes: int
    kv_cache_type: str
    kv_bytes_per_token: float
    context_length: int
    slots: int
    kv_bytes: int
    state_bytes: int  # recurrent state (hybrid models), per slot x slots
    overhead_bytes: int
    total_bytes: int
    citations: dict[str, str]


def overhead_for(weight_bytes: int) -> int:
    return int(min(OVERHEAD_MAX, max(OVERHEAD_MIN, OVERHEAD_FRACTION * weight_bytes)))


def size_model(
    spec: ModelSpec,
    *,
    quantization: str,
    context_length: int,
    slots: int,
    kv_cache_type: str = "f16",
    weight_bytes: int | None = None,
    source: str | None = None,
) -> ModelMemory:
    """Memory of one instance of `spec` at `quantization`, holding `slots` sequences of
    `context_length` tokens. `weight_bytes` (from a GGUF header) overrides params x bpw."""
    if weight_bytes is None:
        bpw = bits_per_weight(quantization)
        weight_bytes = int(spec.params * bpw / 8)
    else:
        bpw = 8 * weight_bytes / spec.params
    per_token = spec.kv_bytes_per_token(kv_bytes_per_element(kv_cache_type))
    kv = int(per_token * context_length * slots)
    state = spec.recurrent_state_bytes * slots
    overhead = overhead_for(weight_bytes)
    return ModelMemory(
        model=spec.key,
        source=source or f"catalog:{spec.key}",
        quantization=quantization,
        bits_per_weight=round(bpw, 4),
        params=spec.params,
        weight_bytes=weight_bytes,
        kv_cache_type=kv_cache_type,
        kv_bytes_per_token=per_token,
        context_length=context_length,
        slots=slots,
        kv_bytes=kv,
        state_bytes=state,
        overhead_bytes=overhead,
        total_bytes=weight_bytes + kv + state + overhead,
        citations=spec.sources,
    )


def _gguf_file(role_name: str, model_id: str, backend: BackendKind | None) -> Path | None:
    direct = Path(model_id).expanduser()
    if direct.suffix == ".gguf" and direct.is_file():
        return direct
    if backend == BackendKind.embedded:
        try:
            return locate_model(model_id)
        except LLMError as exc:
            raise PlanError(f"role '{role_name}': {exc}") from None
    return None


def size_for(
    role_name: str,
    model_id: str,
    quantization: str,
    context_length: int,
    slots: int,
    *,
    backend: BackendKind | None = None,
    kv_cache_type: str = "f16",
) -> ModelMemory:
    """Size a model named by id (catalog) or by a local GGUF file (its header)."""
    path = _gguf_file(role_name, model_id, backend)
    if path is not None:
        facts = read_gguf(path)
        return size_model(
            facts.spec, quantization=facts.file_type, context_length=context_length,
            slots=slots, kv_cache_type=kv_cache_type, weight_bytes=facts.weight_bytes,
            source=f"gguf:{facts.path}",
        )
    spec = lookup(model_id)
    if spec is None:
        raise PlanError(
            f"role '{role_name}': model '{model_id}' is not in the planner's catalog "
            f"(known: {', '.join(catalog_keys())}); point the role at a local .gguf file "
            "or add the model to localroute/resources/catalog.py"
        )
    try:
        return size_model(spec, quantization=quantization, context_length=context_length,
                          slots=slots, kv_cache_type=kv_cache_type)
    except QuantizationError as exc:
        raise PlanError(f"role '{role_name}' (model '{model_id}'): {exc}") from None


def size_role(role: ResolvedRole, kv_cache_type: str = "f16") -> ModelMemory:
    """The instance a role owns: its model at the instance's context, one KV slot per
    concurrent request the role's gate admits (a managed instance: its GGUF file)."""
    return size_for(role.name, role.model_path or role.id, role.quantization,
                    role.instance_context_length, role.max_concurrency, backend=role.backend,
                    kv_cache_type=kv_cache_type)


class RolePlan(BaseModel):
    role: str
    model: str
    instance: str
    shares_instance_with: str | None
    memory: ModelMemory | None  # None for a role that shares another's instance
    error: str | None = None


class StackPlan(BaseModel):
    profile: str
    budget_bytes: int
    budget_source: str
    kv_cache_type: str
    roles: list[RolePlan]
    weights_bytes: int
    kv_bytes: int
    total_bytes: int
    headroom_bytes: int
    fits: bool
    combinations: list[list[str]]  # largest sets of instances that fit at once
    errors: list[str]

    def instances(self) -> dict[str, ModelMemory]:
        return {r.role: r.memory for r in self.roles if r.memory is not None}


def _wired_limit_mb() -> int | None:
    """macOS's GPU wired-memory limit in MiB (0: the system default), None when unreadable."""
    try:
        done = subprocess.run(["sysctl", "-n", "iogpu.wired_limit_mb"], capture_output=True,
                              text=True, timeout=5, check=False)
        return int(done.stdout.strip()) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def machine_budget(
    os_reserve_gb: float = DEFAULT_OS_RESERVE_GB,
    *,
    system: str | None = None,
    total_bytes: int | None = None,
    wired_limit_mb: Callable[[], int | None] = _wired_limit_mb,
) -> tuple[int, str]:
    """What this machine can give the models: on macOS the GPU wired limit (unified memory the
    GPU may use; its default when the sysctl is 0), elsewhere RAM minus an OS reserve."""
    system = system or platform.system()
    total = total_bytes if total_bytes is not None else psutil.virtual_memory().total
    if system == "Darwin":
        limit = wired_limit_mb()
        if limit:
            return limit * MIB, f"this Mac: iogpu.wired_limit_mb = {limit}"
        share = int(total * MAC_DEFAULT_WIRED_FRACTION)
        return share, (f"this Mac: {MAC_DEFAULT_WIRED_FRACTION:.0%} of {total / GIB:.1f} GiB "
                       "(the GPU's default wired limit; raise it with sysctl iogpu.wired_limit_mb)")
    reserve = max(os_reserve_gb * GIB, DEFAULT_OS_RESERVE_FRACTION * total)
    return int(total - reserve), (
        f"this machine: {total / GIB:.1f} GiB minus {reserve / GIB:.1f} GiB OS reserve"
    )


def default_budget(profile: ResolvedProfile) -> tuple[int, str]:
    """The profile's `memory_budget_gb`, else what this machine can give the models."""
    if profile.memory_budget_gb is not None:
        return int(profile.memory_budget_gb * GIB), (
            f"profile '{profile.name}' memory_budget_gb {profile.memory_budget_gb:g}")
    return machine_budget(profile.residency.os_reserve_gb)


def fitting_combinations(sizes: Mapping[str, int], budget: int) -> list[list[str]]:
    """The maximal sets of instances whose total fits the budget, largest first.

    Exhaustive on purpose: a profile has at most seven instances (128 subsets)."""
    names = sorted(sizes)
    fitting = [
        set(combo)
        for n in range(len(names), 0, -1)
        for combo in itertools.combinations(names, n)
        if sum(sizes[c] for c in combo) <= budget
    ]
    maximal = [s for s in fitting if not any(s < other for other in fitting)]
    maximal.sort(key=lambda s: (-len(s), -sum(sizes[c] for c in s)))
    return [sorted(s) for s in maximal]


def plan_profile(
    profile: ResolvedProfile,
    *,
    budget_bytes: int | None = None,
    budget_source: str = "",
    kv_cache_type: str = "f16",
    replace: Mapping[str, ResolvedRole] | None = None,
) -> StackPlan:
    """Every role of the profile sized, shared instances counted once, against the budget.
    `replace` swaps a role's config (for --compare)."""
    if budget_bytes is None:
        budget_bytes, budget_source = default_budget(profile)
    roles: list[RolePlan] = []
    errors: list[str] = []
    for role in profile.roles.values():
        role = (replace or {}).get(role.name, role)
        owner = role.instance == role.name
        plan = RolePlan(
            role=role.name, model=role.id, instance=role.instance,
            shares_instance_with=None if owner else role.instance, memory=None,
        )
        if owner:
            try:
                plan.memory = size_role(role, kv_cache_type)
            except (PlanError, QuantizationError) as exc:
                plan.error = str(exc)
                errors.append(str(exc))
        roles.append(plan)
    sizes = {r.role: r.memory.total_bytes for r in roles if r.memory is not None}
    total = sum(sizes.values())
    weights = sum(r.memory.weight_bytes for r in roles if r.memory is not None)
    kv = sum(r.memory.kv_bytes + r.memory.state_bytes for r in roles if r.memory is not None)
    return StackPlan(
        profile=profile.name,
        budget_bytes=budget_bytes,
        budget_source=budget_source or "--budget",
        kv_cache_type=kv_cache_type,
        roles=roles,
        weights_bytes=weights,
        kv_bytes=kv,
        total_bytes=total,
        headroom_bytes=budget_bytes - total,
        fits=total <= budget_bytes and not errors,
        combinations=fitting_combinations(sizes, budget_bytes)[:MAX_COMBINATIONS_SHOWN],
        errors=errors,
    )

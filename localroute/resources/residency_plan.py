"""Which instances stay loaded and which take turns: the pinned set against the memory budget,
and the sets of on-demand instances that can be resident together beside it.

A profile is refused when its pinned set alone does not fit, when an on-demand instance could
never be loaded beside the pinned set, or when an on-demand instance cannot be sized (the
residency manager admits loads by footprint, so it must know each one).
"""

from __future__ import annotations

from pydantic import BaseModel

from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.resources.planner import (
    GIB,
    PlanError,
    default_budget,
    fitting_combinations,
    size_role,
)
from localroute.resources.quant import QuantizationError

MAX_TOGETHER_SHOWN = 8


class ResidencyError(ValueError):
    """A profile whose residency plan cannot work, with the numbers and what to change."""


class ResidencyPlan(BaseModel):
    profile: str
    budget_bytes: int
    budget_source: str
    pinned: dict[str, int]  # owner role -> footprint in bytes
    on_demand: dict[str, int]
    sharing: dict[str, list[str]]  # owner role -> roles that use its instance
    unsized: dict[str, str]  # pinned instances the planner cannot size (not counted), and why
    pinned_bytes: int
    room_bytes: int  # what the pinned set leaves for on-demand instances
    together: list[list[str]]  # maximal sets of on-demand instances resident at once
    problems: list[str]

    @property
    def fits(self) -> bool:
        return not self.problems


def footprint(role: ResolvedRole) -> int:
    """Bytes the role's instance holds when loaded: `memory_gb` when given, else the planner's
    weights + KV cache + overhead. Raises PlanError when neither can say."""
    if role.memory_gb is not None:
        return int(role.memory_gb * GIB)
    try:
        return size_role(role).total_bytes
    except QuantizationError as exc:
        raise PlanError(f"role '{role.name}' (model '{role.id}'): {exc}") from None


def _gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def plan_residency(
    profile: ResolvedProfile, *, budget_bytes: int | None = None, budget_source: str = ""
) -> ResidencyPlan:
    if budget_bytes is None:
        budget_bytes, budget_source = default_budget(profile)
    owners = [r for r in profile.roles.values() if r.instance == r.name]
    pinned: dict[str, int] = {}
    on_demand: dict[str, int] = {}
    unsized: dict[str, str] = {}
    problems: list[str] = []
    for role in owners:
        try:
            size = footprint(role)
        except PlanError as exc:
            if role.on_demand:
                problems.append(f"role '{role.name}' is on_demand but its memory cannot be "
                                f"planned ({exc}); set memory_gb on it")
            else:
                unsized[role.name] = str(exc)
            continue
        (on_demand if role.on_demand else pinned)[role.name] = size
    sharing = {o.name: [r.name for r in profile.roles.values()
                        if r.instance == o.name and r.name != o.name] for o in owners}
    pinned_bytes = sum(pinned.values())
    room = budget_bytes - pinned_bytes
    where = f"budget {_gib(budget_bytes)} ({budget_source})"
    if pinned_bytes > budget_bytes:
        parts = " + ".join(f"{name} {_gib(size)}" for name, size in pinned.items())
        problems.insert(0, f"profile '{profile.name}': the pinned set does not fit: {parts} = "
                        f"{_gib(pinned_bytes)} > {where}; make roles residency: on_demand, "
                        "lower their context_length or max_concurrency, or raise "
                        "memory_budget_gb")
    else:
        never = [f"'{name}' ({_gib(size)})" for name, size in on_demand.items() if size > room]
        if never:
            problems.append(f"on-demand role{'s' if len(never) > 1 else ''} {', '.join(never)} "
                            f"can never be loaded: the pinned set holds {_gib(pinned_bytes)} of "
                            f"the {where}, leaving {_gib(room)}; lower context_length or "
                            "max_concurrency, pin less, or raise memory_budget_gb")
    together = fitting_combinations(on_demand, max(room, 0))[:MAX_TOGETHER_SHOWN]
    return ResidencyPlan(
        profile=profile.name, budget_bytes=budget_bytes, budget_source=budget_source,
        pinned=pinned, on_demand=on_demand, sharing=sharing, unsized=unsized,
        pinned_bytes=pinned_bytes, room_bytes=room, together=together, problems=problems)


def check_residency(profile: ResolvedProfile, budget_bytes: int | None = None) -> ResidencyPlan:
    """The plan, or ResidencyError naming every problem (what a profile needs to start)."""
    plan = plan_residency(profile, budget_bytes=budget_bytes,
                          budget_source="" if budget_bytes is None else "given")
    if plan.problems:
        raise ResidencyError(f"{profile.source}: " + "; ".join(plan.problems))
    return plan

"""Performance-based role choice: Thompson sampling on measured success, with a latency penalty,
per task type (route + complexity band).

How it departs from the static rules (stage 2):

- Candidates for a route are the static rule's role plus `routing_policy.candidates[route]`,
  kept only when the governance mode allows them, the profile defines them and their context
  holds the prompt. The mode is applied before the policy, so the policy can never pick a role
  the mode forbids.
- Each (task type, role) keeps its last `window` outcomes and latencies. A role is a candidate
  only with at least `min_observations` of them; while the static role itself has fewer, the
  static rule stands.
- Each candidate's score is a draw from Beta(1 + successes, 1 + failures) minus
  `latency_penalty_per_s` times its p50 latency in seconds; the highest score wins.

Shift bound: the estimate of a role only holds its last `window` outcomes, so once a role's
success rate drops, the policy has moved away from it after at most `window` of its own
post-drop outcomes (sooner when the drop is large: with the defaults, a fall from 0.9 to 0.2
against an alternative at 0.75 moved it after 10-28 of them, median 18, over 30 seeds).
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from localroute.config.schema import ResolvedRole
from localroute.config.telemetry import PolicySettings
from localroute.routing.decision import RoleSelection

BANDS = ((3, "low"), (6, "medium"), (10, "high"))


def complexity_band(depth: int) -> str:
    for upper, name in BANDS:
        if depth <= upper:
            return name
    return "high"


def task_type(route: str, depth: int) -> str:
    """The unit the policy learns on: route plus complexity band, e.g. `reasoning/high`."""
    return f"{route}/{complexity_band(depth)}"


@dataclass
class Arm:
    """One role's recent record on one task type."""

    window: int
    outcomes: deque[bool] = field(init=False)
    latencies: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.outcomes = deque(maxlen=self.window)
        self.latencies = deque(maxlen=self.window)

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @property
    def successes(self) -> int:
        return sum(self.outcomes)

    @property
    def p50_s(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0

    @property
    def mean(self) -> float:
        return (1 + self.successes) / (2 + self.n)

    def describe(self, role: str) -> str:
        return f"{role} {self.successes}/{self.n}, p50 {self.p50_s:.1f} s"


@dataclass
class Observation:
    task_type: str
    role: str
    success: bool
    latency_s: float


@dataclass
class PolicyChoice:
    selection: RoleSelection
    static_role: str
    decided_by: str  # "policy" when it had the data to choose, else "rules"
    explanation: str
    expected: dict[str, tuple[float, float]]  # role -> (expected success, p50 seconds)


class RolePolicy:
    def __init__(self, settings: PolicySettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        self.arms: dict[tuple[str, str], Arm] = {}

    def arm(self, task: str, role: str) -> Arm:
        key = (task, role)
        found = self.arms.get(key)
        if found is None:
            found = self.arms[key] = Arm(self.settings.window)
        return found

    def observe(self, task: str, role: str, success: bool, latency_s: float) -> None:
        arm = self.arm(task, role)
        arm.outcomes.append(success)
        arm.latencies.append(latency_s)

    def load(self, observations: Iterable[Observation]) -> RolePolicy:
        """Replay recorded outcomes, oldest first."""
        for o in observations:
            self.observe(o.task_type, o.role, o.success, o.latency_s)
        return self

    def candidates(self, route: str, static_role: str, allowed: Iterable[str],
                   roles: Mapping[str, ResolvedRole], context_tokens: int) -> list[str]:
        permitted = set(allowed)
        out = [static_role]
        for role in self.settings.candidates.get(route, ()):
            spec = roles.get(role)
            if role in out or role not in permitted or spec is None:
                continue
            if spec.context_length <= context_tokens:
                continue
            out.append(role)
        return out

    def choose(
        self,
        route: str,
        task: str,
        static: RoleSelection,
        *,
        allowed: Iterable[str],
        roles: Mapping[str, ResolvedRole],
        context_tokens: int = 0,
        explore: bool = True,
    ) -> PolicyChoice:
        """The role for this request; `static` is the rule's choice after the mode was applied.
        `explore=False` ranks by expected success instead of sampling (for replays)."""
        permitted = tuple(allowed)
        names = self.candidates(route, static.role, permitted, roles, context_tokens)
        arms = {r: self.arm(task, r) for r in names}
        expected = {r: (a.mean, a.p50_s) for r, a in arms.items()}
        need = self.settings.min_observations
        static_arm = arms[static.role]
        if static_arm.n < need:
            note = (f"rules: {static.role} has {static_arm.n}/{need} observations for {task}, "
                    "too few to compare")
            return PolicyChoice(_noted(static, note), static.role, "rules", note, expected)
        eligible = [r for r in names if arms[r].n >= need and r in permitted]
        if len(eligible) < 2:
            note = f"rules: no alternative to {static.role} has {need} observations for {task}"
            return PolicyChoice(_noted(static, note), static.role, "rules", note, expected)
        penalty = self.settings.latency_penalty_per_s

        def score(role: str) -> float:
            a = arms[role]
            draw = (self.rng.betavariate(1 + a.successes, 1 + a.n - a.successes)
                    if explore else a.mean)
            return draw - penalty * a.p50_s

        scores = {r: score(r) for r in eligible}
        best = max(eligible, key=lambda r: scores[r])
        others = "; ".join(arms[r].describe(r) for r in eligible if r != best)
        a = arms[best]
        note = (f"policy for {task}: {best} chosen: {a.successes}/{a.n} successes, "
                f"p50 {a.p50_s:.1f} s; {others}")
        if best == static.role:
            return PolicyChoice(_noted(static, note), static.role, "policy", note, expected)
        selection = RoleSelection(role=best, reason=note, downgraded_from=static.downgraded_from)
        return PolicyChoice(selection, static.role, "policy", note, expected)


def _noted(selection: RoleSelection, note: str) -> RoleSelection:
    """The selection with the policy's explanation added to its reason (shown by --explain)."""
    return selection.model_copy(update={"reason": f"{selection.reason}; {note}"})

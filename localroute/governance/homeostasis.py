"""Homeostasis: the governance mode as a function of sensor readings over time.

Pure and synchronous: `observe(values, now)` with an injectable clock, so recorded sensor
series replay without sleeping. A rule triggers when its condition has held for `for_s` and
clears when its clear condition has held for `clear_for_s` (hysteresis between the two
thresholds). The wanted mode is the most severe active rule's, else NORMAL; the machine moves
one allowed edge per observation toward it, stepping down only after the current mode's
minimum dwell. A manual override pins the mode until cleared.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from localroute.config.modes import SEVERITY, HomeostasisSettings, Mode, ThresholdRule


class ForbiddenTransition(ValueError):
    """A mode change the mode graph does not allow."""


@dataclass
class RuleState:
    rule: ThresholdRule
    active: bool = False
    breach_since: float | None = None
    clear_since: float | None = None
    changed_at: float | None = None
    value: float | None = None

    def breached(self, v: float) -> bool:
        r = self.rule
        return v > r.above if r.above is not None else v < r.below  # type: ignore[operator]

    def cleared(self, v: float) -> bool:
        r = self.rule
        if r.above is not None:
            return v <= (r.clear_below if r.clear_below is not None else r.above)
        assert r.below is not None
        return v >= (r.clear_above if r.clear_above is not None else r.below)

    def describe(self) -> str:
        r = self.rule
        if r.above is not None:
            return f"{r.name}: {r.sensor} {self.value:g} > {r.above:g} for {r.for_s:g} s"
        return f"{r.name}: {r.sensor} {self.value:g} < {r.below:g} for {r.for_s:g} s"

    def describe_clear(self) -> str:
        r = self.rule
        op, limit = ("<=", r.clear_below if r.clear_below is not None else r.above) \
            if r.above is not None else (">=", r.clear_above if r.clear_above is not None
                                         else r.below)
        return f"{r.name} cleared: {r.sensor} {self.value:g} {op} {limit:g} for {r.clear_for_s:g} s"


@dataclass(frozen=True)
class Transition:
    from_mode: Mode
    to_mode: Mode
    at: float
    cause: str
    readings: dict[str, float | None]
    manual: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.from_mode.value, "to": self.to_mode.value, "at": self.at,
                "cause": self.cause, "manual": self.manual, "readings": self.readings}


@dataclass
class Step:
    """What one observation changed."""

    triggered: list[RuleState] = field(default_factory=list)
    cleared: list[RuleState] = field(default_factory=list)
    transition: Transition | None = None
    blocked: str | None = None


@dataclass(frozen=True)
class Override:
    mode: Mode
    reason: str
    set_at: float  # wall-clock seconds (persisted across processes)


class Homeostasis:
    def __init__(
        self,
        settings: HomeostasisSettings,
        *,
        initial: Mode = Mode.NORMAL,
        clock: Callable[[], float] = time.monotonic,
        override: Override | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.mode = override.mode if override else initial
        self.entered_at = clock()
        self.override = override
        self.rules = [RuleState(rule) for rule in settings.rules]
        self.history: deque[Transition] = deque(maxlen=200)
        self.last_values: dict[str, float | None] = {}

    # ---- the graph -----------------------------------------------------------------------

    def allowed(self, source: Mode, target: Mode) -> bool:
        return target in self.settings.edges.get(source, ())

    def path(self, source: Mode, target: Mode) -> list[Mode] | None:
        """Shortest chain of allowed edges from source to target (excluding source)."""
        frontier: deque[list[Mode]] = deque([[source]])
        seen = {source}
        while frontier:
            trail = frontier.popleft()
            if trail[-1] == target:
                return trail[1:]
            for nxt in self.settings.edges.get(trail[-1], ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append([*trail, nxt])
        return None

    def wanted(self) -> Mode:
        active = [s.rule.mode for s in self.rules if s.active]
        return max(active, key=lambda m: SEVERITY[m]) if active else Mode.NORMAL

    # ---- observation ---------------------------------------------------------------------

    def observe(self, values: Mapping[str, float | None], now: float | None = None) -> Step:
        now = self.clock() if now is None else now
        self.last_values = dict(values)
        step = Step()
        for state in self.rules:
            self._update_rule(state, values.get(state.rule.sensor), now, step)
        if self.override is not None:
            return step
        target = self.wanted()
        if target == self.mode:
            return step
        down = SEVERITY[target] < SEVERITY[self.mode]
        dwell = self.settings.min_dwell_s.get(self.mode, 0.0)
        if down and now - self.entered_at < dwell:
            return step
        route = self.path(self.mode, target)
        if not route:
            step.blocked = f"no allowed edge from {self.mode.value} toward {target.value}"
            return step
        step.transition = self._move(route[0], now, self._cause(step, target), values)
        return step

    def _update_rule(self, s: RuleState, v: float | None, now: float, step: Step) -> None:
        if v is None:  # a missing reading proves nothing either way: both clocks restart
            s.breach_since = s.clear_since = None
            return
        s.value = v
        if not s.active:
            s.breach_since = (s.breach_since if s.breach_since is not None else now) \
                if s.breached(v) else None
            if s.breach_since is not None and now - s.breach_since >= s.rule.for_s:
                s.active, s.changed_at, s.breach_since = True, now, None
                step.triggered.append(s)
        else:
            s.clear_since = (s.clear_since if s.clear_since is not None else now) \
                if s.cleared(v) else None
            if s.clear_since is not None and now - s.clear_since >= s.rule.clear_for_s:
                s.active, s.changed_at, s.clear_since = False, now, None
                step.cleared.append(s)

    def _cause(self, step: Step, target: Mode) -> str:
        active = [s for s in self.rules if s.active and s.rule.mode == target]
        if active:
            return "; ".join(s.describe() for s in active)
        if step.cleared:
            return "; ".join(s.describe_clear() for s in step.cleared)
        return f"all rules clear; stepping toward {target.value}"

    def _move(self, target: Mode, now: float, cause: str, values: Mapping[str, float | None],
              manual: bool = False) -> Transition:
        transition = Transition(self.mode, target, now, cause, dict(values), manual)
        self.mode, self.entered_at = target, now
        self.history.append(transition)
        return transition

    # ---- manual override -----------------------------------------------------------------

    def set_override(self, override: Override, *, force: bool = False,
                     now: float | None = None) -> Transition | None:
        """Pin the mode. Refuses an edge the graph does not allow unless `force`."""
        now = self.clock() if now is None else now
        if override.mode != self.mode and not force and not self.allowed(self.mode, override.mode):
            raise ForbiddenTransition(forbidden_message(self.settings, self.mode, override.mode))
        self.override = override
        if override.mode == self.mode:
            return None
        return self._move(override.mode, now, f"manual: {override.reason}", self.last_values,
                          manual=True)

    def clear_override(self) -> None:
        """Back to automatic: the next observation steps toward the rules' wanted mode."""
        self.override = None


def forbidden_message(settings: HomeostasisSettings, source: Mode, target: Mode) -> str:
    allowed = ", ".join(m.value for m in settings.edges.get(source, ())) or "none"
    return (f"mode change {source.value} -> {target.value} is not an allowed edge of the mode "
            f"graph (from {source.value}: {allowed}); go through an allowed mode, or pass "
            "--force")

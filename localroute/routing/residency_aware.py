"""Routing that knows what is loaded: a warm substitute for a role that is not resident.

When the chosen role's instance is not loaded and the expected wait for its load is above the
role's `max_wait`, the first of its `substitutes` that is resident now (allowed in the mode,
with room for the prompt) answers instead. Routing only reads the residency manager's view; it
never loads or unloads anything. Without substitutes the request waits for the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from localroute.config.schema import ResolvedProfile

PROMPT_ROOM_TOKENS = 256  # a substitute must hold the prompt and still leave room to answer


class ResidencyView(Protocol):
    def expected_wait(self, role: str) -> float:
        """Seconds until the role's instance can take a call (0: resident now)."""
        ...


@dataclass(frozen=True)
class Substitution:
    wanted: str
    chosen: str
    wanted_wait_s: float
    chosen_wait_s: float
    max_wait_s: float

    def describe(self) -> str:
        return (f"{self.wanted} not resident, load ~{self.wanted_wait_s:.0f} s (max_wait "
                f"{self.max_wait_s:g} s); {self.chosen} resident (wait "
                f"~{self.chosen_wait_s:.0f} s): answered by it")


def warm_substitute(profile: ResolvedProfile, wanted: str, residency: ResidencyView,
                    allowed: tuple[str, ...], context_tokens: int) -> Substitution | None:
    role = profile.role(wanted)
    if not role.substitutes:
        return None
    wait = residency.expected_wait(wanted)
    if wait <= role.max_wait:
        return None
    for name in role.substitutes:
        if name not in allowed:
            continue
        candidate = profile.role(name)
        if context_tokens + PROMPT_ROOM_TOKENS > candidate.context_length:
            continue
        candidate_wait = residency.expected_wait(name)
        if candidate_wait == 0.0:
            return Substitution(wanted, name, wait, candidate_wait, role.max_wait)
    return None

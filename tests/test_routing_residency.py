"""The warm-substitute rule of routing, as a pure unit over a view of what is resident (the
manager's real view is exercised with real servers in test_residency.py)."""

from __future__ import annotations

from localroute.routing.residency_aware import warm_substitute
from tests.conftest import make_profile


class View:
    def __init__(self, waits: dict[str, float]) -> None:
        self.waits = waits

    def expected_wait(self, role: str) -> float:
        return self.waits[role]


def lms(**kw: object) -> dict[str, object]:
    return {"id": "m", "backend": "lmstudio", "endpoint": "http://127.0.0.1:9/v1",
            "residency": "on_demand", "memory_gb": 1, **kw}


PROFILE = make_profile({
    "reasoning": lms(substitutes=["coding", "reasoning_heavy"], max_wait=5),
    "reasoning_heavy": lms(context_length=32768),
    "coding": lms(context_length=1024),
    "router": lms(),
})
ALL = ("reasoning", "reasoning_heavy", "coding", "router")


def test_a_resident_substitute_answers_when_the_wait_is_over_max_wait() -> None:
    view = View({"reasoning": 9.0, "reasoning_heavy": 0.0, "coding": 0.0, "router": 0.0})
    sub = warm_substitute(PROFILE, "reasoning", view, ALL, context_tokens=100)
    assert sub is not None and sub.chosen == "coding"  # the first listed that is resident
    assert sub.describe() == ("reasoning not resident, load ~9 s (max_wait 5 s); coding "
                              "resident (wait ~0 s): answered by it")


def test_no_substitute_when_the_wait_is_short_or_none_fits() -> None:
    quick = View({"reasoning": 4.0, "reasoning_heavy": 0.0, "coding": 0.0, "router": 0.0})
    assert warm_substitute(PROFILE, "reasoning", quick, ALL, 100) is None
    slow = View({"reasoning": 30.0, "reasoning_heavy": 12.0, "coding": 0.0, "router": 0.0})
    # coding's 1024-token context cannot hold a 2000-token prompt; reasoning_heavy is loading.
    assert warm_substitute(PROFILE, "reasoning", slow, ALL, 2000) is None
    # A substitute the mode does not allow is skipped.
    warm = View({"reasoning": 30.0, "reasoning_heavy": 0.0, "coding": 0.0, "router": 0.0})
    sub = warm_substitute(PROFILE, "reasoning", warm, ("reasoning", "reasoning_heavy"), 100)
    assert sub is not None and sub.chosen == "reasoning_heavy"
    # A role without substitutes waits for its load.
    assert warm_substitute(PROFILE, "router", warm, ALL, 100) is None

"""Stage 2: how hard is the work, and which role serves it under the current mode.

The patterns read the query's bounded view and are linear in its length (docs/security.md,
"Routing on hostile input").
"""

from __future__ import annotations

import re

from localroute.bounded_text import stage1_view
from localroute.routing.decision import Complexity, RoleSelection, RoutingDecision

_STEP_WORDS = re.compile(
    r"\b(prove|proof|derive|step[- ]by[- ]step|why|explain how|trade-?offs?|compare|plan|"
    r"estimate|how many|probability|optimi[sz]e|diagnos\w*|puzzle|riddle|suppose|"
    r"if .{0,160} then)\b",
    re.IGNORECASE,
)
# `(?<!\d)`: an arithmetic expression is looked for from the start of a number only, not again
# from each of its digits.
_MATH = re.compile(r"\\(frac|sqrt|sum|int|binom|cdot)|\$[^$]+\$|(?<!\d)\d+\s*[-+*/^]\s*\d")
# "write ... function": a verb, and after it anywhere a noun. Two searches instead of one pattern
# with `.*` between them, which would scan to the end of the text from every verb.
_CODE_VERB = re.compile(
    r"\b(write|implement|create|generate|refactor|fix|debug|complete|add tests?|port)\b",
    re.IGNORECASE,
)
_CODE_NOUN = re.compile(
    r"\b(function|class|script|code|program|module|test|regex|query|sql|bash|python|api)\b",
    re.IGNORECASE,
)
_CODE_MARKERS = re.compile(r"```|\bdef \w+\(|\bclass \w+[:(]|Traceback \(most recent|;\s*$|"
                           r"\{\s*$|^[ \t]*(import|from|#include|public|fn|func) ", re.MULTILINE)

# Depth each route starts from; features of the text move it (bounded to 0-10).
_BASE_DEPTH = {"tool": 0, "router": 2, "summarization": 3, "coding": 5, "reasoning": 8}
# When the mode forbids a role, the next one down the same line of work.
DOWNGRADE = {
    "coding_large_context": "coding",
    "coding": "router",
    "reasoning_heavy": "reasoning",
    "reasoning": "router",
    "summarization": "router",
}


def _asks_for_code(query: str) -> bool:
    verb = _CODE_VERB.search(query)
    return verb is not None and _CODE_NOUN.search(query, verb.end()) is not None


def assess(query: str, decision: RoutingDecision, context_tokens: int) -> Complexity:
    query = stage1_view(query)
    depth = _BASE_DEPTH[decision.route]
    if decision.reasoning_depth is not None:
        depth = decision.reasoning_depth
    else:
        depth += min(2, len(_STEP_WORDS.findall(query)))
        depth += 1 if _MATH.search(query) else 0
        depth += 1 if len(query) > 1200 and decision.route == "reasoning" else 0
    return Complexity(
        reasoning_depth=max(0, min(10, depth)),
        code_generation_required=decision.route == "coding" or _asks_for_code(query),
        estimated_context_tokens=context_tokens,
        code_context=bool(_CODE_MARKERS.search(query)),
    )


def select_role(
    decision: RoutingDecision,
    complexity: Complexity,
    *,
    depth_threshold: int = 7,
    large_context_tokens: int = 20_000,
) -> RoleSelection:
    """The ADR's rules, in order; the mode is applied afterwards by `apply_mode`."""
    if decision.route == "summarization":
        return RoleSelection(role="summarization", reason="summarization route")
    if decision.route == "coding" or (
        complexity.code_generation_required and decision.route != "reasoning"
    ):
        if complexity.estimated_context_tokens > large_context_tokens:
            return RoleSelection(
                role="coding_large_context",
                reason=f"code context {complexity.estimated_context_tokens} tokens > "
                f"{large_context_tokens}",
            )
        return RoleSelection(role="coding", reason="code generation required")
    if complexity.reasoning_depth > depth_threshold:
        return RoleSelection(
            role="reasoning",
            reason=f"reasoning depth {complexity.reasoning_depth} > {depth_threshold}",
        )
    return RoleSelection(
        role="router", reason=f"reasoning depth {complexity.reasoning_depth} <= {depth_threshold}"
    )


def apply_mode(
    selection: RoleSelection, allowed: tuple[str, ...], defined: set[str]
) -> RoleSelection | None:
    """Walk down the downgrade line until a role the mode allows (and the profile defines);
    None when no inference is allowed at all."""
    role = selection.role
    while role not in allowed or role not in defined:
        nxt = DOWNGRADE.get(role)
        if nxt is None:
            return None
        role = nxt
    if role == selection.role:
        return selection
    return RoleSelection(role=role, reason=selection.reason, downgraded_from=selection.role)

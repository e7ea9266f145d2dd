"""Times stage 1 over adversarial bodies, one line per (thing, body), for a watchdog to read.

Run as `python -m tests.support.routing_timing patterns|functions SIZE`. It runs in a child
process because a quadratic pattern cannot be interrupted from inside: the parent
(tests/test_routing_adversarial.py, benchmarks/adversarial_routing.py) kills the child when one
line takes too long, and knows from the last line which pattern or function hung.
Each line is `START <name> <body>` before the call and `DONE <name> <body> <ms>` after it.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from localroute.config.modes import RoutingSettings
from localroute.orchestrator import steps
from localroute.routing import cache, cascade, complexity, features, rules
from localroute.routing.cache import RoutingCache, normalise_query
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.routing.complexity import assess
from localroute.routing.decision import RoutingDecision
from localroute.tools import arguments
from localroute.tools.arguments import arguments_from_query
from localroute.validation import checks
from localroute.validation.checks import check_answer
from tests.support.hostile_text import bodies

# Every module whose patterns read query text (docs/security.md, "Routing on hostile input").
PATTERN_MODULES: tuple[ModuleType, ...] = (
    features, rules, arguments, complexity, cache, cascade, checks, steps,
)
# Patterns run only on input that is bounded before they see it, with the bound they run under.
BOUNDED_INPUT: dict[str, int] = {
    "rules._LATEX_MATH": rules.LATEX_MAX_CHARS,  # `_latex_math` checks the length first
}


def patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    """(module._NAME[index], pattern) for every compiled pattern held by those modules, alone or
    in a tuple (rules._PHRASE_COMMANDS, arguments._PROCESS_NAMES)."""
    for module in PATTERN_MODULES:
        short = module.__name__.rsplit(".", 1)[-1]
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                yield f"{short}.{name}", value
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    found = item[0] if isinstance(item, tuple) and item else item
                    if isinstance(found, re.Pattern):
                        yield f"{short}.{name}[{i}]", found


def _exhaust(pattern: re.Pattern[str]) -> Callable[[str], Any]:
    # finditer to the end covers search, findall and sub; match and fullmatch do less.
    return lambda text: sum(1 for _ in pattern.finditer(text))


def _decision() -> RoutingDecision:
    return RoutingDecision(route="router", confidence=0.5, decided_by="classifier", reason="x")


class _Ctx:
    """The two fields `Steps._wants_system_tools` reads."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.channel = None


def functions() -> dict[str, Callable[[str], Any]]:
    """Every stage-1 entry point (and the later checks over query text), by name."""
    classifier = RouteClassifier.load()
    router = Stage1Router(classifier, RoutingSettings(), cache=RoutingCache())
    wants_tools = steps.Steps._wants_system_tools
    found: dict[str, Callable[[str], Any]] = {
        "Stage1Router.decide": lambda q: asyncio.run(router.decide(q)),
        "Stage1Router.decide_fast": router.decide_fast,
        "apply_rules": rules.apply_rules,
        "structural_features": features.structural_features,
        "text_view": features.text_view,
        "RouteClassifier.predict": classifier.predict,
        "RouteClassifier.predict_tool_hint": classifier.predict_tool_hint,
        "assess": lambda q: assess(q, _decision(), 1000),
        "normalise_query": normalise_query,
        "check_answer": lambda q: check_answer(q, "The disk has 12 GB free.", tool_text="12 GB"),
        "Steps._wants_system_tools": lambda q: wants_tools(None, _Ctx(q)),  # type: ignore[arg-type]
    }
    for tool in arguments._EXTRACTORS:
        found[f"arguments_from_query[{tool}]"] = (
            lambda q, tool=tool: arguments_from_query(tool, q))
    return found


def main(kind: str, size: int) -> None:
    texts = bodies(size)
    work = {name: _exhaust(p) for name, p in patterns()} if kind == "patterns" else functions()
    for name, run in work.items():
        limit = BOUNDED_INPUT.get(name, size) if kind == "patterns" else size
        for body_name, text in texts.items():
            print(f"START {name} {body_name}", flush=True)
            started = time.perf_counter()
            run(text[:limit])
            ms = (time.perf_counter() - started) * 1000
            print(f"DONE {name} {body_name} {ms:.3f}", flush=True)
    print("END", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

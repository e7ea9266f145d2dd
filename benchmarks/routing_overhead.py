"""Stage 1 + stage 2 routing latency without any model call, over the labelled dev set.

Budget (docs/architecture.md, "Budgets"): p50 <= 2 ms, p99 <= 10 ms on the 2-core CI machine.
Every query of the packaged dev set (localroute/routing/dev_data/routing_dev.jsonl) is routed
`--repeat` times after one warm-up pass; stage 1 is
channel -> rules -> classifier (the router model is never asked), stage 2 is complexity +
role selection under the NORMAL mode.

    python benchmarks/routing_overhead.py [--repeat N] [--dev PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from localroute.client.messages import estimate_tokens
from localroute.config.modes import Mode, load_modes
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.routing.complexity import apply_mode, assess, select_role
from localroute.routing.training import load_rows, resolve_dev_path

ROLES = {"router", "validation", "reasoning", "reasoning_heavy", "coding", "coding_large_context",
         "summarization"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dev", type=Path, default=None)
    args = parser.parse_args()
    rows = load_rows(resolve_dev_path(args.dev))
    modes = load_modes()
    policy = modes.policy(Mode.NORMAL)
    router = Stage1Router(RouteClassifier.load(), modes.routing)

    def route(query: str) -> None:
        decision = router.decide_fast(query)
        if decision.route != "tool":
            complexity = assess(query, decision, estimate_tokens([{"content": query}]))
            wanted = select_role(decision, complexity)
            apply_mode(wanted, policy.allowed_roles, ROLES)

    for row in rows:  # warm-up: first-call costs (imports, caches) are not routing overhead
        route(row.query)
    timings: list[float] = []
    for _ in range(args.repeat):
        for row in rows:
            started = time.perf_counter()
            route(row.query)
            timings.append((time.perf_counter() - started) * 1000)
    p50, p99 = statistics.median(timings), pct(timings, 0.99)
    print(f"queries: {len(rows)} x {args.repeat} = {len(timings)} routings (stage 1 + 2, no model)")
    print(f"p50 {p50:.3f} ms (budget 2 ms)   p99 {p99:.3f} ms (budget 10 ms)   "
          f"max {max(timings):.3f} ms")
    print("within budget" if p50 <= 2 and p99 <= 10 else "OVER BUDGET")


if __name__ == "__main__":
    main()

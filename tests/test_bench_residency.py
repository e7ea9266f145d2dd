"""benchmarks/residency.py's simulation: the stated day, the offline optimum, and that the
simulation drives the real scheduler (the benchmark prints the figures; these check the parts)."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

from localroute.residency.scheduler import Policy

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: its modules import each other by name.
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


workload = _load("residency_workload")
bench = _load("residency")


def test_the_day_has_the_stated_skew_and_concurrent_requests() -> None:
    for seed in range(10):
        day = workload.day_trace(seed)
        roles = Counter(r.role for r in day)
        assert len(day) >= 200, seed
        assert roles["router"] > roles["reasoning"] > 0, (seed, roles)
        assert roles["router"] > roles["coding_large_context"] > 0, (seed, roles)
        # Sessions start within the day (one that starts at 16:58 may go on past 17:00).
        assert 0 <= day[0].at < 0.25 * workload.DAY_S < 0.75 * workload.DAY_S < day[-1].at
        # Clients at once: the chat's title and tags, the agent's side call, share a moment.
        assert len({r.at for r in day}) < len(day)
    assert [(r.at, r.role) for r in workload.day_trace(3)] == \
        [(r.at, r.role) for r in workload.day_trace(3)]


def test_offline_optimum_evicts_the_model_needed_furthest_ahead() -> None:
    def trace(roles: str) -> list[object]:
        return [workload.Request(i, r, float(i), 1.0, "t") for i, r in enumerate(roles)]

    # a b c: c evicts b (a is needed sooner); a hits; b evicts a (never needed again); c hits.
    assert bench.belady(trace("abcabc")) == 4
    assert bench.belady(trace("aaaa")) == 1
    assert bench.belady(trace("abab")) == 2


def test_the_simulation_drives_the_real_scheduler_on_the_m4max_footprints() -> None:
    # Two overlapping sessions, reasoning and the large-context coder, that cannot be resident
    # together beside the pinned router: every policy answers everything, none loads twice or
    # cuts a call, and localroute's grouping needs fewer loads than LRU's swap per request.
    reqs = []
    for i in range(12):
        reqs.append(workload.Request(len(reqs), "reasoning", 10.0 * i, 20.0, "t"))
        reqs.append(workload.Request(len(reqs), "coding_large_context", 10.0 * i + 5, 40.0, "t"))
        reqs.append(workload.Request(len(reqs), "router", 10.0 * i + 1, 1.5, "t"))
    rows = {p: bench.simulate(p, "t", [reqs]) for p in (Policy.cost, Policy.lru)}
    for row in rows.values():
        assert row.requests == len(reqs)
        assert (row.failed, row.cut, row.duplicate_loads) == (0, 0, 0)
    assert rows[Policy.cost].loads < rows[Policy.lru].loads

"""Per-request overhead of the state machine, with a zero-latency in-process backend.

A backend that answers instantly stands in for the model, so what is timed is the orchestrator
itself: INIT -> routing -> selection -> LLM_CALL -> (validation skipped) -> SYNTHESIS, plus the
client's gate, context guard and normalisation. Budget (docs/architecture.md): p50 <= 1 ms.
Routing is reported separately (see routing_overhead.py) and subtracted, since the budget is for
the machine.

    python benchmarks/orchestrator_overhead.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.backends.base import ChatRequest, ModelInfo, RawChunk, RawCompletion
from localroute.backends.pool import BackendPool
from localroute.client.llm_client import LLMClient
from localroute.config.schema import ResolvedRole
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.types import Usage
from tests.conftest import make_profile


class InstantBackend:
    """Answers immediately: the benchmark's stand-in for a model (a pure unit, no I/O)."""

    kind = "instant"
    url = "instant://"

    async def chat(self, request: ChatRequest, role: str = "") -> RawCompletion:
        return RawCompletion(content="4", finish_reason="stop", model=request.model,
                             usage=Usage(prompt_tokens=5, completion_tokens=1, total_tokens=6))

    async def stream(self, request: ChatRequest, role: str = "") -> AsyncIterator[RawChunk]:
        yield RawChunk(content="4", finish_reason="stop")

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        return None

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def aclose(self) -> None:
        return None


class InstantPool(BackendPool):
    def for_role(self, role: ResolvedRole) -> Any:
        return InstantBackend()


async def main(n: int) -> None:
    role = {"id": "instant", "backend": "openai", "endpoint": "http://instant/v1",
            "max_concurrency": 4, "max_tokens": 8}
    profile = make_profile({"router": role, "validation": {"shares_instance_with": "router"}})
    orchestrator = build_orchestrator(profile, client=LLMClient(profile, InstantPool()))
    totals: list[float] = []
    routing: list[float] = []
    for i in range(n + 50):
        # A new question each time: the routing cache must not turn routing into a lookup.
        ctx = ExecutionContext(messages=[{"role": "user", "content": f"what is {i} plus {i + 1}"}],
                               allow_router_model=False)
        await orchestrator.run(ctx)
        assert ctx.state.value == "COMPLETED", ctx.error
        if i >= 50:  # warm-up
            totals.append(sum(s.elapsed_ms for s in ctx.steps))
            routing.append(sum(s.elapsed_ms for s in ctx.steps
                               if s.state.value == "ROUTING_DECISION"))
    machine = [t - r for t, r in zip(totals, routing, strict=True)]
    print(f"requests: {n} (zero-latency backend)")
    print(f"whole request p50 {statistics.median(totals):.3f} ms; of which routing p50 "
          f"{statistics.median(routing):.3f} ms")
    print(f"orchestrator overhead excluding routing: p50 {statistics.median(machine):.3f} ms "
          f"(budget 1 ms), p99 {sorted(machine)[int(0.99 * len(machine))]:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))

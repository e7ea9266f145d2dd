"""The loop: a table state -> (step, allowed next states), a step limit, and the trace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from localroute.orchestrator.state import TERMINAL, ExecutionContext, StepRecord, TaskState
from localroute.orchestrator.steps import Deps, Outcome, Steps

StepFn = Callable[[ExecutionContext], Awaitable[Outcome]]
S = TaskState

# The machine itself. `localroute graph` draws it; the loop refuses any other transition.
EDGES: dict[TaskState, tuple[TaskState, ...]] = {
    S.INIT: (S.ROUTING_DECISION, S.FAILED),
    S.ROUTING_DECISION: (S.TOOL_ONLY_EXECUTION, S.MODEL_SELECTION, S.FAILED),
    S.TOOL_ONLY_EXECUTION: (S.SYNTHESIS, S.FAILED),
    S.MODEL_SELECTION: (S.LLM_CALL, S.FAILED),
    S.LLM_CALL: (S.TOOL_EXECUTION, S.VALIDATION, S.SYNTHESIS, S.FAILED),
    S.TOOL_EXECUTION: (S.LLM_CALL, S.FAILED),
    S.VALIDATION: (S.LLM_CALL, S.SYNTHESIS, S.FAILED),
    S.SYNTHESIS: (S.COMPLETED, S.FAILED),
}
DEFAULT_STEP_LIMIT = 20


def step_table(steps: Steps) -> dict[TaskState, StepFn]:
    return {
        S.INIT: steps.init,
        S.ROUTING_DECISION: steps.routing_decision,
        S.TOOL_ONLY_EXECUTION: steps.tool_only,
        S.MODEL_SELECTION: steps.model_selection,
        S.LLM_CALL: steps.llm_call,
        S.TOOL_EXECUTION: steps.tool_execution,
        S.VALIDATION: steps.validation,
        S.SYNTHESIS: steps.synthesis,
    }


def mermaid() -> str:
    """The state machine as a Mermaid diagram, generated from EDGES."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.INIT.value}"]
    for state, targets in EDGES.items():
        lines += [f"    {state.value} --> {t.value}" for t in targets]
    lines += [f"    {t.value} --> [*]" for t in (S.COMPLETED, S.FAILED)]
    return "\n".join(lines)


StepHook = Callable[[ExecutionContext, StepRecord], None]


class Orchestrator:
    def __init__(
        self,
        deps: Deps,
        *,
        step_limit: int = DEFAULT_STEP_LIMIT,
        on_step: StepHook | None = None,
        table: dict[TaskState, StepFn] | None = None,
    ) -> None:
        self.deps = deps
        self.table = table or step_table(Steps(deps))
        self.step_limit = step_limit
        self.on_step = on_step

    async def run(self, ctx: ExecutionContext) -> ExecutionContext:
        """Walk the machine until COMPLETED or FAILED; every path ends in one of them."""
        begun = time.perf_counter()
        while ctx.state not in TERMINAL:
            started = time.perf_counter()
            if len(ctx.steps) >= self.step_limit:
                nxt, detail = S.FAILED, f"step limit {self.step_limit} reached in {ctx.state}"
                ctx.error = detail
            else:
                try:
                    nxt, detail = await self.table[ctx.state](ctx)
                except asyncio.CancelledError:
                    # The client left (or the server is stopping): the request still ends,
                    # FAILED with the reason, before the cancellation goes on.
                    ctx.error = ctx.error or f"cancelled in {ctx.state.value} (client gone)"
                    self._record(ctx, begun, started, S.FAILED, ctx.error)
                    ctx.state = S.FAILED
                    raise
                except Exception as exc:  # a crashing step ends the request, with its reason
                    nxt, detail = S.FAILED, f"{ctx.state.value} raised {type(exc).__name__}: {exc}"
                    ctx.error = ctx.error or detail
                if nxt not in EDGES[ctx.state]:
                    detail = f"illegal transition {ctx.state.value} -> {nxt.value} ({detail})"
                    nxt, ctx.error = S.FAILED, detail
            self._record(ctx, begun, started, nxt, detail)
            ctx.state = nxt
        return ctx

    def _record(self, ctx: ExecutionContext, begun: float, started: float, nxt: TaskState,
                detail: str) -> None:
        now = time.perf_counter()
        record = StepRecord(ctx.state, nxt, (started - begun) * 1000, (now - started) * 1000,
                            detail)
        ctx.steps.append(record)
        if self.on_step is not None:
            self.on_step(ctx, record)

"""Turning a request's run into events: the orchestrator's `on_step` hook and the client's
`on_call` hook, tied together by trace and span ids.

Spans: the request is the root span (its `request.outcome` event); each state transition is a
child of it; routing decisions, tool calls, validation verdicts and model calls are children of
the transition they happened in. The span of the step now running is kept in a context variable,
so model calls made anywhere inside it (router model, tool loop, validation model) are attached
to it without the client knowing about requests.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localroute.routing.policy import task_type as task_type_of
from localroute.telemetry import events as ev
from localroute.telemetry.emitter import Telemetry
from localroute.types import LLMError, LLMResponse

if TYPE_CHECKING:  # types only: telemetry sits below the orchestrator at run time
    from localroute.orchestrator.state import ExecutionContext, StepRecord

TERMINAL = ("COMPLETED", "FAILED")
MAX_OPEN_TRACES = 10_000  # requests cancelled mid-run never end; forget the oldest past this
QUERY_CHARS = 2000

# Told of each finished request: task type, the selected role, success, seconds.
Learner = Callable[[str, str, bool, float], None]
# Told of each event besides the store (the OpenTelemetry exporter, telemetry/otel.py).
Sink = Callable[[ev.EventRow], None]


@dataclass
class _Trace:
    trace_id: str
    root: str  # the request's span
    step: str  # the span of the step now running
    tools_seen: int = 0


_current: ContextVar[_Trace | None] = ContextVar("localroute_trace", default=None)


def bind_trace(trace_id: str) -> None:
    """Attach the model calls made from here on in the current task to `trace_id`: for a
    request answered without the orchestrator (the server's direct roles), so its model.call
    events carry the trace id the client was given."""
    _current.set(_Trace(trace_id, ev.new_span_id(), ev.new_span_id()))


def request_success(ctx: ExecutionContext, next_state: str) -> bool:
    """A request succeeded when it completed and its answer was not flagged unvalidated."""
    return next_state == "COMPLETED" and ctx.validation != "unvalidated"


class Recorder:
    def __init__(self, telemetry: Telemetry | None, *,
                 learners: list[Learner] | None = None,
                 sinks: list[Sink] | None = None) -> None:
        self.telemetry = telemetry
        self.learners = learners or []
        self.sinks = sinks or []
        self._open: dict[str, _Trace] = {}

    def _emit(self, row: ev.EventRow) -> None:
        if self.telemetry is not None:
            self.telemetry.emit(row)
        for sink in self.sinks:
            sink(row)

    def on_step(self, ctx: ExecutionContext, record: StepRecord) -> None:
        trace = self._open.get(ctx.trace_id)
        if trace is None:
            if len(self._open) >= MAX_OPEN_TRACES:
                del self._open[next(iter(self._open))]
            trace = self._open[ctx.trace_id] = _Trace(ctx.trace_id, ev.new_span_id(),
                                                      ev.new_span_id())
        span, state = trace.step, record.state.value
        route = ctx.routing.route if ctx.routing else None
        self._emit(ev.state_transition(
            ctx.trace_id, span, trace.root, state=state, next_state=record.next_state.value,
            started_ms=record.started_ms, elapsed_ms=record.elapsed_ms, detail=record.detail,
            role=ctx.role, route=route))
        if state == "ROUTING_DECISION" and ctx.routing is not None:
            d = ctx.routing
            self._emit(ev.routing_decision(
                ctx.trace_id, span, route=d.route, decided_by=d.decided_by,
                confidence=d.confidence, latency_ms=d.latency_ms, escalated=d.escalated,
                escalation_error=d.escalation_error,
                tool=d.tool_call.name if d.tool_call else None, reason=d.reason))
        elif state == "MODEL_SELECTION" and ctx.selection is not None and ctx.complexity:
            self._emit(ev.role_selection(
                ctx.trace_id, span, route=route or "", role=ctx.selection.role,
                static_role=ctx.static_role or ctx.selection.role,
                task_type=ctx.task_type or "", decided_by=ctx.role_decided_by,
                reason=ctx.selection.reason, downgraded_from=ctx.selection.downgraded_from,
                substituted_for=ctx.selection.substituted_for,
                reasoning_depth=ctx.complexity.reasoning_depth,
                context_tokens=ctx.complexity.estimated_context_tokens))
        elif state == "VALIDATION":
            passed = record.next_state.value == "SYNTHESIS" and ctx.validation != "unvalidated"
            self._emit(ev.validation_verdict(
                ctx.trace_id, span, role=ctx.role, route=route, passed=passed,
                attempt=ctx.validation_attempts,
                failures=[] if passed else list(ctx.validation_failures),
                detail=record.detail, elapsed_ms=record.elapsed_ms))
        for result in ctx.tool_results[trace.tools_seen:]:
            self._emit(ev.tool_call(ctx.trace_id, span, tool=result.tool, ok=result.ok,
                                    elapsed_ms=result.elapsed_ms, error=result.error,
                                    direct=state == "TOOL_ONLY_EXECUTION"))
        trace.tools_seen = len(ctx.tool_results)
        if record.next_state.value in TERMINAL:
            self._finish(ctx, trace, record.next_state.value)
        else:
            trace.step = ev.new_span_id()
            _current.set(trace)

    def _finish(self, ctx: ExecutionContext, trace: _Trace, end: str) -> None:
        self._open.pop(ctx.trace_id, None)
        _current.set(None)
        success = request_success(ctx, end)
        total_ms = sum(s.elapsed_ms for s in ctx.steps)
        task = ctx.task_type
        if task is None and ctx.routing is not None and ctx.complexity is not None:
            task = task_type_of(ctx.routing.route, ctx.complexity.reasoning_depth)
        selected = ctx.selection.role if ctx.selection else None
        self._emit(ev.request_outcome(
            ctx.trace_id, trace.root, state=end, success=success, mode=ctx.mode.value,
            route=ctx.routing.route if ctx.routing else None, role=ctx.role,
            selected_role=selected, static_role=ctx.static_role, task_type=task,
            decided_by=ctx.routing.decided_by if ctx.routing else None,
            validation=ctx.validation, llm_calls=ctx.llm_calls,
            tools_used=[r.tool for r in ctx.tool_results], fallbacks=len(ctx.fallbacks),
            error=ctx.error, total_ms=total_ms, timings_ms=ctx.timings_ms(),
            # Telemetry.emit drops it (and all else derived from it) with record_queries: false.
            query=ctx.query[:QUERY_CHARS], answer=(ctx.reply or "")[:QUERY_CHARS] or None,
            channel=ctx.channel))
        if task is not None and selected is not None:
            for learn in self.learners:
                learn(task, selected, success, total_ms / 1000)

    def on_model_call(self, requested: str, response: LLMResponse | None,
                      error: LLMError | None, elapsed_s: float) -> None:
        trace = _current.get()
        trace_id = trace.trace_id if trace else ev.new_trace_id()
        parent = trace.step if trace else None
        if response is not None:
            t, u = response.timings, response.usage
            self._emit(ev.model_call(
                trace_id, parent, role=response.role, model=response.model,
                backend=response.backend, ok=True, total_s=elapsed_s,
                queue_wait_s=t.queue_wait_s, ttft_s=t.ttft_s, prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens, tokens_per_s=t.tokens_per_s,
                finish_reason=response.finish_reason, attempts=response.attempts,
                fallbacks=[f.model_dump() for f in response.fallbacks], error=None,
                requested_role=requested))
        elif error is not None:
            self._emit(ev.model_call(
                trace_id, parent, role=error.role or requested, model=error.model,
                backend=None, ok=False, total_s=elapsed_s, queue_wait_s=None, ttft_s=None,
                prompt_tokens=0, completion_tokens=0, tokens_per_s=None, finish_reason=None,
                attempts=0, fallbacks=[f.model_dump() for f in error.fallbacks],
                error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}",
                requested_role=requested))

"""The one place where `telemetry.record_queries: false` takes effect.

With it, nothing derived from a query is stored: not the query text, and not the paths, process
names, tool arguments, quoted figures or error messages that steps, routing, tools, validation
and model servers build from it. Each request event keeps only the fields listed here, which
hold names, numbers and flags drawn from fixed vocabularies; every other field of the event is
replaced. An allow-list rather than a list of what to remove, so that a field added to an event
later is redacted until someone decides it is safe.
"""

from __future__ import annotations

from typing import Any

from localroute.telemetry.events import EventName, EventRow

REDACTED = "[redacted]"

_KEEP: dict[str, frozenset[str]] = {
    EventName.STATE_TRANSITION: frozenset({"state", "next_state", "started_ms"}),
    EventName.ROUTING_DECISION: frozenset({"decided_by", "confidence", "escalated", "tool"}),
    EventName.ROLE_SELECTION: frozenset({"static_role", "task_type", "decided_by",
                                         "downgraded_from", "reasoning_depth",
                                         "context_tokens"}),
    EventName.MODEL_CALL: frozenset({"model", "backend", "queue_wait_s", "ttft_s",
                                     "prompt_tokens", "completion_tokens", "tokens_per_s",
                                     "finish_reason", "attempts", "retries",
                                     "requested_role"}),
    EventName.TOOL_CALL: frozenset({"tool", "direct"}),
    EventName.VALIDATION_VERDICT: frozenset({"attempt"}),
    EventName.REQUEST_OUTCOME: frozenset({"state", "mode", "selected_role", "static_role",
                                          "task_type", "decided_by", "validation", "llm_calls",
                                          "tools_used", "fallbacks", "timings_ms", "channel"}),
}


def _blank(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in ("query", "answer"):
        return None
    if key == "error" and isinstance(value, str):
        # "LLMTimeout: <message>": the exception type says what failed, the message may quote.
        kind = value.split(":", 1)[0]
        return f"{kind}: {REDACTED}" if kind.isidentifier() else REDACTED
    if key == "fallbacks" and isinstance(value, list):
        return [{**f, "reason": REDACTED} if isinstance(f, dict) else REDACTED for f in value]
    if isinstance(value, list):
        return [REDACTED] * len(value)
    return REDACTED


def redact(row: EventRow) -> EventRow:
    """`row` with every field that may carry query-derived text replaced (events that never
    carry any, such as mode changes and feedback, are returned as they are)."""
    keep = _KEEP.get(row["event"])
    if keep is None:
        return row
    data = {k: v if k in keep else _blank(k, v) for k, v in row["data"].items()}
    return {**row, "data": data}

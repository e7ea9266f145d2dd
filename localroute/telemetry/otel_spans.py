"""Recorded events as OpenTelemetry spans, sent over OTLP/HTTP (protobuf) by the official SDK.

Needs the `otel` extra (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http); imported only
when export is configured (telemetry/otel.py decides).

Each event the recorder makes becomes one span with the event's own trace id, span id and parent,
so the trace in an OpenTelemetry backend is the tree `localroute telemetry trace` shows, under
the same trace id: the request span at the root, a span per state below it, and the routing
decision, role selection, model calls, tool calls and validation verdicts below their state.
Events are made when what they describe has ended (the request's own event last), so each span
is started and ended at once with the recorded times.

Off the request path: the recorder only appends the event to a buffer; a thread of this module
makes the spans every DRAIN_S (the SDK takes 0.1-0.4 ms per span on the 2-core machine, 7-20
of them per request: benchmarks/otel_overhead.py), and the BatchSpanProcessor's thread sends
them.
The same buffer-and-drain as the event writer's, for the same reason (telemetry/writer.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from localroute import __version__
from localroute.telemetry.events import EventName, EventRow

PREFIX = "localroute."
REQUEST_SPAN = "request"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
FAILED = "FAILED"
DRAIN_S = 0.1
# At exit a receiver that is down would hold the process for the exporter's retries (10 s by
# default): what is pending gets this long, then the exporter is shut down.
EXIT_FLUSH_S = 3.0
MAX_PENDING = 100_000  # events held when spans cannot be made fast enough; the oldest go first


class _PresetIds(IdGenerator):
    """The SDK takes each new span's ids from its IdGenerator; this one answers with the ids the
    event already has (set just before the span starts, per thread), so parent links and the
    trace id are localroute's own. Random ids only if a span starts without a preset."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._random = RandomIdGenerator()

    def preset(self, trace_id: int, span_id: int) -> None:
        self._local.trace_id, self._local.span_id = trace_id, span_id

    def generate_trace_id(self) -> int:
        value: int | None = getattr(self._local, "trace_id", None)
        self._local.trace_id = None
        return value or self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        value: int | None = getattr(self._local, "span_id", None)
        self._local.span_id = None
        return value or self._random.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return False  # uuid4 hex: version bits are fixed, not W3C's random trace id


def span_name(row: EventRow) -> str:
    """Low-cardinality names from fixed vocabularies: `request`, the state's name, else the
    event's name."""
    if row["event"] == EventName.REQUEST_OUTCOME:
        return REQUEST_SPAN
    if row["event"] == EventName.STATE_TRANSITION:
        return str(row["data"]["state"])
    return row["event"]


def _put(attrs: dict[str, AttributeValue], key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool | int | float | str):
        attrs[key] = value
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        attrs[key] = tuple(value)
    else:  # mappings and lists of records (timings, fallbacks): OTel attributes are flat
        attrs[key] = json.dumps(value, sort_keys=True, default=str)


def attributes(row: EventRow) -> dict[str, AttributeValue]:
    """The event's envelope and fields under `localroute.`, plus the GenAI convention's model
    and token names on model calls and `localroute.verdict` on validation verdicts."""
    attrs: dict[str, AttributeValue] = {PREFIX + "event": row["event"]}
    for key in ("route", "role", "ok"):
        _put(attrs, PREFIX + key, row[key])
    data = row["data"]
    for key, value in data.items():
        _put(attrs, PREFIX + key, value)
    if row["event"] == EventName.MODEL_CALL:
        _put(attrs, "gen_ai.request.model", data.get("model"))
        _put(attrs, "gen_ai.usage.input_tokens", data.get("prompt_tokens"))
        _put(attrs, "gen_ai.usage.output_tokens", data.get("completion_tokens"))
    elif row["event"] == EventName.VALIDATION_VERDICT:
        attrs[PREFIX + "verdict"] = "passed" if row["ok"] else "failed"
    return attrs


def failure(row: EventRow) -> str | None:
    """Why the span's operation failed (its ERROR status), or None: a request or state that
    ended FAILED, a model or tool call that failed. A validation that failed is a verdict, not
    an error of the span (`localroute.verdict`)."""
    data, name = row["data"], row["event"]
    if name == EventName.REQUEST_OUTCOME and data.get("state") == FAILED:
        return str(data.get("error") or FAILED)
    if name == EventName.STATE_TRANSITION and data.get("next_state") == FAILED:
        return str(data.get("detail") or FAILED)
    if name in (EventName.MODEL_CALL, EventName.TOOL_CALL) and row["ok"] is False:
        return str(data.get("error") or "failed")
    return None


def _parse_id(text: str | None) -> int:
    try:
        return int(text or "", 16)
    except ValueError:
        return 0


class SpanExporter:
    """One TracerProvider (not the global one: an application embedding localroute keeps its
    own) with a BatchSpanProcessor over the OTLP/HTTP exporter at `url`."""

    def __init__(self, url: str) -> None:
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; a name
        # given here would override the variable, so it is given only when the variable is not.
        base = {SERVICE_VERSION: __version__}
        if not os.environ.get(SERVICE_NAME_ENV):
            base[SERVICE_NAME] = "localroute"
        self._ids = _PresetIds()
        # Flushed through the event writer's exit and SIGTERM hooks (telemetry/otel.py), which
        # also run when SIGTERM kills the process, where atexit does not.
        self.provider = TracerProvider(resource=Resource.create(base), id_generator=self._ids,
                                       shutdown_on_exit=False)
        self._otlp = OTLPSpanExporter(endpoint=url)
        self.provider.add_span_processor(BatchSpanProcessor(self._otlp))
        self.tracer = self.provider.get_tracer("localroute", __version__)
        self.url = url
        self.failed = 0
        self._pending: deque[EventRow] = deque(maxlen=MAX_PENDING)
        self._thread = threading.Thread(target=self._run, name="localroute-otel", daemon=True)
        self._thread.start()

    def put(self, row: EventRow) -> None:
        """The recorder's sink: queue the event; the drain thread makes its span."""
        self._pending.append(row)

    def _run(self) -> None:
        while True:
            time.sleep(DRAIN_S)
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                row = self._pending.popleft()
            except IndexError:
                return
            try:
                self.export(row)
            except Exception as exc:  # one odd event must not stop the spans of the others
                self.failed += 1
                if self.failed == 1:
                    print(f"localroute: OpenTelemetry span for {row['event']} failed: {exc}",
                          file=sys.stderr)

    def _sampled(self, trace_id: int) -> bool:
        """The sampler's verdict on the trace's root (OTEL_TRACES_SAMPLER; default always):
        children take it from their parent, so a trace is sent whole or not at all."""
        result = self.provider.sampler.should_sample(Context(), trace_id, REQUEST_SPAN)
        return result.decision is Decision.RECORD_AND_SAMPLE  # is_sampled() is untyped

    def export(self, row: EventRow) -> None:
        """Make the event's span now, on this thread."""
        trace_id, span_id = _parse_id(row["trace_id"]), _parse_id(row["span_id"])
        if not trace_id or not span_id:
            return  # not an id pair OTel can carry (never made by events.py)
        parent_id = _parse_id(row["parent_span_id"])
        context = Context()  # no parent: the ambient context may hold an embedding app's span
        if parent_id:
            flags = TraceFlags(TraceFlags.SAMPLED if self._sampled(trace_id) else
                               TraceFlags.DEFAULT)
            parent = SpanContext(trace_id, parent_id, is_remote=False, trace_flags=flags)
            context = set_span_in_context(NonRecordingSpan(parent), context)
        end_ns = int(row["ts"] * 1e9)
        start_ns = end_ns - int((row["duration_ms"] or 0.0) * 1e6)
        kind = SpanKind.CLIENT if row["event"] == EventName.MODEL_CALL else SpanKind.INTERNAL
        self._ids.preset(trace_id, span_id)
        span = self.tracer.start_span(span_name(row), context=context, kind=kind,
                                      attributes=attributes(row), start_time=start_ns)
        reason = failure(row)
        if reason is not None:
            span.set_status(Status(StatusCode.ERROR, reason))
        span.end(end_time=end_ns)

    def flush(self) -> bool:
        """Make the spans of every event queued so far and send them, for a caller that goes on
        (benchmarks, tests; the exit uses `close`). Blocks for as long as the exporter retries:
        the SDK's force_flush does not honour a timeout."""
        self._drain()
        return self.provider.force_flush()

    def close(self, timeout_s: float = EXIT_FLUSH_S) -> None:
        """At exit and on SIGTERM: send what is pending, waiting at most `timeout_s`, then stop
        the exporter (which ends the retries of a send still waiting on the receiver)."""
        self._drain()
        sending = threading.Thread(target=self.provider.force_flush, name="localroute-otel-exit",
                                   daemon=True)
        sending.start()
        sending.join(timeout_s)
        self._otlp.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        if sending.is_alive():
            print(f"localroute: OpenTelemetry spans not sent to {self.url} within {timeout_s:g} s "
                  "of exit; dropped", file=sys.stderr)


"""A real OTLP/HTTP trace receiver on loopback for the tests: POST /v1/traces bodies decoded as
ExportTraceServiceRequest with the protobuf classes opentelemetry-proto ships (what a collector
does with them), kept as plain records to assert on."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str

    @property
    def error(self) -> bool:
        return self.status_code == Status.STATUS_CODE_ERROR


@dataclass
class OtlpReceiver:
    """Started on a free loopback port; `stop()` closes it."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    content_types: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._take(request, self.headers.get("Content-Type", ""))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:  # http.server names it
                pass  # quiet test output

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, request: ExportTraceServiceRequest, content_type: str) -> None:
        got = []
        for rs in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(_record(s, resource, ss.scope.name))
        with self._lock:
            self.requests += 1
            self.content_types.add(content_type)
            self.spans.extend(got)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedSpan]:
        """The spans received once at least `count` have arrived (or timeout: what came)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= count:
                    break
            time.sleep(0.05)
        with self._lock:
            return list(self.spans)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _record(s: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
        parent_span_id=s.parent_span_id.hex() or None, name=s.name, kind=s.kind,
        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano,
        attributes={kv.key: _value(kv.value) for kv in s.attributes},
        status_code=s.status.code, status_message=s.status.message, resource=resource,
        scope=scope)

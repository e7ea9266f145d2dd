"""Whether requests are exported as OpenTelemetry traces, and where to.

Export is on when an OTLP endpoint is configured: the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
(the full traces URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL), else `telemetry.otel.endpoint`
in telemetry.yaml; `OTEL_SDK_DISABLED=true` turns it off. The OpenTelemetry SDK is imported only
then (telemetry/otel_spans.py), so without the `otel` extra nothing else changes, and a configured
endpoint without the extra is said once on stderr while requests run on without export.

The exporter receives the events the recorder makes (a sink of `Recorder`), redacted by the same
rule as the store (`telemetry.record_queries`), and is flushed with the event writer at exit and
on SIGTERM (for at most a few seconds: a receiver that is down does not hold the exit).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from localroute.config.telemetry import StoreSettings
from localroute.telemetry.events import EventRow
from localroute.telemetry.redact import redact
from localroute.telemetry.writer import flush_at_exit

if TYPE_CHECKING:  # the SDK module is imported only when export is configured
    from localroute.telemetry.otel_spans import SpanExporter

TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
PROTOCOL_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DISABLED_ENV = "OTEL_SDK_DISABLED"
CONFIG_KEY = "telemetry.otel.endpoint"
TRACES_PATH = "/v1/traces"
INSTALL_HINT = "pip install 'localroute[otel]'"

Sink = Callable[[EventRow], None]


class OtelUnavailable(Exception):
    """Export is configured but cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class OtelTarget:
    url: str  # the full OTLP/HTTP traces URL
    source: str  # the variable or key that named it, for messages


def otel_target(settings: StoreSettings, env: Mapping[str, str] | None = None) -> OtelTarget | None:
    """Where spans go, or None when no endpoint is configured (or OTEL_SDK_DISABLED=true).
    Raises OtelUnavailable for an endpoint or protocol that OTLP/HTTP cannot use."""
    env = os.environ if env is None else env
    if env.get(DISABLED_ENV, "").strip().lower() == "true":
        return None
    if env.get(TRACES_ENDPOINT_ENV, "").strip():
        source, given, path = TRACES_ENDPOINT_ENV, env[TRACES_ENDPOINT_ENV].strip(), ""
    elif env.get(ENDPOINT_ENV, "").strip():
        source, given, path = ENDPOINT_ENV, env[ENDPOINT_ENV].strip(), TRACES_PATH
    elif settings.otel.endpoint:
        source, given, path = CONFIG_KEY, settings.otel.endpoint, TRACES_PATH
    else:
        return None
    url = urlsplit(given)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise OtelUnavailable(f"{source}: '{given}' is not an http(s) URL; give the OTLP/HTTP "
                              "receiver's URL, e.g. http://localhost:4318")
    target = OtelTarget(given.rstrip("/") + path if path else given, source)
    for name in PROTOCOL_ENVS:
        protocol = env.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise OtelUnavailable(f"{name}={protocol}: localroute exports OTLP over "
                                  "HTTP/protobuf only; unset it (or set http/protobuf) and point "
                                  f"{target.source} at the receiver's HTTP port (4318 by default)")
        if protocol:
            break  # the traces-specific variable decides over the general one
    return target


_exporters: dict[str, SpanExporter] = {}
_refused: set[str] = set()
_lock = threading.Lock()


def _say_once(key: str, message: str) -> None:
    if key not in _refused:
        _refused.add(key)
        print(f"localroute: OpenTelemetry export is off: {message}", file=sys.stderr)


def shared_exporter(settings: StoreSettings,
                    env: Mapping[str, str] | None = None) -> SpanExporter | None:
    """The process-wide exporter for the configured endpoint, or None when export is not
    configured or cannot start (said once on stderr; requests run on without it)."""
    try:
        target = otel_target(settings, env)
    except OtelUnavailable as exc:
        _say_once(str(exc), str(exc))
        return None
    if target is None:
        return None
    with _lock:
        exporter = _exporters.get(target.url)
        if exporter is not None:
            return exporter
        try:
            from localroute.telemetry.otel_spans import SpanExporter
        except ImportError as exc:  # the extra is not installed (or only part of it)
            _say_once(target.url, f"{target.source} is set but the module '{exc.name}' of the "
                      f"OpenTelemetry SDK is not installed; run {INSTALL_HINT}")
            return None
        exporter = _exporters[target.url] = SpanExporter(target.url)
        flush_at_exit(exporter.close)
        return exporter


def otel_sink(settings: StoreSettings, env: Mapping[str, str] | None = None) -> Sink | None:
    """The recorder's sink that sends each event on as a span, redacted like the store; None
    when export is off."""
    exporter = shared_exporter(settings, env)
    if exporter is None:
        return None
    if settings.record_queries:
        return exporter.put
    send = exporter.put

    def redacted(row: EventRow) -> None:
        send(redact(row))

    return redacted

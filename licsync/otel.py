"""Optional OpenTelemetry traces (``pip install 'licsync[otel]'``), configured only by the standard
``OTEL_*`` environment variables.

msgraph-sdk and kiota already emit a span per Graph request through the OpenTelemetry API; without
an SDK they go nowhere. When ``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, this installs the
SDK's tracer provider: the resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``, the
OTLP/HTTP exporter (which reads its endpoint, headers and timeout from the ``OTEL_EXPORTER_OTLP_*``
variables itself) or the console exporter, batched. ``OTEL_SDK_DISABLED=true`` turns it off.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
except ImportError:  # the [otel] extra is not installed
    trace = None  # type: ignore[assignment]
try:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
except ImportError:
    OTLPSpanExporter = None  # type: ignore[assignment,misc]

from licsync.errors import ConfigError

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for (``otlp`` or ``console``), or None."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    kind = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if kind in ("", "none"):
        return "otlp" if kind == "" and any(environ.get(k) for k in _ENDPOINTS) else None
    if kind not in ("otlp", "console"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={kind!r}: licsync supports otlp, console or none")
    return kind


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider the environment asks for; False when it asks for none."""
    kind = wanted(os.environ if environ is None else environ)
    if kind is None:
        return False
    if trace is None or (kind == "otlp" and OTLPSpanExporter is None):
        raise ConfigError("OTEL_* tracing is configured but OpenTelemetry is not installed: "
                          "pip install 'licsync[otel]'")
    exporter: SpanExporter = ConsoleSpanExporter() if kind == "console" else OTLPSpanExporter()
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "licsync"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flush what the batch holds
    return True

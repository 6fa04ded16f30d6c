"""W3C trace context carried from an input record to the records made from it.

The headers are copied as they are, so a trace started by the payment's producer
continues on the settlement item and on any dead letter, without the OpenTelemetry
SDK as a dependency. Without a `traceparent`, nothing is invented: the current
OpenTelemetry context is injected only if the `opentelemetry` API is installed
(and it injects nothing unless an SDK has an active span).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

from settlement.service.ports import Headers

TRACE_HEADERS = ("traceparent", "tracestate")
Injector = Callable[[dict[str, str]], None]


def trace_context(headers: Headers) -> Headers:
    """The input's traceparent/tracestate headers (first of each), for an output record."""
    found: dict[str, bytes] = {}
    for key, value in headers:
        if key in TRACE_HEADERS:
            found.setdefault(key, value)
    if "traceparent" in found:
        return list(found.items())
    inject = _otel_inject()
    if inject is None:
        return []
    carrier: dict[str, str] = {}
    inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items() if k in TRACE_HEADERS]


@cache
def _otel_inject() -> Injector | None:
    try:
        module = importlib.import_module("opentelemetry.propagate")
    except ImportError:
        return None
    inject: Injector = module.inject
    return inject

"""This process's own instruments (``prometheus_client``): what happens in memory, per replica.

The database-derived figures (cycles, seats, grace, outbox depth, heartbeats) are facts of the
shared database, collected at scrape time by ``licsync.api.metrics``; these are what only this
process sees — how long its cycles and Graph requests took, what Graph throttled, how fast it
decided access, what its outbox drain could not send. ``/metrics`` labels both with ``replica``.

Labels are bounded: tenants come from the configuration, Graph endpoints are paths with their ids
replaced by ``{id}``, statuses are HTTP codes. Never a user id, a token or a query string.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

disable_created_metrics()  # no *_created series: scrapes stay small and stable across restarts

REGISTRY = CollectorRegistry(auto_describe=True)

CYCLE_SECONDS = Histogram(
    "licsync_cycle_seconds", "Sync cycles run by this replica: wall time by tenant, kind and outcome.",
    ["tenant", "kind", "status"], registry=REGISTRY,
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0))
GRAPH_SECONDS = Histogram(
    "licsync_graph_request_duration_seconds", "Microsoft Graph requests by endpoint, method and HTTP status.",
    ["endpoint", "method", "status"], registry=REGISTRY,
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
GRAPH_THROTTLED = Counter(
    "licsync_graph_throttled", "Microsoft Graph answers 429 (Too Many Requests), by tenant.", ["tenant"],
    registry=REGISTRY)
GRAPH_RETRIES = Counter(
    "licsync_graph_request_retries", "Microsoft Graph requests retried by this replica, by tenant and reason.",
    ["tenant", "reason"], registry=REGISTRY)
ACCESS_SECONDS = Histogram(
    "licsync_access_decision_seconds", "Launch-time access decisions (GET …/access/{user}) by HTTP status.",
    ["status"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
OUTBOX_SENDS = Counter(
    "licsync_outbox_sends", "Notification send attempts by outcome (sent, skipped, pending = will retry, failed).",
    ["outcome"], registry=REGISTRY)
OUTBOX_SEND_FAILURES = Counter(
    "licsync_outbox_send_failures", "Notification sends that failed (temporary: retried; permanent: given up).",
    ["kind"], registry=REGISTRY)

_ID = re.compile(r"^(?:[0-9a-fA-F-]{32,36}|\d+|[^/]*@[^/]*|[A-Za-z0-9+/=_-]{40,})$")
_T0 = "licsync_t0"


def endpoint_of(url: httpx.URL, base_path: str = "") -> str:
    """``/users/delta``, ``/users/{id}/sendMail``: the request's path below the Graph version
    path, ids (GUIDs, numbers, addresses, opaque tokens) replaced, the query dropped."""
    path = url.path
    if base_path and path.startswith(base_path.rstrip("/") + "/"):
        path = path[len(base_path.rstrip("/")):]
    parts = [("{id}" if _ID.match(p) else p) for p in path.split("/") if p]
    return "/" + "/".join(parts[:4])


class GraphTimer:
    """httpx event hooks observing each Graph request's latency (token requests do not pass here)."""

    def __init__(self, base_path: str) -> None:
        self.base_path = base_path

    async def on_request(self, request: httpx.Request) -> None:
        request.extensions[_T0] = time.perf_counter()

    async def on_response(self, response: httpx.Response) -> None:
        request = response.request
        t0 = request.extensions.get(_T0)
        if t0 is not None:
            GRAPH_SECONDS.labels(endpoint_of(request.url, self.base_path), request.method,
                                 str(response.status_code)).observe(time.perf_counter() - t0)


def observe_cycle(tenant: str, kind: str, status: str, seconds: float) -> None:
    CYCLE_SECONDS.labels(tenant, kind, status).observe(seconds)


def cycle_status(result: Any) -> str:
    return "held" if getattr(result, "hold_id", None) else "ok"

"""``GET /metrics``: this process's HTTP metrics plus the sidecar's numbers, read through ``GetStats``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from common.errors import GatewayError, UnauthorizedError
from handlers.apidoc import api
from handlers.context import GatewayContext, api_key_of, context_of, matches_any
from handlers.errors import openai_exception_handlers
from handlers.metrics.usage import usage_metrics
from handlers.observability import HTTP_METRICS
from handlers.version import PYTHON_VERSION, VERSION

__all__ = ("router", "sidecar_metrics")

_STATES = (
    "starting",
    "login_required",
    "logging_in",
    "login_failed",
    "ready",
    "cooling_down",
    "unhealthy",
    "restarting",
    "stopped",
)


def _name(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def sidecar_metrics(stats: dict[str, Any]) -> Iterator[Metric]:
    """Render the stats object (docs/operations.md §6) as Prometheus families."""
    bp = stats.get("backpressure", {})
    yield GaugeMetricFamily("lingma_gateway_in_flight", "turns in flight", value=bp.get("in_flight", 0))
    yield GaugeMetricFamily("lingma_gateway_in_flight_limit", "in-flight limit", value=bp.get("limit", 0))
    yield GaugeMetricFamily("lingma_gateway_queued", "turns waiting for a slot", value=bp.get("queued", 0))
    yield CounterMetricFamily(
        "lingma_gateway_rejected", "turns rejected by backpressure", value=bp.get("rejected_total", 0)
    )
    states = GaugeMetricFamily("lingma_gateway_instance_state", "instances by state", labels=["instance", "state"])
    served = CounterMetricFamily("lingma_gateway_instance_served", "turns served", labels=["instance"])
    restarts = CounterMetricFamily("lingma_gateway_instance_restarts", "process restarts", labels=["instance"])
    hung = CounterMetricFamily(
        "lingma_gateway_instance_unhealthy", "times a hung process was taken out and restarted", labels=["instance"]
    )
    missed = CounterMetricFamily(
        "lingma_gateway_instance_probes_missed", "unanswered auth/status probes", labels=["instance"]
    )
    attempts = GaugeMetricFamily(
        "lingma_gateway_instance_login_attempts", "attempts of the current or last login", labels=["instance", "state"]
    )
    for inst in stats.get("pool", {}).get("instances", []):
        for state in _STATES:
            states.add_metric([inst["id"], state], 1.0 if inst.get("state") == state else 0.0)
        served.add_metric([inst["id"]], inst.get("served_total", 0))
        restarts.add_metric([inst["id"]], inst.get("restarts_total", 0))
        hung.add_metric([inst["id"]], inst.get("unhealthy_total", 0))
        missed.add_metric([inst["id"]], inst.get("probes", {}).get("missed_total", 0))
        login = inst.get("auto_login", {})
        attempts.add_metric([inst["id"], str(login.get("state", "idle"))], login.get("attempts", 0))
    yield from (states, served, restarts, hung, missed, attempts)
    for section in ("requests", "session_cache", "tools"):
        family = CounterMetricFamily(f"lingma_gateway_{section}", f"sidecar {section} counters", labels=["kind"])
        for key, value in _flatten(stats.get(section, {})):
            family.add_metric([key], value)
        yield family
    yield from usage_metrics(stats)


def _flatten(section: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in section.items():
        name = f"{prefix}{_name(key)}"
        if isinstance(value, dict):
            yield from _flatten(value, name + "_")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, float(value)


class _BuildInfo:
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("lingma_gateway_build_info", "the running version", labels=["version", "python"])
        info.add_metric([VERSION, PYTHON_VERSION], 1.0)
        yield info


_BUILD_INFO = CollectorRegistry()
_BUILD_INFO.register(_BuildInfo())


class _Snapshot:
    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield from sidecar_metrics(self.stats)


def _authorise(ctx: GatewayContext, request: Request[object, object, State]) -> None:
    settings = ctx.settings
    if settings.metrics_public or (not settings.metrics_token and not settings.api_keys):
        return
    presented = api_key_of(request)
    if presented is not None and settings.metrics_token and matches_any(presented, (settings.metrics_token,)):
        return
    if settings.api_keys:
        ctx.authenticate(request)
        return
    raise UnauthorizedError("invalid or missing metrics token")


@get("/metrics", opt=api("Prometheus metrics", "Operations", media_type=CONTENT_TYPE_LATEST, auth="metrics"))
async def metrics(request: Request[object, object, State]) -> Response[bytes]:
    ctx = context_of(request)
    _authorise(ctx, request)
    body = generate_latest(HTTP_METRICS.registry) + generate_latest(_BUILD_INFO)
    try:
        stats = json.loads(await ctx.client.stats())
    except GatewayError as exc:
        body += f"# sidecar unavailable: {exc.code}\nlingma_gateway_sidecar_up 0\n".encode()
    else:
        registry = CollectorRegistry()
        registry.register(_Snapshot(stats))
        body += generate_latest(registry) + b"lingma_gateway_sidecar_up 1\n"
    return Response(body, media_type=CONTENT_TYPE_LATEST)


router = Router(path="/", route_handlers=[metrics], exception_handlers=openai_exception_handlers)

"""``GET /metrics``: this process's HTTP metrics plus the sidecar's numbers, read through ``GetStats``."""

from __future__ import annotations

from collections.abc import Iterator

from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from common.errors import GatewayError, UnauthorizedError
from common.stats import InstanceState, StatsReport
from handlers.apidoc import api
from handlers.context import Connection, GatewayContext, api_key_of, context_of, matches_any
from handlers.errors import openai_exception_handlers
from handlers.metrics.usage import usage_metrics
from handlers.observability import HTTP_METRICS
from handlers.version import PYTHON_VERSION, VERSION

__all__ = ("router", "sidecar_metrics")


def _name(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def sidecar_metrics(stats: StatsReport) -> Iterator[Metric]:
    """Render the stats object (docs/operations.md §6) as Prometheus families."""
    bp = stats.backpressure
    yield GaugeMetricFamily("lingma_gateway_in_flight", "turns in flight", value=bp.in_flight)
    yield GaugeMetricFamily("lingma_gateway_in_flight_limit", "in-flight limit", value=bp.limit)
    yield GaugeMetricFamily("lingma_gateway_queued", "turns waiting for a slot", value=bp.queued)
    yield CounterMetricFamily("lingma_gateway_rejected", "turns rejected by backpressure", value=bp.rejected_total)
    states = GaugeMetricFamily("lingma_gateway_instance_state", "instances by state", labels=["instance", "state"])
    served = CounterMetricFamily("lingma_gateway_instance_served", "turns served", labels=["instance"])
    restarts = CounterMetricFamily("lingma_gateway_instance_restarts", "process restarts", labels=["instance"])
    hung = CounterMetricFamily(
        "lingma_gateway_instance_unhealthy", "times a hung process was taken out and restarted", labels=["instance"]
    )
    missed = CounterMetricFamily(
        "lingma_gateway_instance_probes_missed", "unanswered auth/status probes", labels=["instance"]
    )
    busy = CounterMetricFamily(
        "lingma_gateway_instance_probes_busy",
        "auth/status probes unanswered while the process answered other work (not counted as missed)",
        labels=["instance"],
    )
    attempts = GaugeMetricFamily(
        "lingma_gateway_instance_login_attempts", "attempts of the current or last login", labels=["instance", "state"]
    )
    for inst in stats.pool.instances:
        for state in InstanceState:
            states.add_metric([inst.id, state.value], 1.0 if inst.state == state else 0.0)
        served.add_metric([inst.id], inst.served_total)
        restarts.add_metric([inst.id], inst.restarts_total)
        hung.add_metric([inst.id], inst.unhealthy_total)
        missed.add_metric([inst.id], inst.probes.missed_total)
        busy.add_metric([inst.id], inst.probes.busy_total)
        attempts.add_metric([inst.id, inst.auto_login.state], inst.auto_login.attempts)
    yield from (states, served, restarts, hung, missed, busy, attempts)
    for section, counters in (
        ("requests", stats.requests),
        ("session_cache", stats.session_cache),
        ("tools", stats.tools),
    ):
        family = CounterMetricFamily(f"lingma_gateway_{section}", f"sidecar {section} counters", labels=["kind"])
        for key, value in counters.items():
            family.add_metric([_name(key)], value)
        yield family
    yield from usage_metrics(stats)


class _BuildInfo:
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("lingma_gateway_build_info", "the running version", labels=["version", "python"])
        info.add_metric([VERSION, PYTHON_VERSION], 1.0)
        yield info


_BUILD_INFO = CollectorRegistry()
_BUILD_INFO.register(_BuildInfo())


class _Snapshot:
    def __init__(self, stats: StatsReport) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield from sidecar_metrics(self.stats)


async def _authorise(request: Connection, _handler: BaseRouteHandler) -> None:
    """The guard of ``/metrics``: public, ``METRICS_TOKEN``, or an API key (docs/operations.md §2)."""
    ctx = context_of(request)
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


@get(
    "/metrics",
    guards=[_authorise],
    opt=api("Prometheus metrics", "Operations", media_type=CONTENT_TYPE_LATEST, auth="metrics"),
)
async def metrics(gateway: NamedDependency[GatewayContext]) -> Response[bytes]:
    body = generate_latest(HTTP_METRICS.registry) + generate_latest(_BUILD_INFO)
    try:
        stats = await gateway.client.stats()
    except GatewayError as exc:
        body += f"# sidecar unavailable: {exc.code}\nlingma_gateway_sidecar_up 0\n".encode()
    else:
        registry = CollectorRegistry()
        registry.register(_Snapshot(stats))
        body += generate_latest(registry) + b"lingma_gateway_sidecar_up 1\n"
    return Response(body, media_type=CONTENT_TYPE_LATEST)


router = Router(path="/", route_handlers=[metrics], exception_handlers=openai_exception_handlers)

"""Prometheus families for usage per key and model, and for the per-key cap, from the sidecar's stats."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.stats import StatsReport

__all__ = ("usage_metrics",)

_TOKENS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")


def usage_metrics(stats: StatsReport) -> Iterator[Metric]:
    turns = CounterMetricFamily(
        "lingma_gateway_key_turns", "turns by API key name, model and outcome", labels=["key", "model", "outcome"]
    )
    tokens = {
        field: CounterMetricFamily(
            f"lingma_gateway_key_{field}", f"{field} by API key name and model", labels=["key", "model"]
        )
        for field in _TOKENS
    }
    for key, entry in stats.usage.keys.items():
        for model, row in entry.models.items():
            turns.add_metric([key, model, "finished"], row.turns)
            turns.add_metric([key, model, "failed"], row.failed_turns)
            for field, family in tokens.items():
                family.add_metric([key, model], getattr(row, field))
    yield turns
    yield from tokens.values()
    share = stats.key_share
    yield GaugeMetricFamily(
        "lingma_gateway_key_in_flight_limit",
        "turns in flight allowed per API key (0: no cap)",
        value=share.limit,
    )
    in_flight = GaugeMetricFamily("lingma_gateway_key_in_flight", "turns in flight by API key name", labels=["key"])
    for key, value in share.in_flight.items():
        in_flight.add_metric([key], value)
    rejected = CounterMetricFamily(
        "lingma_gateway_key_rejected", "turns refused by the per-key cap, by API key name", labels=["key"]
    )
    for key, value in share.rejected_total.items():
        rejected.add_metric([key], value)
    yield from (in_flight, rejected)

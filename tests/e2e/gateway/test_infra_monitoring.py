"""The Grafana dashboard and the Prometheus alert rules in ``infra/``: they parse, they have the shape their
tools load, the alerts fire on the series they are meant for (``promtool``), and every metric they query is
exposed on ``/metrics`` of a running gateway.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TESTS_DIR

ROOT = TESTS_DIR.parent
DASHBOARD = ROOT / "infra" / "grafana" / "lingma-gateway.json"
RULES = ROOT / "infra" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "infra" / "prometheus" / "alerts.test.yaml"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, labels
    (inside ``{}`` or grouping clauses), durations or numbers."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    return {m.group(1) for m in _IDENT.finditer(text) if not m.group(2) and m.group(1) not in _KEYWORDS}


def test_the_extractor_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route=~"/v1/.*",x="y"}[5m]))) '
        "/ on (job) group_left b_total > 1e-9 and ignoring(instance) c unless max without (k) (d offset 5m)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c", "d"}


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board.get("templating", {}).get("list", []):
        found = re.match(r"label_values\(\s*([A-Za-z_:][\w:]*)", str(var.get("query", "")))
        if found:
            exprs.append(found.group(1))
    return exprs


def rule_queries() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def test_the_dashboard_has_the_shape_grafana_loads() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in ("stat", "timeseries", "gauge", "table", "bargauge"), panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["refId"] for t in panel["targets"])


def test_the_rules_have_the_shape_prometheus_loads() -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    for wanted in ("NoReadyInstance", "LoginsFailing", "HighErrorRate", "Saturated"):
        assert f"LingmaGateway{wanted}" in names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"]
        assert metric_names(rule["expr"]), rule["alert"]


def _promtool() -> str | None:
    found = shutil.which("promtool")
    if found is None and os.environ.get("CI"):
        pytest.fail("promtool is missing: scripts/system-deps installs the prometheus package")
    return found


def test_promtool_accepts_the_rules_and_each_alert_fires_when_meant_to() -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus, or scripts/system-deps)")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, check=False
    )
    assert test.returncode == 0, test.stdout + test.stderr


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape of this text can hold, including those of families with no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_every_metric_the_dashboard_and_rules_query_is_on_metrics(gateway_factory: Any) -> None:
    gw = gateway_factory(env={"API_KEYS": "mon:sk-mon", "GATEWAY_KEY_MAX_IN_FLIGHT": "4"})
    reply = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"Authorization": "Bearer sk-mon"},
        json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert reply.status_code == 200
    exposed = exposed_names(httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer sk-mon"}).text)
    queried: dict[str, set[str]] = {"dashboard": set(), "rules": set()}
    for expr in dashboard_queries():
        queried["dashboard"] |= metric_names(expr)
    for expr in rule_queries():
        queried["rules"] |= metric_names(expr)
    assert len(queried["dashboard"]) >= 15 and len(queried["rules"]) >= 5
    for source, names in queried.items():
        missing = sorted(names - exposed)
        assert not missing, f"the {source} queries metrics that /metrics does not expose: {missing}"

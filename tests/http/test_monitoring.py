"""docs/monitoring/: the Grafana dashboard and the alerting rules read only series a node exports.

A real Runner is scraped after a session started and ended (and a Start was
refused), so the labelled series exist; every metric name in the dashboard's
and the rules' PromQL must be in that scrape. The files' shapes are checked
too: the dashboard is importable JSON whose panels each have targets, the
rules file has Prometheus' groups/rules shape. ``promtool check rules`` runs
when promtool is installed (``.ci/run`` extracts it from Debian's package).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agentplane.core import AdmissionRejected
from agentplane.server import ServeOptions
from tests.support import FakeAgents, serving

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "monitoring" / "grafana-dashboard.json"
ALERTS = ROOT / "docs" / "monitoring" / "alerts.yaml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"

# Words of PromQL that look like names but are not metrics.
PROMQL_WORDS = {
    # aggregations and their modifiers
    *[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ],
    *[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
    ],
    # functions
    *[
        "abs",
        "absent",
        "absent_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_count",
        "histogram_sum",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "ln",
        "log2",
        "log10",
        "minute",
        "month",
        "predict_linear",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sqrt",
        "time",
        "timestamp",
        "vector",
        "year",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "quantile_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
        "label_values",
    ],
    "inf",
    "nan",
}
# Series Prometheus makes itself (not in any scrape).
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# An identifier that is not inside a label matcher's braces, a string, a
# duration ([5m]) or a Grafana variable ($job, ${x}, $__rate_interval).
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w.])")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions and keywords skipped)."""
    text = _STRINGS.sub(" ", expr)
    text = _BRACES.sub(" ", text)  # label matchers (after strings: a "}" in a regex)
    text = _BRACKETS.sub(" ", text)  # range selectors and subqueries
    text = _VARIABLES.sub(" ", text)
    text = _GROUPING.sub(r"\1 ", text)  # by (instance, le): label names
    names = set()
    for match in _NAME.finditer(text):
        word = match.group(1)
        if word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+(\.\d+)?(e\d+)?", word):
            continue
        names.add(word)
    return names


def test_the_name_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{job=~"$job", '
        'reason!="X"}[$__rate_interval]))) > 0.1'
    ) == {"a_seconds_bucket"}
    assert metric_names(
        "sum(rate(x_total[5m])) / scalar(sum(rate(y_total[5m])) + 1) or absent(z)"
    ) == {"x_total", "y_total", "z"}
    assert metric_names("max by (instance) (a / b) > 0.8 and on (instance) c") == {"a", "b", "c"}
    assert metric_names('count by (version) (python_info{x="a}b"})') == {"python_info"}
    assert metric_names("time() - process_start_time_seconds") == {"process_start_time_seconds"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard_panels() for t in p["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            assert inner, text
            exprs.append(inner.group(1))
    return exprs


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    panels = dashboard_panels()
    assert len(panels) >= 10
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["title"], panel
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    # What the issue asks the dashboard to show.
    text = json.dumps(board)
    for needed in (
        "agentplane_active_sessions",
        "agentplane_sessions_started_total",
        "agentplane_sessions_ended_total",
        "agentplane_admission_rejections_total",
        "agentplane_session_start_seconds_bucket",
        "agentplane_event_loop_lag_seconds_bucket",
        "agentplane_gc_pause_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "NODE_LOST",
    ):
        assert needed in text, needed


def test_the_alert_rules_have_prometheus_rules_shape() -> None:
    loaded = yaml.safe_load(ALERTS.read_text())
    assert set(loaded) == {"groups"}
    assert loaded["groups"]
    alerts = []
    for group in loaded["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"}
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert rule["alert"] and isinstance(rule["expr"], str)
            if "for" in rule:
                assert re.fullmatch(r"(\d+[smhd])+", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description", "runbook"} <= set(rule["annotations"])
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))
    # The alerts, and a runbook section for each alert.
    for needed in (
        "AgentplaneNoNodeReady",
        "AgentplaneRejectionsRising",
        "AgentplaneStartLatencyHigh",
        "AgentplaneEventLoopLagHigh",
        "AgentplaneAgentsIgnoreCancellation",
        "AgentplaneFdsNearLimit",
    ):
        assert needed in alerts
    doc = MONITORING_DOC.read_text()
    for rule in alert_rules():
        assert f"### {rule['alert']}\n" in doc, rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()


def _promtool() -> str | None:
    cached = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    for candidate in (shutil.which("promtool"), cached / "agentplane" / "bin" / "promtool"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def test_promtool_accepts_the_rules() -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool not installed (.ci/run extracts it from Debian's prometheus)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _exported(body: str) -> set[str]:
    """Every sample name of a scrape (histograms' _bucket/_sum/_count, counters' _total)."""
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    return names


async def test_every_series_the_dashboard_and_alerts_read_is_exported() -> None:
    launcher = FakeAgents().launcher(max_concurrent_sessions=1)
    async with (
        serving(launcher, ServeOptions(api_token=None)) as served,
        httpx.AsyncClient(base_url=served.http_url) as client,
    ):
        session = await launcher.start_session("c1")
        with pytest.raises(AdmissionRejected):
            await launcher.start_session("c2")
        await launcher.close_session(session.session_id)
        body = (await client.get("/metrics")).text

    exported = _exported(body)
    used: dict[str, set[str]] = {}
    for expr in dashboard_exprs():
        for name in metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    assert len(used) >= 15
    missing = {name: where for name, where in used.items() if name not in exported | SYNTHETIC}
    assert not missing, f"not in the scrape: {missing}"
    # The labelled series the panels group by exist after one session.
    assert 'agentplane_sessions_ended_total{reason="CLOSED_BY_REQUEST"}' in body
    assert 'agentplane_admission_rejections_total{reason="MAX_CONCURRENT_SESSIONS"}' in body

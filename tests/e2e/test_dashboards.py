"""The Grafana dashboard and the alert rules in ``dashboards/``, evaluated on VictoriaMetrics
(and by vmalert) over the data of a real run: every query must parse and return data."""

from __future__ import annotations

import json
import re

import pytest
from otlp_backends import ROOT, fetch_stored, poll, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

DASHBOARD = ROOT / "dashboards" / "grafana-execstatus.json"
# What Grafana puts in place of its variables when every pipeline and orchestrator is shown.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$pipeline": ".*", "$orchestrator": ".*"}
# The alerts the example's data must set off: its run fails, one spawn fails and one of its
# seven health checks fails. Nothing in it waits 5 minutes, drains slowly or gets stuck.
ACTIVE_ALERTS = {"ExecutionFailureRateHigh", "WorkerSpawnFailures", "WorkerHealthChecksFailing"}


@pytest.fixture(scope="module")
def stored(otlp_backends):
    """Several runs of the control plane in one process exporting every 100 ms, so that every
    series has several samples, as a long-running orchestrator's would."""
    run = run_exporting(
        EXAMPLES / "control_plane.py",
        "--runs",
        "8",
        backends=otlp_backends,
        overrides={"OTEL_METRIC_EXPORT_INTERVAL": "100"},
    )
    return fetch_stored(run, otlp_backends)


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} ({target['refId']})", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _in_grafana(expression: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"unknown variable in {expression}"
    return expression


@pytest.mark.parametrize(("panel", "expression"), _dashboard_queries())
def test_every_panel_query_returns_data(stored, panel, expression):
    series = stored.backends.query(_in_grafana(expression))
    assert series, f"{panel}: no data for {expression}"


def test_the_dashboard_is_grafana_json_with_its_variables(stored):
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "orchestrator", "pipeline"}
    for name in ("orchestrator", "pipeline"):
        query = _in_grafana(variables[name]["query"]["query"])
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert match, query
        values = stored.backends.label_values(match[2], match[1])
        assert values, f"variable {name}: no values for {query}"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_alert_rules_load_evaluate_and_fire_on_the_data(stored):
    def evaluated_with_data(rules):
        recording = [rule for rule in rules if rule["type"] == "recording"]
        return (
            all(rule["lastSamples"] > 0 for rule in recording)
            and {
                rule["name"]
                for rule in rules
                if rule["type"] == "alerting" and rule["state"] != "inactive"
            }
            >= ACTIVE_ALERTS
        )

    rules = poll(
        stored.backends.rules,
        evaluated_with_data,
        "vmalert's recording rules return no data, or the expected alerts are not active",
    )
    names = {rule["name"] for rule in rules}
    assert {
        "ExecutionQueueTimeHigh",
        "ExecutionFailureRateHigh",
        "ExecutionsStuck",
        "WorkerSpawnFailures",
        "WorkerHealthChecksFailing",
        "WorkerDrainSlow",
    } <= names
    recorded = {rule["name"] for rule in rules if rule["type"] == "recording"}
    for rule in rules:
        assert rule["health"] == "ok" and not rule["lastError"], (rule["name"], rule["lastError"])
        if rule["type"] == "alerting":  # a recorded signal (checked above for data) vs a bound
            assert re.match(r"[\w:]+", rule["query"])[0] in recorded, rule["query"]
    quiet = {
        rule["name"]: rule["state"]
        for rule in rules
        if rule["type"] == "alerting" and rule["name"] not in ACTIVE_ALERTS
    }
    assert set(quiet.values()) == {"inactive"}, quiet

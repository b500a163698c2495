"""The Grafana dashboard and the alert rules in ``dashboards/``, evaluated on VictoriaMetrics
(and by vmalert) over the data of a real run: every query must parse and return data.

The task panels and rules are also checked on Celery's data, with retries
(``tests/celery/test_celery_otlp.py``, with the helpers here).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from otlp_backends import OUR_LABEL_PREFIXES, ROOT, Stored, fetch_stored, poll, run_exporting
from support import EXAMPLES

pytestmark = pytest.mark.e2e

DASHBOARD = ROOT / "dashboards" / "grafana-execstatus.json"
# What Grafana puts in place of its variables when every pipeline and orchestrator is shown.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$pipeline": ".*", "$orchestrator": ".*"}
# The alerts the example's data must set off: its run fails, one spawn fails and one of its
# seven health checks fails. Nothing in it waits 5 minutes, drains slowly or gets stuck, and
# no attempt ends retrying (its hung job goes back to the queue: running -> queued).
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


def dashboard_queries() -> list[tuple[str, str]]:
    """Every panel's queries: ("<panel title> (<refId>)", expression)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} ({target['refId']})", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def in_grafana(expression: str) -> str:
    """``expression`` as Grafana sends it with every orchestrator and pipeline selected."""
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    assert "$" not in expression, f"unknown variable in {expression}"
    return expression


def active_alerts(stored: Stored, rules: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """The labels of the alerts set off (pending or firing) on ``stored``'s data, by alert:
    those whose own labels (pipeline, task, orchestrator, ...) the run's series carry. The
    rules see every run's data in the backends, and ``scripts/test`` runs the orchestrators'
    end-to-end tests on the same backends before these: an alert about another run's
    pipeline or task is not this run's."""
    found: dict[str, list[dict]] = {}
    for rule in rules:
        for alert in rule.get("alerts") or []:  # only alerting rules have alerts
            ours = [
                f'{key}="{value}"'
                for key, value in sorted(alert["labels"].items())
                if key.startswith(OUR_LABEL_PREFIXES)
            ]
            if alert["state"] != "inactive" and stored.backends.query(
                f"count({stored.selector(*ours)})"
            ):
                found.setdefault(rule["name"], []).append(alert["labels"])
    return found


@pytest.mark.parametrize(("panel", "expression"), dashboard_queries())
def test_every_panel_query_returns_data(stored, panel, expression):
    series = stored.backends.query(in_grafana(expression))
    assert series, f"{panel}: no data for {expression}"


def test_the_dashboard_is_grafana_json_with_its_variables(stored):
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "orchestrator", "pipeline"}
    for name in ("orchestrator", "pipeline"):
        query = in_grafana(variables[name]["query"]["query"])
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
        "ExecutionRetryRateHigh",
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
    alerts = active_alerts(stored, rules)
    assert set(alerts) == ACTIVE_ALERTS, alerts  # the others stay quiet on this run's data

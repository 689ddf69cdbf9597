"""deploy/grafana-dashboard.json: imports as it is (a datasource variable, no hard-wired source), and its queries
are valid PromQL on documented metrics that count two API replicas once."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_kit import DEPLOY, documented_metrics, metric_names, undocumented

BOARD = DEPLOY / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def board() -> dict[str, Any]:
    return dict(json.loads(BOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in board()["panels"] if p["type"] != "row"]


def exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board()["templating"]["list"]}


def as_promql(expr: str) -> str:
    """A panel's query as Prometheus sees it once Grafana has filled in its variables."""
    return expr.replace("$__rate_interval", "1m").replace("$job_type", ".*").replace("$job_name", ".*")


def test_the_datasource_is_a_variable_every_panel_and_query_uses() -> None:
    source = variables()["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
    assert "${DS_" not in BOARD.read_text() and '"uid": "prometheus"' not in BOARD.read_text()


def test_job_type_and_job_variables_come_from_the_metrics() -> None:
    for name, label in (("job_type", "job_type"), ("job_name", "job_name")):
        variable = variables()[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        match = re.fullmatch(r"label_values\((\w+)(\{.*\})?, (\w+)\)", variable["query"])
        assert match and match.group(3) == label, variable["query"]
        assert label in documented_metrics()[match.group(1)].labels
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"


def test_panels_filter_by_job_type_wherever_the_metric_has_one() -> None:
    documented = documented_metrics()
    for expr in exprs():
        if any("job_type" in documented[m].labels for m in metric_names(expr) if m in documented):
            assert 'job_type=~"$job_type"' in expr, expr
    assert any('job_name=~"$job_name"' in expr for expr in exprs())


def test_the_board_has_the_panels_operators_need() -> None:
    shown = {m for expr in exprs() for m in metric_names(expr)}
    assert {
        "scheduler_runs_total", "scheduler_fire_lag_seconds", "scheduler_start_lag_seconds", "scheduler_queue_depth",
        "scheduler_run_duration_seconds", "scheduler_broker_up", "scheduler_beat_leader", "scheduler_outbox_backlog",
        "scheduler_job_last_success_timestamp_seconds", "scheduler_http_requests_total",
    } <= shown


def test_the_board_uses_only_documented_metrics() -> None:
    assert undocumented(exprs()) == set()


def test_every_query_aggregates_so_replicas_are_not_counted_twice() -> None:
    # Per-process series (two API replicas, several pools) only ever appear summed, counted or reduced.
    for expr in exprs():
        assert re.match(r"(sum|max|min|count)\b|histogram_quantile\(|time\(\) - max\b", expr), expr


def test_the_layout_fits_the_grid_and_ids_are_unique() -> None:
    ids = [p["id"] for p in board()["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    for panel in panels():
        assert [t["refId"] for t in panel["targets"]] == [chr(65 + i) for i in range(len(panel["targets"]))]
    assert board()["uid"] == "billing-scheduler" and board()["id"] is None


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses each query as a recording rule's expression.
    rules = {"groups": [{"name": "board", "rules": [
        {"record": f"board:query_{i}", "expr": as_promql(expr)} for i, expr in enumerate(exprs())]}]}
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "board.yaml")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def panel_query(title: str) -> str:
    [panel] = [p for p in panels() if p["title"] == title]
    return as_promql(panel["targets"][0]["expr"])


@pytest.mark.parametrize(("title", "series", "expected"), [
    # Two API replicas serve 1 request/s each: the board shows 2/s, not 4 nor 1.
    ("API requests", [
        ('scheduler_http_requests_total{method="GET",route="/api/v1/runs",status="200",instance="api-a"}', "0+60x10"),
        ('scheduler_http_requests_total{method="GET",route="/api/v1/runs",status="200",instance="api-b"}', "0+60x10"),
    ], [('{route="/api/v1/runs",status="200"}', 2)]),
    # The leader serves the cluster-wide gauge, the standby serves none: 7 runs, counted once.
    ("Runs in status", [
        ('scheduler_runs_in_status{job_type="dunning",status="CREATED",instance="beat-a"}', "7x10"),
    ], [('{job_type="dunning",status="CREATED"}', 7)]),
    # Two beats, one leads.
    ("Beat leaders", [
        ('scheduler_beat_leader{instance="beat-a"}', "1x10"), ('scheduler_beat_leader{instance="beat-b"}', "0x10"),
    ], [("{}", 1)]),
])
def test_panels_count_replicas_once(promtool: str, tmp_path: Path, title: str,
                                    series: list[tuple[str, str]], expected: list[tuple[str, float]]) -> None:
    (tmp_path / "board.yaml").write_text(yaml.safe_dump(
        {"groups": [{"name": "board", "rules": [{"record": "board:panel", "expr": panel_query(title)}]}]}))
    (tmp_path / "board_test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["board.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
                   "promql_expr_test": [{"expr": "board:panel", "eval_time": "5m", "exp_samples": [
                       {"labels": f"board:panel{labels}", "value": value} for labels, value in expected]}]}],
    }))
    result = subprocess.run([promtool, "test", "rules", "board_test.yaml"], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

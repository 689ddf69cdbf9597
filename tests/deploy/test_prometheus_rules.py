"""deploy/prometheus-rules.yaml: checked and unit-tested by promtool, on documented metrics, each with a runbook."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml
from deploy_kit import DEPLOY, ROOT, metric_names, undocumented

RULES = DEPLOY / "prometheus-rules.yaml"
RULES_TEST = ROOT / "tests" / "deploy" / "rules_test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
ALERTS = {
    "SchedulerRunFailed", "SchedulerRunIncomplete", "SchedulerMissedTicks", "SchedulerJobOverdue",
    "SchedulerStaleRuns", "SchedulerNoBeatLeader", "SchedulerBrokerDown", "SchedulerQueueBacklog",
    "SchedulerOutboxBacklog",
}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """The anchors a Markdown renderer gives the headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True,
                            check=False, cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_broken_rule(promtool: str, tmp_path: Any) -> None:
    # The no-leader alert without `absent`: silent when no beat runs at all, which the unit test must catch.
    (tmp_path / "rules.yaml").write_text(RULES.read_text().replace(" or absent(scheduler_beat_leader)", ""))
    (tmp_path / "rules_test.yaml").write_text(
        RULES_TEST.read_text().replace("../../deploy/prometheus-rules.yaml", "rules.yaml"))
    result = subprocess.run([promtool, "test", "rules", "rules_test.yaml"], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert result.returncode == 1
    assert "alertname: SchedulerNoBeatLeader" in result.stdout + result.stderr


def test_every_alert_the_issue_names_exists() -> None:
    assert {rule["alert"] for rule in alert_rules()} == ALERTS


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case["exp_alerts"] for case in mine), f"{alert}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{alert}: no case where it stays silent"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_a_severity_a_summary_and_a_runbook_section(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]
    path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert path == "docs/runbook.md"
    assert anchor == rule["alert"].lower()
    assert anchor in github_anchors(RUNBOOK.read_text()), f"docs/runbook.md has no section #{anchor}"


def test_every_runbook_section_says_what_it_means_and_what_to_do() -> None:
    sections = re.split(r"^## ", RUNBOOK.read_text(), flags=re.M)[1:]
    assert {s.splitlines()[0] for s in sections} == ALERTS
    for section in sections:
        for part in ("**Means.**", "**Confirm.**", "**Do.**"):
            assert part in section, f"{section.splitlines()[0]}: {part} missing"


def test_the_rules_use_only_documented_metrics() -> None:
    exprs = [rule["expr"] for rule in alert_rules()]
    assert undocumented(exprs) == set()
    assert all(metric_names(expr) for expr in exprs)


def test_no_rule_uses_a_label_called_job_for_a_job() -> None:
    # Prometheus's `job` is the scrape job: a job is `job_name`.
    for rule in alert_rules():
        assert not re.search(r"\bjob\s*(=|!=|=~|!~)", rule["expr"]), rule["alert"]
        assert "$labels.job }}" not in str(rule["annotations"]), rule["alert"]

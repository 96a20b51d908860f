"""The pure core of `reliability check` / `reliability ci`: exit codes, reports, impact, contract breaks."""

from __future__ import annotations

import json

import pytest
from junitparser import Failure, JUnitXml

from reliability.ci.impact import change_impact, contract_breaks, impact_markdown
from reliability.ci.render import json_report, junit_xml, markdown_summary
from reliability.ci.results import CheckResult, exit_code, result_from_evaluation
from reliability.ci.runner import PartitionScope
from reliability.errors import ConfigError
from reliability.incidents.triage import AssetInfo, LineageGraph

PASSED = CheckResult("orders", "unique_orders_id", True, source="dbt")
WARNED = CheckResult(
    "orders",
    "soda_row_count",
    False,
    severity="warn",
    description="row count low",
    measured=3,
    threshold="must be greater than: 10",
    source="soda",
)
FAILED = CheckResult(
    "orders",
    "soda_amount_missing",
    False,
    description="amount missing",
    measured=2,
    threshold="must be: 0",
    failing_rows=tuple({"id": i, "amount": None} for i in range(30)),
    contract="contracts/orders.yml",
    source="soda",
)

SKIPPED = CheckResult("orders", "kafka_dlq_depth", False, skipped="runs only when its asset is materialized")


def test_exit_code_follows_fail_on():
    assert exit_code([PASSED]) == 0
    assert exit_code([PASSED, WARNED], "error") == 0
    assert exit_code([PASSED, WARNED], "warn") == 1
    assert exit_code([FAILED], "error") == 1
    with pytest.raises(ValueError, match="fail-on"):
        exit_code([PASSED], "info")


def test_dbt_and_soda_evaluations_become_results():
    dbt = result_from_evaluation(
        "orders",
        "unique_orders_id",
        False,
        "error",
        None,
        {"unique_id": "test.x", "status": "fail", "dagster_dbt/failed_row_count": 4},
    )
    assert (dbt.source, dbt.measured, dbt.threshold) == ("dbt", 4, "failing rows != 0")
    assert "4 failing row(s)" in dbt.description
    soda = result_from_evaluation(
        "orders",
        "soda_row_count",
        False,
        "warn",
        "low",
        {"soda_check": "checks.row_count", "measured_value": 3, "threshold": "> 10", "contract": "c.yml"},
        failing_rows=[{"a": 1}] * 25,
    )
    assert (soda.source, soda.status, soda.measured, soda.contract) == ("soda", "warn", 3, "c.yml")
    assert len(soda.failing_rows) == 20


def test_junit_has_one_case_per_check_and_failures_at_fail_on(tmp_path):
    path = tmp_path / "report.xml"
    path.write_text(junit_xml([PASSED, WARNED, FAILED, SKIPPED], "error"))
    suites = JUnitXml.fromfile(str(path))
    cases = {f"{case.classname}:{case.name}": case for suite in suites for case in suite}
    assert set(cases) == {PASSED.name, WARNED.name, FAILED.name, SKIPPED.name}
    assert cases[SKIPPED.name].is_skipped and exit_code([SKIPPED], "warn") == 0
    assert cases[PASSED.name].is_passed and cases[WARNED.name].is_passed  # a warning below --fail-on passes
    (failure,) = [r for r in cases[FAILED.name].result if isinstance(r, Failure)]
    assert failure.message == "amount missing"
    assert "measured value: 2" in failure.text and "threshold: must be: 0" in failure.text
    assert "contracts/orders.yml" in failure.text
    assert failure.text.count('"amount": null') == 20  # up to 20 failing rows
    path.write_text(junit_xml([PASSED, WARNED, FAILED], "warn"))
    assert not {f"{c.classname}:{c.name}": c for s in JUnitXml.fromfile(str(path)) for c in s}[WARNED.name].is_passed


def test_json_and_markdown_reports():
    body = json.loads(json_report([PASSED, FAILED], "error", 1, {"modified": ["orders"]}))
    assert body["summary"] == {
        "total": 2,
        "passed": 1,
        "failed": 1,
        "warn": 0,
        "skipped": 0,
        "fail_on": "error",
        "exit_code": 1,
    }
    assert body["checks"][0]["check"] == "soda_amount_missing" and body["modified"] == ["orders"]
    markdown = markdown_summary([PASSED, WARNED, FAILED], "error")
    assert "| ❌ | orders | soda_amount_missing | 2 | must be: 0 | amount missing |" in markdown
    assert "1 passed" in markdown


def test_partition_scope_is_a_usage_error_when_malformed():
    assert PartitionScope.parse(None, "2026-11-01...2026-11-07").range == ("2026-11-01", "2026-11-07")
    assert PartitionScope.parse("2026-11-01", None).key == "2026-11-01"
    with pytest.raises(ConfigError, match="partition-range"):
        PartitionScope.parse(None, "2026-11-01..2026-11-07")
    with pytest.raises(ConfigError, match="exclude"):
        PartitionScope.parse("2026-11-01", "2026-11-01...2026-11-02")


def test_impact_lists_tier1_first_with_owners_and_exposures():
    graph = LineageGraph(
        {"stg": ["mart_a", "mart_b"], "mart_a": ["dashboard"], "side": ["report_x"]},
        {
            "mart_a": AssetInfo(owners=("a@x",), tier=3),
            "mart_b": AssetInfo(owners=("b@x",), tier=1),
            "dashboard": AssetInfo(owners=("bi@x",), tier=2, kind="dashboard"),
            "side": AssetInfo(tier=3),
            "report_x": AssetInfo(tier=3, kind="report"),
        },
    )
    impacts = change_impact(graph, ["side", "stg"])
    assert [i.model for i in impacts] == ["stg", "side"]  # stg reaches tier 1
    assert [a.key for a in impacts[0].downstream] == ["mart_b", "dashboard", "mart_a"]
    assert impacts[0].radius.exposures == ("dashboard",)
    markdown = impact_markdown(impacts)
    assert markdown.index("`stg`") < markdown.index("`side`")
    assert "| tier1 | `mart_b` | asset | 1 | b@x |" in markdown


def test_contract_breaks_are_drops_and_retypes_of_required_columns():
    before = {"ID": "BIGINT", "amount": "DECIMAL(12,2)", "note": "VARCHAR"}
    after = {"id": "BIGINT", "amount": "VARCHAR", "extra": "INTEGER"}
    breaks = contract_breaks(
        "c.yml", "orders", ["id", "amount", "note", "never_there"], before, after, {"note": ["soda_note_missing"]}
    )
    assert [(b.column, b.after) for b in breaks] == [("amount", "VARCHAR"), ("note", None)]
    assert breaks[1].message == "contract c.yml requires orders.note: dropped (read by soda_note_missing)"
    assert (
        contract_breaks("c.yml", "orders", ["amount"], {"amount": "DECIMAL(12,2)"}, {"amount": "DECIMAL(18,3)"}) == []
    )

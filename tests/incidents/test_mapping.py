"""The pure event -> Detection mapping: fault class from check metadata, schema changes as one fault,
blocked assets, run failures that clear."""

from __future__ import annotations

import pytest

from reliability.incidents.mapping import (
    CheckEvent,
    EventBatch,
    RunFailureEvent,
    RunSuccessEvent,
    detections_from_events,
    fault_class_of,
)
from reliability.incidents.model import FaultClass, Source
from tests.incidents.conftest import T0, shop_graph

TS = T0.timestamp()


def check(name: str, storage_id: int, passed: bool = False, asset: str = "raw_orders", **metadata) -> CheckEvent:
    return CheckEvent(storage_id, "run-1", TS + storage_id, asset, name, passed, "ERROR", metadata=metadata)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"check_type": "duplicate"}, FaultClass.DUPLICATES),
        ({"check_type": "missing"}, FaultClass.MISSING_VALUES),
        ({"check_type": "schema"}, FaultClass.SCHEMA_CHANGE),
        ({"check_type": "row_count"}, FaultClass.VOLUME),
        ({"check_type": "freshness"}, FaultClass.FRESHNESS),
        ({"check_type": "consumer_lag"}, FaultClass.CONSUMER_LAG),
        ({"dbt_test": "unique"}, FaultClass.DUPLICATES),
        ({"dbt_test": "not_null"}, FaultClass.MISSING_VALUES),
        ({"dbt_test": "accepted_values"}, FaultClass.DATA_QUALITY),
        ({"dbt_test": "dbt_utils.unique_combination_of_columns"}, FaultClass.DUPLICATES),
        ({"dbt_test": "my_own_test"}, FaultClass.DATA_QUALITY),
        ({}, FaultClass.DATA_QUALITY),
    ],
)
def test_fault_class_comes_from_the_checks_own_metadata(metadata, expected):
    assert fault_class_of(metadata) == expected


def test_a_check_name_alone_says_nothing_about_the_fault():
    """A name that looks like a duplicate check is not one unless its metadata says so."""
    (d,) = detections_from_events(EventBatch(checks=[check("unique_but_really_a_range_check", 1)]))
    assert d.fault_class == FaultClass.DATA_QUALITY
    (d,) = detections_from_events(EventBatch(checks=[check("amount_ok", 1, check_type="duplicate")]))
    assert d.fault_class == FaultClass.DUPLICATES


def test_a_column_type_change_is_one_schema_detection_with_the_checks_it_made_impossible():
    change = [{"column": "amount", "old_type": "decimal(10,2)", "new_type": "VARCHAR"}]
    caused = {"not_evaluated_due_to": "soda_schema", "schema_changes": change}
    events = [
        check("soda_amount_missing", 1, check_type="missing", **caused),
        check("soda_amount_invalid", 2, check_type="invalid", **caused),
        check("soda_order_id_missing", 3, passed=True, check_type="missing"),
        check("soda_schema", 4, check_type="schema", schema_changes=change),
    ]
    detections = detections_from_events(EventBatch(checks=events))
    failing = [d for d in detections if not d.passed]
    assert len(failing) == 1
    (schema,) = failing
    assert schema.signal == "soda_schema" and schema.fault_class == FaultClass.SCHEMA_CHANGE
    assert schema.metadata["schema_changes"] == change
    assert schema.metadata["not_evaluated"] == ["soda_amount_missing", "soda_amount_invalid"]


def test_a_check_not_evaluated_without_its_cause_in_the_batch_still_reports_under_the_cause():
    events = [check("soda_amount_invalid", 2, check_type="invalid", not_evaluated_due_to="soda_schema")]
    (d,) = detections_from_events(EventBatch(checks=events))
    assert d.signal == "soda_schema" and d.fault_class == FaultClass.SCHEMA_CHANGE
    assert d.metadata["not_evaluated"] == ["soda_amount_invalid"]


def test_assets_not_built_behind_a_failed_blocking_check_are_blocked_not_failing():
    failure = RunFailureEvent(
        run_id="run-2", job_name="daily", timestamp=TS + 60, message="1 blocking asset check failed",
        failed_to_materialize=("fct_orders", "daily_revenue", "stg_payments"),
        failed_check_assets=("stg_orders",), blocking_failed_check_assets=("stg_orders",),
    )  # fmt: skip
    detections = detections_from_events(EventBatch(run_failures=[failure]), shop_graph())
    by_asset = {d.asset_key: d for d in detections}
    assert set(by_asset) == {"fct_orders", "daily_revenue", "stg_payments"}  # stg_orders: its check says it
    assert by_asset["fct_orders"].blocked_by == ("stg_orders",) and by_asset["daily_revenue"].blocked
    assert not by_asset["stg_payments"].blocked  # not downstream of the failed check: a failure of its own
    assert all(d.source == Source.RUN_FAILURE and d.signal == "run_failure" for d in detections)


def test_without_lineage_nothing_is_called_blocked():
    failure = RunFailureEvent("run-3", "daily", TS, "failed", failed_to_materialize=("fct_orders",),
                              blocking_failed_check_assets=("stg_orders",))  # fmt: skip
    (d,) = detections_from_events(EventBatch(run_failures=[failure]))
    assert d.asset_key == "fct_orders" and not d.blocked


def test_a_later_successful_build_clears_the_run_failure_signal():
    failure = RunFailureEvent("run-4", "daily", TS, "boom", failed_to_materialize=("mid",))
    success = RunSuccessEvent("run-5", TS + 600, materialized=("src", "mid"))
    failed, *passed = detections_from_events(EventBatch(run_failures=[failure], run_successes=[success]))
    assert not failed.passed and failed.signal_key == "mid::run_failure"
    assert [(d.signal_key, d.passed) for d in passed] == [("src::run_failure", True), ("mid::run_failure", True)]


def test_impact_start_is_unknown_without_a_checked_materialization():
    (d,) = detections_from_events(EventBatch(checks=[check("soda_schema", 1, check_type="schema")]))
    assert d.impact_started_at is None


def test_dbt_test_type_is_its_test_metadata_name():
    from reliability.dbt.defs import dbt_test_type

    assert dbt_test_type({"test_metadata": {"name": "unique", "namespace": None}}) == "unique"
    assert dbt_test_type({"test_metadata": {"name": "recency", "namespace": "dbt_utils"}}) == "dbt_utils.recency"
    assert dbt_test_type({"resource_type": "test"}) is None  # a singular test declares no type


def test_a_run_failure_carries_its_runs_partitions():
    failure = RunFailureEvent("run-6", "daily", TS, "boom", failed_to_materialize=("stg_orders", "fct_orders"),
                              blocking_failed_check_assets=("raw_orders",), partition_keys=("2026-11-22",))  # fmt: skip
    detections = detections_from_events(EventBatch(run_failures=[failure]), shop_graph())
    assert {d.asset_key: d.partitions for d in detections} == {
        "stg_orders": ("2026-11-22",), "fct_orders": ("2026-11-22",)
    }  # fmt: skip
    assert all(d.blocked_by == ("raw_orders",) for d in detections)

"""Pure pieces around the plan: the root's partitions from an incident, ranges, and the repair verdict."""

from __future__ import annotations

import pytest

from reliability.errors import UserFacingError
from reliability.reconciliation.plan import incident_root_partitions, partition_range
from reliability.reconciliation.verdict import CheckResult, judge

DAYS = ["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"]


def test_the_roots_partitions_come_from_the_incidents_blast_radius_and_detected_partitions():
    radius = {"assets": [{"asset_key": "raw_payments", "partitions": ["2026-02-02"]},
                         {"asset_key": "stg_payments", "partitions": ["2026-02-09"]}],
              "detected_partitions": {"raw_payments": ["2026-02-03"]}}  # fmt: skip
    assert incident_root_partitions(radius, "raw_payments") == ("2026-02-02", "2026-02-03")
    assert incident_root_partitions({"assets": [{"asset_key": "raw_payments", "partitions": ["<all>"]}]},
                                    "raw_payments") == ()  # fmt: skip


def test_a_partition_range_includes_both_ends_and_bad_ranges_name_the_value():
    assert partition_range(DAYS, "2026-02-02..2026-02-04") == ("2026-02-02", "2026-02-03", "2026-02-04")
    with pytest.raises(UserFacingError, match="'2026-03-01' is not a partition"):
        partition_range(DAYS, "2026-02-02..2026-03-01")
    with pytest.raises(UserFacingError, match="expected FIRST..LAST"):
        partition_range(DAYS, "2026-02-02")
    with pytest.raises(UserFacingError, match="2026-02-04 comes after 2026-02-02"):
        partition_range(DAYS, "2026-02-04..2026-02-02")


SIGNALS = ["raw_payments::soda_method_invalid", "stg_payments::run_failure"]


def test_repaired_when_the_backfill_succeeded_and_the_incidents_checks_passed_again():
    results = [CheckResult("raw_payments", "soda_method_invalid", False, "2026-02-02"),
               CheckResult("raw_payments", "soda_method_invalid", True, "2026-02-02"),
               CheckResult("fct_orders", "unique_fct_orders_order_id", True, "2026-02-02")]  # fmt: skip
    verdict = judge(SIGNALS, results, backfill_succeeded=True, backfill_status="COMPLETED_SUCCESS")
    assert verdict.repaired and not verdict.failing and not verdict.not_evaluated
    assert "every check of the incident passed" in verdict.summary()


def test_not_repaired_when_a_check_still_fails_or_was_not_evaluated_or_the_backfill_failed():
    failing = judge(SIGNALS, [CheckResult("raw_payments", "soda_method_invalid", False, "2026-02-02")], True,
                    "COMPLETED_SUCCESS")  # fmt: skip
    assert not failing.repaired and failing.failing == ("raw_payments::soda_method_invalid [2026-02-02]",)
    unseen = judge(SIGNALS, [CheckResult("fct_orders", "unique_fct_orders_order_id", True)], True, "COMPLETED_SUCCESS")
    assert not unseen.repaired and unseen.not_evaluated == ("raw_payments::soda_method_invalid",)
    assert "not evaluated by the backfill: raw_payments::soda_method_invalid" in unseen.summary()
    passed = [CheckResult("raw_payments", "soda_method_invalid", True)]
    assert not judge(SIGNALS, passed, False, "COMPLETED_FAILED").repaired


def test_the_options_name_the_roots_partitions_before_the_incident_and_not_both_at_once():
    from types import SimpleNamespace

    from reliability.reconciliation.service import root_partitions

    incident = SimpleNamespace(
        root_asset="raw_payments",
        blast_radius={"assets": [{"asset_key": "raw_payments", "partitions": ["2026-02-02"]}]},
    )
    assert root_partitions(incident, DAYS) == (("2026-02-02",), "incident")
    assert root_partitions(incident, DAYS, ["2026-02-04"]) == (("2026-02-04",), "--partition")
    assert root_partitions(incident, DAYS, (), "2026-02-01..2026-02-02") == (tuple(DAYS[:2]), "--partition-range")
    with pytest.raises(UserFacingError, match="not both"):
        root_partitions(incident, DAYS, ["2026-02-04"], "2026-02-01..2026-02-02")


def test_the_open_incident_status_check_is_no_evidence_either_way():
    """The status check fails in the repair's own runs because the incident is still open: ignored."""
    results = [CheckResult("raw_payments", "soda_method_invalid", True, "2026-02-02"),
               CheckResult("raw_payments", "open_incident", False, "2026-02-02"),
               CheckResult("stg_payments", "open_incident", False, "2026-02-02")]  # fmt: skip
    verdict = judge(["raw_payments::soda_method_invalid", "stg_payments::run_failure"], results,
                    backfill_succeeded=True, backfill_status="COMPLETED_SUCCESS")  # fmt: skip
    assert verdict.repaired and verdict.failing == () and verdict.not_evaluated == ()


def test_a_check_of_a_single_run_backfill_is_labelled_with_the_days_it_covered():
    from reliability.partitions import partition_label

    ranged = {"dagster/asset_partition_range_start": "2026-01-05", "dagster/asset_partition_range_end": "2026-01-09"}
    assert partition_label(ranged) == "2026-01-05..2026-01-09"
    one_day = {"dagster/asset_partition_range_start": "2026-01-05", "dagster/asset_partition_range_end": "2026-01-05"}
    assert partition_label(one_day) == "2026-01-05"
    assert partition_label({"dagster/partition": "2026-01-05"}) == "2026-01-05"
    assert partition_label({}) is None
    failing = CheckResult("stg_payments", "soda_method_invalid", False, partition_label(ranged))
    verdict = judge(["stg_payments::soda_method_invalid"], [failing], True, "COMPLETED_SUCCESS")
    assert verdict.failing == ("stg_payments::soda_method_invalid [2026-01-05..2026-01-09]",)

"""A backfill of N days is planned as one run per single-run asset group, not one run per day.

The daemon's own backfill iteration, in process, on the platform's real code location and a real
instance whose queued run coordinator only queues the runs (no daemon dequeues them): what it
submits is what the daemon would run first. The week through a real daemon, with the runs executed,
is `benchmarks/run.py backfill`; the reconciliation daemon test counts the runs of a repair."""

from __future__ import annotations

import sys
from datetime import date, timedelta

import dagster as dg
import pytest

from reliability.settings import get_settings
from tests.daemon_harness import in_process_workspace, submit_backfill

DAYS = [date(2026, 1, 5) + timedelta(days=i) for i in range(5)]
DAILY = {"raw_customers", "raw_payments", "stg_orders", "stg_customers", "stg_payments", "fct_orders", "daily_revenue"}
LOCATION = "tests.reconciliation.location"

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace_context(tmp_path, monkeypatch):
    """The reconciliation test's code location (the platform without automation), loaded in process."""
    monkeypatch.setenv("RELIABILITY_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    monkeypatch.setenv("RELIABILITY_PARTITIONS_START_DATE", "2026-01-01")
    get_settings.cache_clear()
    sys.modules.pop(LOCATION, None)  # the location reads the settings when it is imported
    queued = {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with (
        dg.instance_for_test(overrides=queued, temp_dir=str(tmp_path)) as instance,
        in_process_workspace(instance, LOCATION) as context,
    ):
        yield context
    sys.modules.pop(LOCATION, None)
    get_settings.cache_clear()


def test_a_backfill_of_days_runs_each_single_run_group_once(workspace_context):
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.daemon import get_default_daemon_logger

    instance = workspace_context.instance
    asset_graph = workspace_context.create_request_context().asset_graph
    # the raw and dbt groups, as an engineer selects them in the UI (raw_orders is fed by Kafka)
    keys = [k for k in asset_graph.materializable_asset_keys
            if asset_graph.get(k).group_name in ("raw", "dbt") and k.to_user_string() != "raw_orders"]  # fmt: skip
    assert {k.to_user_string() for k in keys} == {*DAILY, "customer_lifetime_value"}
    backfill_id = submit_backfill(instance, asset_graph, keys, DAYS, title="five days")

    list(execute_backfill_iteration(workspace_context, get_default_daemon_logger("BackfillDaemon")))

    runs = instance.get_runs(filters=dg.RunsFilter.for_backfill(backfill_id))
    # every daily asset (raw tables and dbt models, two op groups) in one run over the whole range; the
    # unpartitioned model waits for its parents, in a second run
    (run,) = runs
    assert {k.to_user_string() for k in run.asset_selection} == DAILY
    assert run.tags["dagster/asset_partition_range_start"] == DAYS[0].isoformat()
    assert run.tags["dagster/asset_partition_range_end"] == DAYS[-1].isoformat()
    assert run.status == dg.DagsterRunStatus.QUEUED

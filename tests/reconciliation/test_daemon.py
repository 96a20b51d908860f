"""A bad day of raw_payments repaired by a real `dagster-daemon`: reconcile submits one backfill, the
daemon runs it, the verification sensor judges the checks of the rebuilt partitions and resolves the
incident. Real DuckDB, dbt, Soda and Dagster; the incident comes from the real detection sensor."""

from __future__ import annotations

import shutil
from datetime import date

import dagster as dg
import duckdb
import pytest

from reliability.clock import utcnow
from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.store import IncidentStore
from reliability.reconciliation.backfill import backfill_outcome, backfill_target
from reliability.reconciliation.service import VERIFY_ACTION, reconcile
from reliability.shop.generator import ShopScale, generate
from tests.daemon_harness import REPO, running_daemon, wait_for, write_workspace
from tests.shop_harness import build, daily_selection, failed_checks, run, shop_settings

pytestmark = pytest.mark.slow

DAY = "2026-01-05"
PLANNED = {("raw_payments", DAY), ("stg_payments", DAY), ("fct_orders", DAY), ("daily_revenue", DAY),
           ("customer_lifetime_value", None)}  # fmt: skip
BAD_METHOD = f"update raw_payments set method = 'bitcoin' where payment_date = date '{DAY}'"


def test_the_daemon_rebuilds_exactly_the_plan_and_the_verified_incident_is_resolved(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    warehouse = tmp_path / "warehouse.duckdb"
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    env = {"DAGSTER_HOME": str(home), "RELIABILITY_WAREHOUSE": str(warehouse), "RELIABILITY_INCIDENT_STORE_URL": url,
           "SODA_CORE_TELEMETRY_ENABLED": "false", "DO_NOT_TRACK": "1"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    defs = build(shop_settings(tmp_path))
    instance = dg.DagsterInstance.get()

    # one clean day everywhere (orders bulk-loaded: the Kafka path is not this test's), then a bad payments day
    generate(str(warehouse), [date.fromisoformat(DAY)], ShopScale(), tables=("raw_orders",))
    assert run(defs, daily_selection(defs), instance, partition_key=DAY).success
    assert run(defs, dg.AssetSelection.assets("customer_lifetime_value"), instance).success
    with duckdb.connect(str(warehouse)) as con:
        con.execute(BAD_METHOD)
    soda = run(defs, dg.AssetSelection.checks_for_assets("raw_payments"), instance)
    assert "raw_payments:soda_method_invalid" in failed_checks(soda)
    build_incident_sensor(store_url=url)(dg.build_sensor_context(instance=instance, definitions=defs))
    with IncidentStore(url) as store:
        (incident,) = store.list_incidents()
        assert incident.root_asset == "raw_payments"
        # a check-only run has no partition, so the incident says "every partition": the day is given (--partition)
        result = reconcile(store, instance, defs.resolve_asset_graph(), incident.id, now=utcnow(), partitions=[DAY])
    assert result.partitions_from == "--partition"
    assert backfill_target(instance, result.backfill_id) == PLANNED

    workspace = write_workspace(tmp_path / "workspace.yaml", "tests.reconciliation.location")
    log = tmp_path / "daemon.log"
    with running_daemon(workspace, env, log):

        def verdict():  # noqa: ANN202
            with IncidentStore(url) as store:
                return [e for e in store.timeline(incident.id) if e.data.get("action") == VERIFY_ACTION]

        (entry, *_) = wait_for("the verification sensor to judge the reconciliation backfill", verdict, log)

    outcome = backfill_outcome(instance, result.backfill_id)
    assert outcome.succeeded, outcome.status
    assert outcome.materialized == PLANNED  # nothing else rebuilt: not stg_orders, not another day
    # as few runs as the backfill policies allow: the raw table and the daily dbt models of the day in
    # one run, then the unpartitioned model once its parents are in
    assert len(outcome.run_ids) == 2, outcome.run_ids
    assert entry.data["repaired"] is True, entry.message
    with IncidentStore(url) as store:
        resolved = store.get(incident.id)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw_payments where method = 'bitcoin'").fetchone()[0] == 0

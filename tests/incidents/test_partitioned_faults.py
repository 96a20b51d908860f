"""One fault injected into one day of a clean week: the check fails on that day's partition, one
incident opens with the right root and the day listed per asset, and clean days stay green.

Real generator, DuckDB file, dbt, Soda, Dagster instance (temp DAGSTER_HOME) and the real incident
sensor. See tests/shop_week.py for the week, the faults and the daily run.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.store import IncidentStore
from tests.shop_harness import build, daily_selection, failed_checks, run, shop_settings
from tests.shop_week import RAW, WEEK, clean_week, inject, run_day

pytestmark = pytest.mark.slow

DAY = WEEK[3]


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> Path:
    return clean_week(tmp_path_factory.mktemp("week") / "warehouse.duckdb")


@pytest.fixture
def shop(week: Path, tmp_path: Path, monkeypatch):
    """A private copy of the clean week, its definitions, a Dagster instance and an incident store."""
    shutil.copy(week, tmp_path / "warehouse.duckdb")
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    for name in ("RELIABILITY_SLACK_WEBHOOK_URL", "RELIABILITY_PAGERDUTY_ROUTING_KEY", "RELIABILITY_ALERTMANAGER_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        yield tmp_path / "warehouse.duckdb", build(shop_settings(tmp_path)), instance, url


def _detect(defs: dg.Definitions, instance: dg.DagsterInstance, url: str) -> list:
    sensor = build_incident_sensor(store_url=url)
    sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    with IncidentStore(url) as store:
        return [store.get(i.id) for i in store.list_incidents()]


def _partitions(incident) -> dict[str, list[str]]:
    return {a.asset_key: a.partitions for a in incident.assets if a.partitions}


def test_a_day_without_payments_fails_that_day_and_opens_one_incident(shop):
    warehouse, defs, instance, url = shop
    inject(warehouse, "missing_day", "raw_payments", DAY)

    broken = run_day(defs, instance, DAY)
    assert "raw_payments:soda_row_count" in broken.failed
    assert {c.split(":")[0] for c in broken.failed} == {"raw_payments"}
    (row_count,) = [e for e in broken.raw_checks.get_asset_check_evaluations() if e.check_name == "soda_row_count"
                    and e.asset_key == dg.AssetKey("raw_payments")]  # fmt: skip
    assert row_count.metadata["measured_value"].value == 0
    assert row_count.metadata["partition_keys"].value == [DAY.isoformat()]
    after = run_day(defs, instance, DAY + timedelta(days=1))
    assert after.green, after.failed

    (incident,) = _detect(defs, instance, url)
    assert incident.root_asset == "raw_payments"
    parts = _partitions(incident)
    day = [DAY.isoformat()]
    assert parts["raw_payments"] == day and parts["stg_payments"] == day
    assert parts["fct_orders"] == day and parts["daily_revenue"] == day
    assert incident.to_dict(full=True)["affected_partitions"]["raw_payments"] == day
    observed = instance.fetch_observations(dg.AssetKey("raw_payments"), limit=1).records
    assert observed and observed[0].asset_observation.metadata["incident_partitions"].value == day


def test_payments_re_sent_the_next_day_fail_that_day_and_open_one_incident(shop):
    warehouse, defs, instance, url = shop
    next_day = DAY + timedelta(days=1)
    clean = run_day(defs, instance, DAY)
    assert clean.green, clean.failed

    inject(warehouse, "resent_next_day", "raw_payments", DAY)  # the next day's batch repeats this day
    broken = run_day(defs, instance, next_day)
    # each day alone has unique ids: only the contract's whole-table duplicate check sees them
    assert broken.failed == {"raw_payments:soda_payment_id_duplicate"}
    (duplicate,) = [e for e in broken.raw_checks.get_asset_check_evaluations()
                    if e.check_name == "soda_payment_id_duplicate"]  # fmt: skip
    assert duplicate.metadata["partition_keys"].value == [next_day.isoformat()]
    assert duplicate.metadata["failing_rows_sample_size"].value > 0

    (incident,) = _detect(defs, instance, url)
    assert incident.root_asset == "raw_payments" and incident.fault_class == "duplicates"
    parts = _partitions(incident)
    assert parts["raw_payments"] == [next_day.isoformat()] and parts["fct_orders"] == [next_day.isoformat()]


def test_rebuilding_a_day_whose_batch_is_now_empty_leaves_no_stale_rows(shop):
    warehouse, defs, instance, _ = shop
    assert run_day(defs, instance, DAY).green
    with duckdb.connect(str(warehouse)) as con:
        built = con.execute("select payment_date, count(*) from stg_payments group by 1").fetchall()
    assert dict(built)[DAY] > 0

    inject(warehouse, "missing_day", "raw_payments", DAY)
    # rebuild the day's models on their own (no raw checks in front): the day must come out empty
    rebuilt = run(defs, daily_selection(defs) - RAW, instance, partition_key=DAY.isoformat())
    assert "stg_payments:soda_row_count" in failed_checks(rebuilt)
    with duckdb.connect(str(warehouse)) as con:
        left = con.execute("select count(*) from stg_payments where payment_date = ?", [DAY]).fetchone()[0]
        paid = con.execute("select sum(paid_amount) from fct_orders where order_date = ?", [DAY]).fetchone()[0]
        orders = con.execute("select count(*) from fct_orders where order_date = ?", [DAY]).fetchone()[0]
    assert left == 0 and paid == 0 and orders > 0

"""The monitors through Dagster on a real DuckDB warehouse: checks per fault class on the run's day,
"learning" on cold start, an anomaly opens an incident with its fault class, and the incident's day is
then left out of training (real Dagster instance, real incident store)."""

from __future__ import annotations

import dagster as dg
import duckdb

from reliability.anomaly import DAY_COLUMN_METADATA
from reliability.anomaly import defs as anomaly_area
from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.model import Status
from reliability.incidents.store import IncidentStore
from reliability.resources import daily_partitions
from reliability.shop.generator import PARTITION_COLUMN, write_partition
from tests.anomaly.shop_history import SCALE, judge_days, loaded_at, write_days
from tests.shop_harness import shop_settings

MONITORED = ("raw_orders", "raw_payments", "raw_customers")


def _check_run(defs: dg.Definitions, instance: dg.DagsterInstance, day: str) -> dict[str, dg.AssetCheckEvaluation]:
    """A run of the anomaly checks of every monitored asset on one day (the partition tag names it)."""
    result = dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=dg.AssetSelection.checks_for_assets(*[dg.AssetKey(a) for a in MONITORED]),
        tags={"dagster/partition": day}, instance=instance, raise_on_error=False,
    )  # fmt: skip
    assert result.success
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def test_monitors_as_checks_learn_flag_and_open_an_incident(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    for name in ("RELIABILITY_SLACK_WEBHOOK_URL", "RELIABILITY_PAGERDUTY_ROUTING_KEY", "RELIABILITY_ALERTMANAGER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = shop_settings(tmp_path)
    dates = write_days(settings.warehouse_path, 23, ("raw_orders", "raw_payments"))
    judge_days(settings.warehouse_path, dates[:22], ("raw_orders", "raw_payments"))  # what the daily checks built
    day = dates[22]
    with duckdb.connect(str(settings.warehouse_path)) as con:  # customers: first day ever, no history
        write_partition(con, "raw_customers", day, SCALE, loaded_at=loaded_at(day))
    partitions = daily_partitions(settings)
    specs = [  # DuckDB tables naming their day column, as the raw assets do
        dg.AssetSpec(a, partitions_def=partitions, kinds={"duckdb"},
                     metadata={DAY_COLUMN_METADATA: PARTITION_COLUMN[a]})
        for a in MONITORED
    ]  # fmt: skip
    defs = dg.Definitions.merge(
        dg.Definitions(assets=specs),
        anomaly_area.defs(settings, specs),  # the repo's assets file's anomaly section
    )
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        clean = _check_run(defs, instance, day.isoformat())
        assert {k for k, e in clean.items() if not e.passed} == set()
        volume = clean["raw_payments:anomaly_volume"].metadata
        assert volume["status"].value == "ok" and volume["check_type"].value == "anomaly_volume"
        assert volume["band_low"].value < volume["value"].value < volume["band_high"].value
        assert {"score", "expected", "monitor", "model"} <= set(volume)
        assert clean["raw_payments:anomaly_completeness"].metadata["monitor"].value == "ratio:raw_payments/raw_orders"
        cold = clean["raw_customers:anomaly_null_rate"]
        assert cold.passed and cold.metadata["status"].value == "learning" and "learning" in cold.description
        assert clean["raw_payments:anomaly_null_rate"].severity == dg.AssetCheckSeverity.WARN

        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute(
                "update raw_payments set method = null where payment_date = ? and hash(payment_id, 'pick') % 7 < 2",
                [day],
            )
        broken = _check_run(defs, instance, day.isoformat())
        assert {k for k, e in broken.items() if not e.passed} == {"raw_payments:anomaly_null_rate"}
        nulls = broken["raw_payments:anomaly_null_rate"].metadata
        assert nulls["status"].value == "anomaly" and nulls["monitor"].value == "null_fraction:method"
        assert nulls["value"].value > nulls["band_high"].value and nulls["partition_keys"].value == [day.isoformat()]

        build_incident_sensor(store_url=url)(dg.build_sensor_context(instance=instance, definitions=defs))
        with IncidentStore(url) as store:
            (incident,) = store.list_incidents()
            assert (incident.fault_class, incident.root_asset) == ("null_rate", "raw_payments")
            for status in (Status.ACKNOWLEDGED, Status.MITIGATED, Status.RESOLVED):
                store.transition(incident.id, status, actor="test")
        excluded, note = anomaly_area.excluded_days("raw_payments")
        assert excluded == {day} and note is None  # resolved: its day is still never learned as normal

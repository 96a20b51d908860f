"""The Dagster instance on a real PostgreSQL server records runs and check results."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from reliability.shop.generator import ShopScale, generate
from tests.shop_harness import DAY, build, daily_selection, failed_checks, passed_checks, run, shop_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_instance_on_postgres_records_runs_and_checks(postgres_server, tmp_path, monkeypatch):
    database = "dagster_instance"
    url = postgres_server.create_database(database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.postgres.yaml", home / "dagster.yaml")
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres_server.port),
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": database,
    }.items():
        monkeypatch.setenv(name, value)

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        settings = shop_settings(tmp_path)
        # orders bulk-loaded by the generator (the Kafka path has its own tests); the rest through Dagster
        generate(str(settings.warehouse_path), [date.fromisoformat(DAY)], ShopScale(), tables=("raw_orders",))
        defs = build(settings)
        result = run(defs, daily_selection(defs), instance, partition_key=DAY)
        assert result.success
        assert "stg_orders:unique_stg_orders_order_id" in passed_checks(result)
        assert failed_checks(result) == set()

        record = instance.get_run_record_by_id(result.run_id)
        assert record is not None and record.dagster_run.is_success
        check_key = dg.AssetCheckKey(dg.AssetKey("stg_orders"), "unique_stg_orders_order_id")
        execution = instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key])[check_key]
        assert execution.run_id == result.run_id
        assert execution.status.value == "SUCCEEDED"
    finally:
        instance.dispose()

    # The rows really live in PostgreSQL.
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("select count(*) from runs")).scalar()
        checks = conn.execute(
            sa.text(
                "select count(distinct run_id) from asset_check_executions"
                " where check_name = 'unique_stg_orders_order_id'"
            )
        ).scalar()
    assert runs == 1
    assert checks == 1

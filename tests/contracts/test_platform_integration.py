"""The Soda contract checks inside the whole platform: real generator, real dbt, real Dagster."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.definitions import build_definitions
from reliability.settings import load_settings
from reliability.shop.generator import ShopScale, generate

DAY = "2026-11-20"
RAW = ("raw_orders", "raw_customers", "raw_payments")


def _defs(folder: Path) -> dg.Definitions:
    return build_definitions(load_settings(environ={"RELIABILITY_WAREHOUSE": str(folder / "warehouse.duckdb")}))


def _run(
    defs: dg.Definitions, selection: dg.AssetSelection, partition_key: str | None = DAY
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        partition_key=partition_key,
        instance=dg.DagsterInstance.ephemeral(),
        resources=defs.resources,
        raise_on_error=False,
    )


def _daily_without_raw(defs: dg.Definitions) -> dg.AssetSelection:
    graph = defs.resolve_asset_graph()
    daily = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is not None]
    return dg.AssetSelection.assets(*daily) - dg.AssetSelection.assets(*RAW)


def _soda(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
        if e.check_name.startswith("soda_")
    }


def _raw_soda_checks(defs: dg.Definitions) -> dg.AssetSelection:
    keys = defs.resolve_asset_graph().asset_check_keys
    return dg.AssetSelection.checks(
        *[k for k in keys if k.asset_key.to_user_string() in RAW and k.name.startswith("soda_")]
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Path:
    """One day of raw data (customers and payments through Dagster, orders bulk-loaded by the generator:
    in the platform they arrive through Kafka), with the raw contracts checked."""
    folder = tmp_path_factory.mktemp("platform")
    defs = _defs(folder)
    assert _run(defs, dg.AssetSelection.assets("raw_customers", "raw_payments")).success
    generate(str(folder / "warehouse.duckdb"), [date.fromisoformat(DAY)], ShopScale(), tables=("raw_orders",))
    result = _run(defs, _raw_soda_checks(defs), partition_key=None)  # checks read whole tables
    assert result.success
    soda = _soda(result)
    assert {asset for asset, _ in soda} == set(RAW) and all(soda.values())
    return folder


def test_every_contract_check_passes_on_the_real_pipeline(loaded: Path, tmp_path: Path) -> None:
    shutil.copy(loaded / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    defs = _defs(tmp_path)
    result = _run(defs, _daily_without_raw(defs))
    assert result.success
    soda = _soda(result)
    assert {asset for asset, _ in soda} == {"stg_orders", "stg_customers", "stg_payments"}
    assert all(soda.values()), [k for k, ok in soda.items() if not ok]


def test_a_failing_raw_contract_check_stops_dbt_in_the_same_run(loaded: Path, tmp_path: Path) -> None:
    shutil.copy(loaded / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute(
            "insert into raw_orders select * from raw_orders where order_id = (select min(order_id) from raw_orders)"
        )
    defs = _defs(tmp_path)
    selection = _daily_without_raw(defs) | _raw_soda_checks(defs)
    result = _run(defs, selection)
    assert not result.success
    assert [k for k, ok in _soda(result).items() if not ok] == [("raw_orders", "soda_order_id_duplicate")]
    assert result.get_asset_materialization_events() == []

"""Soda contracts run as Dagster asset checks on a real DuckDB warehouse (real Soda, real Dagster)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.contracts.defs import defs
from tests.contracts.conftest import CONTRACTS_DIR, TABLES
from tests.contracts.warehouse import execute


def _failing(results: dict) -> set[tuple[str, str]]:
    return {key for key, evaluation in results.items() if not evaluation.passed}


def test_clean_data_passes_every_check(warehouse: Path, run_checks) -> None:
    definitions = defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse)
    results = run_checks(definitions)
    expected = {(k.asset_key.path[-1], k.name) for c in definitions.asset_checks for k in c.check_keys}
    assert set(results) == expected
    assert {asset for asset, _ in results} == set(TABLES)
    assert _failing(results) == set()
    row_count = results[("raw_orders", "soda_row_count")].metadata
    assert row_count["measured_value"].value == 200
    assert "must be greater than: 0" in row_count["threshold"].value
    assert row_count["contract"].value.endswith("raw_orders.yml")


FAULTS = [
    pytest.param(
        ["insert into raw_orders select * from raw_orders where order_id in (5, 6)"],
        {("raw_orders", "soda_order_id_duplicate")},
        id="duplicate-ids",
    ),
    pytest.param(
        ["update raw_orders set customer_id = null where order_id in (1, 2, 3)"],
        {("raw_orders", "soda_customer_id_missing")},
        id="nulls",
    ),
    pytest.param(
        ["update raw_orders set status = 'lost' where order_id = 7"],
        {("raw_orders", "soda_status_invalid")},
        id="invalid-status",
    ),
    pytest.param(
        ["alter table raw_payments drop column method"],
        {
            ("raw_payments", "soda_schema"),
            ("raw_payments", "soda_method_missing"),
            ("raw_payments", "soda_method_invalid"),
        },
        id="dropped-column",
    ),
    pytest.param(
        ["update raw_customers set _loaded_at = _loaded_at - interval 3 day"],
        {("raw_customers", "soda_freshness")},
        id="stale-load",
    ),
    pytest.param(
        ["update raw_orders set amount = -12.50 where order_id = 9"],
        {("raw_orders", "soda_amount_invalid")},
        id="negative-amount",
    ),
    pytest.param(
        ["update stg_customers set email = 'not-an-email' where customer_id = 4"],
        {("stg_customers", "soda_email_invalid")},
        id="bad-email-format",
    ),
    pytest.param(
        ["update stg_payments set order_id = 999999 where payment_id = (select min(payment_id) from stg_payments)"],
        {("stg_payments", "soda_order_id_invalid")},
        id="broken-foreign-key",
    ),
    pytest.param(
        ["delete from stg_payments"],
        {("stg_payments", "soda_row_count"), ("stg_payments", "soda_freshness")},
        id="empty-table",
    ),
]


@pytest.mark.parametrize(("statements", "expected"), FAULTS)
def test_each_fault_fails_exactly_its_check(warehouse: Path, run_checks, statements, expected) -> None:
    execute(warehouse, *statements)
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse))
    assert _failing(results) == expected
    for key in expected:
        assert results[key].severity == dg.AssetCheckSeverity.ERROR or key[1] == "soda_freshness"


def test_failing_rows_sample_is_bounded_and_names_the_rows(warehouse: Path, run_checks) -> None:
    execute(warehouse, "update raw_orders set customer_id = null where order_id <= 50")
    execute(warehouse, "insert into raw_orders select * from raw_orders where order_id in (111, 112)")
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse), ("raw_orders",))
    missing = results[("raw_orders", "soda_customer_id_missing")]
    assert missing.metadata["measured_value"].value == 50
    assert missing.metadata["failing_rows_sample_size"].value == 20
    rows = missing.metadata["failing_rows_sample"].value.records
    assert len(rows) == 20 and all(r.data["customer_id"] == "" for r in rows)
    duplicate = results[("raw_orders", "soda_order_id_duplicate")]
    assert duplicate.metadata["measured_value"].value == 2
    dup_rows = duplicate.metadata["failing_rows_sample"].value.records
    assert sorted((r.data["order_id"], r.data["duplicate_rows"]) for r in dup_rows) == [(111, 2), (112, 2)]


def test_schema_failure_names_the_missing_column(warehouse: Path, run_checks) -> None:
    execute(
        warehouse,
        "alter table raw_orders drop column status",
        "alter table raw_orders add column note varchar",
    )
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse), ("raw_orders",))
    schema = results[("raw_orders", "soda_schema")]
    assert not schema.passed
    assert list(schema.metadata["missing_columns"].value) == ["status"]
    assert list(schema.metadata["unexpected_columns"].value) == ["note"]
    invalid = results[("raw_orders", "soda_status_invalid")]
    assert "raw_orders.yml" in invalid.description and "'status'" in invalid.description


def test_a_late_load_warns_before_it_fails(warehouse: Path, run_checks) -> None:
    execute(warehouse, "update raw_orders set _loaded_at = _loaded_at - interval 1530 minute")  # 25.5 hours
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse), ("raw_orders",))
    assert {k for k, e in results.items() if not e.passed} == {("raw_orders", "soda_freshness")}
    freshness = results[("raw_orders", "soda_freshness")]
    assert freshness.severity == dg.AssetCheckSeverity.WARN
    assert "must be less than: 25" in freshness.metadata["threshold"].value
    execute(warehouse, "update raw_orders set _loaded_at = _loaded_at - interval 1 hour")  # 26.5 hours
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse), ("raw_orders",))
    assert results[("raw_orders", "soda_freshness")].severity == dg.AssetCheckSeverity.ERROR


def test_stale_business_dates_in_staging_only_warn(warehouse: Path, run_checks) -> None:
    execute(warehouse, "update stg_orders set ordered_at = ordered_at - interval 10 day")
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse), ("stg_orders",))
    assert _failing(results) == {("stg_orders", "soda_freshness")}
    freshness = results[("stg_orders", "soda_freshness")]
    assert freshness.severity == dg.AssetCheckSeverity.WARN
    assert freshness.metadata["measured_value"].value > 9
    assert "latest_value" in freshness.metadata


def test_partitioned_run_measures_business_freshness_at_the_partition_end(warehouse: Path) -> None:
    execute(warehouse, "update stg_orders set ordered_at = ordered_at - interval 10 day, order_date = order_date - 10")
    old_day = (date.today() - timedelta(days=10)).isoformat()
    checks = [
        c
        for c in defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse).asset_checks
        if any(k.asset_key == dg.AssetKey("stg_orders") for k in c.check_keys)
    ]

    @dg.asset(name="stg_orders", partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def stg_orders() -> None:
        return None  # the table is already there; the run only carries the partition

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([stg_orders, *checks], partition_key=old_day, instance=instance)
    freshness = next(e for e in result.get_asset_check_evaluations() if e.check_name == "soda_freshness")
    assert freshness.passed
    expected_end = (date.today() - timedelta(days=9)).isoformat()
    assert freshness.metadata["partition_end"].value.startswith(expected_end)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_missing_table_fails_its_checks_with_the_reason(warehouse: Path, run_checks) -> None:
    execute(warehouse, "drop table raw_payments")
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse))
    failing = _failing(results)
    assert failing and {asset for asset, _ in failing} == {"raw_payments"}
    assert all("does not exist" in results[k].description for k in failing)


def test_a_failing_blocking_check_stops_downstream_in_the_same_run(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    from tests.contracts.warehouse import build_clean_warehouse

    build_clean_warehouse(warehouse)
    contract_checks = [
        c
        for c in defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse).asset_checks
        if any(k.asset_key == dg.AssetKey("raw_orders") for k in c.check_keys)
    ]

    def graph(bad: bool):
        @dg.asset(name="raw_orders", pool="duckdb")
        def raw_orders() -> None:
            if bad:
                execute(warehouse, "update raw_orders set status = 'lost' where order_id = 1")

        @dg.asset(deps=[raw_orders])
        def order_report() -> None:
            return None

        return [raw_orders, order_report, *contract_checks]

    with dg.DagsterInstance.ephemeral() as instance:
        good = dg.materialize(graph(bad=False), instance=instance, raise_on_error=False)
        assert good.success
        assert dg.AssetKey("order_report") in {
            m.asset_key
            for m in good.get_asset_materialization_events()
            for m in [m.event_specific_data.materialization]
        }
        bad = dg.materialize(graph(bad=True), instance=instance, raise_on_error=False)
    assert not bad.success
    materialized = {e.event_specific_data.materialization.asset_key for e in bad.get_asset_materialization_events()}
    assert materialized == {dg.AssetKey("raw_orders")}
    assert [e.check_name for e in bad.get_asset_check_evaluations() if not e.passed] == ["soda_status_invalid"]


HOSTILE = "we'ird; drop table t;--"
HOSTILE_CONTRACT = """\
dataset: warehouse/main/odd_table
columns:
  - name: id
    data_type: bigint
    checks:
      - duplicate:
  - name: "we'ird; drop table t;--"
    checks:
      - missing:
      - invalid:
          valid_values: ["O'Brien"]
checks:
  - schema:
"""


def test_hostile_names_are_quoted_end_to_end(tmp_path: Path, run_checks) -> None:
    warehouse = tmp_path / "w.duckdb"
    column = '"' + HOSTILE.replace('"', '""') + '"'
    execute(
        warehouse,
        f"""create table odd_table as select * from (values (1, 'O''Brien'), (2, null), (3, 'x')) v(id, {column})""",
    )
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "odd.yml").write_text(HOSTILE_CONTRACT)
    (folder / "quoted.yml").write_text(
        "dataset: w/main/t2\ncolumns:\n  - name: 'a\"b'\n    checks:\n      - missing:\n"
    )
    (folder / "spaced.yml").write_text(
        "dataset: w/main/my table\ncolumns:\n  - name: a\n    checks:\n      - missing:\n"
    )
    results = run_checks(defs(contracts_dir=folder, warehouse_path=warehouse), None)
    spaced = [e for (asset, _), e in results.items() if asset.startswith("my_table_")]
    assert len(spaced) == 1 and "cannot be a Dagster asset key" in spaced[0].description
    assert "double quote" in results[("t2", "soda_contract_valid")].description
    failing = {name: e for (asset, name), e in results.items() if not e.passed and asset == "odd_table"}
    invalid, missing = sorted(failing)
    assert missing.startswith("soda_we_ird_drop_table_t_") and missing.endswith("_missing")
    assert invalid.endswith("_invalid")
    assert [r.data["id"] for r in failing[missing].metadata["failing_rows_sample"].value.records] == [2]
    assert [r.data[HOSTILE] for r in failing[invalid].metadata["failing_rows_sample"].value.records] == ["x"]
    assert results[("odd_table", "soda_id_duplicate")].passed and results[("odd_table", "soda_schema")].passed
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from odd_table").fetchone()[0] == 3


def test_a_single_selected_check_runs_alone(warehouse: Path) -> None:
    execute(warehouse, "update raw_orders set status = 'lost' where order_id = 2")
    checks = defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse).asset_checks
    key = dg.AssetCheckKey(dg.AssetKey("raw_orders"), "soda_status_invalid")
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [*(dg.AssetSpec(t) for t in TABLES), *checks],
            selection=dg.AssetSelection.checks(key),
            instance=instance,
            raise_on_error=False,
        )
    evaluations = result.get_asset_check_evaluations()
    assert [(e.asset_check_key, e.passed) for e in evaluations] == [(key, False)]
    assert evaluations[0].metadata["failing_rows_sample"].value.records[0].data["order_id"] == 2


FIXED_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # the clean warehouse holds 2026-11-18 .. 2026-11-20


def _stg_orders_checks_for(warehouse: Path, day: str) -> dict[str, dg.AssetCheckEvaluation]:
    """The stg_orders contract checked in a run of one daily partition (the model is not rebuilt)."""
    checks = [
        c
        for c in defs(contracts_dir=CONTRACTS_DIR, warehouse_path=warehouse).asset_checks
        if any(k.asset_key == dg.AssetKey("stg_orders") for k in c.check_keys)
    ]

    @dg.asset(name="stg_orders", partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def stg_orders() -> None:
        return None

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([stg_orders, *checks], partition_key=day, instance=instance, raise_on_error=False)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_partitioned_run_checks_only_its_day(tmp_path: Path) -> None:
    from tests.contracts.warehouse import build_clean_warehouse

    warehouse = build_clean_warehouse(tmp_path / "w.duckdb", now=FIXED_NOW)
    clean = _stg_orders_checks_for(warehouse, "2026-11-19")
    assert [name for name, e in clean.items() if not e.passed] == []
    day_rows = clean["soda_row_count"].metadata
    assert 0 < day_rows["measured_value"].value < 200  # one of three days, not the whole table
    assert day_rows["checked_rows"].value == "partition window [2026-11-19, 2026-11-20)"
    assert day_rows["partition_keys"].value == ["2026-11-19"]
    assert clean["soda_order_id_duplicate"].metadata["checked_rows"].value == "whole table"

    empty = _stg_orders_checks_for(warehouse, "2026-11-10")  # rows exist on other days, none on this one
    assert not empty["soda_row_count"].passed
    assert empty["soda_row_count"].metadata["measured_value"].value == 0
    assert empty["soda_row_count"].metadata["partition_keys"].value == ["2026-11-10"]
    assert empty["soda_order_id_duplicate"].passed and empty["soda_schema"].passed


def test_a_whole_table_check_sees_ids_re_sent_on_the_next_day(tmp_path: Path) -> None:
    from tests.contracts.warehouse import build_clean_warehouse

    warehouse = build_clean_warehouse(tmp_path / "w.duckdb", now=FIXED_NOW)
    execute(
        warehouse,
        "insert into stg_orders select order_id, customer_id, date '2026-11-19', ordered_at + interval 1 day,"
        " status, amount from stg_orders where order_date = date '2026-11-18' and order_id < 20",
    )
    results = _stg_orders_checks_for(warehouse, "2026-11-19")
    assert {name for name, e in results.items() if not e.passed} == {"soda_order_id_duplicate"}
    duplicate = results["soda_order_id_duplicate"].metadata
    assert duplicate["partition_keys"].value == ["2026-11-19"]
    assert duplicate["failing_rows_sample_size"].value > 0


def test_rows_dated_outside_every_partition_are_flagged(tmp_path: Path, run_checks) -> None:
    from reliability.clock import utcnow
    from reliability.settings import load_settings
    from tests.contracts.warehouse import build_clean_warehouse

    now = utcnow()
    warehouse = build_clean_warehouse(tmp_path / "warehouse.duckdb", now=now)
    first_day = now.date() - timedelta(days=2)  # the clean warehouse's orders span the last three days
    settings = load_settings(environ={
        "RELIABILITY_WAREHOUSE": str(warehouse), "RELIABILITY_CONTRACTS_DIR": str(CONTRACTS_DIR),
        "RELIABILITY_PARTITIONS_START_DATE": first_day.isoformat(),
    })  # fmt: skip
    check = ("raw_orders", "soda_failed_rows_outside_partitions")
    assert run_checks(defs(settings), ("raw_orders",))[check].passed
    # one order two years ahead (as a producer with a wrong clock or id scheme makes), one before the data
    far_ahead, before = now.date() + timedelta(days=730), first_day - timedelta(days=1)
    execute(
        warehouse,
        f"update raw_orders set order_date = date '{far_ahead.isoformat()}' where order_id = 1",
        f"update raw_orders set order_date = date '{before.isoformat()}' where order_id = 2",
    )
    results = run_checks(defs(settings), ("raw_orders",))
    flagged = results[check]
    assert not flagged.passed and flagged.severity == dg.AssetCheckSeverity.WARN
    assert flagged.metadata["measured_value"].value == 2, flagged.metadata
    assert not {name for (_, name), e in results.items() if not e.passed} - {check[1]}  # nothing else fails

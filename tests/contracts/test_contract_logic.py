"""Pure parts of the contract checks: parsing, naming, policy, SQL for samples, result mapping."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from reliability.contracts import sql
from reliability.contracts.evaluate import (
    SodaRecord,
    outcome_from_soda,
    partition_end,
    schema_diff,
    window_variables,
)
from reliability.contracts.runner import check_variables
from reliability.contracts.spec import (
    BrokenContract,
    ContractProblem,
    ContractSpec,
    check_name,
    discover_contracts,
    load_contract,
    parse_contract,
    substitute_variables,
)
from reliability.partitions import partition_keys, partition_window
from tests.contracts.conftest import CONTRACTS_DIR, TABLES

P = Path("c.yml")


def test_repo_contracts_cover_every_raw_and_staging_table() -> None:
    contracts = discover_contracts(CONTRACTS_DIR)
    assert all(isinstance(c, ContractSpec) for c in contracts)
    assert sorted(c.asset_name for c in contracts) == sorted(TABLES)
    kinds = {c.asset_name: {s.kind for s in c.checks} for c in contracts}
    for table in TABLES:
        assert {"schema", "row_count", "missing", "duplicate", "invalid", "freshness"} <= kinds[table], table


def test_raw_orders_check_names_are_stable() -> None:
    contract = load_contract(CONTRACTS_DIR / "raw_orders.yml")
    assert isinstance(contract, ContractSpec)
    assert [c.name for c in contract.checks] == [
        "soda_order_id_missing",
        "soda_order_id_duplicate",
        "soda_customer_id_missing",
        "soda_order_date_missing",
        "soda_ordered_at_missing",
        "soda_status_missing",
        "soda_status_invalid",
        "soda_amount_missing",
        "soda_amount_invalid",
        "soda_schema",
        "soda_failed_rows_outside_partitions",
        "soda_row_count",
        "soda_freshness",
    ]
    outside = "soda_failed_rows_outside_partitions"  # flags rows no partition holds: warns, never blocks
    assert all(c.blocking and c.severity == "error" for c in contract.checks if c.name != outside)
    (flag,) = [c for c in contract.checks if c.name == outside]
    assert not flag.blocking and flag.severity == "warn"


def test_staging_business_freshness_is_a_non_blocking_warning() -> None:
    contract = load_contract(CONTRACTS_DIR / "stg_orders.yml")
    assert isinstance(contract, ContractSpec)
    freshness = next(c for c in contract.checks if c.kind == "freshness")
    assert (freshness.severity, freshness.blocking) == ("warn", False)
    assert all(c.blocking for c in contract.checks if c.kind != "freshness")


def test_attributes_override_policy() -> None:
    contract = parse_contract(
        P,
        """
dataset: ds/main/t
check_attributes: {dagster_blocking: false}
columns:
  - name: a
    checks:
      - missing:
          attributes: {dagster_severity: warn}
      - duplicate:
""",
    )
    policy = {c.name: (c.severity, c.blocking) for c in contract.checks}
    assert policy == {"soda_a_missing": ("warn", False), "soda_a_duplicate": ("error", False)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset: [", "not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("dataset: t\ncolumns: []\n", "must look like"),
        ("dataset: ds/main/t\n", "'columns' must be a list"),
        ("dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - missing\n", "needs a colon"),
        (
            "dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - uniq:\n",
            "unknown check type 'uniq'",
        ),
        ("dataset: ds/main/t\ncolumns:\n  - name: a\n  - name: a\n", "declared twice"),
        (
            "dataset: ds/main/t\ncolumns:\n  - name: a\nchecks:\n  - duplicate:\n      columns: [a, b]\n",
            "'b'",
        ),
        ("dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - invalid:\n", "valid_*"),
        (
            "dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - missing:\n      - missing:\n",
            "qualifier",
        ),
        (
            "dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - missing:\n"
            "          attributes: {dagster_severity: fatal}\n",
            "dagster_severity",
        ),
        ("dataset: ds/main/t\ncolumns:\n  - name: a\n", "no checks"),
        (
            "dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - duplicate:\n"
            "          attributes: {dagster_whole_table: sometimes}\n",
            "dagster_whole_table must be true or false, got 'sometimes'",
        ),
        (
            "dataset: ds/main/t\nfilter: a > '${var.LOW}'\ncolumns:\n  - name: a\n    checks:\n      - missing:\n",
            "'filter' uses variable 'LOW', which is not declared",
        ),
        (
            "dataset: ds/main/t\nvariables:\n  PARTITION_WINDOW_START:\n    default: x\n"
            "filter: a >= '${var.PARTITION_WINDOW_START}'\ncolumns:\n  - name: a\n    checks:\n      - missing:\n",
            "must use both PARTITION_WINDOW_START and PARTITION_WINDOW_END",
        ),
        (
            "dataset: ds/main/t\nvariables:\n  LOW: 3\ncolumns:\n  - name: a\n    checks:\n      - missing:\n",
            "variable 'LOW' must be a mapping",
        ),
    ],
)
def test_contract_problems_are_named(text: str, message: str) -> None:
    with pytest.raises(ContractProblem) as info:
        parse_contract(P, text)
    assert message in str(info.value)


def test_broken_contract_targets_its_dataset_or_file_name(tmp_path: Path) -> None:
    (tmp_path / "orders.yml").write_text("dataset: wh/main/raw_orders\ncolumns: [\n")
    (tmp_path / "junk.yaml").write_text(":::\n- [")
    broken = {c.path.name: c for c in discover_contracts(tmp_path)}
    assert isinstance(broken["orders.yml"], BrokenContract)
    assert broken["orders.yml"].asset_name == "raw_orders"
    assert broken["junk.yaml"].asset_name == "junk"
    assert "orders.yml" in broken["orders.yml"].message


def test_clashing_contracts_make_the_later_file_broken(tmp_path: Path) -> None:
    text = "dataset: wh/main/t\ncolumns:\n  - name: a\n    checks:\n      - missing:\n"
    (tmp_path / "a.yml").write_text(text)
    (tmp_path / "b.yml").write_text(text)
    first, second = discover_contracts(tmp_path)
    assert isinstance(first, ContractSpec)
    assert isinstance(second, BrokenContract) and "a.yml" in second.problem


def test_hostile_column_names_give_valid_distinct_check_names() -> None:
    names = {check_name("missing", c, None) for c in ['we"ird; drop table x;--', "a-b", "a_b", "a b"]}
    assert len(names) == 4
    assert all(n.replace("_", "").isalnum() for n in names)
    assert check_name("invalid", "status", "strict") == "soda_status_invalid_strict"


def test_sample_queries_quote_names_and_bind_values() -> None:
    hostile = 'we"ird; drop table t;--'
    con = duckdb.connect()
    table = sql.quote_ident('my "t"')
    con.execute(f"create table {table} ({sql.quote_ident(hostile)} varchar, n int)")
    con.execute(f"insert into {table} values ('ok', 1), ('O''Brien', 2), (null, 3), ('', 4), ('O''Brien', 5)")
    rules = {"missing_values": [""], "valid_values": ["ok"]}
    missing = sql.missing_sample(("main",), 'my "t"', hostile, rules)
    assert sorted(r[1] for r in con.execute(missing.sql, list(missing.params)).fetchall()) == [3, 4]
    invalid = sql.invalid_sample(("main",), 'my "t"', hostile, rules)
    assert invalid is not None
    assert sorted(r[1] for r in con.execute(invalid.sql, list(invalid.params)).fetchall()) == [2, 5]
    dup = sql.duplicate_sample(("main",), 'my "t"', [hostile], rules)
    assert con.execute(dup.sql, list(dup.params)).fetchall() == [("O'Brien", 2)]
    assert con.execute(f"select count(*) from {table}").fetchone()[0] == 5  # nothing was dropped


def test_dataset_duplicate_sample_groups_by_all_columns_including_nulls() -> None:
    con = duckdb.connect()
    con.execute(
        "create table t as select * from (values (1, 'a'), (1, 'a'), (1, 'b'), (null, 'c'), (null, 'c')) v(x, y)"
    )
    dup = sql.duplicate_sample((), "t", ["x", "y"], None)
    assert con.execute(dup.sql, list(dup.params)).fetchall() == [(1, "a", 2), (None, "c", 2)]


def test_invalid_rules_mirror_soda() -> None:
    con = duckdb.connect()
    con.execute("create table t as select * from (values (-1, 'x'), (5, 'DE'), (200, 'de'), (null, null)) v(a, c)")
    rng = sql.invalid_sample((), "t", "a", {"valid_min": 0, "valid_max": 100}, limit=5)
    fmt = sql.invalid_sample((), "t", "c", {"valid_format": {"regex": "^[A-Z]{2}$"}, "valid_length": 2})
    assert sorted(r[0] for r in con.execute(rng.sql, list(rng.params)).fetchall()) == [-1, 200]
    assert sorted(r[1] for r in con.execute(fmt.sql, list(fmt.params)).fetchall()) == ["de", "x"]
    assert sql.invalid_predicate("a", {"missing_values": [0]}) is None
    con.execute("create table r as select * from (values (5), (null)) v(id)")
    rules = (
        parse_contract(
            P,
            "dataset: d/main/t\ncolumns:\n  - name: a\n    checks:\n      - invalid:\n"
            "          valid_reference_data: {dataset: d/main/r, column: id}\n",
        )
        .checks[0]
        .rules
    )
    ref = sql.invalid_sample((), "t", "a", rules)
    assert sorted(r[0] for r in con.execute(ref.sql, list(ref.params)).fetchall()) == [-1, 200]


def _spec():
    contract = parse_contract(P, "dataset: ds/main/t\ncolumns:\n  - name: a\n    checks:\n      - missing:\n")
    return contract.checks[0]


@pytest.mark.parametrize(
    ("outcome", "passed", "severity"),
    [
        ("PASSED", True, "error"),
        ("FAILED", False, "error"),
        ("WARN", False, "warn"),
        ("NOT_EVALUATED", False, "error"),
    ],
)
def test_soda_outcomes_map_to_pass_and_severity(outcome: str, passed: bool, severity: str) -> None:
    record = SodaRecord(path="columns.a.checks.missing", outcome=outcome, value=3, threshold="must be: 0")
    result = outcome_from_soda(_spec(), record, P, errors="boom" if outcome == "NOT_EVALUATED" else "")
    assert (result.passed, result.severity) == (passed, severity)
    if outcome == "NOT_EVALUATED":
        assert "boom" in result.description and "c.yml" in result.description
    else:
        assert result.metadata["measured_value"] == 3 and result.metadata["threshold"] == "must be: 0"
    assert result.wants_sample == (outcome in ("FAILED", "WARN"))


def test_absent_soda_result_fails_and_asks_for_a_reload() -> None:
    result = outcome_from_soda(_spec(), None, P)
    assert not result.passed and "Reload" in result.description


def test_schema_diff_names_missing_unexpected_and_mismatched_columns() -> None:
    diff = schema_diff(
        {"id": "bigint", "Status": "varchar", "amount": "decimal", "gone": None},
        [("id", "INTEGER"), ("status", "VARCHAR"), ("amount", "DECIMAL(12,2)"), ("extra", "DATE")],
    )
    assert diff == {
        "missing_columns": ["gone"],
        "unexpected_columns": ["extra"],
        "type_mismatches": {"id": {"expected": "bigint", "actual": "INTEGER"}},
    }


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"dagster/partition": "2026-11-20"}, "2026-11-21T00:00:00+00:00"),
        ({"dagster/partition": "2026-11-20-13:00"}, "2026-11-20T14:00:00+00:00"),
        (
            {"dagster/asset_partition_range_start": "2026-11-01", "dagster/asset_partition_range_end": "2026-11-03"},
            "2026-11-04T00:00:00+00:00",
        ),
        ({"dagster/partition": "eu-west"}, None),
        ({}, None),
    ],
)
def test_partition_end_from_run_tags(tags: dict, expected: str | None) -> None:
    assert partition_end(tags) == expected


def test_staging_contracts_declare_partition_end() -> None:
    for name in ("stg_orders", "stg_customers", "stg_payments"):
        contract = load_contract(CONTRACTS_DIR / f"{name}.yml")
        assert isinstance(contract, ContractSpec) and "PARTITION_END" in contract.variables


@pytest.mark.parametrize(
    ("tags", "variables", "keys"),
    [
        ({"dagster/partition": "2026-11-20"}, ("2026-11-20", "2026-11-21"), ["2026-11-20"]),
        (
            {"dagster/partition": "2026-11-20-13:00"},
            ("2026-11-20 13:00:00", "2026-11-20 14:00:00"),
            ["2026-11-20-13:00"],
        ),
        (
            {"dagster/asset_partition_range_start": "2026-10-30", "dagster/asset_partition_range_end": "2026-11-02"},
            ("2026-10-30", "2026-11-03"),
            ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"],
        ),
        ({"dagster/partition": "eu-west"}, None, ["eu-west"]),
        ({}, None, []),
    ],
)
def test_partition_window_and_keys_from_run_tags(tags: dict, variables: tuple | None, keys: list) -> None:
    window = partition_window(tags)
    if variables is None:
        assert window is None
    else:
        assert window is not None
        bound = window_variables(window)
        assert bound == {"PARTITION_WINDOW_START": variables[0], "PARTITION_WINDOW_END": variables[1]}
    assert partition_keys(tags) == keys


def test_repo_contracts_filter_on_the_partition_window_and_mark_cross_day_checks() -> None:
    for contract in discover_contracts(CONTRACTS_DIR):
        assert isinstance(contract, ContractSpec) and contract.partition_windowed, contract.path
        whole = {c.name for c in contract.checks if c.whole_table}
        # duplicates across days need every day; a day's row count must not see other days
        assert any(c.kind == "duplicate" for c in contract.checks if c.name in whole), contract.path
        assert "soda_row_count" not in whole and "soda_schema" not in whole
        everything = contract.resolved(contract.dataset_filter)
        assert everything is not None and "'0001-01-01'" in everything and "'9999-12-31'" in everything


def test_whole_table_checks_run_without_the_window() -> None:
    contract = load_contract(CONTRACTS_DIR / "stg_orders.yml")
    assert isinstance(contract, ContractSpec)
    given = {"PARTITION_WINDOW_START": "2026-11-20", "PARTITION_WINDOW_END": "2026-11-21", "PARTITION_END": "x",
             "UNDECLARED": "y"}  # fmt: skip
    by_name = {c.name: c for c in contract.checks}
    assert check_variables(contract, by_name["soda_row_count"], given) == {
        "PARTITION_WINDOW_START": "2026-11-20", "PARTITION_WINDOW_END": "2026-11-21", "PARTITION_END": "x"
    }  # fmt: skip
    assert check_variables(contract, by_name["soda_order_id_duplicate"], given) == {"PARTITION_END": "x"}
    day = contract.resolved(contract.dataset_filter, given)
    assert day == "order_date >= '2026-11-20' and order_date < '2026-11-21'"


def test_variable_substitution_names_a_missing_variable() -> None:
    assert substitute_variables("a = '${ var.X }'", {"X": "1"}, P) == "a = '1'"
    with pytest.raises(ContractProblem, match="c.yml: SQL uses variable 'Y'"):
        substitute_variables("a = '${var.Y}'", {"X": "1"}, P)

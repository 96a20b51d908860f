"""A broken contract never breaks the code location: it becomes one failing, named check."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from reliability.contracts.defs import defs
from reliability.contracts.spec import CONTRACT_VALID_CHECK
from tests.contracts.conftest import CONTRACTS_DIR

BAD_YAML = "dataset: warehouse/main/raw_customers\ncolumns: [\n  - name: x\n"
UNKNOWN_TYPE = """\
dataset: warehouse/main/raw_payments
columns:
  - name: payment_id
    checks:
      - unique_values:
"""
UNKNOWN_COLUMN = """\
dataset: warehouse/main/stg_orders
columns:
  - name: order_id
checks:
  - freshness:
      column: loaded_at
      threshold:
        must_be_less_than: 2
"""


def _contracts(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "contracts"
    folder.mkdir()
    shutil.copy(CONTRACTS_DIR / "raw_orders.yml", folder / "raw_orders.yml")
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_broken_contracts_load_as_failing_checks_naming_file_and_problem(
    tmp_path: Path, warehouse: Path, run_checks
) -> None:
    folder = _contracts(
        tmp_path,
        {"customers.yml": BAD_YAML, "payments.yml": UNKNOWN_TYPE, "orders_staging.yml": UNKNOWN_COLUMN},
    )
    definitions = defs(contracts_dir=folder, warehouse_path=warehouse)
    dg.Definitions.validate_loadable(definitions)  # the code location loads
    keys = {(k.asset_key.path[-1], k.name) for c in definitions.asset_checks for k in c.check_keys}
    assert ("raw_customers", CONTRACT_VALID_CHECK) in keys
    assert ("raw_payments", CONTRACT_VALID_CHECK) in keys
    assert ("stg_orders", CONTRACT_VALID_CHECK) in keys
    assert ("raw_orders", "soda_order_id_duplicate") in keys  # good contracts are unaffected

    results = run_checks(definitions)
    failing = {k for k, e in results.items() if not e.passed}
    assert failing == {
        ("raw_customers", CONTRACT_VALID_CHECK),
        ("raw_payments", CONTRACT_VALID_CHECK),
        ("stg_orders", CONTRACT_VALID_CHECK),
    }
    customers = results[("raw_customers", CONTRACT_VALID_CHECK)].description
    assert "customers.yml" in customers and "not valid YAML" in customers
    payments = results[("raw_payments", CONTRACT_VALID_CHECK)].description
    assert "payments.yml" in payments and "unknown check type 'unique_values'" in payments
    staging = results[("stg_orders", CONTRACT_VALID_CHECK)].description
    assert "orders_staging.yml" in staging and "unknown column 'loaded_at'" in staging


def test_contract_declaring_a_column_the_table_lacks_fails_only_that_columns_checks(
    tmp_path: Path, warehouse: Path, run_checks
) -> None:
    text = (
        (CONTRACTS_DIR / "raw_orders.yml")
        .read_text()
        .replace(
            "  - name: _loaded_at\n",
            "  - name: discount\n    data_type: decimal\n    checks:\n      - missing:\n  - name: _loaded_at\n",
        )
    )
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "raw_orders.yml").write_text(text)
    results = run_checks(defs(contracts_dir=folder, warehouse_path=warehouse), ("raw_orders",))
    failing = {name for (_, name), e in results.items() if not e.passed}
    assert failing == {"soda_schema", "soda_discount_missing"}
    message = results[("raw_orders", "soda_discount_missing")].description
    assert "raw_orders.yml" in message and "'discount'" in message
    # the schema check reports the fault; the check reading the gone column belongs to it
    assert results[("raw_orders", "soda_discount_missing")].metadata["not_evaluated_due_to"].value == "soda_schema"
    assert list(results[("raw_orders", "soda_schema")].metadata["missing_columns"].value) == ["discount"]


def test_contract_broken_after_load_fails_its_checks_at_run_time(tmp_path: Path, warehouse: Path, run_checks) -> None:
    folder = _contracts(tmp_path, {})
    definitions = defs(contracts_dir=folder, warehouse_path=warehouse)
    (folder / "raw_orders.yml").write_text("dataset: [oops")
    results = run_checks(definitions, ("raw_orders",))
    assert results and all(not e.passed for e in results.values())
    assert all("raw_orders.yml" in e.description and "not valid YAML" in e.description for e in results.values())


def test_missing_warehouse_fails_checks_instead_of_crashing(tmp_path: Path, run_checks) -> None:
    results = run_checks(defs(contracts_dir=CONTRACTS_DIR, warehouse_path=tmp_path / "nowhere.duckdb"), ("raw_orders",))
    assert results and all(not e.passed and "does not exist" in e.description for e in results.values())

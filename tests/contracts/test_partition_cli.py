"""`reliability contracts verify --partition DAY`: the checks of one day, as a daily run does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from reliability.cli import main
from tests.contracts.conftest import CONTRACTS_DIR
from tests.contracts.warehouse import build_clean_warehouse

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # the warehouse holds 2026-11-18 .. 2026-11-20


def test_verify_one_partition(tmp_path: Path, capsys) -> None:
    warehouse = build_clean_warehouse(tmp_path / "w.duckdb", now=NOW)
    args = ["contracts", "verify", "stg_orders", "--dir", str(CONTRACTS_DIR), "--warehouse", str(warehouse), "--json"]
    assert main([*args, "--partition", "2026-11-19"]) == 0
    rows = {r["check"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert 0 < rows["soda_row_count"]["metadata"]["measured_value"] < 200
    assert rows["soda_row_count"]["metadata"]["checked_rows"] == "partition window [2026-11-19, 2026-11-20)"

    assert main([*args, "--partition", "2026-11-10"]) == 1  # no orders that day
    rows = {r["check"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert not rows["soda_row_count"]["passed"] and rows["soda_row_count"]["metadata"]["measured_value"] == 0


def test_a_partition_that_is_not_a_day_is_refused(tmp_path: Path, capsys) -> None:
    warehouse = build_clean_warehouse(tmp_path / "w.duckdb", now=NOW)
    args = ["contracts", "verify", "--dir", str(CONTRACTS_DIR), "--warehouse", str(warehouse)]
    assert main([*args, "--partition", "yesterday"]) == 1
    err = capsys.readouterr().err
    assert "--partition must be a day like 2026-11-20" in err and "'yesterday'" in err

"""`reliability contracts list|verify` on real contracts and a real DuckDB warehouse."""

from __future__ import annotations

import json
from pathlib import Path

from reliability.cli import main
from tests.contracts.conftest import CONTRACTS_DIR
from tests.contracts.warehouse import execute


def test_verify_clean_then_faulty_warehouse(warehouse: Path, capsys) -> None:
    args = ["contracts", "verify", "raw_orders", "--dir", str(CONTRACTS_DIR), "--warehouse", str(warehouse)]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 13 and all(line.startswith("raw_orders.soda_") and ": passed " in line for line in lines)
    execute(warehouse, "update raw_orders set status = 'lost' where order_id = 3")
    assert main([*args, "--json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failed = [r for r in rows if not r["passed"]]
    assert [r["check"] for r in failed] == ["soda_status_invalid"]
    assert failed[0]["failing_rows_sample"][0]["status"] == "lost"


def test_list_reports_broken_contracts(tmp_path: Path, capsys) -> None:
    (tmp_path / "ok.yml").write_text((CONTRACTS_DIR / "raw_orders.yml").read_text())
    (tmp_path / "bad.yml").write_text(
        "dataset: wh/main/raw_payments\ncolumns:\n  - name: a\n    checks:\n      - nope:\n"
    )
    assert main(["contracts", "list", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "soda_order_id_duplicate" in out
    assert "bad.yml: BROKEN -> raw_payments.soda_contract_valid" in out and "unknown check type 'nope'" in out


def test_unknown_table_is_a_user_error(warehouse: Path, capsys) -> None:
    assert main(["contracts", "verify", "nope", "--dir", str(CONTRACTS_DIR), "--warehouse", str(warehouse)]) == 1
    assert "no contract for table(s) ['nope']" in capsys.readouterr().err

"""Another contracts folder and warehouse are configuration only (environment variables)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from reliability.contracts.defs import defs
from reliability.settings import get_settings
from tests.contracts.conftest import OTHER_CONTRACTS_DIR


def test_contracts_dir_and_warehouse_from_environment(tmp_path: Path, monkeypatch, run_checks) -> None:
    warehouse = tmp_path / "other.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table events as select i::bigint as event_id, 'click' as kind from range(1, 11) t(i)")
    monkeypatch.setenv("RELIABILITY_CONTRACTS_DIR", str(OTHER_CONTRACTS_DIR))
    monkeypatch.setenv("RELIABILITY_WAREHOUSE", str(warehouse))
    get_settings.cache_clear()
    try:
        definitions = defs()
    finally:
        get_settings.cache_clear()
    keys = {(k.asset_key.path[-1], k.name) for c in definitions.asset_checks for k in c.check_keys}
    assert keys == {
        ("events", "soda_event_id_missing"),
        ("events", "soda_event_id_duplicate"),
        ("events", "soda_kind_missing"),
        ("events", "soda_schema"),
        ("events", "soda_row_count"),
    }
    results = run_checks(definitions, ("events",))
    assert set(results) == keys and all(e.passed for e in results.values())

    with duckdb.connect(str(warehouse)) as con:
        con.execute("insert into events values (3, 'view')")
    results = run_checks(definitions, ("events",))
    assert {k for k, e in results.items() if not e.passed} == {("events", "soda_event_id_duplicate")}

"""Runtime behaviour around the warehouse: cheap loading, waiting for a writer's lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from reliability.contracts.runner import verify_contract
from reliability.contracts.spec import ContractSpec, load_contract
from tests.contracts.conftest import CONTRACTS_DIR

HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _raw_orders() -> ContractSpec:
    contract = load_contract(CONTRACTS_DIR / "raw_orders.yml")
    assert isinstance(contract, ContractSpec)
    return contract


def _hold_lock(warehouse: Path, seconds: float) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(warehouse), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
    return writer


def test_checks_wait_for_a_writer_in_another_process(warehouse: Path) -> None:
    writer = _hold_lock(warehouse, 1.5)
    try:
        start = time.monotonic()
        outcomes = verify_contract(_raw_orders(), warehouse, lock_wait_s=20)
        waited = time.monotonic() - start
    finally:
        writer.wait(timeout=30)
    assert all(o.passed for o in outcomes)
    assert waited >= 0.5


def test_checks_fail_with_the_lock_error_after_the_wait(warehouse: Path) -> None:
    writer = _hold_lock(warehouse, 5)
    try:
        outcomes = verify_contract(_raw_orders(), warehouse, lock_wait_s=0)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert outcomes and all(not o.passed for o in outcomes)
    assert all("cannot open warehouse" in o.description and "lock" in o.description for o in outcomes)


def test_loading_definitions_does_not_import_soda_or_open_the_warehouse(tmp_path: Path) -> None:
    missing = tmp_path / "not-created.duckdb"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reliability.contracts.defs import defs\n"
        f"d = defs(contracts_dir=Path({str(CONTRACTS_DIR)!r}), warehouse_path=Path({str(missing)!r}))\n"
        "assert len(list(d.asset_checks)) == 6\n"
        "assert not [m for m in sys.modules if m.startswith(('soda_core', 'soda_duckdb'))]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    assert not missing.exists()

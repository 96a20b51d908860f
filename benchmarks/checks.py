"""All Soda contract checks of `raw_orders` through the platform vs one hand-written DuckDB scan.

Ours: `reliability.contracts.runner.verify_contract` -- what the Dagster check runs: re-read the
contract, one metadata query, one Soda verification, mapping, and failing-row samples for the checks
that fail. Floor: one hand-written query computing the same metrics in one scan (missing counts,
distinct ids, invalid counts, row count, max load time). Both open the warehouse read-only, warm,
median of several runs. Rows come from the shop's own generator (10 daily partitions).
A second row injects a few bad rows so the sample queries run too; a third runs the checks through
Dagster (`materialize` of the contract's multi-asset check) to show the orchestration overhead.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb

os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")

from reliability.contracts.runner import verify_contract  # noqa: E402
from reliability.contracts.spec import ContractSpec, load_contract  # noqa: E402
from reliability.settings import REPO_ROOT  # noqa: E402
from reliability.shop.generator import ShopScale, days_ending, generate  # noqa: E402

TARGET = 1.5
CONTRACT = REPO_ROOT / "soda" / "contracts" / "raw_orders.yml"

FLOOR_SQL = """
select
    count(*) as row_count,
    count(*) - count(order_id) as order_id_missing,
    count(distinct order_id) as order_id_distinct,
    count(*) - count(customer_id) as customer_id_missing,
    count(*) - count(order_date) as order_date_missing,
    count(*) - count(ordered_at) as ordered_at_missing,
    count(*) - count(status) as status_missing,
    count(*) filter (where status not in ('placed', 'shipped', 'completed', 'returned', 'cancelled'))
        as status_invalid,
    count(*) - count(amount) as amount_missing,
    count(*) filter (where amount < 0 or amount > 100000) as amount_invalid,
    max(_loaded_at) as latest_load
from main.raw_orders
"""


def _floor(path: Path) -> tuple:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(FLOOR_SQL).fetchone()


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _paired(ours: Callable[[], object], floor: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median times of both, measured alternately so load from other processes hits both alike."""
    ours(), floor()  # warm: imports, file cache
    pairs = [(_timed(ours), _timed(floor)) for _ in range(runs)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def _dagster_run(contract: ContractSpec, path: Path) -> None:
    import dagster as dg

    from reliability.contracts.defs import contract_check

    check = contract_check(contract, path, "soda_contract_raw_orders")
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize(
            [dg.AssetSpec("raw_orders"), check],
            selection=dg.AssetSelection.all_asset_checks(),
            instance=instance,
            raise_on_error=False,
        )


def run(quick: bool) -> list[dict]:
    rows = 1_000_000 if quick else 10_000_000
    runs = 5 if quick else 7
    contract = load_contract(CONTRACT)
    assert isinstance(contract, ContractSpec), contract
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_checks_") as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        start = time.perf_counter()
        days = days_ending(date.today(), 10)
        generate(str(path), days, ShopScale(orders_per_day=rows // len(days)), tables=("raw_orders",))
        generate_s = time.perf_counter() - start

        outcomes = verify_contract(contract, path)
        assert all(o.passed for o in outcomes), [o.description for o in outcomes if not o.passed]
        ours, floor = _paired(lambda: verify_contract(contract, path), lambda: _floor(path), runs)
        results.append(
            {
                "name": "checks_raw_orders_clean",
                "rows": rows,
                "checks": len(contract.checks),
                "ours_s": round(ours, 4),
                "baseline_s": round(floor, 4),
                "ratio": round(ours / floor, 3),
                "target": TARGET,
                "generate_s": round(generate_s, 2),
            }
        )

        with duckdb.connect(str(path)) as con:  # a few bad rows: three checks fail and get samples
            con.execute("update raw_orders set customer_id = null where order_id % 1000003 = 7")
            con.execute("update raw_orders set status = 'lost' where order_id % 1000003 = 11")
            con.execute("update raw_orders set amount = -1 where order_id % 1000003 = 13")
        outcomes = verify_contract(contract, path)
        failed = sorted(o.check.name for o in outcomes if not o.passed)
        assert failed == ["soda_amount_invalid", "soda_customer_id_missing", "soda_status_invalid"], failed
        ours, floor = _paired(lambda: verify_contract(contract, path), lambda: _floor(path), runs)
        results.append(
            {
                "name": "checks_raw_orders_with_failures_and_samples",
                "rows": rows,
                "failed_checks": failed,
                "ours_s": round(ours, 4),
                "baseline_s": round(floor, 4),
                "ratio": round(ours / floor, 3),
                "target": TARGET,
            }
        )

        dagster_s, floor = _paired(lambda: _dagster_run(contract, path), lambda: _floor(path), 3)
        results.append(
            {
                "name": "checks_raw_orders_via_dagster_materialize",
                "rows": rows,
                "ours_s": round(dagster_s, 4),
                "baseline_s": round(floor, 4),
                "ratio": round(dagster_s / floor, 3),
                "target": None,
                "note": "informational: includes Dagster run setup on an ephemeral instance",
            }
        )
    return results

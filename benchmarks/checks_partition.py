"""The Soda contract checks of ONE day of `raw_orders` through the platform vs one hand-written DuckDB
scan of that day; and the same at two table sizes, to show the time does not grow with the days.

Ours: `reliability.contracts.runner.verify_contract` with the partition window of one day -- what the
Dagster check runs in a daily run: re-read the contract, one metadata query, one Soda verification
filtered to the day (the contract's dataset filter bound to PARTITION_WINDOW_START/END). Only the
contract's partition checks: the checks marked `dagster_whole_table` (ids unique across days, load
freshness) read every day by design and are timed in a separate, informational row.
Floor: one hand-written query computing the same metrics over the same day, in one scan; like the
check (and like benchmarks/checks.py) it opens the warehouse read-only for each run, since the file
cannot stay open between runs (DuckDB would refuse the loads). `scan_only_s` is the bare query on an
open connection. Both warm, alternated in one run, median of several runs and of the per-pair ratios.
Rows come from the shop's own generator, loaded day after day (as daily loads lay them out).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")

from reliability.contracts.evaluate import window_variables  # noqa: E402
from reliability.contracts.runner import verify_contract  # noqa: E402
from reliability.contracts.spec import ContractSpec, load_contract  # noqa: E402
from reliability.settings import REPO_ROOT  # noqa: E402
from reliability.shop.generator import ShopScale, generate  # noqa: E402

TARGET = 1.5
CONTRACT = REPO_ROOT / "soda" / "contracts" / "raw_orders.yml"
LAST_DAY = date(2026, 11, 20)  # fixed: the figures never depend on the day the benchmark runs

FLOOR_SQL = """
select
    count(*) as row_count,
    count(*) - count(order_id) as order_id_missing,
    count(*) - count(customer_id) as customer_id_missing,
    count(*) - count(order_date) as order_date_missing,
    count(*) - count(ordered_at) as ordered_at_missing,
    count(*) - count(status) as status_missing,
    count(*) filter (where status not in ('placed', 'shipped', 'completed', 'returned', 'cancelled'))
        as status_invalid,
    count(*) - count(amount) as amount_missing,
    count(*) filter (where amount < 0 or amount > 100000) as amount_invalid
from main.raw_orders
where order_date >= ? and order_date < ?
"""

WHOLE_TABLE_FLOOR_SQL = "select count(*) - count(distinct order_id), max(_loaded_at) from main.raw_orders"


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _paired(ours: Callable[[], object], floor: Callable[[], object], runs: int) -> tuple[float, float, float]:
    """Median times of both and the median of the per-pair ratios, measured alternately."""
    ours(), floor()  # warm: imports, file cache
    pairs = [(_timed(ours), _timed(floor)) for _ in range(runs)]
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(p[0] / p[1] for p in pairs),
    )


def _one_size(
    contract: ContractSpec, days: int, rows_per_day: int, runs: int, tmp: Path
) -> tuple[list[dict], Callable[[], object], Callable[[], object]]:
    """The rows for one table size, and its two timed calls (for the interleaved growth figure)."""
    path = tmp / f"warehouse_{days}.duckdb"
    dates = [LAST_DAY - timedelta(days=days - 1 - i) for i in range(days)]
    start = time.perf_counter()
    generate(str(path), dates, ShopScale(orders_per_day=rows_per_day), tables=("raw_orders",))
    generate_s = time.perf_counter() - start

    day = dates[len(dates) // 2]
    start_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC)
    window = window_variables((start_of_day, start_of_day + timedelta(days=1)))
    partition_checks = [c.name for c in contract.checks if not c.whole_table]
    whole_checks = [c.name for c in contract.checks if c.whole_table]
    outcomes = verify_contract(contract, path, partition_checks, variables=window)
    assert all(o.passed for o in outcomes), [o.description for o in outcomes if not o.passed]
    measured = {o.check.name: o.metadata.get("measured_value") for o in outcomes}
    assert measured["soda_row_count"] == rows_per_day, measured["soda_row_count"]

    bounds = [window["PARTITION_WINDOW_START"], window["PARTITION_WINDOW_END"]]

    def floor(sql: str, params: list[str]) -> tuple:
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute(sql, params).fetchone()

    assert floor(FLOOR_SQL, bounds)[0] == rows_per_day
    ours, floor_s, ratio = _paired(
        lambda: verify_contract(contract, path, partition_checks, variables=window),
        lambda: floor(FLOOR_SQL, bounds),
        runs,
    )
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(FLOOR_SQL, bounds).fetchone()
        scan_only = statistics.median(_timed(lambda: con.execute(FLOOR_SQL, bounds).fetchone()) for _ in range(runs))
    whole, whole_floor, whole_ratio = _paired(
        lambda: verify_contract(contract, path, whole_checks, variables=window),
        lambda: floor(WHOLE_TABLE_FLOOR_SQL, []),
        3,  # informational, and each pair reads every day: keep the full run short
    )
    common = {"days": days, "rows": days * rows_per_day, "rows_in_partition": rows_per_day}
    rows = [
        {
            "name": f"checks_partition_one_day_of_{days}_days",
            **common,
            "checks": len(partition_checks),
            "ours_s": round(ours, 4),
            "baseline_s": round(floor_s, 4),
            "ratio": round(ratio, 3),
            "target": TARGET,
            "scan_only_s": round(scan_only, 4),
            "generate_s": round(generate_s, 2),
        },
        {
            "name": f"checks_partition_whole_table_checks_of_{days}_days",
            **common,
            "checks": len(whole_checks),
            "ours_s": round(whole, 4),
            "baseline_s": round(whole_floor, 4),
            "ratio": round(whole_ratio, 3),
            "target": None,
            "note": "informational: checks marked dagster_whole_table read every day by design",
        },
    ]
    return (
        rows,
        lambda: verify_contract(contract, path, partition_checks, variables=window),
        lambda: floor(FLOOR_SQL, bounds),
    )


def run(quick: bool) -> list[dict]:
    rows_per_day = 20_000 if quick else 100_000
    sizes = (10, 20) if quick else (50, 100)
    runs = 5 if quick else 9
    contract = load_contract(CONTRACT)
    assert isinstance(contract, ContractSpec), contract
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_checks_partition_") as tmp:
        (small_rows, small_ours, small_floor), (large_rows, large_ours, large_floor) = (
            _one_size(contract, days, rows_per_day, runs, Path(tmp)) for days in sizes
        )
        results += small_rows + large_rows
        # the two sizes alternated in one loop, so load from other processes hits both alike
        large_s, small_s, growth = _paired(large_ours, small_ours, runs)
        _, _, floor_growth = _paired(large_floor, small_floor, runs)
    results.append(
        {
            "name": "checks_partition_growth_with_days",
            "ours_s": round(large_s, 4),
            "baseline_s": round(small_s, 4),
            "ratio": round(growth, 3),
            "target": None,
            "floor_growth": round(floor_growth, 3),
            "note": f"one day's checks at {sizes[1]} days vs at {sizes[0]} days, alternated (1.0 = no growth); "
            "floor_growth: the same for the hand-written scan",
        }
    )
    return results

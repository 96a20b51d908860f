"""`reliability check --select tag:tier=tier1` on the shop at 1M orders vs the same checks run by Dagster
in process, with nothing of ours around it.

Ours: the whole command in process (`reliability.cli.main`): build the definitions, resolve the
selection, run the checks without materializing (two runs: the unpartitioned assets' checks, then the
partitioned ones' for one day), collect and render the results (JSON to a null stream).
Floor: the same two Dagster runs alone, definitions already built: an asset job subset to the check keys,
`execute_in_process` on an ephemeral instance like ours (`dagster.materialize` cannot run a checks-only
selection for a partition: with no asset selected, Dagster finds no partitions definition). No
definitions load, no selection parsing, no result collection or report.
Both warm, alternated in one run, median of the per-pair ratios. Target <= 1.2: CI pays nothing
beyond Dagster's own cost. Data: the shop's generator (10 days), models built once with dbt.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

TARGET = 1.2
LAST_DAY = date(2026, 11, 20)  # fixed: the figures never depend on the day the benchmark runs
SELECTION = "tag:tier=tier1"


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(quick: bool) -> list[dict]:
    orders_per_day = 20_000 if quick else 100_000
    runs = 2 if quick else 3
    tmp = tempfile.mkdtemp(prefix="bench_check_")
    warehouse = Path(tmp) / "warehouse.duckdb"
    from reliability.shop.generator import ShopScale, days_ending, generate

    days = days_ending(LAST_DAY, 10)
    os.environ.update(
        {
            "RELIABILITY_WAREHOUSE": str(warehouse),
            "SODA_CORE_TELEMETRY_ENABLED": "false",
            "RELIABILITY_PARTITIONS_START_DATE": days[0].isoformat(),
            "DO_NOT_TRACK": "1",
        }
    )
    os.environ.pop("DAGSTER_HOME", None)  # both sides on an ephemeral instance
    start = time.perf_counter()
    totals = generate(str(warehouse), days, ShopScale(orders_per_day=orders_per_day))
    from reliability.dbt.project import dbt_executable
    from reliability.settings import REPO_ROOT, get_settings

    project = REPO_ROOT / "dbt_project"
    variables = json.dumps({"min_date": days[0].isoformat(), "max_date": days[-1].isoformat()})
    subprocess.run(
        [
            dbt_executable(),
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--vars",
            variables,
            "--quiet",
        ],
        check=False,
        env=dict(os.environ),
    )
    prepare_s = time.perf_counter() - start

    import dagster as dg

    from reliability.ci.runner import check_job_run, checks_of, quiet_libraries, resolve_selection, runs_alone
    from reliability.cli import main
    from reliability.definitions import build_definitions

    get_settings.cache_clear()
    defs = build_definitions(get_settings())
    selected = checks_of(defs, resolve_selection(defs, SELECTION))
    keys = [k for k in selected if runs_alone(defs, k)]  # the rest run only with their asset, on both sides
    graph = defs.resolve_asset_graph()
    partition = days[-1].isoformat()
    daily_def = next(graph.get(k.asset_key).partitions_def for k in keys if graph.get(k.asset_key).partitions_def)
    argv = ["check", "--select", SELECTION, "--partition", partition, "--json"]
    outputs: list[str] = []

    def ours() -> None:
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            main(argv)
        outputs.append(stdout.getvalue())

    def floor() -> None:
        quiet_libraries()
        plain = [k for k in keys if graph.get(k.asset_key).partitions_def is None]
        daily = [k for k in keys if graph.get(k.asset_key).partitions_def is not None]
        with contextlib.redirect_stdout(io.StringIO()), dg.DagsterInstance.ephemeral() as instance:
            if plain:
                check_job_run(defs, plain, instance)
            if daily:
                check_job_run(defs, daily, instance, daily_def, partition)

    ours(), floor()  # warm: imports, definitions, file cache
    pairs = [(_timed(ours), _timed(floor)) for _ in range(runs)]
    summary = json.loads(outputs[-1])["summary"]
    shutil.rmtree(tmp, ignore_errors=True)
    return [
        {
            "name": "check_tier1_vs_dagster_in_process",
            "orders": totals.get("raw_orders"),
            "checks": len(keys),
            "skipped": summary["skipped"],
            "ran": summary["total"],
            "passed": summary["passed"],
            "ours_s": round(statistics.median(p[0] for p in pairs), 3),
            "baseline_s": round(statistics.median(p[1] for p in pairs), 3),
            "ratio": round(statistics.median(p[0] / p[1] for p in pairs), 3),
            "target": TARGET,
            "pairs": [[round(a, 2), round(b, 2)] for a, b in pairs],
            "prepare_s": round(prepare_s, 1),
        }
    ]

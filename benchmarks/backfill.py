"""A 7-day backfill of the shop (raw and dbt groups) through a real `dagster-daemon` vs the floor.

Ours: one asset backfill of the week, submitted to a temporary instance on which a real daemon runs
the platform's real code location (no sensors, no automation: `_backfill_location.py`), from the
submission until the backfill's status is final. It is what an engineer gets from the UI's
"Materialize" of the two groups over a week, or from a reconciliation: the daemon plans the runs as the
backfill policies allow, each run is a new process that loads the code location, and the runs also
evaluate the assets' checks (Soda contracts, dbt tests, `open_incident`) behind the quarantine guard.
Floor: the same data in process: the generator's writes of those 7 days of the raw tables, then one
`dbt build` of the same range (the daily models with `--vars` for the week, the unpartitioned model
and every dbt test).
`raw_orders` is fed by Kafka in the platform; both sides start from its week bulk-loaded, so neither
times it. Both sides warm (one untimed round each), alternated, median of the per-pair ratios.
Each row also says how many runs the backfill took and where its time went (`profile`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from reliability.settings import REPO_ROOT

TARGET = 2.0
WEEK = [date(2026, 11, 16) + timedelta(days=i) for i in range(7)]
KAFKA_FED = "raw_orders"
GROUPS = ("raw", "dbt")
TIMEOUT_S = 3600


def _env(tmp: Path) -> dict[str, str]:
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "RELIABILITY_WAREHOUSE": str(tmp / "warehouse.duckdb"),
        "RELIABILITY_INCIDENT_STORE_URL": f"sqlite:///{tmp / 'incidents.db'}",
        "RELIABILITY_PARTITIONS_START_DATE": WEEK[0].isoformat(),
        "SODA_CORE_TELEMETRY_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def backfill_keys(asset_graph: Any) -> list[dg.AssetKey]:
    """Every materializable asset of the raw and dbt groups but the Kafka-fed one."""
    return sorted(
        (k for k in asset_graph.materializable_asset_keys
         if asset_graph.get(k).group_name in GROUPS and k.to_user_string() != KAFKA_FED),
        key=lambda k: k.to_user_string(),
    )  # fmt: skip


def backfill_profile(instance: dg.DagsterInstance, backfill_id: str, submitted: float) -> list[dict]:
    """Each run of the backfill: its assets, when it was created (after submission), how long it queued
    and how long its process lived, in seconds."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    rows = []
    for record in sorted(records, key=lambda r: r.create_timestamp.timestamp()):
        run = record.dagster_run
        created = record.create_timestamp.timestamp()
        rows.append({
            "assets": sorted(k.to_user_string() for k in run.asset_selection or []),
            "range": [run.tags.get("dagster/asset_partition_range_start"),
                      run.tags.get("dagster/asset_partition_range_end")] if run.tags.get(
                          "dagster/asset_partition_range_start") else run.tags.get("dagster/partition"),
            "status": run.status.value,
            "created_after_s": round(created - submitted, 1),
            "queued_s": round((record.start_time or created) - created, 1),
            "ran_s": round((record.end_time or 0) - (record.start_time or 0), 1),
        })  # fmt: skip
    return rows


def floor_build(warehouse: Path, days: list[date], target: Path) -> None:
    """The raw writes of `days` in process, then one `dbt build` of the same range (its artifacts in
    `target`, so the project's own manifest, which the code location reads, stays as it is)."""
    import duckdb

    from reliability.dbt.project import dbt_executable
    from reliability.shop.defs import GENERATED_TABLES
    from reliability.shop.generator import ShopScale, write_partition

    with duckdb.connect(str(warehouse)) as con:
        for table in GENERATED_TABLES:
            for day in days:
                write_partition(con, table, day, ShopScale())
    window = {"min_date": days[0].isoformat(), "max_date": days[-1].isoformat()}
    project = REPO_ROOT / "dbt_project"
    subprocess.run(
        [dbt_executable(), "build", "--vars", json.dumps(window), "--project-dir", str(project),
         "--profiles-dir", str(project), "--target-path", str(target), "--quiet"],
        env={**os.environ, "RELIABILITY_WAREHOUSE": str(warehouse)}, cwd=project, check=True,
    )  # fmt: skip


def parse_as_deployed(settings: Any) -> None:
    """`dbt parse` of the project with this warehouse, as the platform's start does (`ensure_manifest`).

    The runs' dbt steps start from the project's partial parse, and dbt parses everything again when
    the profile (the warehouse path) differs from the one it was parsed with."""
    from reliability.dbt.project import dbt_env, dbt_executable, profiles_dir

    project = settings.dbt_project_dir
    subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(project), "--profiles-dir", str(profiles_dir(settings)),
         "--quiet"],
        env=dbt_env(settings), cwd=project, check=True,
    )  # fmt: skip


def _daily_revenue_days(warehouse: Path) -> int:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select count(*) from daily_revenue where order_date between ? and ?", [WEEK[0], WEEK[-1]]
        ).fetchone()[0]


def run(quick: bool) -> list[dict]:
    from reliability.definitions import build_definitions
    from reliability.settings import load_settings
    from reliability.shop.generator import ShopScale, generate
    from tests.daemon_harness import running_daemon, submit_backfill, wait_for_backfill, write_workspace

    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as name:
        tmp = Path(name)
        env = _env(tmp)
        os.environ.update(env)
        warehouse = Path(env["RELIABILITY_WAREHOUSE"])
        generate(str(warehouse), WEEK, ShopScale(), tables=(KAFKA_FED,))  # the Kafka feed, bulk-loaded
        settings = load_settings()
        parse_as_deployed(settings)
        asset_graph = build_definitions(settings).resolve_asset_graph()
        keys = backfill_keys(asset_graph)
        instance = dg.DagsterInstance.get()  # creates the storage before the daemon opens it
        workspace = write_workspace(tmp / "workspace.yaml", "benchmarks._backfill_location")
        log = tmp / "daemon.log"
        with running_daemon(workspace, env, log):

            def ours() -> tuple[float, str, list[dict]]:
                submitted = time.time()
                backfill_id = submit_backfill(instance, asset_graph, keys, WEEK, title="benchmark: a week")
                status = wait_for_backfill(instance, backfill_id, timeout_s=TIMEOUT_S)
                elapsed = time.time() - submitted
                if status != "COMPLETED_SUCCESS":
                    raise RuntimeError(f"backfill {backfill_id} ended {status}; daemon log: {log}")
                return elapsed, backfill_id, backfill_profile(instance, backfill_id, submitted)

            def floor() -> float:
                start = time.perf_counter()
                floor_build(warehouse, WEEK, tmp / "dbt_target")
                return time.perf_counter() - start

            # warm both sides: the daemon's workspace, dbt's partial parse, the file cache
            warm_ours, floor_warm = ours(), floor()
            pairs = [(ours(), floor()) for _ in range(rounds)]
        assert _daily_revenue_days(warehouse) == len(WEEK)
    ours_s = [p[0][0] for p in pairs]
    floor_s = [p[1] for p in pairs]
    runs = sorted({len(p[0][2]) for p in pairs})
    median_s, _, profile = sorted((p[0] for p in pairs), key=lambda o: o[0])[len(pairs) // 2]
    queued, ran = sum(r["queued_s"] for r in profile), sum(r["ran_s"] for r in profile)
    return [
        {
            "name": "backfill_7_days_through_daemon",
            "days": len(WEEK),
            "assets": [k.to_user_string() for k in keys],
            "runs": runs[0] if len(runs) == 1 else runs,
            "ours_s": round(statistics.median(ours_s), 2),
            "baseline_s": round(statistics.median(floor_s), 2),
            "ratio": round(statistics.median(o / f for o, f in zip(ours_s, floor_s, strict=True)), 3),
            "target": TARGET,
            "rounds": rounds,
            "ours_all_s": [round(s, 2) for s in ours_s],
            "baseline_all_s": [round(s, 2) for s in floor_s],
            "warm_up_s": [round(warm_ours[0], 2), round(floor_warm, 2)],
            "profile": profile,  # the median round's runs
            "time_split_s": {  # the median round: launching runs, running them, the daemon's ticks between
                "queued_and_launch": round(queued, 1),
                "running": round(ran, 1),
                "waiting_for_backfill_ticks": round(median_s - queued - ran, 1),
            },
        }
    ]

"""`reliability ci`: slim CI of a change, never touching production data.

1. `dagster definitions validate` on the code location (pointed at the copy);
2. copy the warehouse file into a throwaway folder; every later step reads and writes the copy only;
3. `dbt ls --select state:modified` against the production manifest (`--state DIR`): the modified models;
4. build them and everything downstream (`state:modified+` as Dagster assets) into the copy, with their
   dbt tests and Soda contracts, through Dagster;
5. compare the touched tables' columns before and after with what their contracts require: a dropped or
   retyped required column fails the run naming the contract;
6. report the blast radius of every modified model (tier 1 first), printed and as Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import dagster as dg

from reliability.ci.impact import ContractBreak, change_impact, contract_breaks, impact_lines, impact_markdown
from reliability.ci.results import CheckResult
from reliability.ci.runner import (
    QUIET_RUN_CONFIG,
    PartitionScope,
    check_job_run,
    checks_of,
    collect_results,
    open_instance,
    quiet_libraries,
    settings_with_warehouse,
    with_dbt_samples,
)
from reliability.contracts.spec import ContractSpec, discover_contracts
from reliability.dbt.project import dbt_env, dbt_executable, profiles_dir
from reliability.errors import ConfigError
from reliability.settings import REPO_ROOT, Settings, get_settings
from reliability.terminal import print_line

CODE_LOCATION = "code_location"
CONTRACT_CHECK = "contract_compatible"  # the CI's own check: no required column dropped or retyped


def copy_warehouse(production: Path, workdir: Path) -> Path:
    """A throwaway copy of the DuckDB file (and its WAL): the only warehouse the CI writes."""
    if not production.is_file():
        raise ConfigError(f"warehouse {production}: no such DuckDB file (set --warehouse or warehouse_path)")
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "warehouse.duckdb"
    shutil.copyfile(production, copy)
    wal = production.with_name(production.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
    return copy


def validate_definitions(settings: Settings) -> CheckResult:
    """`dagster definitions validate` on the code location, as a check result."""
    env = {**dbt_env(settings), "RELIABILITY_WAREHOUSE": str(settings.warehouse_path)}
    if settings.source_file is not None:
        env["RELIABILITY_SETTINGS"] = str(settings.source_file)
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "definitions",
        "validate",
        "-m",
        "reliability.definitions",
        "-d",
        str(REPO_ROOT),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode == 0:
        return CheckResult(
            CODE_LOCATION, "definitions_valid", True, source="ci", description="dagster definitions validate: valid"
        )
    errors = [line for line in lines if "Error" in line or "error" in line] or lines[-1:]
    return CheckResult(
        CODE_LOCATION,
        "definitions_valid",
        False,
        source="ci",
        description=f"dagster definitions validate failed: {' | '.join(errors[-3:])[:800]}",
    )


def modified_nodes(settings: Settings, state: Path) -> list[str]:
    """Names of the dbt models, seeds and snapshots that differ from the production manifest."""
    if not (state / "manifest.json").is_file():
        raise ConfigError(f"--state {state}: no manifest.json (the production dbt manifest) in it")
    command = [
        dbt_executable(),
        "ls",
        "--project-dir",
        str(settings.dbt_project_dir),
        "--profiles-dir",
        str(profiles_dir(settings)),
        "--select",
        "state:modified",
        "--state",
        str(state),
        "--resource-type",
        "model",
        "--resource-type",
        "seed",
        "--resource-type",
        "snapshot",
        "--output",
        "json",
        "--output-keys",
        "name",
        "--quiet",
    ]
    done = subprocess.run(command, env=dbt_env(settings), capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stdout + done.stderr).strip().splitlines()
        raise ConfigError(f"dbt ls --select state:modified --state {state} failed: {detail[-1] if detail else ''}")
    names = []
    for line in done.stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            names.append(json.loads(line)["name"])
    return sorted(set(names))


def table_schemas(warehouse: Path, tables: Iterable[ContractSpec]) -> dict[str, dict[str, str]]:
    """Columns and types of the contracts' tables (parameters, never names pasted into SQL)."""
    import duckdb

    out: dict[str, dict[str, str]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for contract in tables:
            schema = contract.prefixes[-1] if contract.prefixes else "main"
            rows = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_name = ? and table_schema = ? order by ordinal_position",
                [contract.table, schema],
            ).fetchall()
            out[contract.table] = {name: data_type for name, data_type in rows}
    return out


def breaks_of(contracts: Sequence[ContractSpec], before: dict, after: dict) -> list[ContractBreak]:
    found: list[ContractBreak] = []
    for contract in contracts:
        readers: dict[str, list[str]] = {}
        for check in contract.checks:
            for column in {*check.columns, *([check.column] if check.column else [])}:
                readers.setdefault(column, []).append(check.name)
        found += contract_breaks(
            str(contract.path),
            contract.table,
            contract.columns,
            before.get(contract.table, {}),
            after.get(contract.table, {}),
            readers,
        )
    return found


def break_result(item: ContractBreak) -> CheckResult:
    return CheckResult(item.table, CONTRACT_CHECK, False, source="ci", description=item.message, contract=item.contract)


def build_and_check(
    defs: dg.Definitions, keys: set[dg.AssetKey], instance: dg.DagsterInstance, scope: PartitionScope
) -> tuple[list[CheckResult], set[str]]:
    """Materialize the assets into the copy the definitions point at, with the checks computed in their
    own steps (dbt tests); then run the standalone checks (Soda contracts) in a checks-only run, so a
    failing blocking dbt test does not leave the contracts of the same table unevaluated."""
    quiet_libraries()
    graph = defs.resolve_asset_graph()
    standalone = {key for checks_def in defs.asset_checks or [] for key in checks_def.check_keys}
    buildable = sorted((k for k in keys if graph.get(k).is_materializable), key=lambda k: k.to_user_string())
    groups = [
        ([k for k in buildable if graph.get(k).partitions_def is None], None),
        ([k for k in buildable if graph.get(k).partitions_def is not None], "partitioned"),
    ]
    results: list[CheckResult] = []
    built: set[str] = set()
    for assets, kind in groups:
        if not assets:
            continue
        checks = checks_of(defs, assets)
        with_build = [k for k in checks if k not in standalone]
        partitions_def = graph.get(assets[0]).partitions_def if kind else None
        partition = (scope.key or partitions_def.get_last_partition_key()) if partitions_def else None
        run = dg.materialize(
            [*(defs.assets or []), *(defs.asset_checks or [])],
            selection=dg.AssetSelection.assets(*assets).without_checks() | dg.AssetSelection.checks(*with_build),
            partition_key=partition,
            instance=instance,
            resources=defs.resources,
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=False,
        )
        done = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
        built |= done
        results += collect_results(run, with_build, partition)
        results += [
            CheckResult(
                k.to_user_string(),
                "materialized",
                False,
                source="ci",
                partition=partition,
                description="the build of this asset failed or was skipped",
            )
            for k in assets
            if k.to_user_string() not in done
        ]
        alone = [k for k in checks if k in standalone]
        if alone:
            results += collect_results(
                check_job_run(defs, alone, instance, partitions_def, partition), alone, partition
            )
    return with_dbt_samples(results, (defs.resources or {}).get("dbt")), built


def run_ci(args: argparse.Namespace, report: Callable[..., int]) -> int:
    from reliability.definitions import build_definitions
    from reliability.incidents.lineage import graph_from_definitions

    started = time.perf_counter()
    base = get_settings()
    production = Path(args.warehouse).resolve() if args.warehouse else base.warehouse_path
    state = Path(args.state)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="reliability-ci-"))
    try:
        copy = copy_warehouse(production, workdir)
        settings = settings_with_warehouse(base, copy)
        modified = modified_nodes(settings, state)
        results: list[CheckResult] = []
        with contextlib.redirect_stdout(sys.stderr):  # dbt writes its log to stdout: keep stdout for the report
            if not args.skip_validate:
                results.append(validate_definitions(settings))
            defs = build_definitions(settings)
            graph = defs.resolve_asset_graph()
            known = {k.to_user_string(): k for k in graph.get_all_asset_keys()}
            roots = [known[m] for m in modified if m in known]
            downstream = set(dg.AssetSelection.assets(*roots).downstream().resolve(graph)) if roots else set()
            touched = {k.to_user_string() for k in downstream}
            contracts = [
                c
                for c in discover_contracts(settings.contracts_dir)
                if isinstance(c, ContractSpec) and c.asset_name in touched
            ]
            before = table_schemas(copy, contracts)
            built: set[str] = set()
            if downstream:
                with open_instance() as instance:
                    built_results, built = build_and_check(
                        defs, downstream, instance, PartitionScope(key=args.partition)
                    )
                results += built_results
            after = table_schemas(copy, contracts)
    finally:
        if not args.workdir:  # a temp copy goes as soon as it has been read; --workdir keeps it for a look
            shutil.rmtree(workdir, ignore_errors=True)
    breaks = breaks_of(contracts, before, after)
    results += [break_result(b) for b in breaks]
    impacts = change_impact(graph_from_definitions(defs), [m for m in modified if m in known])
    markdown = impact_markdown(impacts, breaks)
    if args.report_md:
        Path(args.report_md).write_text(markdown)
    extra = {
        "modified": modified,
        "built": sorted(built),
        "warehouse_copy": str(copy),
        "impact": [i.to_dict() for i in impacts],
        "contract_breaks": [b.message for b in breaks],
    }
    if not args.json:
        print_line(f"modified (against {state}): {', '.join(modified) or 'nothing'}")
        print_line(f"built on the copy {copy}: {', '.join(sorted(built)) or 'nothing'}")
        for line in impact_lines(impacts):
            print_line(line)
        for item in breaks:
            print_line(f"CONTRACT BROKEN: {item.message}")
    return report(results, args, "reliability ci", time.perf_counter() - started, extra)

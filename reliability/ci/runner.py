"""Dagster glue: resolve a selection, run only its asset checks (no materialization), collect results.

Checks run through `dagster.materialize` with a selection of check keys only, so Dagster executes the
check steps alone (a dbt multi-asset then runs `dbt build --select <its tests>`, a Soda contract its
checks) and records the evaluations in the instance (the DAGSTER_HOME one when set). Checks of
partitioned assets run in a second run for one partition (or a range); the `open_incident` status
checks are left out: they report the incident store, not the data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from reliability.ci.results import MAX_FAILING_ROWS, CheckResult, result_from_evaluation
from reliability.errors import ConfigError
from reliability.incidents.model import STATUS_CHECKS
from reliability.settings import Settings

RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class PartitionScope:
    """Which partitions the checks of partitioned assets look at: one key, a range, or the latest."""

    key: str | None = None
    range: tuple[str, str] | None = None

    @classmethod
    def parse(cls, partition: str | None, partition_range: str | None) -> PartitionScope:
        if partition and partition_range:
            raise ConfigError("--partition and --partition-range exclude each other")
        if partition_range:
            first, sep, last = partition_range.partition("...")
            if not sep or not first or not last:
                raise ConfigError(f"--partition-range must look like 2026-11-01...2026-11-07, got {partition_range!r}")
            return cls(range=(first, last))
        return cls(key=partition)


def settings_with_warehouse(settings: Settings, warehouse: Path | None) -> Settings:
    """The settings pointed at another DuckDB file (dbt and the Soda checks both read it)."""
    if warehouse is None:
        return settings
    return settings.model_copy(update={"warehouse_path": warehouse.resolve()})


def open_instance() -> dg.DagsterInstance:
    """The configured instance (DAGSTER_HOME) so results are recorded, else an ephemeral one."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def resolve_selection(defs: dg.Definitions, text: str) -> set[dg.AssetKey]:
    """Asset keys of a Dagster selection string (`key:`, `tag:`, `owner:`, `group:`, `+`)."""
    graph = defs.resolve_asset_graph()
    try:
        keys = set(dg.AssetSelection.from_string(text).resolve(graph))
    except Exception as exc:  # the parser's and resolver's errors: a usage error either way
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--select {text!r}: {message}") from exc
    if not keys:
        raise ConfigError(f"--select {text!r} selects no asset")
    return keys


def checks_of(defs: dg.Definitions, keys: Iterable[dg.AssetKey]) -> list[dg.AssetCheckKey]:
    """The data checks on the given assets (the status checks left out), in a stable order."""
    graph = defs.resolve_asset_graph()
    wanted = set(keys)
    found = [k for k in graph.asset_check_keys if k.asset_key in wanted and k.name not in STATUS_CHECKS]
    return sorted(found, key=lambda k: k.to_user_string())


def runs_alone(defs: dg.Definitions, key: dg.AssetCheckKey) -> bool:
    """Whether Dagster can execute the check without materializing: a check declared inside a
    non-subsettable asset (e.g. `@asset(check_specs=...)`) runs only with that asset."""
    together = defs.resolve_asset_graph().get_execution_set_asset_and_check_keys(key)
    return not any(isinstance(k, dg.AssetKey) for k in together)


def skipped_result(key: dg.AssetCheckKey) -> CheckResult:
    return CheckResult(
        asset=key.asset_key.to_user_string(),
        check=key.name,
        passed=False,
        skipped="runs only when its asset is materialized (declared inside the asset)",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dg.TableMetadataValue):
        return [dict(record.data) for record in value.records[:MAX_FAILING_ROWS]]
    return getattr(value, "value", value)


def quiet_libraries() -> None:
    """dbt's and Dagster's per-event logs would bury the table: the results are reported after the run."""
    for name in ("dagster", "dagster_dbt", "dbt"):
        logging.getLogger(name).setLevel(logging.WARNING)


CHECK_JOB = "reliability_check"


def check_job_run(
    defs: dg.Definitions,
    keys: Sequence[dg.AssetCheckKey],
    instance: dg.DagsterInstance,
    partitions_def: dg.PartitionsDefinition | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute an asset job selecting only the checks, in process. The job carries the assets'
    partitions definition: a checks-only selection has no asset to infer it from."""
    # A checks-only asset job gets no partitions definition from Dagster (none of its assets is selected
    # to infer it from), so the job selects the checks' assets and runs its checks-only subset, as the
    # UI does: the subset keeps the parent's partitioned config.
    assets = {k.asset_key for k in keys} if partitions_def is not None else set()
    selection = dg.AssetSelection.assets(*assets) if assets else dg.AssetSelection.checks(*keys)
    job = dg.define_asset_job(CHECK_JOB, selection=selection)
    run_defs = dg.Definitions(
        assets=[*(defs.assets or []), *(defs.asset_checks or [])], jobs=[job], resources=defs.resources
    )
    job_def = run_defs.resolve_job_def(CHECK_JOB).get_subset(asset_check_selection=set(keys))
    return job_def.execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=instance,
        partition_key=partition_key,
        tags=dict(tags or {}),
        raise_on_error=False,
    )


def collect_results(
    result: dg.ExecuteInProcessResult, expected: Sequence[dg.AssetCheckKey], partition: str | None
) -> list[CheckResult]:
    out: list[CheckResult] = []
    seen: set[dg.AssetCheckKey] = set()
    for evaluation in result.get_asset_check_evaluations():
        key = evaluation.asset_check_key
        if key in seen or key not in set(expected):
            continue
        seen.add(key)
        metadata = {k: _plain(v) for k, v in evaluation.metadata.items()}
        rows = metadata.pop("failing_rows_sample", None) or []
        out.append(
            result_from_evaluation(
                asset=key.asset_key.to_user_string(),
                check=key.name,
                passed=evaluation.passed,
                severity="warn" if evaluation.severity == dg.AssetCheckSeverity.WARN else "error",
                description=evaluation.description,
                metadata=metadata,
                failing_rows=rows,
                partition=partition,
            )
        )
    failures = [
        e.event_specific_data.error.message.strip()
        for e in result.get_step_failure_events()
        if e.event_specific_data and e.event_specific_data.error
    ]
    cause = failures[0].splitlines()[0][:300] if failures else "the run ended before it reported"
    for key in expected:
        if key not in seen:
            out.append(
                CheckResult(
                    asset=key.asset_key.to_user_string(),
                    check=key.name,
                    passed=False,
                    description=f"not evaluated: {cause}",
                    partition=partition,
                )
            )
    return out


def dbt_test_name(result: CheckResult) -> str | None:
    """The dbt test's node name from its unique id (`test.<project>.<name>.<hash>`)."""
    unique_id = str(result.metadata.get("unique_id") or "")
    parts = unique_id.split(".")
    return parts[2] if len(parts) >= 3 and parts[0] == "test" else None


def with_dbt_samples(results: list[CheckResult], dbt: Any) -> list[CheckResult]:
    """Failed dbt tests get up to MAX_FAILING_ROWS of their failing rows (`dbt show` of the test, one
    dbt invocation for all of them); a sample that cannot be read leaves the result as it was."""
    import dataclasses
    import json
    import subprocess

    failed = {dbt_test_name(r): r for r in results if r.source == "dbt" and not r.passed and not r.failing_rows}
    failed.pop(None, None)
    if not failed or dbt is None:
        return results
    command = [
        dbt.dbt_executable,
        "show",
        "--select",
        " ".join(sorted(failed)),
        "--limit",
        str(MAX_FAILING_ROWS),
        "--output",
        "json",
        "--log-format",
        "json",
        "--project-dir",
        dbt.project_dir,
        "--profiles-dir",
        dbt.profiles_dir or dbt.project_dir,
    ]
    env = {**os.environ, "RELIABILITY_WAREHOUSE": dbt.warehouse_path, "DO_NOT_TRACK": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    samples: dict[str, list[dict[str, Any]]] = {}
    for line in done.stdout.splitlines():
        try:
            data = json.loads(line).get("data") or {}
            if data.get("node_name") in failed and "preview" in data:
                samples[data["node_name"]] = list(json.loads(data["preview"]))[:MAX_FAILING_ROWS]
        except (ValueError, TypeError, AttributeError):
            continue
    out = []
    for result in results:
        rows = samples.get(dbt_test_name(result) or "") if result in failed.values() else None
        out.append(dataclasses.replace(result, failing_rows=tuple(rows)) if rows else result)
    return out


def run_checks(
    defs: dg.Definitions,
    check_keys: Sequence[dg.AssetCheckKey],
    instance: dg.DagsterInstance,
    scope: PartitionScope = PartitionScope(),
) -> list[CheckResult]:
    """Run the given checks without materializing: unpartitioned assets' checks in one run, partitioned
    ones' in another for the scope's partition(s) (the latest partition by default)."""
    quiet_libraries()
    graph = defs.resolve_asset_graph()
    results: list[CheckResult] = [skipped_result(k) for k in check_keys if not runs_alone(defs, k)]
    check_keys = [k for k in check_keys if runs_alone(defs, k)]
    plain = [k for k in check_keys if graph.get(k.asset_key).partitions_def is None]
    partitioned = [k for k in check_keys if graph.get(k.asset_key).partitions_def is not None]
    if plain:
        results += collect_results(check_job_run(defs, plain, instance), plain, None)
    if partitioned:
        partitions_def = graph.get(partitioned[0].asset_key).partitions_def
        if scope.range is not None:
            for key in scope.range:
                _check_partition_key(partitions_def, key)
            tags = {RANGE_START_TAG: scope.range[0], RANGE_END_TAG: scope.range[1]}
            label = f"{scope.range[0]}...{scope.range[1]}"
            results += collect_results(
                check_job_run(defs, partitioned, instance, partitions_def, None, tags), partitioned, label
            )
        else:
            key = scope.key or partitions_def.get_last_partition_key()
            _check_partition_key(partitions_def, key)
            results += collect_results(
                check_job_run(defs, partitioned, instance, partitions_def, key), partitioned, key
            )
    return with_dbt_samples(results, (defs.resources or {}).get("dbt"))


def _check_partition_key(partitions_def: dg.PartitionsDefinition, key: str | None) -> None:
    if key is None or not partitions_def.has_partition_key(key):
        raise ConfigError(f"partition {key!r} is not a partition of the selected assets ({partitions_def})")

"""Helpers to run the real shop pipeline in tests: temp warehouse, real dbt, real Dagster instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from reliability.definitions import build_definitions
from reliability.settings import Settings, load_settings

DAY = "2026-11-20"


def shop_settings(tmp_path: Path, **env: str) -> Settings:
    """Repo settings with the warehouse moved into tmp_path (plus any env overrides)."""
    return load_settings(environ={"RELIABILITY_WAREHOUSE": str(tmp_path / "warehouse.duckdb"), **env})


def daily_selection(defs: dg.Definitions) -> dg.AssetSelection:
    """Every materializable daily-partitioned asset (with its checks)."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is not None]
    return dg.AssetSelection.assets(*keys)


def unpartitioned_selection(defs: dg.Definitions) -> dg.AssetSelection:
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is None]
    return dg.AssetSelection.assets(*keys)


def run(
    defs: dg.Definitions,
    selection: dg.AssetSelection,
    instance: dg.DagsterInstance,
    partition_key: str | None = None,
    resources: dict | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=selection,
        partition_key=partition_key,
        instance=instance,
        resources=resources if resources is not None else defs.resources,
        raise_on_error=False,
    )


def check_name(key: dg.AssetCheckKey) -> str:
    """'asset:check', unique across assets (Soda check names repeat per table)."""
    return f"{key.asset_key.to_user_string()}:{key.name}"


def _pipeline_checks(result: dg.ExecuteInProcessResult) -> list:
    """The pipeline's own checks: not `open_incident`, which reports the incident store's state."""
    from reliability.incidents.model import OPEN_INCIDENT_CHECK

    return [e for e in result.get_asset_check_evaluations() if e.check_name != OPEN_INCIDENT_CHECK]


def failed_checks(result: dg.ExecuteInProcessResult) -> set[str]:
    return {check_name(e.asset_check_key) for e in _pipeline_checks(result) if not e.passed}


def passed_checks(result: dg.ExecuteInProcessResult) -> set[str]:
    return {check_name(e.asset_check_key) for e in _pipeline_checks(result) if e.passed}


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def build(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)

"""dbt models as assets (daily-partitioned where tagged `daily`), tests as checks, exposures as assets."""

import importlib.metadata
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from packaging.version import Version

from reliability.dbt.project import dbt_executable, dbt_exposures, load_manifest, profiles_dir
from reliability.resources import DUCKDB_POOL, daily_partitions
from reliability.settings import Settings

DAILY_TAG = "daily"


class ReliabilityDbtTranslator(DagsterDbtTranslator):
    """Sources and models are keyed by bare table name, so dbt sources meet the raw assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return dg.AssetKey([dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "dbt"


class WarehouseDbtResource(DbtCliResource):
    """`DbtCliResource` whose subprocesses see the warehouse path from the platform settings."""

    warehouse_path: str

    def cli(self, args, **kwargs):  # same signature as the parent
        # dagster-dbt passes os.environ to dbt; profiles.yml reads the warehouse path from it.
        os.environ["RELIABILITY_WAREHOUSE"] = self.warehouse_path
        # A subset run (one partition of one model) runs a test only when all the test's parents are
        # selected or upstream of the selection: a relationships test never runs against a parent that
        # this run does not build and that may not be loaded yet.
        os.environ.setdefault("DBT_INDIRECT_SELECTION", "buildable")
        return super().cli(args, **kwargs)

    # Before each dbt command dagster-dbt starts dbt twice more in the step: `dbt --version`, and dbt's
    # adapter loaded in process (for row counts and column metadata, which the platform does not
    # fetch). That is about 15 s of every dbt step on this machine; a backfill has one or two such steps.

    @property
    def _cli_version(self) -> Version:
        """dbt-core's version from its package metadata when the executable is this environment's dbt."""
        if Path(self.dbt_executable) == Path(sys.executable).with_name("dbt"):
            return Version(importlib.metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)  # another dbt: ask it

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        """No in-process adapter: the invocation then fetches no row counts or column metadata."""
        return None


def _partition_vars(context: dg.AssetExecutionContext) -> list[str]:
    """`--vars` restricting daily models to the days of the run's partition (range)."""
    window = context.partition_time_window
    last_day = (window.end - timedelta(days=1)).date()
    days = {"min_date": window.start.date().isoformat(), "max_date": last_day.isoformat()}
    return ["--vars", json.dumps(days)]


def dbt_command(context: dg.AssetExecutionContext) -> str:
    """`build`, or `test` for a checks-only run (`reliability check`, a check launched from the UI): `dbt
    build` would skip the tests of a model whose parent's test failed, leaving those checks unevaluated."""
    return "build" if context.selected_asset_keys else "test"


def dbt_test_type(node: Mapping[str, Any]) -> str | None:
    """A dbt test's own type, `test_metadata.name` (namespaced for package tests, e.g.
    `dbt_utils.expression_is_true`); None for singular tests."""
    meta = node.get("test_metadata") or {}
    name = meta.get("name")
    if not name:
        return None
    return f"{meta['namespace']}.{name}" if meta.get("namespace") else str(name)


def with_test_metadata(events: Iterable[Any], manifest: Mapping[str, Any]) -> Iterator[Any]:
    """dbt test results with the test's type (`dbt_test`) and failing row count (`rows_failed`) in their
    metadata: the incident detection names the fault after them, not after the test's name."""
    nodes = manifest["nodes"]
    for event in events:
        if isinstance(event, dg.AssetCheckResult | dg.AssetCheckEvaluation):
            unique_id = getattr(event.metadata.get("unique_id"), "value", None)
            test_type = dbt_test_type(nodes.get(unique_id) or {}) if unique_id else None
            failed = getattr(event.metadata.get("dagster_dbt/failed_row_count"), "value", None)
            extra = {
                **({"dbt_test": test_type} if test_type else {}),
                **({"rows_failed": failed} if isinstance(failed, int) else {}),
            }
            if extra:
                event = event.with_metadata({**event.metadata, **extra})
        yield event


def _has_daily_models(manifest: Mapping[str, Any]) -> tuple[bool, bool]:
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    daily = any(DAILY_TAG in n.get("tags", []) for n in models)
    other = any(DAILY_TAG not in n.get("tags", []) for n in models)
    return daily, other


def defs(settings: Settings, manifest: Mapping[str, Any] | None = None) -> dg.Definitions:
    """The dbt area; `manifest` is the project's parsed manifest when the caller already has it."""
    manifest = manifest if manifest is not None else load_manifest(settings)
    translator = ReliabilityDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
    has_daily, has_other = _has_daily_models(manifest)
    assets: list[Any] = []

    if has_daily:

        @dbt_assets(
            manifest=manifest,
            select=f"tag:{DAILY_TAG}",
            name="dbt_daily_models",
            partitions_def=daily_partitions(settings),
            dagster_dbt_translator=translator,
            backfill_policy=dg.BackfillPolicy.single_run(),
            pool=DUCKDB_POOL,
        )
        def dbt_daily_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
            yield from with_test_metadata(
                dbt.cli([dbt_command(context), *_partition_vars(context)], context=context).stream(), manifest
            )

        assets.append(dbt_daily_models)

    if has_other:

        @dbt_assets(
            manifest=manifest,
            exclude=f"tag:{DAILY_TAG}" if has_daily else "",
            name="dbt_models",
            dagster_dbt_translator=translator,
            pool=DUCKDB_POOL,
        )
        def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
            yield from with_test_metadata(dbt.cli([dbt_command(context)], context=context).stream(), manifest)

        assets.append(dbt_models)

    exposures = [
        dg.AssetSpec(
            key=exposure.name,
            deps=exposure.parents,
            group_name="exposures",
            kinds={exposure.type},
            description=exposure.description,
            metadata={
                "exposure_type": exposure.type,
                **({"url": dg.MetadataValue.url(exposure.url)} if exposure.url else {}),
            },
        )
        for exposure in dbt_exposures(manifest)
    ]
    return dg.Definitions(
        assets=[*assets, *exposures],
        resources={
            "dbt": WarehouseDbtResource(
                project_dir=str(settings.dbt_project_dir),
                profiles_dir=str(profiles_dir(settings)),
                warehouse_path=str(settings.warehouse_path),
                dbt_executable=dbt_executable(),
            )
        },
    )

"""Thin Dagster glue: one asset backfill of exactly a plan's (asset, partition) set, and what it did.

The backfill is an ordinary Dagster asset backfill (the UI's Backfills page shows it; the daemon runs
it, grouping partitions as each asset's backfill policy allows), tagged with the incident id so the
verification sensor and people can find it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reliability.partitions import partition_label
from reliability.reconciliation.plan import ReconcilePlan
from reliability.reconciliation.verdict import CheckResult

INCIDENT_TAG = "reliability/incident"
RECONCILE_TAG = "reliability/reconcile"


def launch_backfill(instance: Any, asset_graph: Any, plan: ReconcilePlan, incident: str, now: datetime) -> str:
    """Submit the plan as one asset backfill (the daemon picks it up); returns the backfill id."""
    import dagster as dg
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.definitions.events import AssetKeyPartitionKey
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    pairs = {AssetKeyPartitionKey(dg.AssetKey.from_user_string(a), p) for a, p in plan.pairs()}
    subset = AssetGraphSubset.from_asset_partition_set(pairs, asset_graph)
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=backfill_id,
        backfill_timestamp=now.timestamp(),
        tags={INCIDENT_TAG: incident, RECONCILE_TAG: "true"},
        dynamic_partitions_store=instance,
        asset_graph_subset=subset,
        title=f"Reconcile {incident}: {plan.size} partition(s) from {plan.root}",
        description="\n".join(plan.lines()),
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill_id


def backfill_target(instance: Any, backfill_id: str) -> set[tuple[str, str | None]]:
    """The (asset, partition) pairs a backfill targets, as stored in the instance."""
    backfill = instance.get_backfill(backfill_id)
    subset = backfill.asset_backfill_data.target_subset
    return {(ap.asset_key.to_user_string(), ap.partition_key) for ap in subset.iterate_asset_partitions()}


@dataclass(frozen=True)
class BackfillOutcome:
    status: str
    finished: bool
    succeeded: bool
    run_ids: tuple[str, ...]
    checks: tuple[CheckResult, ...]  # every check evaluation of its runs, in event order
    materialized: frozenset[tuple[str, str | None]]  # (asset, partition) pairs its runs materialized


def backfill_outcome(instance: Any, backfill_id: str) -> BackfillOutcome:
    """Where a backfill stands and what its runs materialized and checked."""
    import dagster as dg
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, BulkActionStatus

    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        from reliability.errors import UserFacingError

        raise UserFacingError(f"backfill {backfill_id!r} does not exist in this Dagster instance")
    finished = backfill.status in BULK_ACTION_TERMINAL_STATUSES
    runs = instance.get_runs(filters=dg.RunsFilter.for_backfill(backfill_id))
    checks: list[CheckResult] = []
    materialized: set[tuple[str, str | None]] = set()
    kinds = {dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.ASSET_MATERIALIZATION}
    for run in reversed(list(runs)):  # oldest first: a later evaluation of a check wins
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            event = entry.dagster_event
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialized.add((event.asset_key.to_user_string(), event.partition))
                continue
            data = event.event_specific_data
            checks.append(CheckResult(data.asset_key.to_user_string(), data.check_name, data.passed,
                                      data.partition or partition_label(run.tags)))  # fmt: skip
    succeeded = backfill.status in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED)
    return BackfillOutcome(backfill.status.value, finished, succeeded, tuple(r.run_id for r in runs), tuple(checks),
                           frozenset(materialized))  # fmt: skip

"""Thin Dagster glue: the plan's inputs (lineage, edge mappings, partition keys) from a Dagster asset graph.

Only the cases the pure plan knows are accepted: one daily partitioning (or none) per asset and, between
two partitioned assets, Dagster's identity / default time-window mapping. Anything else (an offset
window, a static or dynamic partitioning) is refused with the edge named, rather than planned wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reliability.errors import UserFacingError
from reliability.incidents.lineage import graph_from_asset_graph
from reliability.incidents.triage import LineageGraph
from reliability.reconciliation.plan import EdgeMapping, ReconcilePlan, default_mapping, plan_reconciliation


@dataclass(frozen=True)
class PlanInputs:
    """Everything `plan_reconciliation` needs, as plain data."""

    graph: LineageGraph
    mappings: dict[tuple[str, str], EdgeMapping]
    not_materializable: frozenset[str]
    all_partitions: tuple[str, ...]

    def plan(self, root: str, root_partitions: Sequence[str]) -> ReconcilePlan:
        return plan_reconciliation(self.graph, root, root_partitions, self.all_partitions,
                                   mappings=self.mappings, not_materializable=self.not_materializable)  # fmt: skip


def _edge_mapping(asset_graph: Any, parent: Any, child: Any) -> EdgeMapping:
    import dagster as dg

    mapping = default_mapping(parent.partitions_def is not None, child.partitions_def is not None)
    if mapping is not EdgeMapping.IDENTITY or parent.partitions_def is None:
        return mapping
    dagster_mapping = asset_graph.get_partition_mapping(child.key, parent.key)
    same_keys = dagster_mapping in (dg.IdentityPartitionMapping(), dg.TimeWindowPartitionMapping())
    if not same_keys or parent.partitions_def != child.partitions_def:
        raise UserFacingError(
            f"cannot plan a reconciliation across {parent.key.to_user_string()} -> {child.key.to_user_string()}: "
            f"partition mapping {type(dagster_mapping).__name__} is not the identity of one daily partitioning"
        )
    return mapping


def plan_inputs(asset_graph: Any, now: datetime) -> PlanInputs:
    """The plan's inputs from `defs.resolve_asset_graph()`; `now` bounds the daily partition keys."""
    import dagster as dg

    partitionings = {node.partitions_def for node in asset_graph.asset_nodes if node.partitions_def is not None}
    daily = [p for p in partitionings if isinstance(p, dg.TimeWindowPartitionsDefinition)]
    if len(partitionings) > 1 or len(daily) != len(partitionings):
        names = ", ".join(sorted(str(p) for p in partitionings))
        raise UserFacingError(f"reconciliation supports one daily partitioning; the asset graph has: {names}")
    mappings: dict[tuple[str, str], EdgeMapping] = {}
    not_materializable: set[str] = set()
    for node in asset_graph.asset_nodes:
        key = node.key.to_user_string()
        if not node.is_materializable:
            not_materializable.add(key)
        for parent_key in node.parent_keys:
            parent = asset_graph.get(parent_key)
            mappings[(parent_key.to_user_string(), key)] = _edge_mapping(asset_graph, parent, node)
    all_partitions = tuple(daily[0].get_partition_keys(current_time=now)) if daily else ()
    return PlanInputs(graph_from_asset_graph(asset_graph), mappings, frozenset(not_materializable), all_partitions)

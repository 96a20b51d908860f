"""Thin Dagster glue: a `LineageGraph` (plain data) from a Dagster asset graph or Definitions."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from reliability.incidents.triage import EXPOSURE_KINDS, AssetInfo, LineageGraph, PartitionMapper, parse_tier

KIND_TAG_PREFIX = "dagster/kind/"
_CACHE: dict[int, tuple[Any, LineageGraph]] = {}


def _owners(node: Any) -> tuple[str, ...]:
    owners = [str(o) for o in (node.owners or [])]
    meta_owner = (node.metadata or {}).get("owner")
    if meta_owner is not None:
        owners.append(str(getattr(meta_owner, "value", meta_owner)))
    # Dagster prefixes team owners with "team:"; emails are plain
    return tuple(dict.fromkeys(o for o in owners if o))


def asset_info(node: Any) -> AssetInfo:
    metadata = node.metadata or {}
    tags = node.tags or {}
    raw_tier = metadata.get("tier") or tags.get("tier")
    kinds = {k[len(KIND_TAG_PREFIX) :] for k in tags if k.startswith(KIND_TAG_PREFIX)}
    is_exposure = "exposure_type" in metadata or node.group_name == "exposures" or bool(kinds & EXPOSURE_KINDS)
    return AssetInfo(
        owners=_owners(node),
        tier=parse_tier(getattr(raw_tier, "value", raw_tier)),
        partitioned=node.partitions_def is not None,
        kind="exposure" if is_exposure else "asset",
    )


def graph_from_asset_graph(asset_graph: Any) -> LineageGraph:
    """Asset keys as user strings (`fct_orders`, `a/b`), children, owners, tiers, partitions, kinds.

    Cached per asset-graph object: a code location keeps the same graph between sensor ticks.
    """
    cached = _CACHE.get(id(asset_graph))
    if cached is not None and cached[0] is asset_graph:
        return cached[1]
    children: dict[str, list[str]] = {}
    info: dict[str, AssetInfo] = {}
    for node in asset_graph.asset_nodes:
        key = node.key.to_user_string()
        children[key] = [c.to_user_string() for c in node.child_keys]
        info[key] = asset_info(node)
    graph = LineageGraph(children, info, partition_mapper(asset_graph))
    _CACHE.clear()
    _CACHE[id(asset_graph)] = (asset_graph, graph)
    return graph


def graph_from_definitions(defs: Any) -> LineageGraph:
    return graph_from_asset_graph(defs.resolve_asset_graph())


def partition_mapper(asset_graph: Any) -> PartitionMapper | None:
    """Dagster's partition mappings as a plain function, or None when every edge between two
    partitioned assets maps a key to itself (same partitioning, identity mapping): triage then
    takes its fast path."""
    import dagster as dg

    def identity(child: Any, parent_key: Any) -> bool:
        parent = asset_graph.get(parent_key)
        if parent.partitions_def is None or child.partitions_def is None:
            return True
        mapping = asset_graph.get_partition_mapping(child.key, parent_key)
        same_keys = mapping in (dg.IdentityPartitionMapping(), dg.TimeWindowPartitionMapping())
        return same_keys and parent.partitions_def == child.partitions_def

    nodes = list(asset_graph.asset_nodes)
    if all(identity(node, parent) for node in nodes for parent in node.parent_keys):
        return None

    @lru_cache(maxsize=65_536)
    def mapped(parent: str, key: str, child: str) -> tuple[str, ...]:
        parent_key, child_key = dg.AssetKey.from_user_string(parent), dg.AssetKey.from_user_string(child)
        return tuple(asset_graph.get_child_partition_keys_of_parent(key, parent_key, child_key))

    return mapped

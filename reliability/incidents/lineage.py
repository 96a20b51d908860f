"""Thin Dagster glue: a `LineageGraph` (plain data) from a Dagster asset graph or Definitions."""

from __future__ import annotations

from typing import Any

from reliability.incidents.triage import EXPOSURE_KINDS, AssetInfo, LineageGraph, parse_tier

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
    graph = LineageGraph(children, info)
    _CACHE.clear()
    _CACHE[id(asset_graph)] = (asset_graph, graph)
    return graph


def graph_from_definitions(defs: Any) -> LineageGraph:
    return graph_from_asset_graph(defs.resolve_asset_graph())

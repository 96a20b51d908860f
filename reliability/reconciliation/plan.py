"""The reconciliation plan, pure: which (asset, partition) pairs to rebuild after a bad root partition.

Input is plain lineage data: a `LineageGraph` (children, and per asset whether it is daily-partitioned
and whether it is an exposure), the partition mapping of each edge, the assets that cannot be
materialized, and the root with its affected partitions. Output is the exact rebuild set in dependency
order: the root's partitions mapped downstream edge by edge, each unpartitioned asset once. Nothing here
imports Dagster or does I/O, so the plan can be unit-tested and benchmarked on graphs of any size;
`reliability.reconciliation.lineage` extracts the inputs from a Dagster asset graph.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from reliability.errors import UserFacingError
from reliability.incidents.triage import ALL_PARTITIONS, LineageGraph


class EdgeMapping(StrEnum):
    """How a child's partitions depend on its parent's (the cases Dagster's mappings give us here)."""

    IDENTITY = "identity"  # same key on both sides: daily -> daily, or unpartitioned -> unpartitioned
    ALL_TO_UNPARTITIONED = "all_to_unpartitioned"  # daily parent, unpartitioned child: rebuilt once
    UNPARTITIONED_TO_ALL = "unpartitioned_to_all"  # unpartitioned parent: every partition of the child reads it


def default_mapping(parent_partitioned: bool, child_partitioned: bool) -> EdgeMapping:
    """Dagster's default mapping between two assets of the (one) daily partitioning or none."""
    if parent_partitioned and not child_partitioned:
        return EdgeMapping.ALL_TO_UNPARTITIONED
    if child_partitioned and not parent_partitioned:
        return EdgeMapping.UNPARTITIONED_TO_ALL
    return EdgeMapping.IDENTITY


@dataclass(frozen=True)
class RebuildStep:
    """One asset to rebuild: these partitions of a daily asset, or () for an unpartitioned one (once)."""

    asset: str
    partitions: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.partitions) or 1


@dataclass(frozen=True)
class ReconcilePlan:
    """The exact rebuild set, parents before children."""

    root: str
    root_partitions: tuple[str, ...]
    steps: tuple[RebuildStep, ...]
    not_rebuilt: tuple[str, ...] = ()  # reached but not materializable (exposures, external assets)

    @property
    def size(self) -> int:
        """How many (asset, partition) pairs the backfill builds; an unpartitioned asset counts once."""
        return sum(step.size for step in self.steps)

    def pairs(self) -> list[tuple[str, str | None]]:
        """Every (asset, partition) to rebuild, partition None for unpartitioned assets."""
        return [(s.asset, p) for s in self.steps for p in (s.partitions or (None,))]

    def partitions_by_asset(self) -> dict[str, tuple[str, ...]]:
        return {s.asset: s.partitions for s in self.steps}

    def to_dict(self) -> dict[str, object]:
        return {
            "root": self.root,
            "root_partitions": list(self.root_partitions),
            "size": self.size,
            "steps": [{"asset": s.asset, "partitions": list(s.partitions)} for s in self.steps],
            "not_rebuilt": list(self.not_rebuilt),
        }

    def lines(self) -> list[str]:
        """One line per step, for `--dry-run` and the timeline."""
        out = [f"{i}. {s.asset}: " + (", ".join(s.partitions) if s.partitions else "unpartitioned, once")
               for i, s in enumerate(self.steps, start=1)]  # fmt: skip
        if self.not_rebuilt:
            out.append("not rebuilt (not materializable): " + ", ".join(self.not_rebuilt))
        return out


def plan_reconciliation(
    graph: LineageGraph,
    root: str,
    root_partitions: Sequence[str],
    all_partitions: Sequence[str],
    *,
    mappings: Mapping[tuple[str, str], EdgeMapping] | None = None,
    not_materializable: Collection[str] = (),
) -> ReconcilePlan:
    """The (asset, partition) pairs to rebuild when `root_partitions` of `root` were bad.

    Partitions follow each edge's mapping (`mappings[(parent, child)]`, else the default for the two
    assets' partitioning): identity keeps the keys, an unpartitioned child is rebuilt once, and the
    daily child of a rebuilt unpartitioned asset needs every partition (`all_partitions`). One
    exception: the days named for an unpartitioned root describe its content (a Kafka-fed table whose
    checks saw one bad day), so its daily children get those days, not all. Exposures and assets in
    `not_materializable` are reported, not rebuilt; the walk goes on through them.
    """
    if root not in graph:
        raise UserFacingError(f"unknown root asset {root!r}: it is not in the asset graph")
    keys, info, children = graph.keys, graph.info, graph.children
    root_index = graph.index[root]
    root_partitioned = info[root_index].partitioned
    named = tuple(dict.fromkeys(root_partitions))
    if ALL_PARTITIONS in named:
        named = ()
    known = set(all_partitions)
    unknown = [p for p in named if p not in known]
    if unknown:
        raise UserFacingError(f"partition {unknown[0]!r} of {root} is not a partition of the daily partitioning")
    if root_partitioned and not named:
        raise UserFacingError(f"{root} is partitioned: name its affected partitions (--partition/--partition-range)")

    every = tuple(all_partitions)
    mappings = mappings or {}
    reached = {root_index}
    for level in graph.downstream_levels([root]):
        reached.update(level)
    # windows[i]: partition keys of node i to rebuild (a set), or None for "every partition"
    windows: dict[int, set[str] | None] = {root_index: set(named) if named or root_partitioned else None}
    waiting = {i: sum(1 for p in graph.parents[i] if p in reached) for i in reached if i != root_index}
    ready = [(root, root_index)]
    order: list[int] = []
    while ready:
        _, node = heapq.heappop(ready)  # by key among the ready ones: a stable, readable order
        order.append(node)
        window = windows[node]
        node_partitioned = info[node].partitioned
        for child in children[node]:
            if child not in waiting:
                continue
            child_partitioned = info[child].partitioned
            mapping = mappings.get((keys[node], keys[child])) or default_mapping(node_partitioned, child_partitioned)
            passed = _map_window(mapping, window, from_root=node == root_index and bool(named))
            current = windows.get(child, set())
            if current is None or passed is None:
                windows[child] = None
            else:
                current.update(passed)
                windows[child] = current
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (keys[child], child))

    skip = set(not_materializable)
    steps: list[RebuildStep] = []
    not_rebuilt: list[str] = []
    for i in order:
        key = keys[i]
        if info[i].is_exposure or key in skip:
            not_rebuilt.append(key)
            continue
        if not info[i].partitioned:
            steps.append(RebuildStep(key, ()))
            continue
        window = windows[i]
        steps.append(RebuildStep(key, every if window is None else tuple(sorted(window))))
    return ReconcilePlan(root, tuple(sorted(named)), tuple(steps), tuple(not_rebuilt))


def _map_window(mapping: EdgeMapping, window: set[str] | None, *, from_root: bool) -> set[str] | None:
    """The keys a child needs when its parent is rebuilt for `window` (None: every partition)."""
    if mapping is EdgeMapping.UNPARTITIONED_TO_ALL and not from_root:
        return None
    if mapping is EdgeMapping.ALL_TO_UNPARTITIONED:
        return set()  # the child is rebuilt once; it carries no keys on
    return window


def naive_size(graph: LineageGraph, root: str, partition_count: int, not_materializable: Collection[str] = ()) -> int:
    """The rebuild a plan avoids: every partition of the root and of every materializable asset downstream."""
    skip = set(not_materializable)
    nodes = [graph.index[root], *(i for level in graph.downstream_levels([root]) for i in level)]
    return sum(partition_count if graph.info[i].partitioned else 1 for i in nodes
               if not graph.info[i].is_exposure and graph.keys[i] not in skip)  # fmt: skip


# ------------------------------------------------------------------------------- the root's partitions
def incident_root_partitions(blast_radius: Mapping[str, object], root: str) -> tuple[str, ...]:
    """The root's affected partitions as the incident recorded them (its blast radius lists the keys hit
    per asset; `detected_partitions` where the store records them per asset), () when it names none."""
    detected = blast_radius.get("detected_partitions") or {}
    keys = list(detected.get(root, [])) if isinstance(detected, Mapping) else []
    for asset in blast_radius.get("assets") or []:  # type: ignore[attr-defined]
        if isinstance(asset, Mapping) and asset.get("asset_key") == root:
            keys += list(asset.get("partitions") or [])
    return tuple(sorted({k for k in keys if k and k != ALL_PARTITIONS}))


def partition_range(all_partitions: Sequence[str], text: str) -> tuple[str, ...]:
    """`2026-02-01..2026-02-03` -> the keys from first to last, both included."""
    first, sep, last = text.partition("..")
    if not sep or not first or not last:
        raise UserFacingError(f"--partition-range {text!r}: expected FIRST..LAST, e.g. 2026-02-01..2026-02-03")
    for key in (first, last):
        if key not in all_partitions:
            raise UserFacingError(f"--partition-range {text!r}: {key!r} is not a partition of the daily partitioning")
    start, end = all_partitions.index(first), all_partitions.index(last)
    if start > end:
        raise UserFacingError(f"--partition-range {text!r}: {first} comes after {last}")
    return tuple(all_partitions[start : end + 1])


__all__ = [
    "EdgeMapping",
    "RebuildStep",
    "ReconcilePlan",
    "default_mapping",
    "incident_root_partitions",
    "naive_size",
    "partition_range",
    "plan_reconciliation",
]

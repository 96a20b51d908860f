"""Triage as pure functions: blast radius, severity and root-cause hint over plain lineage data.

Nothing here imports Dagster or touches I/O. `reliability.incidents.lineage` turns a Dagster asset
graph into a `LineageGraph`; everything else works on that, so it can be unit-tested and benchmarked
on synthetic graphs of any size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from reliability.incidents.model import FaultClass, Severity

EXPOSURE_KINDS = frozenset({"exposure", "dashboard", "report", "notebook", "ml_model", "application"})


@dataclass(frozen=True)
class AssetInfo:
    """What triage needs to know about one asset (or exposure)."""

    owners: tuple[str, ...] = ()
    tier: int | None = None  # 1 is the most critical
    partitioned: bool = False
    kind: str = "asset"  # "asset" or one of EXPOSURE_KINDS

    @property
    def is_exposure(self) -> bool:
        return self.kind in EXPOSURE_KINDS


def parse_tier(value: object) -> int | None:
    """`tier1`, `Tier 2`, `3` -> 1, 2, 3; anything else -> None."""
    if value is None:
        return None
    text = str(value).strip().lower().replace("tier", "").replace("_", "").strip()
    return int(text) if text.isdigit() else None


# (parent asset, one of its partition keys, child asset) -> the child's partition keys that read it.
# The Dagster glue builds one from the asset graph's partition mappings; None means identity.
PartitionMapper = Callable[[str, str, str], Sequence[str]]


class LineageGraph:
    """Asset lineage compiled to compact integer adjacency lists.

    Asset keys are strings (Dagster's `AssetKey.to_user_string()`, e.g. `fct_orders`). Building costs
    O(V + E) once; each query is then a BFS over Python lists of ints, which is several times faster
    than walking networkx's dict-of-dicts.
    """

    __slots__ = ("keys", "index", "children", "parents", "info", "_static", "partition_mapper")

    def __init__(
        self,
        children: Mapping[str, Iterable[str]],
        info: Mapping[str, AssetInfo] | None = None,
        partition_mapper: PartitionMapper | None = None,
    ) -> None:
        info = dict(info or {})
        keys: list[str] = []
        index: dict[str, int] = {}

        def idx(key: str) -> int:
            i = index.get(key)
            if i is None:
                i = index[key] = len(keys)
                keys.append(key)
            return i

        edges: list[tuple[int, int]] = []
        for parent, kids in children.items():
            p = idx(parent)
            edges.extend((p, idx(kid)) for kid in kids)
        for key in info:
            idx(key)
        n = len(keys)
        child_lists: list[list[int]] = [[] for _ in range(n)]
        parent_lists: list[list[int]] = [[] for _ in range(n)]
        for p, c in set(edges):
            child_lists[p].append(c)
            parent_lists[c].append(p)
        self.keys = keys
        self.index = index
        self.children: list[tuple[int, ...]] = [tuple(sorted(c)) for c in child_lists]
        self.parents: list[tuple[int, ...]] = [tuple(sorted(p)) for p in parent_lists]
        self.info: list[AssetInfo] = [info.get(k, AssetInfo()) for k in keys]
        self._static: list[tuple[str, tuple[str, ...], int | None, bool, str]] | None = None
        # None: a partition key means the same key on every partitioned asset downstream
        self.partition_mapper = partition_mapper

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.index

    def static_rows(self) -> list[tuple[str, tuple[str, ...], int | None, bool, str]]:
        """Per node (key, owners, tier, partitioned, kind), built once: the blast radius hot loop."""
        rows = getattr(self, "_static", None)
        if rows is None:
            rows = [(k, i.owners, i.tier, i.partitioned, i.kind) for k, i in zip(self.keys, self.info, strict=True)]
            self._static = rows
        return rows

    def asset_info(self, key: str) -> AssetInfo:
        i = self.index.get(key)
        return self.info[i] if i is not None else AssetInfo()

    def _walk(self, starts: Iterable[str], adjacency: list[tuple[int, ...]]) -> list[list[int]]:
        """Breadth-first levels from `starts` (excluded): levels[d-1] holds the nodes at depth d."""
        seen = bytearray(len(self.keys))
        frontier = []
        for key in starts:
            i = self.index.get(key)
            if i is not None and not seen[i]:
                seen[i] = 1
                frontier.append(i)
        levels: list[list[int]] = []
        while frontier:
            nxt: list[int] = []
            append = nxt.append
            for u in frontier:
                for v in adjacency[u]:
                    if not seen[v]:
                        seen[v] = 1
                        append(v)
            if nxt:
                levels.append(nxt)
            frontier = nxt
        return levels

    def downstream_levels(self, starts: Iterable[str]) -> list[list[int]]:
        return self._walk(starts, self.children)

    def descendants(self, key: str) -> set[str]:
        keys = self.keys
        return {keys[i] for level in self._walk([key], self.children) for i in level}

    def ancestors(self, key: str) -> set[str]:
        keys = self.keys
        return {keys[i] for level in self._walk([key], self.parents) for i in level}

    def descendant_count(self, key: str) -> int:
        return sum(len(level) for level in self._walk([key], self.children))


class ImpactedAsset(NamedTuple):
    """One asset in a blast radius (a NamedTuple: cheap to build by the hundred thousand)."""

    key: str
    depth: int  # 0 for a root
    owners: tuple[str, ...]
    tier: int | None
    partitions: tuple[str, ...]  # () unpartitioned, ("<all>",) every partition, else the keys hit
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {
            "asset_key": self.key,
            "depth": self.depth,
            "owners": list(self.owners),
            "tier": f"tier{self.tier}" if self.tier else None,
            "partitions": list(self.partitions),
            "kind": self.kind,
        }


ALL_PARTITIONS = "<all>"


@dataclass(frozen=True)
class BlastRadius:
    """Everything downstream of the failing root(s), nearest first."""

    roots: tuple[str, ...]
    assets: tuple[ImpactedAsset, ...]  # roots first (depth 0), then downstream by depth

    @property
    def downstream(self) -> tuple[ImpactedAsset, ...]:
        return tuple(a for a in self.assets if a.depth > 0)

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(sorted({o for a in self.assets for o in a.owners}))

    @property
    def exposures(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.assets if a.kind in EXPOSURE_KINDS)

    @property
    def top_tier(self) -> int | None:
        tiers = [a.tier for a in self.assets if a.tier is not None]
        return min(tiers) if tiers else None

    @property
    def max_depth(self) -> int:
        return max((a.depth for a in self.assets), default=0)

    def to_dict(self) -> dict[str, object]:
        return {
            "roots": list(self.roots),
            "downstream_count": len(self.downstream),
            "max_depth": self.max_depth,
            "top_tier": f"tier{self.top_tier}" if self.top_tier else None,
            "owners": list(self.owners),
            "exposures": list(self.exposures),
            "assets": [a.to_dict() for a in self.assets],
        }

    def markdown(self, limit: int = 15) -> str:
        """Short summary for Dagster asset pages and notifications."""
        lines = [
            f"**Blast radius**: {len(self.downstream)} downstream asset(s), depth {self.max_depth}, "
            f"top tier {('tier' + str(self.top_tier)) if self.top_tier else 'unknown'}",
        ]
        if self.exposures:
            lines.append("**Exposures reached**: " + ", ".join(f"`{e}`" for e in self.exposures))
        if self.owners:
            lines.append("**Owners**: " + ", ".join(self.owners))
        shown = self.downstream[:limit]
        if shown:
            lines.append("")
            lines.append("| asset | depth | tier | owners |")
            lines.append("|---|---|---|---|")
            for a in shown:
                tier = f"tier{a.tier}" if a.tier else "-"
                lines.append(f"| `{md_escape(a.key)}` | {a.depth} | {tier} | {', '.join(a.owners) or '-'} |")
            if len(self.downstream) > limit:
                lines.append(f"| ... {len(self.downstream) - limit} more | | | |")
        return "\n".join(lines)


def md_escape(text: str) -> str:
    """Keep hostile asset keys from breaking a markdown table or injecting HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("`", "'")


def blast_radius(
    graph: LineageGraph, roots: Sequence[str], failed_partitions: str | Sequence[str] | None = None
) -> BlastRadius:
    """All assets downstream of `roots` with depth, owners, tier, partitions hit and exposure kind.

    Partitions: the failure is about `failed_partitions` (keys of the data, e.g. the days a check
    saw); without any it is about every partition (`<all>`). Downstream, keys follow the graph's
    partition mapper between two partitioned assets (Dagster's partition mappings) and pass through
    unpartitioned assets unchanged; without a mapper every partitioned asset gets the same keys.
    """
    if isinstance(failed_partitions, str):
        failed_partitions = (failed_partitions,)
    all_parts = tuple(sorted(set(failed_partitions))) if failed_partitions else (ALL_PARTITIONS,)
    unique_roots = tuple(dict.fromkeys(roots))
    levels = graph.downstream_levels(unique_roots)
    mapped = None
    if graph.partition_mapper is not None and all_parts != (ALL_PARTITIONS,):
        mapped = _mapped_partitions(graph, unique_roots, levels, all_parts)

    def root(key: str) -> ImpactedAsset:
        info = graph.asset_info(key)
        return ImpactedAsset(key, 0, info.owners, info.tier, all_parts if info.partitioned else (), info.kind)

    out = [root(r) for r in unique_roots]
    static = graph.static_rows()
    append, make, cls = out.append, tuple.__new__, ImpactedAsset
    for depth, level in enumerate(levels, start=1):
        level.sort()  # deterministic order: by position in the graph
        for i in level:
            key, owners, tier, partitioned, kind = static[i]
            parts = (mapped[i] if mapped is not None else all_parts) if partitioned else ()
            # tuple.__new__ skips NamedTuple's argument handling: this loop runs 10k times for hubs
            append(make(cls, (key, depth, owners, tier, parts, kind)))
    return BlastRadius(unique_roots, tuple(out))


def _mapped_partitions(
    graph: LineageGraph, roots: Sequence[str], levels: list[list[int]], failed: tuple[str, ...]
) -> dict[int, tuple[str, ...]]:
    """Partition keys per reached node, parents before children (Kahn's order over the reached set)."""
    mapper = graph.partition_mapper
    assert mapper is not None
    keys, static = graph.keys, graph.static_rows()
    reached = {graph.index[r] for r in roots if r in graph.index}
    starts = set(reached)
    reached.update(i for level in levels for i in level)
    parts: dict[int, tuple[str, ...]] = {i: failed for i in starts}
    waiting = {i: sum(1 for p in graph.parents[i] if p in reached) for i in reached if i not in starts}
    ready = list(starts)
    while ready:
        node = ready.pop()
        for child in graph.children[node]:
            if child not in waiting:
                continue
            got = _map_keys(mapper, static, keys, node, child, parts[node])
            parts[child] = merge_partition_keys(parts.get(child, ()), got)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return parts


def _map_keys(mapper: PartitionMapper, static: list, keys: list[str], parent: int, child: int,
              parent_parts: tuple[str, ...]) -> tuple[str, ...]:  # fmt: skip
    """The child's keys reading `parent_parts`: mapped between partitioned assets, else passed on."""
    if ALL_PARTITIONS in parent_parts or not (static[parent][3] and static[child][3]):
        return parent_parts
    out: list[str] = []
    for key in parent_parts:
        try:
            out.extend(mapper(keys[parent], key, keys[child]))
        except Exception:  # noqa: BLE001 - a key the mapping cannot place: say "every partition"
            return (ALL_PARTITIONS,)
    return tuple(out)


def merge_partition_keys(*groups: Sequence[str]) -> tuple[str, ...]:
    """Union of partition-key lists, sorted; `<all>` absorbs everything else."""
    union = {k for g in groups for k in g}
    return (ALL_PARTITIONS,) if ALL_PARTITIONS in union else tuple(sorted(union))


DETECTED_PARTITIONS = "detected_partitions"  # in a BlastRadius dict: asset -> keys its detections named


def merge_radius_partitions(previous: Mapping[str, object], radius: Mapping[str, object]) -> dict[str, object]:
    """`radius` (a BlastRadius dict) with each asset's partitions joined with those `previous` listed:
    an incident keeps every partition any of its detections reached."""
    before = {a["asset_key"]: a.get("partitions", []) for a in previous.get("assets", [])}  # type: ignore[union-attr]
    assets = []
    for a in radius.get("assets", []):  # type: ignore[union-attr]
        keys = merge_partition_keys(before.get(a["asset_key"], []), a.get("partitions", []))
        assets.append({**a, "partitions": list(keys)})
    detected: dict[str, list[str]] = {}
    for source in (previous, radius):
        for key, keys in (source.get(DETECTED_PARTITIONS) or {}).items():  # type: ignore[union-attr]
            detected[key] = list(merge_partition_keys(detected.get(key, []), keys))
    return {**radius, "assets": assets, DETECTED_PARTITIONS: detected}


def with_detected_partitions(radius: Mapping[str, object], asset_key: str, keys: Sequence[str]) -> dict[str, object]:
    """`radius` recording that a detection on `asset_key` named `keys` (none: every partition)."""
    detected = dict(radius.get(DETECTED_PARTITIONS) or {})  # type: ignore[call-overload]
    detected[asset_key] = list(merge_partition_keys(detected.get(asset_key, []), keys or (ALL_PARTITIONS,)))
    return {**radius, DETECTED_PARTITIONS: detected}


def partitions_by_asset(radius: Mapping[str, object]) -> dict[str, list[str]]:
    """Asset -> partition keys hit: partitioned assets of a BlastRadius dict, plus the keys detections
    named on unpartitioned ones (a check on an unpartitioned table that saw one day names the day)."""
    out = {a["asset_key"]: list(a["partitions"]) for a in radius.get("assets", []) if a.get("partitions")}  # type: ignore[union-attr]
    for key, keys in (radius.get(DETECTED_PARTITIONS) or {}).items():  # type: ignore[union-attr]
        out.setdefault(key, list(keys))
    return out


# --------------------------------------------------------------------------------------------------
# Severity: the rule table. First matching row wins, rows are ordered from most to least severe.
# "When unsure, take the higher": assets without a tier count as UNKNOWN_TIER, and a failure whose
# check severity is unknown counts as ERROR.
# --------------------------------------------------------------------------------------------------
UNKNOWN_TIER = 3
LARGE_BLAST = 50
MEDIUM_BLAST = 10


@dataclass(frozen=True)
class SeverityFacts:
    top_tier: int  # most critical tier among the roots and everything downstream
    downstream_count: int
    exposures: int
    error: bool  # check severity ERROR, failed run, or freshness FAIL

    @classmethod
    def of(cls, radius: BlastRadius, check_severity: str, fault_class: FaultClass) -> SeverityFacts:
        tiers = [a.tier if a.tier is not None else UNKNOWN_TIER for a in radius.assets]
        error = check_severity.upper() != "WARN" or fault_class == FaultClass.PIPELINE_FAILURE
        return cls(min(tiers, default=UNKNOWN_TIER), len(radius.downstream), len(radius.exposures), error)


@dataclass(frozen=True)
class SeverityRule:
    severity: Severity
    reason: str
    test: object = field(repr=False)  # Callable[[SeverityFacts], bool]


_R, _S = SeverityRule, Severity
SEVERITY_RULES: tuple[SeverityRule, ...] = (
    _R(_S.SEV1, "a tier1 asset is hit by an ERROR-level failure", lambda f: f.top_tier == 1 and f.error),
    _R(_S.SEV2, "a tier1 asset is hit by a WARN-level failure", lambda f: f.top_tier == 1),
    _R(_S.SEV2, "an exposure is reached by an ERROR-level failure", lambda f: f.exposures > 0 and f.error),
    _R(_S.SEV2, "a tier2 asset is hit by an ERROR-level failure", lambda f: f.top_tier == 2 and f.error),
    _R(_S.SEV2, f"{LARGE_BLAST}+ assets downstream", lambda f: f.downstream_count >= LARGE_BLAST),
    _R(_S.SEV3, "a tier2 asset is hit by a WARN-level failure", lambda f: f.top_tier == 2),
    _R(_S.SEV3, "an exposure is reached by a WARN-level failure", lambda f: f.exposures > 0),
    _R(_S.SEV3, "a tier3 asset is hit by an ERROR-level failure", lambda f: f.top_tier == 3 and f.error),
    _R(_S.SEV3, f"{MEDIUM_BLAST}+ assets downstream", lambda f: f.downstream_count >= MEDIUM_BLAST),
    _R(_S.SEV4, "anything else", lambda f: True),
)  # fmt: skip


def classify_severity(facts: SeverityFacts) -> tuple[Severity, str]:
    """Severity and the reason (the matching rule), so the timeline can say why."""
    for rule in SEVERITY_RULES:
        if rule.test(facts):  # type: ignore[operator]
            return rule.severity, rule.reason
    raise AssertionError("the last severity rule matches everything")


def severity_table_markdown() -> str:
    rows = ["| severity | when |", "|---|---|"]
    rows += [f"| {r.severity} | {r.reason} |" for r in SEVERITY_RULES]
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------------
# Root-cause hint
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AssetChangeFacts:
    """What changed recently on an asset, gathered by the Dagster glue from the event log."""

    asset_key: str
    last_materialized_at: datetime | None = None
    code_version: str | None = None
    previous_code_version: str | None = None
    columns: Mapping[str, str] | None = None  # name -> type of the latest materialization
    previous_columns: Mapping[str, str] | None = None
    last_run_status: str | None = None
    last_run_id: str | None = None


@dataclass(frozen=True)
class RootCauseHint:
    asset_key: str | None
    upstream_failing: tuple[str, ...]
    changes: tuple[str, ...]

    @property
    def text(self) -> str:
        if not self.asset_key:
            return "no failing asset known"
        parts = [f"most upstream failing asset: {self.asset_key}"]
        parts += self.changes or ("no recent change recorded on it",)
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "asset_key": self.asset_key,
            "upstream_failing": list(self.upstream_failing),
            "changes": list(self.changes),
            "text": self.text,
        }


def most_upstream_failing(graph: LineageGraph, failing: Sequence[str]) -> list[str]:
    """Failing assets with no failing ancestor, in the order given (earliest detection first)."""
    failing_set = set(failing)
    out = []
    for key in dict.fromkeys(failing):
        if not (graph.ancestors(key) & failing_set):
            out.append(key)
    return out


def describe_changes(facts: AssetChangeFacts) -> list[str]:
    changes = []
    old_code, new_code = facts.previous_code_version, facts.code_version
    if old_code and new_code and old_code != new_code:
        changes.append(f"code version changed {old_code} -> {new_code}")
    if facts.columns is not None and facts.previous_columns is not None:
        added = sorted(set(facts.columns) - set(facts.previous_columns))
        removed = sorted(set(facts.previous_columns) - set(facts.columns))
        retyped = sorted(
            c for c in set(facts.columns) & set(facts.previous_columns) if facts.columns[c] != facts.previous_columns[c]
        )
        if added:
            changes.append("columns added: " + ", ".join(added))
        if removed:
            changes.append("columns removed: " + ", ".join(removed))
        if retyped:
            changes.append("column types changed: " + ", ".join(retyped))
    if facts.last_run_status and facts.last_run_status.upper() not in {"SUCCESS", "STARTED"}:
        run = f"last run {facts.last_run_id}" if facts.last_run_id else "last run"
        changes.append(f"{run} status {facts.last_run_status}")
    if facts.last_materialized_at is not None:
        changes.append(f"last materialized at {facts.last_materialized_at.isoformat()}")
    return changes


def root_cause_hint(
    graph: LineageGraph, failing: Sequence[str], changes: Mapping[str, AssetChangeFacts] | None = None
) -> RootCauseHint:
    upstream = most_upstream_failing(graph, failing)
    if not upstream:
        return RootCauseHint(None, (), ())
    root = upstream[0]
    facts = (changes or {}).get(root)
    return RootCauseHint(root, tuple(upstream), tuple(describe_changes(facts)) if facts else ())

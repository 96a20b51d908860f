"""Which incident a new failure belongs to: one incident per root cause, not one per symptom.

Pure decision over plain data so the rules are easy to read and test; the store applies the decision
inside its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reliability.incidents.lifecycle import within_reopen_window
from reliability.incidents.triage import LineageGraph


class Action(StrEnum):
    JOIN = "join"  # same root / already part of the incident
    JOIN_DOWNSTREAM = "join_downstream"  # symptom downstream of the incident's root
    JOIN_UPSTREAM = "join_upstream"  # new failure upstream of the root: it becomes the new root
    REOPEN = "reopen"  # same root as a recently resolved incident
    OPEN = "open"


@dataclass(frozen=True)
class GroupingPolicy:
    """Time windows for grouping; configurable (see `reliability.incidents.config`)."""

    group_window: timedelta = timedelta(hours=6)
    reopen_window: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class IncidentView:
    """What grouping needs to know about an existing incident."""

    incident_id: int
    root_asset: str
    assets: frozenset[str]  # root, failing and impacted (blast radius) assets
    last_detected_at: datetime
    active: bool
    resolved_at: datetime | None = None
    failing: frozenset[str] = frozenset()  # assets with a failure recorded in the incident


@dataclass(frozen=True)
class Decision:
    action: Action
    incident_id: int | None = None
    reason: str = ""


def decide(
    asset_key: str,
    at: datetime,
    incidents: Sequence[IncidentView],
    graph: LineageGraph | None,
    policy: GroupingPolicy = GroupingPolicy(),
) -> Decision:
    """Rules, first match wins:

    1. an active incident whose root is this asset -> JOIN;
    2. an active incident that already has a failure on this asset -> JOIN;
    3. an active incident, last detection within `group_window`, whose root is upstream of this asset
       (or whose stored blast radius lists it) -> JOIN_DOWNSTREAM (the most recent such incident wins);
    4. an active incident within `group_window` whose root is downstream of this asset
       -> JOIN_UPSTREAM (this asset becomes the root);
    5. a resolved incident with this root, resolved within `reopen_window` -> REOPEN;
    6. otherwise OPEN.
    """
    active = [i for i in incidents if i.active]
    for inc in active:
        if inc.root_asset == asset_key:
            return Decision(Action.JOIN, inc.incident_id, "same root asset")
    listed = [i for i in active if asset_key in i.failing]
    if listed:
        inc = max(listed, key=lambda i: i.last_detected_at)
        return Decision(Action.JOIN, inc.incident_id, "asset already failing in the incident")
    recent = [i for i in active if at - i.last_detected_at <= policy.group_window]
    in_radius = [i for i in recent if asset_key in i.assets]
    if in_radius:
        inc = max(in_radius, key=lambda i: i.last_detected_at)
        return Decision(Action.JOIN_DOWNSTREAM, inc.incident_id, f"downstream of {inc.root_asset}")
    if graph is not None and asset_key in graph and recent:
        ancestors = graph.ancestors(asset_key)
        upstream_roots = [i for i in recent if i.root_asset in ancestors]
        if upstream_roots:
            inc = max(upstream_roots, key=lambda i: i.last_detected_at)
            return Decision(Action.JOIN_DOWNSTREAM, inc.incident_id, f"downstream of {inc.root_asset}")
        descendants = graph.descendants(asset_key)
        downstream_roots = [i for i in recent if i.root_asset in descendants]
        if downstream_roots:
            inc = max(downstream_roots, key=lambda i: i.last_detected_at)
            return Decision(Action.JOIN_UPSTREAM, inc.incident_id, f"upstream of {inc.root_asset}")
    reopenable = [
        i
        for i in incidents
        if not i.active and i.root_asset == asset_key and within_reopen_window(i.resolved_at, at, policy.reopen_window)
    ]
    if reopenable:
        inc = max(reopenable, key=lambda i: i.resolved_at or at)
        return Decision(Action.REOPEN, inc.incident_id, "same root as a recently resolved incident")
    return Decision(Action.OPEN, None, "new root cause")

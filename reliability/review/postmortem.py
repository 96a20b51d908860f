"""The post-mortem document as plain data (pure): summary, timeline, durations, blast radius, whys, actions.

Built from an incident (as the store returns it), the findings gathered about it and the reviewers'
notes; rendering (Markdown, HTML) is `render.py`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reliability.review.causes import Findings, Hypothesis, Why, five_whys, hypothesize

DEFINITIONS = {
    "MTTD": "time to detect: impact start -> detection",
    "MTTA": "time to acknowledge: detection -> acknowledgement",
    "MTTM": "time to mitigate: detection -> mitigation",
    "MTTR": "time to resolve: detection -> resolution",
}


@dataclass(frozen=True)
class ImpactStart:
    at: datetime | None
    method: str  # how it was estimated, in words


def estimate_impact_start(incident: Any, findings: Findings) -> ImpactStart:
    """Earliest evidence of bad data, preferring what the data itself says over when a check ran.

    Kafka-fed data: the broker timestamp of the first bad message. Else the incident's recorded impact
    start (when the failing data was materialized), else unknown."""
    scan = findings.kafka
    if scan is not None and scan.runs:
        firsts = [r for r in scan.runs if r.first_at is not None]
        if firsts:
            first = min(firsts, key=lambda r: r.first_at)  # type: ignore[arg-type,return-value]
            return ImpactStart(first.first_at, f"broker timestamp of the first duplicate message, "
                               f"{first.topic}[{first.partition}] offset {first.offsets[0]}")  # fmt: skip
    if findings.dlq_errors and findings.first_rejected_at is not None:
        return ImpactStart(findings.first_rejected_at, "the first message of the window dead-lettered by "
                           "ingestion (when it was consumed: an upper bound on when it was produced)")  # fmt: skip
    if incident.impact_started_at is not None:
        return ImpactStart(incident.impact_started_at, "recorded at detection: when the failing data was "
                           "materialized or checked (an upper bound: the fault may be older)")  # fmt: skip
    return ImpactStart(None, "unknown: no timestamp of the first bad data was found")


@dataclass(frozen=True)
class Duration:
    name: str
    definition: str
    seconds: float | None
    note: str = ""


def _between(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 3) if a is not None and b is not None else None


def durations(incident: Any, impact: ImpactStart) -> list[Duration]:
    return [
        Duration("MTTD", DEFINITIONS["MTTD"], _between(impact.at, incident.detected_at), impact.method),
        Duration("MTTA", DEFINITIONS["MTTA"], _between(incident.detected_at, incident.acknowledged_at)),
        Duration("MTTM", DEFINITIONS["MTTM"], _between(incident.detected_at, incident.mitigated_at)),
        Duration("MTTR", DEFINITIONS["MTTR"], _between(incident.detected_at, incident.resolved_at)),
    ]


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    if s < 60:
        return f"{sign}{s:.1f} s"
    if s < 3600:
        return f"{sign}{int(s // 60)} min {int(s % 60)} s"
    if s < 86_400:
        return f"{sign}{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{sign}{int(s // 86_400)} d {int(s % 86_400 // 3600)} h"


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str
    actor: str
    message: str


@dataclass(frozen=True)
class ActionItem:
    id: str
    text: str
    owner: str
    status: str = "open"
    source: str = "suggested"  # "suggested" (from the chain) or "notes"


@dataclass(frozen=True)
class GraphNode:
    key: str
    role: str  # root | failing | blocked | downstream | exposure
    depth: int


@dataclass
class PostMortem:
    incident_id: str
    title: str
    status: str
    severity: str
    severity_reason: str
    fault_class: str
    root_asset: str
    owners: list[str]
    affected: list[dict[str, object]]  # asset, role, partitions, rows (None when unknown)
    exposures: list[str]
    timeline: list[TimelineItem]
    impact: ImpactStart
    durations: list[Duration]
    nodes: list[GraphNode]
    edges: list[tuple[str, str]]
    whys: list[Why]
    hypothesis: Hypothesis
    contributing_factors: list[str]
    actions: list[ActionItem]
    summary_note: str = ""
    generated_at: datetime | None = None
    notes_path: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def node_role(asset: Any) -> str:
    if asset.role in ("root", "failing", "blocked"):
        return asset.role
    return "exposure" if asset.kind == "exposure" else "downstream"


def suggested_actions(h: Hypothesis, owner: str) -> list[ActionItem]:
    return [ActionItem(f"A{i}", text, owner) for i, text in enumerate(h.actions, start=1)]


def merge_notes(suggested: Sequence[ActionItem], notes: Mapping[str, Any]) -> list[ActionItem]:
    """Reviewers' notes win: an item with a suggested id replaces its text/owner/status (or drops it with
    `dropped: true`); new ids are added after the suggestions."""
    by_id = {a.id: a for a in suggested}
    order = [a.id for a in suggested]
    for raw in notes.get("action_items") or []:
        item_id = str(raw.get("id") or f"N{len(order) + 1}")
        if raw.get("dropped"):
            by_id.pop(item_id, None)
            continue
        base = by_id.get(item_id)
        by_id[item_id] = ActionItem(
            item_id,
            str(raw.get("text") or (base.text if base else "")),
            str(raw.get("owner") or (base.owner if base else "unassigned")),
            str(raw.get("status") or (base.status if base else "open")),
            "notes",
        )
        if item_id not in order:
            order.append(item_id)
    return [by_id[i] for i in order if i in by_id]


def build_postmortem(
    incident: Any,
    findings: Findings,
    edges: Sequence[tuple[str, str]] = (),
    notes: Mapping[str, Any] | None = None,
    rows: Mapping[str, int] | None = None,
    generated_at: datetime | None = None,
    notes_path: str = "",
) -> PostMortem:
    notes = notes or {}
    h = hypothesize(findings)
    impact = estimate_impact_start(incident, findings)
    keys = {a.asset_key for a in incident.assets}
    owner = next((a.owners[0] for a in incident.assets if a.role == "root" and a.owners), None)
    owner = owner or (incident.owners[0] if incident.owners else "unassigned")
    factors = [h.prevention] if h.prevention != "unknown" else []
    factors += [str(x) for x in notes.get("contributing_factors") or []]
    return PostMortem(
        incident_id=incident.display_id,
        title=incident.title,
        status=incident.status,
        severity=incident.severity,
        severity_reason=incident.severity_reason,
        fault_class=incident.fault_class,
        root_asset=incident.root_asset,
        owners=list(incident.owners),
        affected=[
            {
                "asset": a.asset_key,
                "role": a.role,
                "partitions": list(a.partitions),
                "kind": a.kind,
                "owners": list(a.owners),
                "rows": (rows or {}).get(a.asset_key),
            }
            for a in incident.assets
        ],  # fmt: skip
        exposures=list(incident.blast_radius.get("exposures", [])),
        timeline=sorted(
            (TimelineItem(e.at, e.kind, e.actor, e.message) for e in incident.timeline), key=lambda item: item.at
        ),  # fmt: skip
        impact=impact,
        durations=durations(incident, impact),
        nodes=[GraphNode(a.asset_key, node_role(a), a.depth) for a in incident.assets],
        edges=[(a, b) for a, b in edges if a in keys and b in keys],
        whys=five_whys(findings, h),
        hypothesis=h,
        contributing_factors=factors,
        actions=merge_notes(suggested_actions(h, owner), notes),
        summary_note=str(notes.get("summary") or ""),
        generated_at=generated_at,
        notes_path=notes_path,
    )


def notes_skeleton(pm: PostMortem) -> dict[str, object]:
    """What a fresh notes file holds: the suggested items, ready to edit (ids keep them matched)."""
    return {
        "summary": "",
        "contributing_factors": [],
        "action_items": [{"id": a.id, "text": a.text, "owner": a.owner, "status": a.status} for a in pm.actions],
    }

"""The circuit breaker's pure core: what to pause for an incident, what is paused, what to resume.

Everything the breaker does is an `action` entry on the incident's timeline (data `action` = kind), and
the timeline is the only record of it: `containment_state` folds one incident's entries into what is in
effect (automation stopped, Kafka feeds paused, partitions quarantined), so resuming restores exactly
what the breaker stopped and never what an engineer had stopped by hand. No Dagster, no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reliability.incidents.lifecycle import PlannedAction
from reliability.incidents.model import ACTIVE_STATUSES, Severity, Status, format_incident_id
from reliability.incidents.triage import ALL_PARTITIONS
from reliability.mitigation.policy import Mode

POLICY_ACTOR = "reliability-policy"
OVERRIDE_TAG = "reliability/quarantine_override"  # value: INC-n (comma-separated for several)

# action kinds (timeline entry data["action"])
STOP = "stop_automation"
START = "start_automation"
PAUSE_KAFKA = "pause_kafka"
RESUME_KAFKA = "resume_kafka"
QUARANTINE = "quarantine"
LIFT = "lift_quarantine"
POLICY = "policy"  # the marker: the policy was applied at this severity (so it is not re-applied)
OVERRIDE = "quarantine_override"


class Entry(Protocol):
    """A timeline entry as the store returns it."""

    @property
    def kind(self) -> str: ...
    @property
    def data(self) -> dict: ...


@dataclass(frozen=True)
class Automation:
    """A sensor, schedule or automation-condition sensor and the asset keys it can materialize."""

    name: str
    kind: str  # sensor | schedule | automation
    targets: frozenset[str]
    running: bool  # as the instance says now


@dataclass(frozen=True)
class Quarantine:
    """Partitions of one asset no run may materialize; `partitions` None means the whole asset."""

    incident_id: int
    asset: str
    partitions: frozenset[str] | None

    def blocks(self, asset: str, partitions: Iterable[str | None]) -> bool:
        if asset != self.asset:
            return False
        return self.partitions is None or any(p is None or p in self.partitions for p in partitions)


@dataclass
class ContainmentState:
    """What the breaker has in effect for one incident, from its timeline."""

    stopped: dict[str, Mapping[str, object]] = field(default_factory=dict)  # name -> stop action data
    kafka_paused: set[str] = field(default_factory=set)
    quarantined: list[Quarantine] = field(default_factory=list)
    applied_severity: str | None = None  # severity of the last policy application
    reopened_since: bool = False
    suggested: set[tuple[str, str]] = field(default_factory=set)  # (kind, subject) already suggested

    @property
    def contained(self) -> bool:
        return bool(self.stopped or self.kafka_paused or self.quarantined)


def _subject(data: Mapping[str, object]) -> str:
    return str(data.get("name") or data.get("asset") or "")


def containment_state(incident_id: int, entries: Iterable[Entry]) -> ContainmentState:
    """Fold an incident's timeline (oldest first) into what the breaker has in effect."""
    state = ContainmentState()
    quarantines: dict[str, Quarantine] = {}
    for e in entries:
        data = e.data or {}
        if e.kind == "status_change" and data.get("to") == str(Status.REOPENED) and state.applied_severity:
            state.reopened_since = True
        if e.kind != "action":
            continue
        kind = data.get("action")
        if data.get("suggested"):
            state.suggested.add((str(kind), _subject(data)))
            if kind == POLICY:
                state.applied_severity, state.reopened_since = str(data.get("severity")), False
            continue
        if kind == POLICY:
            state.applied_severity, state.reopened_since = str(data.get("severity")), False
        elif kind == STOP:
            state.stopped[str(data["name"])] = data
        elif kind == START:
            state.stopped.pop(str(data["name"]), None)
        elif kind == PAUSE_KAFKA:
            state.kafka_paused.add(str(data["asset"]))
        elif kind == RESUME_KAFKA:
            state.kafka_paused.discard(str(data["asset"]))
        elif kind == QUARANTINE:
            parts = data.get("partitions")
            quarantines[str(data["asset"])] = Quarantine(
                incident_id, str(data["asset"]), None if parts is None else frozenset(str(p) for p in parts)
            )
        elif kind == LIFT:
            quarantines.clear()
    state.quarantined = list(quarantines.values())
    return state


def needs_policy(status: str, severity: str, state: ContainmentState) -> bool:
    """The policy applies when an incident opens, escalates past the severity it was applied at, or
    reopens after it was applied; an engineer's resume is not undone on the next sensor tick."""
    if Status(status) not in ACTIVE_STATUSES:
        return False
    if state.applied_severity is None or state.reopened_since:
        return True
    return Severity(severity).rank < Severity(state.applied_severity).rank


@dataclass(frozen=True)
class RadiusAsset:
    """One asset of the incident's blast radius: key, partitions hit (() unpartitioned, ALL_PARTITIONS
    for every partition) and whether it is an exposure (dashboards are not materialized: never paused)."""

    key: str
    partitions: tuple[str, ...] = ()
    exposure: bool = False


def radius_from_incident(blast_radius: Mapping[str, object]) -> list[RadiusAsset]:
    """The stored blast radius (triage.BlastRadius.to_dict) as plain radius assets."""
    out = []
    for a in blast_radius.get("assets", []) or []:  # type: ignore[union-attr]
        out.append(RadiusAsset(str(a["asset_key"]), tuple(a.get("partitions") or ()), a.get("kind") == "exposure"))
    return out


def plan_containment(
    incident_id: int,
    root: str,
    radius: Sequence[RadiusAsset],
    automations: Sequence[Automation],
    kafka_fed: Iterable[str],
    state: ContainmentState,
    stopped_by_others: Mapping[str, int] | None = None,
) -> list[PlannedAction]:
    """The actions that contain an incident, minus what is already in effect:
    - stop every running automation whose targets intersect the root and its downstream assets
      (a sensor stopped by hand is not running, so it is neither stopped nor later resumed);
    - pause the Kafka feed of a Kafka-fed root at the consumer (its sensor skips with "paused by INC-n",
      so that sensor is not stopped);
    - an automation another active incident already stopped is recorded as held by this one too, so
      resuming either incident leaves it stopped while the other still needs it;
    - quarantine the partitions hit on every materializable asset of the radius."""
    display = format_incident_id(incident_id)
    assets = [a for a in radius if not a.exposure] or [RadiusAsset(root)]
    keys = {a.key for a in assets}
    paused_feed = root in set(kafka_fed)
    actions: list[PlannedAction] = []
    for auto in sorted(automations, key=lambda a: a.name):
        hit = auto.targets & keys
        if not hit or auto.name in state.stopped:
            continue
        holder = (stopped_by_others or {}).get(auto.name)
        if not auto.running and holder is not None:
            actions.append(PlannedAction(
                STOP, f"keep {auto.kind} {auto.name} stopped (stopped for {format_incident_id(holder)})",
                {"name": auto.name, "automation_kind": auto.kind, "targets": sorted(hit),
                 "held_with": format_incident_id(holder), "previous_status": "STOPPED"},
            ))  # fmt: skip
            continue
        if not auto.running:
            continue  # stopped by hand: not the breaker's to stop, nor to restart
        if paused_feed and hit <= {root} and auto.targets <= {root}:
            continue  # the Kafka feed itself: paused at the consumer below, so its skip reason says why
        actions.append(PlannedAction(
            STOP, f"stop {auto.kind} {auto.name} ({display}: it materializes {', '.join(sorted(hit))})",
            {"name": auto.name, "automation_kind": auto.kind, "targets": sorted(hit)},
        ))  # fmt: skip
    if paused_feed and root not in state.kafka_paused:
        actions.append(PlannedAction(
            PAUSE_KAFKA, f"pause Kafka ingestion of {root} (offsets stay, messages are kept)", {"asset": root}
        ))  # fmt: skip
    in_effect = {q.asset: q for q in state.quarantined}
    for a in assets:
        parts = None if not a.partitions or ALL_PARTITIONS in a.partitions else sorted(a.partitions)
        current = in_effect.get(a.key)
        if current is not None and (current.partitions is None or (parts and set(parts) <= current.partitions)):
            continue
        what = "every partition" if parts is None else "partition(s) " + ", ".join(parts)
        if not a.partitions:
            what = "the asset"
        actions.append(PlannedAction(
            QUARANTINE, f"quarantine {a.key}: {what} (runs that would build it fail, naming {display})",
            {"asset": a.key, "partitions": parts},
        ))  # fmt: skip
    return actions


def policy_marker(mode: Mode, severity: str, count: int) -> PlannedAction:
    verb = "applied" if mode is Mode.AUTO else "suggests"
    return PlannedAction(POLICY, f"circuit breaker ({mode}) for {severity}: {verb} {count} action(s)",
                         {"mode": str(mode), "severity": severity})  # fmt: skip


def as_suggestions(actions: Sequence[PlannedAction], state: ContainmentState) -> list[PlannedAction]:
    """`suggest` mode: the same actions, marked as not carried out, each suggested once."""
    out = []
    for a in actions:
        if a.kind != POLICY and (a.kind, _subject(a.data)) in state.suggested:
            continue
        out.append(PlannedAction(a.kind, f"suggested (not done): {a.description}", {**a.data, "suggested": True}))
    return out


def plan_resume(incident_id: int, state: ContainmentState, held_by_others: Mapping[str, int],
                running_now: Iterable[str]) -> list[PlannedAction]:  # fmt: skip
    """Undo exactly what the breaker did for this incident: restart the automation it stopped (unless
    another active incident still holds it, or someone already started it), resume its Kafka pauses,
    lift its quarantine. `held_by_others`: automation name -> the other incident that stopped it."""
    running = set(running_now)
    actions: list[PlannedAction] = []
    for name, data in sorted(state.stopped.items()):
        other = held_by_others.get(name)
        if other is not None:
            actions.append(PlannedAction(
                START, f"keep {name} stopped: {format_incident_id(other)} still holds it",
                {"name": name, "skipped": True, "held_by": format_incident_id(other)},
            ))  # fmt: skip
            continue
        note = " (already running)" if name in running else ""
        actions.append(PlannedAction(START, f"restart {data.get('automation_kind', 'automation')} {name}{note}",
                                     {"name": name, "automation_kind": data.get("automation_kind"),
                                      "previous_status": data.get("previous_status"),
                                      "already_running": name in running}))  # fmt: skip
    for asset in sorted(state.kafka_paused):
        actions.append(PlannedAction(RESUME_KAFKA, f"resume Kafka ingestion of {asset}", {"asset": asset}))
    if state.quarantined:
        lifted = ", ".join(sorted(q.asset for q in state.quarantined))
        actions.append(
            PlannedAction(
                LIFT, f"lift the quarantine of {lifted}", {"assets": sorted(q.asset for q in state.quarantined)}
            )
        )
    return actions


def blocking_quarantine(quarantines: Iterable[Quarantine], asset_keys: Iterable[str],
                        partitions: Sequence[str | None]) -> list[Quarantine]:  # fmt: skip
    """The quarantines a step materializing `asset_keys` x `partitions` (None: unpartitioned) runs into."""
    keys = list(asset_keys)
    return [q for q in quarantines for k in keys if q.blocks(k, partitions)]


RECONCILE_TAGS = ("reliability/reconcile", "reliability/incident")  # a reconciliation backfill's run tags


def override_ids(tags: Mapping[str, str]) -> set[int]:
    """Incident numbers a run may build through: those its override tag names (INC-3, 3, comma-separated),
    and the incident a reconciliation backfill repairs (it rebuilds exactly the quarantined partitions)."""
    from reliability.incidents.model import parse_incident_id

    out = set()
    named = (tags.get(OVERRIDE_TAG) or "").split(",")
    if tags.get(RECONCILE_TAGS[0]) == "true":
        named.append(tags.get(RECONCILE_TAGS[1]) or "")
    for part in named:
        if part.strip():
            try:
                out.add(parse_incident_id(part))
            except ValueError:
                continue
    return out


def refusal_message(blocked: Sequence[Quarantine], partitions: Sequence[str | None]) -> str:
    """The step failure an engineer reads: which incident, which asset and partitions, how to force it."""
    q = blocked[0]
    display = format_incident_id(q.incident_id)
    parts = [p for p in partitions if p is not None]
    where = f"{q.asset}" + (f" partition(s) {', '.join(parts[:5])}" if parts else "")
    others = sorted({format_incident_id(b.incident_id) for b in blocked} - {display})
    more = f" (also {', '.join(others)})" if others else ""
    return (
        f"{where} is quarantined by {display}{more}: this run would materialize it, so the step fails and its "
        f"downstream steps do not run. Repair through the incident (`reliability incidents show {display}`), or "
        f"force it with the run tag {OVERRIDE_TAG}={display} (recorded on the incident's timeline)."
    )

"""The incident lifecycle as one pure state machine: which moves are allowed, and what each one changes.

The rules live here, not in the store, so a person's command (`reliability incidents ack ...`), the
sensor's automatic moves (mitigated when every failing check passes again, reopened on a new failure)
and later stages (mitigation, reconciliation) all follow the same table. `plan_transition` takes the
incident's current facts and a time given by the caller and returns a `TransitionPlan`: the column
changes, the timeline entries and the notification events. The store only persists a plan, in one
transaction. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from reliability.errors import UserFacingError
from reliability.incidents.model import ACTIVE_STATUSES, Status, TimelineKind, format_incident_id

# Allowed moves. Anything else is refused, so the recorded history always makes sense.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.ACKNOWLEDGED, Status.MITIGATED, Status.RESOLVED}),
    Status.REOPENED: frozenset({Status.ACKNOWLEDGED, Status.MITIGATED, Status.RESOLVED}),
    Status.ACKNOWLEDGED: frozenset({Status.MITIGATED, Status.RESOLVED}),
    Status.MITIGATED: frozenset({Status.ACKNOWLEDGED, Status.RESOLVED, Status.REOPENED}),
    Status.RESOLVED: frozenset({Status.REOPENED}),
}

# The timestamp column a move into each status stamps with the caller's time.
STAMPS: dict[Status, str] = {
    Status.ACKNOWLEDGED: "acknowledged_at",
    Status.MITIGATED: "mitigated_at",
    Status.RESOLVED: "resolved_at",
}

# Columns cleared on entering a status, so the incident never shows a stage it has left as current
# (their old values stay in the status_change entry's `previous`).
CLEARS: dict[Status, tuple[str, ...]] = {
    Status.REOPENED: ("mitigated_at", "resolved_at"),
    Status.ACKNOWLEDGED: ("mitigated_at",),  # from an acknowledged, mitigated one: the mitigation did not hold
}

# The outbox event each move sends (none for mitigated: receivers only know trigger/acknowledge/resolve).
NOTIFICATIONS: dict[Status, str] = {
    Status.ACKNOWLEDGED: "acknowledge",
    Status.RESOLVED: "resolve",
    Status.REOPENED: "trigger",
}

TIMESTAMP_COLUMNS: tuple[str, ...] = ("acknowledged_at", "mitigated_at", "resolved_at")


class InvalidTransition(UserFacingError):
    """A refused move; the message is the one-line reason shown to the user."""


class IncidentFacts(Protocol):
    """What the rules need to know about an incident (the store's `Incident` has all of it)."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def root_asset(self) -> str: ...
    @property
    def acknowledged_at(self) -> datetime | None: ...
    @property
    def mitigated_at(self) -> datetime | None: ...
    @property
    def resolved_at(self) -> datetime | None: ...


class OpenKey(StrEnum):
    """What a move does to the incident's claim on its root (`incident_open_keys`: one active
    incident per root asset)."""

    KEEP = "keep"
    CLAIM = "claim"  # becoming active again: the root must not belong to another active incident
    RELEASE = "release"  # no longer active: a new failure on the root may open a new incident


@dataclass(frozen=True)
class TimelineRecord:
    """One timeline entry to append; the plan's `at` and `actor` apply to all of them."""

    kind: TimelineKind
    message: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedAction:
    """A side effect that goes with a move (e.g. pause automation, quarantine partitions). Later stages
    attach and carry these out; the store records each one on the timeline with the move."""

    kind: str
    description: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TransitionPlan:
    """Everything one move changes, for the store to persist as is."""

    incident_id: int
    source: Status
    target: Status
    at: datetime
    actor: str
    changes: Mapping[str, object]  # incident columns -> new values (status, timestamps, updated_at)
    timeline: tuple[TimelineRecord, ...]
    notifications: tuple[str, ...]  # outbox events: trigger | acknowledge | resolve
    open_key: OpenKey
    actions: tuple[PlannedAction, ...] = ()

    def with_actions(self, *actions: PlannedAction) -> TransitionPlan:
        """The same move plus side effects, each recorded as an `action` timeline entry."""
        if not actions:
            return self
        records = tuple(TimelineRecord(TimelineKind.ACTION, a.description, {"action": a.kind, **a.data})
                        for a in actions)  # fmt: skip
        return replace(self, actions=self.actions + actions, timeline=self.timeline + records)


def allowed_targets(status: Status | str) -> list[Status]:
    """The moves allowed from `status`, in lifecycle order (open, acknowledged, mitigated, resolved, reopened)."""
    allowed = TRANSITIONS[Status(status)]
    return [s for s in Status if s in allowed]


def transitions_table_markdown() -> str:
    """The allowed moves as the README shows them (a test keeps the two equal)."""
    rows = ["| from | allowed moves |", "| --- | --- |"]
    rows += [f"| `{s}` | " + ", ".join(f"`{t}`" for t in allowed_targets(s)) + " |" for s in Status]
    return "\n".join(rows)


def refusal(incident: IncidentFacts, target: Status, root_owner: int | None = None) -> str | None:
    """Why `incident` cannot move to `target` (one line), or None when it can.

    `root_owner` is the incident currently holding the root asset's open key, if any: reopening is
    refused while another incident is the active one for the same root."""
    current = Status(incident.status)
    display = format_incident_id(incident.id)
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(allowed_targets(current)) or "none"
        return f"{display} is {current}; cannot move to {target} (allowed: {allowed})"
    claims_root = _open_key(current, target) is OpenKey.CLAIM
    if claims_root and root_owner is not None and root_owner != incident.id:
        return (
            f"{format_incident_id(root_owner)} is already the active incident for {incident.root_asset}; "
            f"add to it instead of reopening {display}"
        )
    return None


def plan_transition(
    incident: IncidentFacts,
    target: Status,
    *,
    at: datetime,
    actor: str,
    note: str | None = None,
    reason: str | None = None,
    root_owner: int | None = None,
) -> TransitionPlan:
    """Plan moving `incident` to `target` at `at` (from the caller; never read from a clock here).

    `note` is a person's words: one `note` entry. `reason` is why an automatic move happened: part of
    the `status_change` message. Raises InvalidTransition with the one-line reason when refused."""
    if at.tzinfo is None:
        raise ValueError("lifecycle times must be timezone-aware (UTC)")
    why_not = refusal(incident, target, root_owner)
    if why_not:
        raise InvalidTransition(why_not)
    source = Status(incident.status)
    if source is Status.MITIGATED and target is Status.ACKNOWLEDGED and incident.acknowledged_at is None:
        return _acknowledge_in_place(incident, at, actor, note)
    changes: dict[str, object] = {"status": str(target), "updated_at": at}
    stamp = STAMPS.get(target)
    if stamp and not (stamp == "acknowledged_at" and incident.acknowledged_at):
        changes[stamp] = at  # the first acknowledgement is kept: time to acknowledge is the first response
    for column in CLEARS.get(target, ()):
        if getattr(incident, column) is not None:
            changes[column] = None
    previous = {c: _iso(getattr(incident, c)) for c in TIMESTAMP_COLUMNS if c in changes}
    data: dict[str, object] = {"from": str(source), "to": str(target), "previous": previous}
    if reason:
        data["reason"] = reason
    records = [TimelineRecord(TimelineKind.STATUS_CHANGE,
                              f"status {source} -> {target}" + (f": {reason}" if reason else ""), data)]  # fmt: skip
    if note:
        records.append(TimelineRecord(TimelineKind.NOTE, note))
    event = NOTIFICATIONS.get(target)
    return TransitionPlan(
        incident_id=incident.id,
        source=source,
        target=target,
        at=at,
        actor=actor,
        changes=changes,
        timeline=tuple(records),
        notifications=(event,) if event else (),
        open_key=_open_key(source, target),
    )


def _acknowledge_in_place(incident: IncidentFacts, at: datetime, actor: str, note: str | None) -> TransitionPlan:
    """The first acknowledgement of an incident the circuit breaker already mitigated: on-call takes it,
    and the containment stays (status mitigated). Time to acknowledge is measured as usual. Once
    acknowledged, acknowledging a mitigated incident again means the mitigation did not hold."""
    data = {"from": str(Status.MITIGATED), "to": str(Status.MITIGATED), "acknowledged": True}
    records = [TimelineRecord(TimelineKind.STATUS_CHANGE, f"acknowledged by {actor} (stays {Status.MITIGATED})", data)]
    if note:
        records.append(TimelineRecord(TimelineKind.NOTE, note))
    return TransitionPlan(
        incident_id=incident.id,
        source=Status.MITIGATED,
        target=Status.MITIGATED,
        at=at,
        actor=actor,
        changes={"acknowledged_at": at, "updated_at": at},
        timeline=tuple(records),
        notifications=(NOTIFICATIONS[Status.ACKNOWLEDGED],),
        open_key=OpenKey.KEEP,
    )


def _open_key(source: Status, target: Status) -> OpenKey:
    was_active, is_active = source in ACTIVE_STATUSES, target in ACTIVE_STATUSES
    if is_active and not was_active:
        return OpenKey.CLAIM
    if was_active and not is_active:
        return OpenKey.RELEASE
    return OpenKey.KEEP


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# ------------------------------------------------------------------------------------- automatic moves
def within_reopen_window(resolved_at: datetime | None, at: datetime, window: timedelta) -> bool:
    """A failure at `at` on the root of an incident resolved at `resolved_at` reopens it (instead of
    opening a new incident) when it comes within `window`."""
    return resolved_at is not None and at - resolved_at <= window


def move_on_new_failure(status: Status | str, resolved_at: datetime | None, at: datetime,
                        reopen_window: timedelta) -> Status | None:  # fmt: skip
    """Where a new failure on an incident's root takes it: a mitigated incident, or one resolved
    within the reopen window, is reopened; other active incidents just gain the detection."""
    current = Status(status)
    if current is Status.MITIGATED:
        return Status.REOPENED
    if current is Status.RESOLVED and within_reopen_window(resolved_at, at, reopen_window):
        return Status.REOPENED
    return None


def move_on_signals(status: Status | str, signals: Mapping[str, bool]) -> Status | None:
    """Where the incident's signals (signal key -> still failing) take it: once every failing check
    has passed again, an unmitigated active incident is mitigated. Resolving stays a human decision."""
    current = Status(status)
    if current not in ACTIVE_STATUSES or current is Status.MITIGATED:
        return None
    if signals and not any(signals.values()):
        return Status.MITIGATED
    return None


__all__ = [
    "TRANSITIONS",
    "InvalidTransition",
    "IncidentFacts",
    "OpenKey",
    "PlannedAction",
    "TimelineRecord",
    "TransitionPlan",
    "allowed_targets",
    "move_on_new_failure",
    "move_on_signals",
    "plan_transition",
    "refusal",
    "transitions_table_markdown",
    "within_reopen_window",
]

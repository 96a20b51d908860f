"""The pure lifecycle rules (incidents/lifecycle.py), tested directly: every from/to pair, what each
allowed move changes, records and sends, and the automatic moves the sensor makes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import product
from pathlib import Path

import pytest

from reliability.incidents.lifecycle import (
    InvalidTransition,
    OpenKey,
    PlannedAction,
    move_on_new_failure,
    move_on_signals,
    plan_transition,
    transitions_table_markdown,
    within_reopen_window,
)
from reliability.incidents.model import Status, TimelineKind
from tests.incidents.conftest import T0

ACK_AT, MITIGATED_AT, RESOLVED_AT = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20), T0 + timedelta(hours=1)
AT = T0 + timedelta(hours=2)  # the caller's time for every planned move


@dataclass(frozen=True)
class Facts:
    id: int
    status: str
    root_asset: str = "raw_orders"
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None


# A typical incident in each status (the timestamps it has reached there).
IN_STATUS: dict[Status, Facts] = {
    Status.OPEN: Facts(1, "open"),
    Status.ACKNOWLEDGED: Facts(1, "acknowledged", acknowledged_at=ACK_AT),
    Status.MITIGATED: Facts(1, "mitigated", acknowledged_at=ACK_AT, mitigated_at=MITIGATED_AT),
    Status.RESOLVED: Facts(1, "resolved", acknowledged_at=ACK_AT, mitigated_at=MITIGATED_AT, resolved_at=RESOLVED_AT),
    Status.REOPENED: Facts(1, "reopened", acknowledged_at=ACK_AT),
}

# (from, to) -> (timestamp columns changed, notification events, open key). Every other pair is refused.
ALLOWED: dict[tuple[Status, Status], tuple[dict[str, datetime | None], tuple[str, ...], OpenKey]] = {
    (Status.OPEN, Status.ACKNOWLEDGED): ({"acknowledged_at": AT}, ("acknowledge",), OpenKey.KEEP),
    (Status.OPEN, Status.MITIGATED): ({"mitigated_at": AT}, (), OpenKey.KEEP),
    (Status.OPEN, Status.RESOLVED): ({"resolved_at": AT}, ("resolve",), OpenKey.RELEASE),
    (Status.ACKNOWLEDGED, Status.MITIGATED): ({"mitigated_at": AT}, (), OpenKey.KEEP),
    (Status.ACKNOWLEDGED, Status.RESOLVED): ({"resolved_at": AT}, ("resolve",), OpenKey.RELEASE),
    # mitigation did not hold: back to being worked on; the first acknowledgement stays
    (Status.MITIGATED, Status.ACKNOWLEDGED): ({"mitigated_at": None}, ("acknowledge",), OpenKey.KEEP),
    (Status.MITIGATED, Status.RESOLVED): ({"resolved_at": AT}, ("resolve",), OpenKey.RELEASE),
    (Status.MITIGATED, Status.REOPENED): ({"mitigated_at": None}, ("trigger",), OpenKey.KEEP),
    (Status.RESOLVED, Status.REOPENED): ({"mitigated_at": None, "resolved_at": None}, ("trigger",), OpenKey.CLAIM),
    (Status.REOPENED, Status.ACKNOWLEDGED): ({}, ("acknowledge",), OpenKey.KEEP),
    (Status.REOPENED, Status.MITIGATED): ({"mitigated_at": AT}, (), OpenKey.KEEP),
    (Status.REOPENED, Status.RESOLVED): ({"resolved_at": AT}, ("resolve",), OpenKey.RELEASE),
}

PAIRS = list(product(Status, Status))


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_is_planned_or_refused_with_a_one_line_reason(source: Status, target: Status) -> None:
    facts = IN_STATUS[source]
    if (source, target) not in ALLOWED:
        with pytest.raises(InvalidTransition) as refused:
            plan_transition(facts, target, at=AT, actor="alice")
        message = str(refused.value)
        assert message.startswith(f"INC-1 is {source}; cannot move to {target} (allowed: ")
        assert "\n" not in message
        return
    stamps, events, open_key = ALLOWED[(source, target)]
    plan = plan_transition(facts, target, at=AT, actor="alice")
    assert (plan.incident_id, plan.source, plan.target, plan.at, plan.actor) == (1, source, target, AT, "alice")
    assert plan.changes == {"status": str(target), "updated_at": AT, **stamps}
    assert plan.notifications == events and plan.open_key is open_key and plan.actions == ()
    (change,) = plan.timeline
    assert change.kind is TimelineKind.STATUS_CHANGE and change.message == f"status {source} -> {target}"
    previous = {column: getattr(facts, column).isoformat() if getattr(facts, column) else None for column in stamps}
    assert change.data == {"from": str(source), "to": str(target), "previous": previous}


def test_a_note_is_one_note_entry_and_a_reason_is_part_of_the_status_change() -> None:
    plan = plan_transition(IN_STATUS[Status.ACKNOWLEDGED], Status.RESOLVED, at=AT, actor="alice",
                           note="re-sent the vendor file")  # fmt: skip
    change, note = plan.timeline
    assert (note.kind, note.message) == (TimelineKind.NOTE, "re-sent the vendor file")
    assert "vendor" not in change.message and "vendor" not in str(change.data)
    auto = plan_transition(IN_STATUS[Status.OPEN], Status.MITIGATED, at=AT, actor="reliability-sensor",
                           reason="every failing check passed again")  # fmt: skip
    (change,) = auto.timeline
    assert change.message == "status open -> mitigated: every failing check passed again"
    assert change.data["reason"] == "every failing check passed again"


def test_the_first_acknowledgement_is_kept_and_a_first_ack_after_reopen_is_stamped() -> None:
    reacked = plan_transition(IN_STATUS[Status.REOPENED], Status.ACKNOWLEDGED, at=AT, actor="bob")
    assert "acknowledged_at" not in reacked.changes
    never_acked = Facts(1, "reopened")
    assert plan_transition(never_acked, Status.ACKNOWLEDGED, at=AT, actor="bob").changes["acknowledged_at"] == AT


def test_acknowledging_an_incident_the_breaker_mitigated_keeps_the_containment() -> None:
    """On-call acknowledges the page of an incident the circuit breaker already mitigated: the status
    stays mitigated (nothing is resumed), the acknowledgement is stamped and sent."""
    auto_mitigated = Facts(1, "mitigated", mitigated_at=MITIGATED_AT)
    plan = plan_transition(auto_mitigated, Status.ACKNOWLEDGED, at=AT, actor="oncall", note="looking")
    assert plan.target is Status.MITIGATED and plan.open_key is OpenKey.KEEP
    assert plan.changes == {"acknowledged_at": AT, "updated_at": AT}  # mitigated_at and status untouched
    assert plan.notifications == ("acknowledge",)
    assert [r.kind for r in plan.timeline] == [TimelineKind.STATUS_CHANGE, TimelineKind.NOTE]
    assert "stays mitigated" in plan.timeline[0].message
    # acknowledged before: acknowledging the mitigated incident again says the mitigation did not hold
    again = plan_transition(IN_STATUS[Status.MITIGATED], Status.ACKNOWLEDGED, at=AT, actor="oncall")
    assert again.changes["status"] == "acknowledged" and again.changes["mitigated_at"] is None


def test_reopen_needs_the_root_free_or_already_its_own() -> None:
    resolved = IN_STATUS[Status.RESOLVED]
    with pytest.raises(InvalidTransition, match="INC-7 is already the active incident for raw_orders; add to it "
                                                "instead of reopening INC-1"):  # fmt: skip
        plan_transition(resolved, Status.REOPENED, at=AT, actor="bob", root_owner=7)
    assert plan_transition(resolved, Status.REOPENED, at=AT, actor="bob", root_owner=None).open_key is OpenKey.CLAIM
    # a mitigated incident still holds its own key: reopening it keeps it (no second claim)
    mitigated = plan_transition(IN_STATUS[Status.MITIGATED], Status.REOPENED, at=AT, actor="bob", root_owner=1)
    assert mitigated.open_key is OpenKey.KEEP and mitigated.changes["status"] == "reopened"


def test_moves_other_than_claiming_ignore_the_root_owner() -> None:
    plan = plan_transition(IN_STATUS[Status.OPEN], Status.RESOLVED, at=AT, actor="alice", root_owner=7)
    assert plan.changes["status"] == "resolved"


def test_times_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_transition(IN_STATUS[Status.OPEN], Status.ACKNOWLEDGED, at=AT.replace(tzinfo=None), actor="alice")


def test_actions_ride_along_and_are_each_recorded() -> None:
    pause = PlannedAction("pause_schedule", "paused schedule daily_shop", {"schedule": "daily_shop"})
    plan = plan_transition(IN_STATUS[Status.ACKNOWLEDGED], Status.MITIGATED, at=AT, actor="reliability-policy")
    planned = plan.with_actions(pause)
    assert planned.actions == (pause,) and planned.changes == plan.changes
    assert [r.kind for r in planned.timeline] == [TimelineKind.STATUS_CHANGE, TimelineKind.ACTION]
    assert planned.timeline[1].message == "paused schedule daily_shop"
    assert planned.timeline[1].data == {"action": "pause_schedule", "schedule": "daily_shop"}
    assert plan.with_actions() is plan


@pytest.mark.parametrize(
    ("status", "signals", "expected"),
    [
        (Status.OPEN, {"a::dup": False, "b::uniq": False}, Status.MITIGATED),
        (Status.ACKNOWLEDGED, {"a::dup": False}, Status.MITIGATED),
        (Status.REOPENED, {"a::dup": False}, Status.MITIGATED),
        (Status.OPEN, {"a::dup": False, "b::uniq": True}, None),  # one still failing
        (Status.OPEN, {}, None),  # no signal at all: nothing has passed
        (Status.MITIGATED, {"a::dup": False}, None),  # already there
        (Status.RESOLVED, {"a::dup": False}, None),  # resolving and reopening are other rules
    ],
)
def test_signals_clearing_mitigate_an_active_incident(status, signals, expected) -> None:
    assert move_on_signals(status, signals) == expected


WINDOW = timedelta(hours=1)


@pytest.mark.parametrize(
    ("status", "resolved_at", "failure_at", "expected"),
    [
        (Status.MITIGATED, None, AT, Status.REOPENED),
        (Status.RESOLVED, AT, AT + timedelta(minutes=5), Status.REOPENED),
        (Status.RESOLVED, AT, AT + WINDOW, Status.REOPENED),  # the window's end is inside
        (Status.RESOLVED, AT, AT + WINDOW + timedelta(seconds=1), None),  # later: a new incident
        (Status.OPEN, None, AT, None),
        (Status.ACKNOWLEDGED, None, AT, None),
        (Status.REOPENED, None, AT, None),
    ],
)
def test_a_new_failure_reopens_mitigated_and_recently_resolved(status, resolved_at, failure_at, expected) -> None:
    assert move_on_new_failure(status, resolved_at, failure_at, WINDOW) == expected


def test_never_resolved_is_never_within_the_reopen_window() -> None:
    assert not within_reopen_window(None, AT, WINDOW)
    assert within_reopen_window(AT - WINDOW, AT, WINDOW)


def test_the_documented_moves_are_the_ones_in_the_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "reliability/incidents/README.md").read_text()
    assert transitions_table_markdown() in readme
    assert "| `mitigated` | `acknowledged`, `resolved`, `reopened` |" in transitions_table_markdown()

"""The circuit breaker carried out: the pure plan (plan.py) applied through the instance (controls.py)
and recorded on the incident's timeline. Called by the incident sensor (policy), the pause/resume jobs
and the CLI, and by reconciliation once a repair verified (`resume_incident`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import dagster as dg

from reliability.errors import UserFacingError
from reliability.incidents.lifecycle import PlannedAction, refusal
from reliability.incidents.model import Status, TimelineKind, format_incident_id
from reliability.mitigation import controls
from reliability.mitigation.plan import (
    LIFT,
    OVERRIDE,
    PAUSE_KAFKA,
    POLICY_ACTOR,
    START,
    STOP,
    ContainmentState,
    Quarantine,
    as_suggestions,
    containment_state,
    needs_policy,
    plan_containment,
    plan_resume,
    policy_marker,
    radius_from_incident,
)
from reliability.mitigation.policy import MitigationPolicy, Mode


@dataclass
class BreakerOutcome:
    incident_id: int
    mode: Mode
    actions: list[PlannedAction] = field(default_factory=list)
    mitigated: bool = False

    def summary(self) -> str:
        head = f"{format_incident_id(self.incident_id)} [{self.mode}]"
        lines = [f"{head}: " + ("moved to mitigated" if self.mitigated else f"{len(self.actions)} action(s)")]
        return "\n".join(lines + [f"  - {a.description}" for a in self.actions])


def _states(store: Any, incident_ids: Iterable[int] | None = None) -> dict[int, ContainmentState]:
    ids = None if incident_ids is None else list(incident_ids)
    entries = store.timelines([TimelineKind.ACTION], ids, active_only=ids is None)
    return {inc_id: containment_state(inc_id, rows) for inc_id, rows in entries.items()}


def _stopped_by_others(store: Any, incident_id: int) -> dict[str, int]:
    return {name: other for other, state in _states(store).items() if other != incident_id for name in state.stopped}


def _record(store: Any, incident_id: int, actor: str, actions: list[PlannedAction], now: datetime | None,
            move_to_mitigated: bool) -> bool:  # fmt: skip
    """Actions on the timeline; with the move to mitigated in the same transaction when it is allowed."""
    inc = store.get(incident_id)
    if move_to_mitigated and refusal(inc, Status.MITIGATED) is None:
        store.transition(incident_id, Status.MITIGATED, actor, now=now, actions=actions)
        return True
    for a in actions:
        data = {"action": a.kind, **a.data}
        store.add_timeline(incident_id, actor, TimelineKind.ACTION, a.description, data, now=now)
    return False


def pause_incident(instance: dg.DagsterInstance, store: Any, repo_def: dg.RepositoryDefinition, origin: Any,
                   incident_id: int, *, mode: Mode = Mode.AUTO, actor: str = POLICY_ACTOR,
                   now: datetime | None = None) -> BreakerOutcome:  # fmt: skip
    """Contain an incident: stop the automation feeding its blast radius, pause a Kafka-fed root's
    consumer, quarantine the partitions hit; record each action and move the incident to mitigated.
    `suggest` records the same actions as suggestions and changes nothing."""
    inc = store.get(incident_id)
    if not inc.active:
        raise UserFacingError(f"{inc.display_id} is {inc.status}: nothing to pause")
    state = containment_state(incident_id, inc.timeline)
    if origin is None and mode is Mode.AUTO:
        raise UserFacingError("cannot stop automation without the code location's origin (run it in Dagster)")
    found = controls.instigators(instance, repo_def, origin) if origin is not None else []
    automations = [i.automation for i in found]
    if origin is None:  # suggest without an origin: assume every automation runs as declared
        automations = [replace(a, running=True) for a in _declared_automations(repo_def)]
    planned = plan_containment(
        incident_id,
        inc.root_asset,
        radius_from_incident(inc.blast_radius),
        automations,
        controls.kafka_fed_assets(repo_def),
        state,
        _stopped_by_others(store, incident_id),
    )
    outcome = BreakerOutcome(incident_id, mode)
    if mode is Mode.SUGGEST:
        outcome.actions = as_suggestions([*planned, policy_marker(mode, inc.severity, len(planned))], state)
        if outcome.actions:
            _record(store, incident_id, actor, outcome.actions, now, move_to_mitigated=False)
        return outcome
    by_name = {i.automation.name: i for i in found}
    done: list[PlannedAction] = []
    for action in planned:
        if action.kind == STOP and "held_with" not in action.data:
            previous = controls.stop(instance, by_name[str(action.data["name"])])
            action = replace(action, data={**action.data, "previous_status": previous})
        done.append(action)  # Kafka pauses and quarantines take effect by being recorded
    done.append(policy_marker(mode, inc.severity, len(done)))
    outcome.actions = done
    outcome.mitigated = _record(store, incident_id, actor, done, now, move_to_mitigated=True)
    return outcome


def _declared_automations(repo_def: dg.RepositoryDefinition) -> list:
    from reliability.mitigation.plan import Automation

    out = []
    for s in repo_def.sensor_defs:
        kind, targets = controls.sensor_targets(repo_def, s)
        out.append(Automation(s.name, kind, frozenset(targets), True))
    return out


def resume_incident(instance: dg.DagsterInstance, store: Any, repo_def: dg.RepositoryDefinition, origin: Any,
                    incident_id: int, *, actor: str = POLICY_ACTOR, now: datetime | None = None,
                    record: bool = True) -> list[PlannedAction]:  # fmt: skip
    """Undo exactly what the breaker did for this incident: restart the automation it stopped (not what an
    engineer had stopped, nor what another active incident still holds), resume its Kafka pauses, lift
    its quarantine. Recorded on the timeline (unless `record` is False: reconciliation records the returned
    actions with the resolution, see `resolution_hook`); the incident's status is left to the caller."""
    store.get(incident_id)  # a clear error for an unknown id
    state = _states(store, [incident_id]).get(incident_id, ContainmentState())
    if state.stopped and origin is None:
        raise UserFacingError("cannot restart automation without the code location's origin (run it in Dagster)")
    found = {i.automation.name: i for i in controls.instigators(instance, repo_def, origin)} if state.stopped else {}
    running = [name for name, i in found.items() if i.automation.running]
    actions = plan_resume(incident_id, state, _stopped_by_others(store, incident_id), running)
    for action in actions:
        data = action.data
        if action.kind == START and not data.get("skipped") and not data.get("already_running"):
            inst = found.get(str(data["name"]))
            if inst is not None:
                controls.restart(instance, inst, data.get("previous_status"))  # type: ignore[arg-type]
    if actions and record:
        _record(store, incident_id, actor, actions, now, move_to_mitigated=False)
    return actions


def resolution_hook(instance: dg.DagsterInstance, store: Any, repo_def: dg.RepositoryDefinition,
                    origin: Any) -> Callable[[int], list[PlannedAction]]:  # fmt: skip
    """reliability.reconciliation's `on_resolved`: once a repair is verified, resume exactly what the
    breaker paused and lift the quarantine; the actions are returned for the resolution's timeline."""
    return lambda incident_id: resume_incident(instance, store, repo_def, origin, incident_id, record=False)


def lift_quarantine(store: Any, incident_id: int, actor: str, now: datetime | None = None) -> PlannedAction | None:
    """Lift only the quarantine (automation stays paused): e.g. before a verified repair run."""
    state = _states(store, [incident_id]).get(incident_id, ContainmentState())
    if not state.quarantined:
        return None
    assets = sorted(q.asset for q in state.quarantined)
    action = PlannedAction(LIFT, f"lift the quarantine of {', '.join(assets)}", {"assets": assets})
    _record(store, incident_id, actor, [action], now, move_to_mitigated=False)
    return action


# ------------------------------------------------------------------------------ read by runs and sensors
def active_quarantines(store: Any) -> list[Quarantine]:
    """Every quarantine in effect (active incidents only: a resolved incident holds nothing)."""
    return [q for state in _states(store).values() for q in state.quarantined]


def kafka_paused_by(store: Any, asset: str) -> str | None:
    """`INC-n` when an active incident paused the Kafka feed of `asset`, else None."""
    for inc_id, state in sorted(_states(store).items()):
        if asset in state.kafka_paused:
            return format_incident_id(inc_id)
    return None


def record_override(store: Any, incident_ids: Iterable[int], *, run_id: str, step: str, assets: list[str],
                    partitions: list[str], actor: str) -> None:  # fmt: skip
    """An engineer forced a run through a quarantine with the override tag: on the timeline."""
    parts = f" partition(s) {', '.join(partitions[:10])}" if partitions else ""
    for inc_id in incident_ids:
        store.add_timeline(inc_id, actor, TimelineKind.ACTION,
                           f"quarantine overridden: run {run_id} step {step} materializes {', '.join(assets)}{parts}",
                           {"action": OVERRIDE, "run_id": run_id, "step": step, "assets": assets,
                            "partitions": partitions})  # fmt: skip


# ------------------------------------------------------------------------------ the sensor's hook
def policy_tick(instance: dg.DagsterInstance, store: Any, repo_def: dg.RepositoryDefinition, origin: Any,
                policy: MitigationPolicy, tier_of: Callable[[str], object],
                now: datetime | None = None) -> list[BreakerOutcome]:  # fmt: skip
    """Apply the policy to every active incident that opened, escalated or reopened since it was last
    applied (a manual resume is not undone). `tier_of(asset)` gives the root's tier."""
    outcomes = []
    for inc in store.list_incidents(status="active"):
        mode = policy.mode_for(inc.severity, tier_of(inc.root_asset), inc.fault_class)
        if mode is Mode.OFF:
            continue
        state = containment_state(inc.id, store.timeline(inc.id))
        if not needs_policy(inc.status, inc.severity, state):
            continue
        try:
            outcomes.append(pause_incident(instance, store, repo_def, origin, inc.id, mode=mode, now=now))
        except UserFacingError as exc:  # one incident that cannot be contained does not hold up the others
            outcomes.append(BreakerOutcome(inc.id, mode, [PlannedAction("error", f"not contained: {exc}")]))
    return outcomes


__all__ = [
    "BreakerOutcome",
    "PAUSE_KAFKA",
    "active_quarantines",
    "kafka_paused_by",
    "lift_quarantine",
    "pause_incident",
    "policy_tick",
    "record_override",
    "resolution_hook",
    "resume_incident",
]


def feed_paused_by(asset: str) -> str | None:
    """For the Kafka sensors: `INC-n` when an incident paused `asset`'s feed. An unreadable incident
    store does not pause ingestion (logged)."""
    import logging

    from reliability.incidents.config import open_store

    try:
        with open_store() as store:
            return kafka_paused_by(store, asset)
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).exception("could not read Kafka pauses from the incident store")
        return None

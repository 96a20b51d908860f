"""Reconcile an incident: plan, submit one backfill, record it; later verify and resolve or keep open.

Shared by the CLI (`reliability incidents reconcile`), the `reconcile_incident` job and the
verification sensor, so each path records the same timeline entries. Times come from the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reliability.errors import UserFacingError
from reliability.incidents.lifecycle import PlannedAction
from reliability.incidents.model import FaultClass, Status, TimelineKind, format_incident_id
from reliability.reconciliation.graph import plan_inputs
from reliability.reconciliation.plan import ReconcilePlan, incident_root_partitions, partition_range
from reliability.reconciliation.verdict import Verdict, judge

ACTOR = "reliability-reconcile"
BACKFILL_ACTION = "reconcile_backfill"
VERIFY_ACTION = "reconcile_verify"

# Called with the incident id once a reconciliation is verified, before the incident is resolved: the
# place where mitigation lifts the quarantine and resumes exactly what it paused (issue 10, section 2).
# It returns the actions it took, recorded on the timeline with the resolution.
ResolutionHook = Callable[[int], Sequence[PlannedAction]]
# Replays a Kafka-fed root's bad days from Kafka, exactly once: `(days, dry_run, drop_copies) -> KafkaReplay`
# (reliability.kafka.dlq_ops.kafka_replayer); its result says which offsets per partition it covered.
# `drop_copies` is set for a duplicates incident: re-reading the bad days re-reads the producer's copies,
# which are dropped instead of replayed (see reliability.kafka.dlq).
KafkaReplayer = Callable[[Sequence[str], bool, bool], Any]
KAFKA_REPLAY_ACTION = "kafka_replay"


@dataclass(frozen=True)
class Reconciliation:
    incident_id: int
    plan: ReconcilePlan
    partitions_from: str  # "incident", "--partition" or "--partition-range"
    backfill_id: str | None  # None on a dry run
    kafka_replay: Any = None  # a KafkaReplay when asked for (--replay-kafka)

    def to_dict(self) -> dict[str, object]:
        replay = self.kafka_replay.to_dict() if self.kafka_replay is not None else None
        return {"incident": format_incident_id(self.incident_id), "partitions_from": self.partitions_from,
                "backfill_id": self.backfill_id, "plan": self.plan.to_dict(), "kafka_replay": replay}  # fmt: skip


def root_partitions(incident: Any, all_partitions: Sequence[str], partitions: Sequence[str] = (),
                    partition_range_text: str | None = None) -> tuple[tuple[str, ...], str]:  # fmt: skip
    """The root's affected partitions and where they came from: the options win, else the incident."""
    if partitions and partition_range_text:
        raise UserFacingError("give --partition or --partition-range, not both")
    if partition_range_text:
        return partition_range(all_partitions, partition_range_text), "--partition-range"
    if partitions:
        return tuple(partitions), "--partition"
    return incident_root_partitions(incident.blast_radius, incident.root_asset), "incident"


def reconcile(store: Any, instance: Any, asset_graph: Any, incident_id: int, *, now: datetime, actor: str = ACTOR,
              partitions: Sequence[str] = (), partition_range_text: str | None = None,
              dry_run: bool = False, replay_kafka: KafkaReplayer | None = None) -> Reconciliation:  # fmt: skip
    """Plan the incident's repair and, unless `dry_run`, submit it as one backfill and record both.

    With `replay_kafka` (a Kafka-fed root only) the root's bad days are first replayed from Kafka, exactly
    once, so the backfill rebuilds from the replayed rows; a dry run shows the offsets per partition. For
    a duplicates incident the replay drops the producer's copies (identical key and payload at an
    earlier offset of the partition) instead of re-reading them into the table."""
    from reliability.reconciliation.backfill import launch_backfill

    incident = store.get(incident_id)
    if not incident.active:
        raise UserFacingError(f"{incident.display_id} is {incident.status}: there is nothing to reconcile")
    inputs = plan_inputs(asset_graph, now)
    keys, source = root_partitions(incident, inputs.all_partitions, partitions, partition_range_text)
    plan = inputs.plan(incident.root_asset, keys)
    replay = None
    if replay_kafka is not None:
        if not kafka_fed(asset_graph, incident.root_asset):
            raise UserFacingError(f"--replay-kafka: {incident.root_asset} is not ingested from Kafka")
        replay = replay_kafka(plan.root_partitions, dry_run, incident.fault_class == FaultClass.DUPLICATES)
    if dry_run:
        return Reconciliation(incident_id, plan, source, None, replay)
    if replay is not None:
        store.add_timeline(incident_id, actor, TimelineKind.ACTION, replay.summary(),
                           {"action": KAFKA_REPLAY_ACTION, **replay.to_dict()}, now=now)  # fmt: skip
    backfill_id = launch_backfill(instance, asset_graph, plan, incident.display_id, now)
    action = PlannedAction(
        BACKFILL_ACTION,
        f"reconciliation backfill {backfill_id}: {plan.size} (asset, partition) pair(s) from {plan.root} "
        f"({', '.join(plan.root_partitions) or 'unpartitioned'}; partitions from {source})",
        {"backfill_id": backfill_id, "partitions_from": source, "plan": plan.to_dict()},
    )
    store.add_timeline(incident_id, actor, TimelineKind.ACTION, action.description,
                       {"action": action.kind, **action.data}, now=now)  # fmt: skip
    return Reconciliation(incident_id, plan, source, backfill_id, replay)


def kafka_fed(asset_graph: Any, asset: str) -> bool:
    """Whether `asset` is ingested from Kafka (kind `kafka`, like mitigation's Kafka pause)."""
    import dagster as dg

    key = dg.AssetKey.from_user_string(asset)
    return asset_graph.has(key) and "dagster/kind/kafka" in (asset_graph.get(key).tags or {})


def verify_and_close(store: Any, instance: Any, incident_id: int, backfill_id: str, *, now: datetime,
                     actor: str = ACTOR, on_resolved: ResolutionHook | None = None) -> Verdict | None:  # fmt: skip
    """Once the backfill has ended: judge its check results against the incident's signals; resolve the
    incident when repaired (the lifecycle stamps the time and queues the notification), else keep it
    open and record why. None while the backfill is still running."""
    from reliability.reconciliation.backfill import backfill_outcome

    outcome = backfill_outcome(instance, backfill_id)
    if not outcome.finished:
        return None
    verdict = judge(store.signals(incident_id), outcome.checks, outcome.succeeded, outcome.status)
    data = {"action": VERIFY_ACTION, "backfill_id": backfill_id, "repaired": verdict.repaired,
            "failing": list(verdict.failing), "not_evaluated": list(verdict.not_evaluated),
            "runs": list(outcome.run_ids)}  # fmt: skip
    incident = store.get(incident_id)
    if verdict.repaired and incident.status != Status.RESOLVED:
        actions = [PlannedAction(VERIFY_ACTION, f"reconciliation {backfill_id} verified: {verdict.summary()}", data)]
        actions += list(on_resolved(incident_id) if on_resolved else ())
        store.transition(incident_id, Status.RESOLVED, actor, note=f"repaired by reconciliation backfill {backfill_id}",
                         now=now, actions=actions)  # fmt: skip
    elif not verdict.repaired:
        store.add_timeline(incident_id, actor, TimelineKind.ACTION,
                           f"reconciliation {backfill_id} did not repair {incident.display_id}: {verdict.summary()}; "
                           "the incident stays open", data, now=now)  # fmt: skip
    return verdict


def verified_backfills(timeline: Sequence[Any]) -> set[str]:
    """Backfill ids the timeline already shows a verdict for (the sensor judges each backfill once)."""
    return {str(e.data.get("backfill_id")) for e in timeline if e.data.get("action") == VERIFY_ACTION}

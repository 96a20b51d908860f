"""Dagster definitions of the reconciliation area: the `reconcile_incident` job and the sensor that
verifies each reconciliation backfill once it has ended, then resolves the incident or keeps it open.

Launch the job from the UI's Launchpad with the incident id as config, e.g.
`ops: {reconcile: {config: {incident_id: INC-3}}}`.
"""

from datetime import timedelta
from typing import Any

import dagster as dg

from reliability.clock import utcnow
from reliability.errors import UserFacingError
from reliability.incidents.config import open_store
from reliability.incidents.model import format_incident_id, parse_incident_id
from reliability.reconciliation.backfill import INCIDENT_TAG, RECONCILE_TAG
from reliability.reconciliation.service import (
    ACTOR,
    ResolutionHook,
    reconcile,
    verified_backfills,
    verify_and_close,
)

JOB_NAME = "reconcile_incident"
SENSOR_NAME = "reconciliation_verify_sensor"
LOOKBACK = timedelta(days=7)  # backfills older than this are not judged any more


class ReconcileConfig(dg.Config):
    """Which incident to repair; the root's partitions come from the incident unless given here."""

    incident_id: str
    partitions: list[str] = []
    partition_range: str | None = None  # FIRST..LAST
    dry_run: bool = False
    replay_kafka: bool = False  # a Kafka-fed root: replay its bad days from Kafka first (shop.orders)


@dg.op(name="reconcile", description="Plan the incident's repair and submit it as one asset backfill.")
def reconcile_incident_op(context: dg.OpExecutionContext, config: ReconcileConfig) -> dg.Output[dict]:
    try:
        incident_id = parse_incident_id(config.incident_id)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    now, actor = utcnow(), f"{ACTOR} (run {context.run_id[:8]})"
    replayer = None
    if config.replay_kafka:
        from reliability.kafka.broker import bootstrap_servers
        from reliability.kafka.dlq_ops import kafka_replayer
        from reliability.kafka.events import DEFAULT_TOPIC
        from reliability.kafka.ingest import DEFAULT_GROUP
        from reliability.settings import get_settings

        replayer = kafka_replayer(get_settings().warehouse_path, bootstrap_servers(), DEFAULT_TOPIC, DEFAULT_GROUP,
                                  now=now, actor=actor, incident=format_incident_id(incident_id))  # fmt: skip
    with open_store() as store:
        result = reconcile(
            store, context.instance, context.repository_def.asset_graph, incident_id, now=now,
            actor=actor, partitions=config.partitions,
            partition_range_text=config.partition_range, dry_run=config.dry_run, replay_kafka=replayer,
        )  # fmt: skip
    for line in result.plan.lines() + (result.kafka_replay.lines() if result.kafka_replay else []):
        context.log.info(line)
    return dg.Output(
        result.to_dict(),
        metadata={
            "backfill_id": result.backfill_id or "dry run: nothing submitted",
            "rebuild_pairs": result.plan.size,
            "partitions_from": result.partitions_from,
            "plan": dg.MetadataValue.md("\n".join(f"- {line}" for line in result.plan.lines())),
        },
    )


def _mitigation_hook(context: dg.SensorEvaluationContext, store: Any) -> ResolutionHook | None:
    """Resume exactly what the circuit breaker paused, once the repair is verified (None when this
    code location has no origin on the instance yet: the incident is still resolved, nothing resumes)."""
    from reliability.mitigation.controls import find_repository_origin
    from reliability.mitigation.service import resolution_hook

    try:
        origin = find_repository_origin(context.instance, context.repository_def)
    except UserFacingError as exc:
        context.log.warning(f"reconciliation: cannot resume paused automation: {exc}")
        return None
    return resolution_hook(context.instance, store, context.repository_def, origin)


@dg.job(name=JOB_NAME, description="Repair exactly the partitions an incident affected (config: incident_id).")
def reconcile_incident_job() -> None:
    reconcile_incident_op()


def build_verify_sensor(store_url: str | None = None, minimum_interval_seconds: int = 30,
                        on_resolved: ResolutionHook | None = None, resume_mitigation: bool = True,
                        ) -> dg.SensorDefinition:  # fmt: skip
    """`on_resolved` is the mitigation stage's hook: lift the quarantine and resume what it paused. By
    default (`resume_mitigation`) it is reliability.mitigation's, bound to this code location."""

    @dg.sensor(
        name=SENSOR_NAME, minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Once a reconciliation backfill has ended, judges its check results: resolves the "
        "incident when every check passes again, else keeps it open and says why on its timeline.",
    )  # fmt: skip
    def reconciliation_verify_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES, BulkActionsFilter

        now = utcnow()
        ended = context.instance.get_backfills(filters=BulkActionsFilter(
            statuses=BULK_ACTION_TERMINAL_STATUSES, tags={RECONCILE_TAG: "true"}, created_after=now - LOOKBACK,
        ))  # fmt: skip
        judged = []
        with open_store(store_url) as store:
            hook = on_resolved
            if hook is None and resume_mitigation and ended:
                hook = _mitigation_hook(context, store)
            for backfill in ended:
                try:
                    incident_id = parse_incident_id(backfill.tags.get(INCIDENT_TAG, ""))
                    timeline = store.timeline(incident_id)
                except (ValueError, UserFacingError) as exc:  # tagged by hand, or the incident is gone
                    judged.append(f"{backfill.backfill_id}: skipped ({exc})")
                    continue
                if backfill.backfill_id in verified_backfills(timeline):
                    continue
                verdict = verify_and_close(store, context.instance, incident_id, backfill.backfill_id, now=now,
                                           on_resolved=hook)  # fmt: skip
                if verdict is not None:
                    judged.append(f"{backfill.backfill_id}: {'repaired' if verdict.repaired else 'not repaired'}")
        return dg.SkipReason("; ".join(judged) or "no ended reconciliation backfill to judge")

    return reconciliation_verify_sensor


def defs(settings: object = None) -> dg.Definitions:
    """The reconciliation area (`settings` for symmetry with the other areas)."""
    return dg.Definitions(jobs=[reconcile_incident_job], sensors=[build_verify_sensor()])

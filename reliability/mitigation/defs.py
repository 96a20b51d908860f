"""Dagster definitions of the mitigation area: the `pause_incident` / `resume_incident` jobs (incident id
as run config, launchable from the Launchpad), the `open_incident` check on every asset, and the hook
the incident sensor calls after each tick (policy + check reports)."""

import logging
import os
from collections.abc import Iterable
from typing import Any

import dagster as dg

from reliability.incidents.model import OPEN_INCIDENT_CHECK
from reliability.mitigation.visibility import check_states

log = logging.getLogger(__name__)
PAUSE_JOB = "pause_incident"
RESUME_JOB = "resume_incident"
RESOLVED_SHOWN = 200  # resolved incidents whose assets get their passing `open_incident` evaluation


def dagster_url() -> str:
    """The UI's base URL for the `open_incident` link (the notifications' variable; default: local UI)."""
    from reliability.incidents.notify import DAGSTER_URL_ENV

    return os.environ.get(DAGSTER_URL_ENV) or "http://127.0.0.1:3000"


class IncidentConfig(dg.Config):
    incident_id: str  # INC-<n> or <n>


def _incident_number(text: str) -> int:
    from reliability.errors import UserFacingError
    from reliability.incidents.model import parse_incident_id

    try:
        return parse_incident_id(text)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None


def _run_actor(context: dg.OpExecutionContext) -> str:
    from reliability.mitigation.guard import ACTOR_TAG

    tags = context.run.tags
    return tags.get(ACTOR_TAG) or tags.get("dagster/user") or "dagster-ui"


def run_repository_origin(context: dg.OpExecutionContext) -> Any:
    """The code location origin a run was launched from (what the daemon keys sensor states by); for a
    run executed in process, the one the daemon stored states under."""
    from reliability.mitigation.controls import find_repository_origin

    origin = context.run.remote_job_origin
    if origin is not None:
        return origin.repository_origin
    return find_repository_origin(context.instance, context.repository_def)


@dg.op(name="pause_incident_op", description="Contain the incident now, whatever the policy says.")
def pause_incident_op(context: dg.OpExecutionContext, config: IncidentConfig) -> None:
    from reliability.incidents.config import open_store
    from reliability.mitigation.service import pause_incident

    with open_store() as store:
        outcome = pause_incident(context.instance, store, context.repository_def, run_repository_origin(context),
                                 _incident_number(config.incident_id), actor=_run_actor(context))  # fmt: skip
    context.log.info(outcome.summary())


@dg.op(name="resume_incident_op", description="Restart exactly what the breaker paused; lift the quarantine.")
def resume_incident_op(context: dg.OpExecutionContext, config: IncidentConfig) -> None:
    from reliability.incidents.config import open_store
    from reliability.mitigation.service import resume_incident

    with open_store() as store:
        actions = resume_incident(context.instance, store, context.repository_def, run_repository_origin(context),
                                  _incident_number(config.incident_id), actor=_run_actor(context))  # fmt: skip
    context.log.info("\n".join(a.description for a in actions) or "nothing was paused")


@dg.job(name=PAUSE_JOB, description="Circuit breaker: pause the automation feeding an incident's blast radius, "
        "quarantine its partitions, pause a Kafka-fed root (config: incident_id).")  # fmt: skip
def pause_incident_job() -> None:
    pause_incident_op()


@dg.job(name=RESUME_JOB, description="Undo an incident's circuit breaker: restart exactly what it stopped, "
        "resume Kafka, lift the quarantine (config: incident_id).")  # fmt: skip
def resume_incident_job() -> None:
    resume_incident_op()


def _incidents_for_checks(store: Any) -> list[Any]:
    listed = store.list_incidents(status="active") + store.list_incidents(status="resolved", limit=RESOLVED_SHOWN)
    return [store.get(i.id) for i in listed]


def open_incident_checks(asset_keys: Iterable[dg.AssetKey]) -> dg.AssetChecksDefinition:
    """`open_incident` on every asset: reported runless by the incident sensor; executing it by hand
    reports the same state from the incident store."""
    specs = [
        dg.AssetCheckSpec(OPEN_INCIDENT_CHECK, asset=key, description="Fails while an incident covering this asset "
                          "is open (incident id, severity, status and link in the metadata); passes once resolved.")
        for key in sorted(set(asset_keys), key=lambda k: k.to_user_string())
    ]  # fmt: skip

    @dg.multi_asset_check(specs=specs, can_subset=True, name="open_incident_checks")
    def open_incident_checks_op(context: dg.AssetCheckExecutionContext) -> Iterable[dg.AssetCheckResult]:
        from reliability.incidents.config import open_store

        with open_store() as store:
            states = check_states(_incidents_for_checks(store))
        for check_key in context.selected_asset_check_keys:
            state = states.get(check_key.asset_key.to_user_string())
            if state is None:
                yield dg.AssetCheckResult(asset_key=check_key.asset_key, check_name=OPEN_INCIDENT_CHECK, passed=True,
                                          description="no incident on this asset")  # fmt: skip
                continue
            yield dg.AssetCheckResult(asset_key=check_key.asset_key, check_name=OPEN_INCIDENT_CHECK,
                                      passed=state.passed, metadata=state.metadata(dagster_url()),
                                      description=state.description)  # fmt: skip

    return open_incident_checks_op


def report_open_incident_checks(instance: dg.DagsterInstance, store: Any, known: set[dg.AssetKey]) -> int:
    """Runless `open_incident` evaluations for every asset whose incident state changed since the last
    one reported (so the asset's Overview and the lineage graph show the incident)."""
    states = {k: s for k, s in check_states(_incidents_for_checks(store)).items()
              if dg.AssetKey.from_user_string(k) in known}  # fmt: skip
    if not states:
        return 0
    keys = [dg.AssetCheckKey(dg.AssetKey.from_user_string(k), OPEN_INCIDENT_CHECK) for k in states]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    count = 0
    for key in keys:
        state = states[key.asset_key.to_user_string()]
        record = latest.get(key)
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is not None and state.same_as(evaluation.metadata or {}, evaluation.passed):
            continue
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=key.asset_key, check_name=OPEN_INCIDENT_CHECK, passed=state.passed,
            metadata=state.metadata(dagster_url()), description=state.description,
            severity=dg.AssetCheckSeverity.ERROR,
        ))  # fmt: skip
        count += 1
    return count


def after_incident_tick(context: dg.SensorEvaluationContext, store: Any) -> list[str]:
    """The incident sensor's follow-up: apply the circuit-breaker policy to incidents that opened,
    escalated or reopened, then refresh the `open_incident` checks. Returns log lines."""
    from reliability.incidents.config import load_incidents_config
    from reliability.incidents.lineage import graph_from_asset_graph
    from reliability.mitigation.service import policy_tick

    repo_def = context.repository_def
    lines: list[str] = []
    origin = None
    if context.code_location_origin is not None and context.repository_name:
        from dagster._core.remote_origin import RemoteRepositoryOrigin

        origin = RemoteRepositoryOrigin(context.code_location_origin, context.repository_name)
    graph = graph_from_asset_graph(repo_def.asset_graph)
    try:
        policy = load_incidents_config().mitigation
        outcomes = policy_tick(context.instance, store, repo_def, origin, policy,
                               lambda key: graph.asset_info(key).tier if key in graph else None)  # fmt: skip
        lines += [o.summary() for o in outcomes]
    except Exception as exc:  # noqa: BLE001 - never lose the detection tick over containment
        log.exception("circuit breaker failed; will retry on the next tick")
        lines.append(f"circuit breaker failed: {exc}")
    try:
        known = set(repo_def.asset_graph.get_all_asset_keys())
        lines.append(f"{report_open_incident_checks(context.instance, store, known)} open_incident evaluation(s)")
    except Exception as exc:  # noqa: BLE001
        log.exception("open_incident checks failed; will retry on the next tick")
        lines.append(f"open_incident checks failed: {exc}")
    return lines


def defs(settings: Any = None) -> dg.Definitions:
    """The mitigation area's jobs (the checks are added over the final asset graph in definitions.py)."""
    return dg.Definitions(jobs=[pause_incident_job, resume_incident_job])

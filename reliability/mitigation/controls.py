"""Dagster glue: the automation of a code location (sensors, schedules, automation sensors), what each
can materialize, and stopping / restarting them through the instance API, exactly as the UI does.

Instigator states are keyed by the code location the daemon loaded. A sensor tick and a run know
that origin (`context.code_location_origin`, the run's job origin); the CLI finds it in the states
the daemon already stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from reliability.errors import UserFacingError
from reliability.mitigation.plan import Automation


@dataclass(frozen=True)
class Instigator:
    """One sensor or schedule: its definition, its remote handle (for the instance API), what it targets."""

    automation: Automation
    remote: Any  # RemoteSensor | RemoteSchedule
    default_running: bool


def _job_asset_keys(repo_def: dg.RepositoryDefinition, job_name: str) -> set[str]:
    job = repo_def.get_job(job_name)
    layer = job.asset_layer
    keys = set()
    for data in layer.data:
        selected = data.assets_def.keys
        keys |= {k.to_user_string() for k in selected}
    return keys


def sensor_targets(repo_def: dg.RepositoryDefinition, sensor_def: dg.SensorDefinition) -> tuple[str, set[str]]:
    """(kind, asset keys) a sensor can materialize: its asset selection, else its jobs' assets."""
    if isinstance(sensor_def, dg.AutomationConditionSensorDefinition):
        graph = repo_def.asset_graph
        keys = sensor_def.asset_selection.resolve(graph)
        # only what it can request: assets with an automation condition (raw_orders has its own feed)
        return "automation", {k.to_user_string() for k in keys if graph.get(k).automation_condition is not None}
    targets: set[str] = set()
    if sensor_def.asset_selection is not None:
        targets |= {k.to_user_string() for k in sensor_def.asset_selection.resolve(repo_def.asset_graph)}
    for target in sensor_def.targets:
        if target.job_name and repo_def.has_job(target.job_name):
            targets |= _job_asset_keys(repo_def, target.job_name)
    return "sensor", targets


def repository_handle(origin: Any) -> Any:
    """A RepositoryHandle for a RemoteRepositoryOrigin (what the daemon keys instigator states by)."""
    from dagster._core.remote_representation.handle import RepositoryHandle

    return RepositoryHandle(
        repository_name=origin.repository_name, code_location_origin=origin.code_location_origin,
        repository_python_origin=None, display_metadata={},
    )  # fmt: skip


def instigators(instance: dg.DagsterInstance, repo_def: dg.RepositoryDefinition, origin: Any) -> list[Instigator]:
    """Every sensor and schedule of the code location with what it targets and whether it runs now."""
    from dagster._core.remote_representation.external import RemoteSchedule, RemoteSensor
    from dagster._core.remote_representation.external_data import ScheduleSnap, SensorSnap

    handle = repository_handle(origin)
    out = []
    for sensor_def in repo_def.sensor_defs:
        kind, targets = sensor_targets(repo_def, sensor_def)
        remote = RemoteSensor(SensorSnap.from_def(sensor_def, repo_def), handle)
        out.append(_instigator(instance, remote, kind, targets,
                               sensor_def.default_status == dg.DefaultSensorStatus.RUNNING))  # fmt: skip
    for schedule_def in repo_def.schedule_defs:
        targets = _job_asset_keys(repo_def, schedule_def.job_name) if repo_def.has_job(schedule_def.job_name) else set()
        remote = RemoteSchedule(ScheduleSnap.from_def(schedule_def, repo_def), handle)
        out.append(_instigator(instance, remote, "schedule", targets,
                               schedule_def.default_status == dg.DefaultScheduleStatus.RUNNING))  # fmt: skip
    return out


def _instigator(instance: dg.DagsterInstance, remote: Any, kind: str, targets: set[str], default_running: bool):
    stored = instance.get_instigator_state(remote.get_remote_origin_id(), remote.selector_id)
    running = remote.get_current_instigator_state(stored).is_running
    return Instigator(Automation(remote.name, kind, frozenset(targets), running), remote, default_running)


def current_status(instance: dg.DagsterInstance, inst: Instigator) -> str:
    stored = instance.get_instigator_state(inst.remote.get_remote_origin_id(), inst.remote.selector_id)
    return inst.remote.get_current_instigator_state(stored).status.value


def stop(instance: dg.DagsterInstance, inst: Instigator) -> str:
    """Stop a sensor or schedule as the UI's toggle does; returns the status it had (to restore it)."""
    previous = current_status(instance, inst)
    origin_id, selector_id = inst.remote.get_remote_origin_id(), inst.remote.selector_id
    if inst.automation.kind == "schedule":
        instance.stop_schedule(origin_id, selector_id, inst.remote)
    else:
        instance.stop_sensor(origin_id, selector_id, inst.remote)
    return previous


def restart(instance: dg.DagsterInstance, inst: Instigator, previous_status: str | None) -> None:
    """Back to how it was before the breaker: the code's default (DECLARED_IN_CODE) or started."""
    schedule = inst.automation.kind == "schedule"
    if previous_status == "DECLARED_IN_CODE" and inst.default_running:
        (instance.reset_schedule if schedule else instance.reset_sensor)(inst.remote)
    else:
        (instance.start_schedule if schedule else instance.start_sensor)(inst.remote)


def find_repository_origin(instance: dg.DagsterInstance, repo_def: dg.RepositoryDefinition) -> Any:
    """The code location origin the daemon runs this repository under, from the instigator states it
    stored (every always-running sensor has one after its first tick)."""
    names = {s.name for s in repo_def.sensor_defs} | {s.name for s in repo_def.schedule_defs}
    for state in instance.all_instigator_state():
        origin = state.origin
        if origin.instigator_name in names and origin.repository_origin.repository_name == repo_def.name:
            return origin.repository_origin
    raise UserFacingError(
        "no sensor of this code location has ticked on this Dagster instance yet: start Dagster "
        "(scripts/start.sh or dagster dev) with the same DAGSTER_HOME, or pause from the UI (job pause_incident)"
    )


def kafka_fed_assets(repo_def: dg.RepositoryDefinition) -> set[str]:
    """Assets ingested from Kafka (kind `kafka`): the breaker pauses their consumer, not their sensor."""
    return {node.key.to_user_string() for node in repo_def.asset_graph.asset_nodes
            if "dagster/kind/kafka" in (node.tags or {})}  # fmt: skip

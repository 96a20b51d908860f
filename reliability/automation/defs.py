"""Declarative automation: the platform builds new partitions by itself once their inputs are in.

The rules (applied once, in `definitions.py`, through `automation_condition_for`):
- a daily asset builds every missing day once (from the first day of the partitions, so a fresh deploy
  fills the week it was given) as soon as its inputs are present, and rebuilds the latest day (today)
  whenever an input updates, e.g. after each Kafka micro-batch of `raw_orders`;
- an unpartitioned model rebuilds when an input updated;
- nothing builds while an input is missing or in progress, or while a blocking check of an input failed
  (`all_deps_blocking_checks_passed`): a bad raw batch stops the downstream build across runs;
- a root asset without partitions (the Kafka-fed `raw_orders`) has no condition: its own sensor
  feeds it.

A failed run is not retried in a loop (`execution_failed` holds the partition until someone rebuilds it);
the failure becomes an incident.
One automation sensor per asset group, running by default: visible and switchable on the UI's
Automation page, and what mitigation pauses for the groups an incident reaches.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from reliability.settings import Settings

SENSOR_PREFIX = "automation_"


def _inputs_ready() -> dg.AutomationCondition:
    return (
        ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    )


def daily_condition() -> dg.AutomationCondition:
    """Every missing day (until a run for it fails), the latest day again on each input update."""
    fill_missing = dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed()
    refresh_latest = dg.AutomationCondition.in_latest_time_window() & (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
    )
    return ((fill_missing | refresh_latest) & _inputs_ready()).with_label("build missing days, refresh today")


def unpartitioned_condition() -> dg.AutomationCondition:
    """Rebuild when an input updated (or the asset was never built)."""
    changed = (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    return (changed & _inputs_ready()).with_label("rebuild when an input updates")


def automation_condition_for(spec: dg.AssetSpec) -> dg.AutomationCondition | None:
    """The condition an asset gets by policy; an explicit condition on the spec wins."""
    if spec.automation_condition is not None:
        return spec.automation_condition
    if spec.partitions_def is not None:
        return daily_condition()
    if not spec.deps:
        return None  # fed by its own sensor (Kafka) or by hand
    return unpartitioned_condition()


def sensor_name(group: str) -> str:
    return f"{SENSOR_PREFIX}{group}"


def automation_sensors(groups: Iterable[str], settings: Settings) -> list[dg.AutomationConditionSensorDefinition]:
    """One running automation sensor per asset group that has automated assets."""
    return [
        dg.AutomationConditionSensorDefinition(
            sensor_name(group),
            target=dg.AssetSelection.groups(group),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=settings.automation_interval_seconds,
            description=f"Builds the {group} group's new partitions by itself once their inputs are in "
            "(stop it here to pause automation for the group).",
        )
        for group in sorted(set(groups))
    ]

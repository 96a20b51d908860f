"""The code location: small per-area `defs()` merged, then policy applied once.

Policy: every asset gets its owner, tier and freshness expectation (dbt `meta` for dbt models,
`assets.yaml` for the rest, else the settings' policy rules and default) and says where they came from
(`policy_source`); an asset without a policy fails loading with its name. Every asset also
gets its automation condition (reliability.automation), and each automated group its sensor. Every
asset op runs behind the quarantine guard and every asset carries the `open_incident` check
(reliability.mitigation).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import dagster as dg

from reliability.anomaly import defs as anomaly_area
from reliability.automation.defs import automation_condition_for, automation_sensors
from reliability.config import SourcedPolicy, default_policy, load_asset_policies
from reliability.contracts import defs as contracts_area
from reliability.dbt import defs as dbt_area
from reliability.dbt.project import dbt_policies, load_manifest
from reliability.errors import ConfigError
from reliability.incidents import defs as incidents_area
from reliability.kafka import defs as kafka_area
from reliability.mitigation import defs as mitigation_area
from reliability.mitigation.guard import with_quarantine_guard
from reliability.reconciliation import defs as reconciliation_area
from reliability.review import defs as review_area
from reliability.settings import Settings, get_settings
from reliability.shop import defs as shop_area


def apply_policy(spec: dg.AssetSpec, sourced: SourcedPolicy) -> dg.AssetSpec:
    policy = sourced.policy
    freshness = None
    if policy.freshness is not None:
        freshness = dg.FreshnessPolicy.time_window(
            fail_window=policy.freshness.fail_after, warn_window=policy.freshness.warn_after
        )
    return spec.replace_attributes(
        owners=[policy.owner],
        tags={**spec.tags, "tier": policy.tier},
        metadata={**spec.metadata, "owner": policy.owner, "tier": policy.tier, "policy_source": sourced.source},
        description=spec.description or policy.description,
        freshness_policy=freshness if freshness is not None else spec.freshness_policy,
    )


def _with_policies(
    defs: dg.Definitions, policies: Mapping[str, SourcedPolicy], default: SourcedPolicy | None
) -> dg.Definitions:
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        key = spec.key.to_user_string()
        policy = policies.get(key, default)
        if policy is None:
            raise ConfigError(
                f"asset {key!r} has no owner/tier policy: add it to the assets file or the dbt model's meta, "
                "or set policy.default in the settings file"
            )
        return apply_policy(spec, policy)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # map_asset_specs is stable enough for us
        return defs.map_asset_specs(func=apply)


def build_definitions(settings: Settings) -> dg.Definitions:
    """All areas of the platform for the given settings."""
    manifest = load_manifest(settings)  # parsed once: the dbt area and the policies both read it
    declared = load_asset_policies(settings.assets_file)
    policies = {
        **review_area.policies(),
        **{key: SourcedPolicy.declared(policy, "assets file") for key, policy in declared.items()},
        **dbt_policies(manifest, settings),
    }
    areas = [
        dbt_area.defs(settings, manifest),
        incidents_area.defs(settings),
        contracts_area.defs(settings),
        mitigation_area.defs(settings),
        reconciliation_area.defs(settings),
        review_area.defs(settings),
    ]
    if settings.shop_demo:
        areas += [shop_area.defs(settings), kafka_area.defs(settings)]
    merged = dg.Definitions.merge(*areas)
    # anomaly monitors on every table asset (the assets file's `anomaly:` section overrides)
    merged = dg.Definitions.merge(merged, anomaly_area.defs(settings, merged.assets or []))
    with_policies = _with_policies(merged, policies, default_policy(settings.policy))
    return _with_run_executor(_with_mitigation(_with_automation(with_policies, settings)))


def _with_automation(defs: dg.Definitions, settings: Settings) -> dg.Definitions:
    """Every executable asset gets its automation condition; every automated group its sensor."""
    assets: list = []
    groups: set[str] = set()
    for assets_def in defs.assets or []:
        if isinstance(assets_def, dg.AssetsDefinition) and assets_def.is_executable:
            assets_def = assets_def.map_asset_specs(
                lambda spec: spec.replace_attributes(automation_condition=automation_condition_for(spec))
            )
            groups |= {spec.group_name or "default" for spec in assets_def.specs if spec.automation_condition}
        assets.append(assets_def)
    return dg.Definitions.merge(
        dg.Definitions(assets=assets),
        dg.Definitions(
            asset_checks=defs.asset_checks,
            jobs=defs.jobs,
            schedules=defs.schedules,
            sensors=[*(defs.sensors or []), *automation_sensors(groups, settings)],
            resources=defs.resources,
        ),
    )


def _with_mitigation(defs: dg.Definitions) -> dg.Definitions:
    """Every asset op behind the quarantine guard; the `open_incident` check on every asset."""
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    return dg.Definitions(
        assets=with_quarantine_guard(list(defs.assets or [])),
        asset_checks=[*(defs.asset_checks or []), mitigation_area.open_incident_checks(keys)],
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources=defs.resources,
    )


def _with_run_executor(defs: dg.Definitions) -> dg.Definitions:
    """Every run executes its steps in its own process, one after the other.

    Why not Dagster's default (a process per step): every DuckDB step waits for the one `duckdb` pool
    slot anyway, so separate processes run nothing in parallel, yet each loads the code location again
    (dagster-dbt and dbt imports: about 15 s a step here). A week's single-run backfill has ten steps."""
    return dg.Definitions.merge(defs, dg.Definitions(executor=dg.in_process_executor))


defs = build_definitions(get_settings())

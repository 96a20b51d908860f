"""The platform's real code location for the reconciliation daemon test: every asset, check, job and
resource, without automation conditions and with only the reconciliation verifier (ticking every 5 s)
among the sensors, so the daemon does nothing but run the reconciliation backfill and judge it."""

import warnings

import dagster as dg

from reliability.definitions import build_definitions
from reliability.reconciliation.defs import build_verify_sensor
from reliability.settings import get_settings

_platform = build_definitions(get_settings())
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = dg.Definitions(
        assets=_platform.assets,
        asset_checks=_platform.asset_checks,
        jobs=_platform.jobs,
        sensors=[build_verify_sensor(minimum_interval_seconds=5)],
        resources=_platform.resources,
        executor=_platform.executor,
    ).map_asset_specs(func=lambda spec: spec.replace_attributes(automation_condition=None))

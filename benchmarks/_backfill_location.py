"""The platform's real code location for `benchmarks/run.py backfill`: every asset, check, job and
resource, but no sensors and no automation conditions, so the daemon runs nothing but the submitted
backfill."""

import warnings

import dagster as dg

from reliability.definitions import defs as _platform

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = dg.Definitions(
        assets=_platform.assets,
        asset_checks=_platform.asset_checks,
        jobs=_platform.jobs,
        resources=_platform.resources,
        executor=_platform.executor,
    ).map_asset_specs(func=lambda spec: spec.replace_attributes(automation_condition=None))

"""Soda v4 data contracts as Dagster asset checks.

`spec` parses contract files cheaply (no Soda, no DuckDB) into one check spec per Soda check,
`runner` verifies one contract with Soda against the DuckDB warehouse and maps the results,
`defs` turns every contract into one Dagster `@multi_asset_check`.
"""

import os

# Soda Core reads this when it is first imported and sends telemetry unless told not to.
os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")

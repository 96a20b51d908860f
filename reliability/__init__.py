"""Open data reliability platform on Dagster."""

import warnings

# Single-run backfill policies are how a week is one run (README, "Backfills"); Dagster flags the parameter as
# beta on every code location load, which only buries the CLI's own output.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta")

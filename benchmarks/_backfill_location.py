"""The platform's real code location for `benchmarks/run.py backfill`: every asset, check, job and
resource, but no sensors and no automation conditions, so the daemon runs nothing but the submitted
backfill."""

from reliability.definitions import defs as _platform
from tests.daemon_harness import quiet_platform

defs = quiet_platform(_platform)

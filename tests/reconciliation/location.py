"""The platform's real code location for the reconciliation daemon test: every asset, check, job and
resource, without automation conditions and with only the reconciliation verifier (ticking every 5 s)
among the sensors, so the daemon does nothing but run the reconciliation backfill and judge it."""

from reliability.definitions import build_definitions
from reliability.reconciliation.defs import build_verify_sensor
from reliability.settings import get_settings
from tests.daemon_harness import quiet_platform

defs = quiet_platform(build_definitions(get_settings()), sensors=[build_verify_sensor(minimum_interval_seconds=5)])

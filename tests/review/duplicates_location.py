"""The platform's real code location for the duplicate-orders test, loaded in process to run its
reconciliation backfill: every asset, check, job and resource, no automation, no sensor, and raw_orders
fed from the test's own topic and consumer group (REVIEW_TEST_KAFKA_TOPIC / _GROUP / _BOOTSTRAP), read
when the module is imported, like the settings."""

import os

from reliability.definitions import build_definitions
from reliability.kafka.defs import KafkaSource
from reliability.settings import get_settings
from tests.daemon_harness import quiet_platform

kafka = KafkaSource(
    bootstrap_servers=os.environ["REVIEW_TEST_KAFKA_BOOTSTRAP"],
    topic=os.environ["REVIEW_TEST_KAFKA_TOPIC"],
    group_id=os.environ["REVIEW_TEST_KAFKA_GROUP"],
)
defs = quiet_platform(build_definitions(get_settings()), resources={"kafka": kafka})

"""The platform's real code location, with the Kafka feed pointed at one test's topic and group
(RELIABILITY_TEST_KAFKA_TOPIC / _GROUP), for the test that runs a real `dagster-daemon`."""

import os

import dagster as dg

from reliability.definitions import build_definitions
from reliability.kafka.defs import KafkaSource
from reliability.settings import get_settings

_platform = build_definitions(get_settings())
defs = dg.Definitions(
    assets=_platform.assets,
    asset_checks=_platform.asset_checks,
    jobs=_platform.jobs,
    sensors=_platform.sensors,
    schedules=_platform.schedules,
    resources={
        **(_platform.resources or {}),
        "kafka": KafkaSource(
            topic=os.environ["RELIABILITY_TEST_KAFKA_TOPIC"], group_id=os.environ["RELIABILITY_TEST_KAFKA_GROUP"]
        ),
    },
)

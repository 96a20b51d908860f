"""The platform's real code location, with the Kafka feed pointed at one test's topic and group
(RELIABILITY_TEST_KAFKA_TOPIC / _GROUP), for the test that runs a real `dagster-daemon`.

The lag sensor is left out: it watches the platform's own consumer group, which this test does not use,
and would report it NOT_FOUND (the lag verdicts have their own tests, tests/kafka/test_lag_*.py)."""

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
    sensors=[s for s in _platform.sensors or [] if s.name != "kafka_lag_sensor"],
    schedules=_platform.schedules,
    executor=_platform.executor,
    resources={
        **(_platform.resources or {}),
        "kafka": KafkaSource(
            topic=os.environ["RELIABILITY_TEST_KAFKA_TOPIC"], group_id=os.environ["RELIABILITY_TEST_KAFKA_GROUP"]
        ),
    },
)

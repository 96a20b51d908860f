"""Shared fixtures: a real PostgreSQL server and fresh databases, a real Kafka broker and fresh topics."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

_database_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-shift-days", type=int, default=0,
        help="run the whole session with the process clock moved this many days ahead (time-machine), "
        "to prove no test depends on today's date",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    days = config.getoption("--clock-shift-days")
    if days:
        from datetime import UTC, datetime, timedelta

        import time_machine

        traveller = time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One real PostgreSQL server for the whole test session."""
    from tests.postgres_server import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"test_{os.getpid()}_{next(_database_counter)}")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap servers of a running broker; stopped at the end only if this session started it."""
    from reliability.kafka import broker

    bootstrap, started = broker.up(timeout_s=120)
    try:
        yield bootstrap
    finally:
        if started:
            broker.down()


@pytest.fixture
def topic_name(request) -> str:
    """A fresh Kafka topic name per test (topics are never shared between tests)."""
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60]
    return f"test.{name}.{uuid.uuid4().hex[:8]}"

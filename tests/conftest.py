"""Shared fixtures: a real PostgreSQL server, fresh databases, isolated settings."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

_database_counter = itertools.count()


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

"""Fixtures for the incident tests: store URLs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from reliability.incidents.model import Status
from reliability.incidents.triage import AssetInfo, LineageGraph

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


class SteppingClock:
    """The store's injected clock in tests: starts at `start` and moves one second per reading, so
    transitions stamped without an explicit time still follow the test's own timeline, never today's."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> None:
        self.at, self.step = start, step

    def __call__(self) -> datetime:
        self.at += self.step
        return self.at


# The moves that bring a freshly opened incident into each status (through the store's transitions).
STEPS_TO: dict[Status, tuple[Status, ...]] = {
    Status.OPEN: (),
    Status.ACKNOWLEDGED: (Status.ACKNOWLEDGED,),
    Status.MITIGATED: (Status.ACKNOWLEDGED, Status.MITIGATED),
    Status.RESOLVED: (Status.ACKNOWLEDGED, Status.MITIGATED, Status.RESOLVED),
    Status.REOPENED: (Status.RESOLVED, Status.REOPENED),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'incidents.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["run-sharded", "consolidated", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request, tmp_path):
    """Dagster's default SQLite storage (per-run shards), the consolidated one (global ids) and
    PostgreSQL storage (production)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    overrides = None
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"dagster_{abs(hash(str(tmp_path)))}")
        overrides = {"storage": {"postgres": {"postgres_url": url.replace("postgresql+psycopg2", "postgresql")}}}
    if request.param == "consolidated":
        overrides = {
            "event_log_storage": {
                "module": "dagster._core.storage.event_log",
                "class": "ConsolidatedSqliteEventLogStorage",
                "config": {"base_dir": str(home / "history")},
            }
        }
    with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as inst:
        assert inst.event_log_storage.is_run_sharded == (request.param == "run-sharded")
        assert (type(inst.event_log_storage).__name__ == "PostgresEventLogStorage") == (request.param == "postgres")
        yield inst


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'incidents.db'}"


def shop_graph() -> LineageGraph:
    """The shop lineage as plain data, as `lineage.graph_from_asset_graph` would extract it."""
    children = {
        "raw_orders": ["stg_orders"],
        "raw_customers": ["stg_customers"],
        "raw_payments": ["stg_payments"],
        "stg_orders": ["fct_orders"],
        "stg_payments": ["fct_orders"],
        "stg_customers": ["customer_lifetime_value"],
        "fct_orders": ["customer_lifetime_value", "daily_revenue"],
        "daily_revenue": ["revenue_dashboard"],
    }
    info = {
        "raw_orders": AssetInfo(("ingest@shop.example",), 2),
        "raw_customers": AssetInfo(("ingest@shop.example",), 3),
        "raw_payments": AssetInfo(("ingest@shop.example",), 2),
        "stg_orders": AssetInfo(("analytics@shop.example",), 2, partitioned=True),
        "stg_customers": AssetInfo(("analytics@shop.example",), 3),
        "stg_payments": AssetInfo(("analytics@shop.example",), 2),
        "fct_orders": AssetInfo(("analytics@shop.example",), 1, partitioned=True),
        "customer_lifetime_value": AssetInfo(("growth@shop.example",), 2),
        "daily_revenue": AssetInfo(("finance@shop.example",), 1, partitioned=True),
        "revenue_dashboard": AssetInfo(("finance@shop.example",), 1, kind="exposure"),
    }
    return LineageGraph(children, info)

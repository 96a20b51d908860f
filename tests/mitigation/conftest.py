"""The incident-store fixtures (SQLite, and the real PostgreSQL server) shared with the incident tests."""

from tests.incidents.conftest import SteppingClock, sqlite_url, store_url  # noqa: F401

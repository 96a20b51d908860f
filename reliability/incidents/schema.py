"""SQLAlchemy Core tables of the incident store (the migrations in `migrations/` create them).

All timestamps are stored as naive UTC and handed back timezone-aware, so SQLite and PostgreSQL
behave the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

HEAD_REVISION = "0002_observation_signature"
VERSION_TABLE = "incident_alembic_version"


class UTCDateTime(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # noqa: ANN201
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the incident store; use UTC-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):  # noqa: ANN201
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(8), nullable=False),
    Column("severity_reason", Text, nullable=False, default=""),
    Column("root_asset", Text, nullable=False),
    Column("fault_class", String(32), nullable=False),
    Column("owners", Text, nullable=False, default="[]"),  # JSON list
    Column("error_level", Boolean, nullable=False, default=True),
    Column("impact_started_at", UTCDateTime),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("last_detected_at", UTCDateTime, nullable=False),
    Column("acknowledged_at", UTCDateTime),
    Column("mitigated_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("blast_radius", Text, nullable=False, default="{}"),  # JSON, see triage.BlastRadius.to_dict
    Column("root_cause", Text, nullable=False, default="{}"),  # JSON, see triage.RootCauseHint.to_dict
    Column("version", Integer, nullable=False, default=1),
)

incident_assets = Table(
    "incident_assets",
    metadata,
    Column("incident_id", Integer, ForeignKey("incidents.id"), primary_key=True),
    Column("asset_key", Text, primary_key=True),
    Column("role", String(16), nullable=False),  # root | failing | impacted | blocked
    Column("depth", Integer, nullable=False),
    Column("tier", String(16)),
    Column("owners", Text, nullable=False, default="[]"),
    Column("kind", String(32), nullable=False, default="asset"),
    Column("first_seen_at", UTCDateTime, nullable=False),
)

open_incident_keys = Table(
    "incident_open_keys",
    metadata,
    Column("dedup_key", Text, primary_key=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
)

detections = Table(
    "incident_detections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("detection_key", Text, nullable=False, unique=True),
    Column("incident_id", Integer, ForeignKey("incidents.id")),
    Column("asset_key", Text, nullable=False),
    Column("source", String(24), nullable=False),
    Column("signal", Text, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("check_severity", String(8), nullable=False),
    Column("fault_class", String(32), nullable=False),
    Column("partition_key", Text),
    Column("run_id", Text),
    Column("description", Text, nullable=False, default=""),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
)

incident_signals = Table(
    "incident_signals",
    metadata,
    Column("incident_id", Integer, ForeignKey("incidents.id"), primary_key=True),
    Column("signal_key", Text, primary_key=True),
    Column("failing", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

timeline = Table(
    "incident_timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", Text, nullable=False, default="{}"),
)

outbox = Table(
    "incident_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("channel", String(24), nullable=False),  # slack | pagerduty | alertmanager
    Column("target", Text, nullable=False),  # NAME of the env var holding the URL/key, never its value
    Column("event", String(24), nullable=False),  # trigger | acknowledge | resolve
    Column("payload", Text, nullable=False),  # JSON without secrets
    Column("status", String(12), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
)

observation_marks = Table(
    "incident_observation_marks",
    metadata,
    Column("incident_id", Integer, ForeignKey("incidents.id"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("signature", Text),  # what the last observations said (status, severity, root, failing)
)

"""Initial incident store: incidents, assets, detections, signals, timeline, outbox.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_TABLES = ("incident_timeline", "incident_detections")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("severity_reason", sa.Text, nullable=False),
        sa.Column("root_asset", sa.Text, nullable=False),
        sa.Column("fault_class", sa.String(32), nullable=False),
        sa.Column("owners", sa.Text, nullable=False),
        sa.Column("error_level", sa.Boolean, nullable=False),
        sa.Column("impact_started_at", sa.DateTime),
        sa.Column("detected_at", sa.DateTime, nullable=False),
        sa.Column("last_detected_at", sa.DateTime, nullable=False),
        sa.Column("acknowledged_at", sa.DateTime),
        sa.Column("mitigated_at", sa.DateTime),
        sa.Column("resolved_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("blast_radius", sa.Text, nullable=False),
        sa.Column("root_cause", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_index("ix_incidents_root_asset", "incidents", ["root_asset"])
    op.create_table(
        "incident_assets",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("asset_key", sa.Text, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("tier", sa.String(16)),
        sa.Column("owners", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("first_seen_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_incident_assets_asset", "incident_assets", ["asset_key"])
    # One row per active incident root: the unique key that makes concurrent reporters of the same
    # failure converge on one incident. Deleted when the incident resolves.
    op.create_table(
        "incident_open_keys",
        sa.Column("dedup_key", sa.Text, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    )
    op.create_table(
        "incident_detections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("detection_key", sa.Text, nullable=False, unique=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id")),
        sa.Column("asset_key", sa.Text, nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("signal", sa.Text, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("check_severity", sa.String(8), nullable=False),
        sa.Column("fault_class", sa.String(32), nullable=False),
        sa.Column("partition_key", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_incident_detections_incident", "incident_detections", ["incident_id"])
    op.create_table(
        "incident_signals",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("signal_key", sa.Text, primary_key=True),
        sa.Column("failing", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_timeline_incident", "incident_timeline", ["incident_id", "id"])
    op.create_table(
        "incident_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=False, unique=True),
        sa.Column("channel", sa.String(24), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("claimed_until", sa.DateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("delivered_at", sa.DateTime),
    )
    op.create_index("ix_incident_outbox_due", "incident_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "incident_observation_marks",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    """The timeline and the detections are history: the database itself refuses UPDATE and DELETE."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION incident_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION incident_append_only()"
            )


def downgrade() -> None:
    for table in (
        "incident_observation_marks",
        "incident_outbox",
        "incident_timeline",
        "incident_signals",
        "incident_detections",
        "incident_open_keys",
        "incident_assets",
        "incidents",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS incident_append_only()")

"""Remember what each incident's last AssetObservations said, to skip republishing unchanged facts.

Revision ID: 0002_observation_signature
Revises: 0001_initial
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_observation_signature"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident_observation_marks") as batch:
        batch.add_column(sa.Column("signature", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incident_observation_marks") as batch:
        batch.drop_column("signature")

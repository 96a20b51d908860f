"""Alembic environment for the incident store: always run programmatically on an open connection."""

from alembic import context

from reliability.incidents.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()

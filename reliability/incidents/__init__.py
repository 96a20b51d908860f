"""Incidents: durable, grouped, triaged and notified detections (issue 4).

Keep this module light: the CLI imports submodules that only need SQLAlchemy; the Dagster glue lives
in `detection`, `lineage`, `observe` and `defs`.
"""

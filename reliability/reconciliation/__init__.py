"""Reconciliation: repair exactly the partitions an incident affected (plan, backfill, verify, resolve)."""

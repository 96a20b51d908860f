"""The fast event-log reader reads Dagster internals (SQL tables, serialized JSON): it must give exactly
what Dagster's public API gives, on every storage, so a Dagster upgrade that changes them fails here."""

from __future__ import annotations

import time

import dagster as dg

from reliability.incidents.eventlog import Cursor, fast_check_events, public_check_events

DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01")
STATE = {"round": 0}


@dg.asset(partitions_def=DAYS)
def daily() -> None:
    return None


@dg.asset
def plain() -> None:
    return None


@dg.asset_check(asset=daily, name="rows_present")
def rows_present() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="no rows",
        metadata={"check_type": "row_count", "rows": 0, "share": 0.5, "flag": True, "types": {"a": "int"}},
    )


@dg.asset_check(asset=plain, name="unique_id", blocking=True)
def unique_id() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=STATE["round"] > 0, metadata={"dbt_test": "unique"})


def _runless_evaluation(instance: dg.DagsterInstance) -> None:
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=dg.AssetKey("plain"), check_name="external_check", passed=False,
            metadata={"check_type": "freshness"}, severity=dg.AssetCheckSeverity.ERROR,
        )
    )  # fmt: skip


def _by_position(events):
    return sorted(events, key=lambda e: (e.run_id or "", e.storage_id))


def test_fast_reader_matches_the_public_api(instance):
    """SQLite run-sharded, SQLite consolidated and PostgreSQL storage (the `instance` fixture)."""
    STATE["round"] = 0
    dg.materialize([daily, rows_present], instance=instance, partition_key="2026-11-20")
    dg.materialize([plain, unique_id], instance=instance, raise_on_error=False)
    _runless_evaluation(instance)

    fast = fast_check_events(instance, Cursor(), strict=True)
    assert fast is not None, "the fast reader no longer recognises this Dagster storage"
    fast_events, fast_cursor = fast
    public_events, public_cursor = public_check_events(instance, Cursor())
    assert len(fast_events) == 3
    assert _by_position(fast_events) == _by_position(public_events)
    by_check = {e.check_name: e for e in fast_events}
    assert by_check["rows_present"].severity == "WARN" and by_check["rows_present"].description == "no rows"
    assert by_check["rows_present"].target_timestamp is not None
    assert by_check["external_check"].run_id is None and not by_check["unique_id"].passed

    # after a cursor: only what is new (the public API may re-read a margin on run-sharded storage)
    time.sleep(0.01)
    STATE["round"] = 1
    dg.materialize([plain, unique_id], instance=instance)
    fast_events_2, _ = fast_check_events(instance, fast_cursor, strict=True)
    public_events_2, _ = public_check_events(instance, public_cursor)
    new_public = [e for e in public_events_2 if e not in public_events]
    assert [(e.check_name, e.passed) for e in fast_events_2] == [("unique_id", True)]
    assert _by_position(fast_events_2) == _by_position(new_public)

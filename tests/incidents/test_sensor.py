"""The detection sensor on a real Dagster instance (SQLite storage in a temp DAGSTER_HOME)."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.detection import RUN_TAG
from reliability.incidents.mapping import classify_check
from reliability.incidents.model import FaultClass
from reliability.incidents.notify import Router
from reliability.incidents.store import IncidentStore

STATE = {"src_ok": False, "mid_ok": False, "explode": False}


@dg.asset(metadata={"owner": "ingest@x.example", "tier": "tier2"}, owners=["ingest@x.example"])
def src() -> int:
    return 1


@dg.asset(deps=[src], metadata={"owner": "analytics@x.example", "tier": "tier1"})
def mid() -> None:
    if STATE["explode"]:
        raise RuntimeError("warehouse unavailable")


dash = dg.AssetSpec("dash", deps=[mid], kinds={"dashboard"}, group_name="exposures",
                    metadata={"owner": "finance@x.example", "tier": "tier1", "exposure_type": "dashboard"})  # fmt: skip
other = dg.AssetSpec("other", metadata={"tier": "tier4"})


@dg.asset_check(asset=src, name="soda_order_id_duplicate")
def src_dup() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=STATE["src_ok"], metadata={"duplicates": 0 if STATE["src_ok"] else 12})


@dg.asset_check(asset=mid, name="unique_mid_order_id")
def mid_unique() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=STATE["mid_ok"])


DEFS = dg.Definitions(assets=[src, mid, dash, other], asset_checks=[src_dup, mid_unique])


@pytest.fixture
def store(store_url):
    """The incident store on SQLite and on the real PostgreSQL server."""
    with IncidentStore(store_url, router=Router(environ={})) as s:
        yield s


def tick(instance, store, cursor=None):
    sensor = build_incident_sensor(store_url=store.url)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=DEFS)
    result = sensor(context)
    return result


def test_sensor_groups_upstream_and_downstream_check_failures_into_one_incident(instance, store, monkeypatch):
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", store.url)
    STATE.update(src_ok=False, mid_ok=False, explode=False)
    result = dg.materialize([src, mid, src_dup, mid_unique], instance=instance)
    assert result.success  # non-blocking failed checks do not fail the run: the gap we fill
    first = tick(instance, store)
    incidents = store.list_incidents()
    assert len(incidents) == 1, [i.title for i in incidents]
    inc = store.get(incidents[0].id)
    assert inc.root_asset == "src" and inc.fault_class == "duplicates"
    assert inc.severity == "SEV1"  # reaches tier1 mid and the dash exposure
    assert inc.blast_radius["exposures"] == ["dash"]
    roles = {a.asset_key: a.role for a in inc.assets}
    assert roles == {"src": "root", "mid": "failing", "dash": "impacted"}
    assert "most upstream failing asset: src" in inc.root_cause["text"]
    if "last materialized at" not in inc.root_cause["text"]:
        # on a loaded machine the hint can miss the first tick's time budget: it is due on the next one
        tick(instance, store, first.cursor)
        inc = store.get(inc.id)
    assert "last materialized at" in inc.root_cause["text"]
    # the run that evaluated the checks is tagged with the incident
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[RUN_TAG] == inc.display_id
    # every affected asset shows the incident on its page
    for key in ("src", "mid", "dash"):
        obs = instance.fetch_observations(dg.AssetKey(key), limit=1).records
        assert obs, key
        md = obs[0].asset_observation.metadata
        assert md["incident_id"].value == inc.display_id
        assert md["incident_severity"].value == "SEV1" and md["incident_status"].value == "open"
        assert "Blast radius" in md["incident_summary"].value
    # next tick: nothing new; a lost cursor (sensor reset) re-reads history without duplicating
    second = tick(instance, store, first.cursor)
    assert "0 new detection(s) (0 already seen)" in second.skip_reason.skip_message  # nothing re-read
    reset = tick(instance, store, None)
    assert "opened 0" in reset.skip_reason.skip_message and store.count() == 1
    assert store.get(inc.id).detection_count == 2
    # resolving in the CLI (store only) shows up on the asset page on the next tick
    store.resolve(inc.id, "alice", "deduplicated")
    tick(instance, store, reset.cursor)
    obs = instance.fetch_observations(dg.AssetKey("src"), limit=1).records
    assert obs[0].asset_observation.metadata["incident_status"].value == "resolved"


def test_checks_passing_again_mitigate_the_incident(instance, store, monkeypatch):
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", store.url)
    STATE.update(src_ok=False, mid_ok=True, explode=False)
    dg.materialize([src, src_dup], instance=instance)
    cursor = tick(instance, store).cursor
    (inc,) = store.list_incidents()
    STATE.update(src_ok=True)
    dg.materialize([src, src_dup], instance=instance)
    tick(instance, store, cursor)
    assert store.get(inc.id).status == "mitigated"


def test_run_failure_and_freshness_fail_become_detections(instance, store, monkeypatch):
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", store.url)
    STATE.update(src_ok=True, mid_ok=True, explode=True)
    failed = dg.materialize([src, mid], instance=instance, raise_on_error=False)
    assert not failed.success
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey("other"), new_state=FreshnessState.FAIL, previous_state=FreshnessState.PASS,
            state_change_timestamp=time.time(),
        )
    )  # fmt: skip
    tick(instance, store)
    by_root = {i.root_asset: i for i in store.list_incidents()}
    assert set(by_root) == {"mid", "other"}, by_root
    assert by_root["mid"].fault_class == "pipeline_failure"
    assert by_root["other"].fault_class == "freshness" and by_root["other"].severity == "SEV4"
    assert instance.get_run_by_id(failed.run_id).tags[RUN_TAG] == by_root["mid"].display_id
    STATE.update(explode=False)


def test_classify_check_names():
    assert classify_check("soda_order_id_duplicate") == FaultClass.DUPLICATES
    assert classify_check("unique_fct_orders_order_id") == FaultClass.DUPLICATES
    assert classify_check("not_null_stg_orders_amount") == FaultClass.MISSING_VALUES
    assert classify_check("soda_schema") == FaultClass.SCHEMA_CHANGE
    assert classify_check("kafka_consumer_lag") == FaultClass.CONSUMER_LAG
    assert classify_check("freshness_check") == FaultClass.FRESHNESS
    assert classify_check("accepted_values_stg_orders_status") == FaultClass.DATA_QUALITY

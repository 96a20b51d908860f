"""The circuit breaker on the platform's real code location: real Dagster instance (sensor states, runs),
real DuckDB warehouse, incident store on SQLite and PostgreSQL.

A bad day in the daily raw table `raw_payments` opens an incident; the policy pauses exactly the
automation that feeds its blast radius (not a sensor an engineer had stopped by hand), a manual run of
the quarantined partition is refused naming the incident, the override tag forces it (on the timeline),
and resume restores exactly what was paused. `suggest` changes nothing and lists the actions.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.definitions import build_definitions
from reliability.incidents.lineage import graph_from_asset_graph
from reliability.incidents.model import OPEN_INCIDENT_CHECK, Detection, Source, Status
from reliability.incidents.store import IncidentStore
from reliability.mitigation import controls
from reliability.mitigation.defs import report_open_incident_checks
from reliability.mitigation.guard import ACTOR_TAG
from reliability.mitigation.plan import OVERRIDE_TAG, POLICY_ACTOR
from reliability.mitigation.policy import MitigationPolicy, Mode
from reliability.mitigation.service import active_quarantines, policy_tick, resume_incident
from tests.incidents.conftest import T0, SteppingClock
from tests.shop_harness import DAY, shop_settings

RAW_PAYMENTS = dg.AssetKey("raw_payments")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> tuple[dg.Definitions, Path]:
    tmp = tmp_path_factory.mktemp("platform")
    return build_definitions(shop_settings(tmp)), tmp / "warehouse.duckdb"


@pytest.fixture
def location(platform):
    defs, _ = platform
    repo = defs.get_repository_def()
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = RemoteRepositoryOrigin(
        InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="reliability.definitions", attribute="defs")),
        repo.name,
    )
    return defs, repo, origin


@pytest.fixture
def store(store_url, monkeypatch):
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", store_url)  # what the guard in each step reads
    with IncidentStore(store_url, clock=SteppingClock()) as s:
        yield s


def running(instance, repo, origin) -> set[str]:
    return {i.automation.name for i in controls.instigators(instance, repo, origin) if i.automation.running}


def bad_day(store: IncidentStore, repo, asset: str = "raw_payments", partition: str | None = DAY) -> int:
    detection = Detection(
        detection_key=f"check:run-1:{asset}", asset_key=asset, source=Source.ASSET_CHECK,
        signal="soda_payment_amount_positive", occurred_at=T0, partition=partition,
    )  # fmt: skip
    (incident_id,) = store.ingest([detection], graph_from_asset_graph(repo.asset_graph), now=T0).opened
    return incident_id


def hand_stop(instance, repo, origin, name: str) -> None:
    (inst,) = [i for i in controls.instigators(instance, repo, origin) if i.automation.name == name]
    instance.stop_sensor(inst.remote.get_remote_origin_id(), inst.remote.selector_id, inst.remote)


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]


def test_bad_day_pauses_exactly_the_feeding_automation_quarantines_and_resumes(location, store, platform) -> None:
    defs, repo, origin = location
    _, warehouse = platform
    with dg.instance_for_test() as instance:
        hand_stop(instance, repo, origin, "automation_dbt")  # an engineer stopped it before the incident
        before = running(instance, repo, origin)
        assert {"automation_raw", "kafka_orders_sensor", "incident_detection_sensor"} <= before
        assert "automation_dbt" not in before
        inc_id = bad_day(store, repo)

        outcomes = policy_tick(instance, store, repo, origin, MitigationPolicy(default=Mode.AUTO), lambda _: None)
        assert [o.incident_id for o in outcomes] == [inc_id] and outcomes[0].mitigated
        assert before - running(instance, repo, origin) == {"automation_raw"}  # exactly the feeding automation
        inc = store.get(inc_id)
        assert inc.status == Status.MITIGATED
        actions = [e for e in inc.timeline if e.kind == "action"]
        assert {e.actor for e in actions} == {POLICY_ACTOR}
        assert [e.data["name"] for e in actions if e.data["action"] == "stop_automation"] == ["automation_raw"]
        quarantined = {e.data["asset"]: e.data["partitions"] for e in actions if e.data["action"] == "quarantine"}
        assert quarantined["raw_payments"] == [DAY] and quarantined["stg_payments"] == [DAY]
        # the next tick does not apply it again
        assert policy_tick(instance, store, repo, origin, MitigationPolicy(default=Mode.AUTO), lambda _: None) == []

        # a manual run of the quarantined day (with its downstream model) is refused, naming the incident
        loaded_before = _day_loaded_at(warehouse)
        job = defs.resolve_implicit_global_asset_job_def()
        refused = job.execute_in_process(instance=instance, partition_key=DAY, raise_on_error=False,
                                         asset_selection=[RAW_PAYMENTS, dg.AssetKey("stg_payments")])  # fmt: skip
        assert not refused.success
        (message,) = step_failures(refused)
        assert f"raw_payments partition(s) {DAY} is quarantined by INC-{inc_id}" in message
        assert not refused.get_asset_materialization_events()  # nothing written, stg_payments never ran
        assert instance.get_run_by_id(refused.run_id).tags["reliability/quarantine_refused"] == f"INC-{inc_id}"
        from reliability.incidents.detection import Cursor, read_detections

        assert not [d for d in read_detections(instance, Cursor())[0] if d.run_id == refused.run_id]
        assert _day_loaded_at(warehouse) == loaded_before  # the day was not rewritten
        # a single-run backfill of a range that contains the day is refused too
        ranged = job.execute_in_process(instance=instance, asset_selection=[RAW_PAYMENTS], raise_on_error=False,
                                        tags={"dagster/asset_partition_range_start": "2026-11-19",
                                              "dagster/asset_partition_range_end": "2026-11-21"})  # fmt: skip
        assert not ranged.success and f"quarantined by INC-{inc_id}" in step_failures(ranged)[0]
        # another day of the same table is not quarantined
        other = job.execute_in_process(instance=instance, partition_key="2026-11-19", asset_selection=[RAW_PAYMENTS])
        assert other.success

        # the override tag forces it, and the timeline says who did
        forced = job.execute_in_process(instance=instance, partition_key=DAY, asset_selection=[RAW_PAYMENTS],
                                        tags={OVERRIDE_TAG: f"INC-{inc_id}", ACTOR_TAG: "alice"})  # fmt: skip
        assert forced.success and _day_loaded_at(warehouse) != loaded_before  # forced: the day was rewritten
        with duckdb.connect(str(warehouse), read_only=True) as con:
            assert con.execute("select count(*) from raw_payments where payment_date = ?", [DAY]).fetchone()[0] > 0
        overrides = [e for e in store.timeline(inc_id) if e.data.get("action") == "quarantine_override"]
        assert [(e.actor, e.data["run_id"], e.data["partitions"]) for e in overrides] == [
            ("alice", forced.run_id, [DAY])]  # fmt: skip

        # resume: exactly what was paused runs again; the hand-stopped sensor stays stopped
        resumed = resume_incident(instance, store, repo, origin, inc_id, actor="bob")
        assert running(instance, repo, origin) == before
        assert active_quarantines(store) == []
        assert {(a.kind, a.data.get("name")) for a in resumed} == {("start_automation", "automation_raw"),
                                                                  ("lift_quarantine", None)}  # fmt: skip
        again = job.execute_in_process(instance=instance, partition_key=DAY, asset_selection=[RAW_PAYMENTS])
        assert again.success


def _day_loaded_at(warehouse: Path) -> object:
    """When DAY of raw_payments was last written (None: never); every write stamps `_loaded_at`."""
    if not warehouse.exists():
        return None
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        if "raw_payments" not in tables:
            return None
        return con.execute("select max(_loaded_at) from raw_payments where payment_date = ?", [DAY]).fetchone()[0]


def test_suggest_mode_changes_nothing_and_lists_the_actions(location, store) -> None:
    _, repo, origin = location
    with dg.instance_for_test() as instance:
        before = running(instance, repo, origin)
        inc_id = bad_day(store, repo)
        (outcome,) = policy_tick(instance, store, repo, origin, MitigationPolicy(default=Mode.SUGGEST), lambda _: None)
        assert outcome.mode is Mode.SUGGEST and not outcome.mitigated
        assert running(instance, repo, origin) == before
        assert active_quarantines(store) == []
        inc = store.get(inc_id)
        assert inc.status == Status.OPEN
        listed = [e for e in inc.timeline if e.kind == "action"]
        assert all(e.data["suggested"] and e.message.startswith("suggested (not done): ") for e in listed)
        kinds = {(e.data["action"], e.data.get("name") or e.data.get("asset")) for e in listed}
        assert {("stop_automation", "automation_raw"), ("stop_automation", "automation_dbt"),
                ("quarantine", "raw_payments"), ("quarantine", "stg_payments")} <= kinds  # fmt: skip
        assert policy_tick(instance, store, repo, origin, MitigationPolicy(default=Mode.SUGGEST), lambda _: None) == []


def test_kafka_fed_root_pauses_the_consumer_and_the_lag_check_says_why(location, store) -> None:
    _, repo, origin = location
    from reliability.kafka import defs as kafka_defs

    with dg.instance_for_test() as instance:
        inc_id = bad_day(store, repo, asset="raw_orders", partition=None)
        policy_tick(instance, store, repo, origin, MitigationPolicy(default=Mode.AUTO), lambda _: None)
        assert "kafka_orders_sensor" in running(instance, repo, origin)  # not stopped: it says why it skips
        assert ("raw_orders", None) in {(q.asset, q.partitions) for q in active_quarantines(store)}  # no manual run
        context = dg.build_sensor_context(instance=instance)
        skip = kafka_defs.kafka_orders_sensor(context, kafka=kafka_defs.KafkaSource(bootstrap_servers="127.0.0.1:9"))
        assert isinstance(skip, dg.SkipReason) and skip.skip_message.startswith(f"paused by INC-{inc_id}")
        lagging = dg.AssetCheckEvaluation(asset_key=kafka_defs.RAW_ORDERS, check_name=kafka_defs.LAG_CHECK,
                                          passed=False, description="lag ERR")  # fmt: skip
        reported = kafka_defs.paused_lag_evaluation(lagging)
        assert reported.passed and reported.description == f"paused by INC-{inc_id}"
        # reconciliation's on_resolved hook: resumes, and leaves the recording to the resolution
        from reliability.mitigation.service import resolution_hook

        actions = resolution_hook(instance, store, repo, origin)(inc_id)
        assert {a.kind for a in actions} == {"start_automation", "resume_kafka", "lift_quarantine"}
        assert not [e for e in store.timeline(inc_id) if e.data.get("action") == "resume_kafka"]
        assert kafka_defs.paused_lag_evaluation(lagging).passed  # in effect until the resolution records it
        resume_incident(instance, store, repo, origin, inc_id, actor="bob")
        assert not kafka_defs.paused_lag_evaluation(lagging).passed


def test_open_incident_check_fails_while_open_and_passes_once_resolved(location, store) -> None:
    _, repo, _ = location
    known = set(repo.asset_graph.get_all_asset_keys())
    key = dg.AssetCheckKey(RAW_PAYMENTS, OPEN_INCIDENT_CHECK)
    assert key in repo.asset_graph.asset_check_keys  # declared: it shows on the asset's Overview
    with dg.instance_for_test() as instance:
        inc_id = bad_day(store, repo)
        assert report_open_incident_checks(instance, store, known) >= 2  # the root and its downstream
        assert report_open_incident_checks(instance, store, known) == 0  # unchanged: not reported again

        def latest() -> dg.AssetCheckEvaluation:
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
            return record.event.asset_check_evaluation

        failing = latest()
        assert not failing.passed and failing.metadata["incident_id"].value == f"INC-{inc_id}"
        assert {"incident_severity", "incident_status", "incident_link"} <= set(failing.metadata)
        store.resolve(inc_id, "carol", "source fixed")
        report_open_incident_checks(instance, store, known)
        assert latest().passed and latest().metadata["incident_status"].value == "resolved"


def test_incident_sensor_applies_the_policy_and_reports_open_incident(location, store, tmp_path, monkeypatch) -> None:
    """The sensor's own tick: a failed check opens an incident, the policy (suggest here: a test context
    has no code location origin to stop sensors with) records its actions, `open_incident` fails on the
    asset, and the next tick does not take that evaluation for a new failure."""
    from reliability.incidents.defs import build_incident_sensor

    _, repo, _ = location
    config = tmp_path / "incidents.yaml"
    config.write_text("mitigation:\n  default: suggest\n")
    monkeypatch.setenv("RELIABILITY_INCIDENTS_CONFIG", str(config))
    sensor = build_incident_sensor(store_url=store.url, mitigation=True)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=RAW_PAYMENTS, check_name="soda_payment_amount_positive", passed=False, description="bad day",
        ))  # fmt: skip
        first = sensor(dg.build_sensor_context(instance=instance, repository_def=repo))
        (incident,) = store.list_incidents()
        timeline = store.get(incident.id).timeline
        assert any(e.data.get("suggested") and e.data["action"] == "quarantine" for e in timeline)
        key = dg.AssetCheckKey(RAW_PAYMENTS, OPEN_INCIDENT_CHECK)
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert not record.event.asset_check_evaluation.passed
        sensor(dg.build_sensor_context(instance=instance, repository_def=repo, cursor=first.cursor))
        assert store.get(incident.id).detection_count == 1  # open_incident is never a detection


def test_cli_pause_and_resume(location, sqlite_url, tmp_path) -> None:
    """`reliability incidents pause ID` / `resume ID` against a Dagster instance whose sensors have states
    (the CLI finds the code location's origin there), with an engineer's hand-stopped sensor."""
    import json
    import os
    import subprocess
    import sys

    _, repo, origin = location
    home = tmp_path / "home"
    home.mkdir()
    with IncidentStore(sqlite_url, clock=SteppingClock()) as store:
        inc_id = bad_day(store, repo)
    env = {**os.environ, "DAGSTER_HOME": str(home), "RELIABILITY_INCIDENT_STORE_URL": sqlite_url,
           "RELIABILITY_WAREHOUSE": str(tmp_path / "warehouse.duckdb"), "RELIABILITY_ACTOR": "dana"}  # fmt: skip

    def cli(*args: str) -> object:
        proc = subprocess.run([sys.executable, "-m", "reliability.cli", "incidents", *args, "--json"], env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    with dg.instance_for_test(temp_dir=str(home)) as instance:
        hand_stop(instance, repo, origin, "automation_dbt")
        before = running(instance, repo, origin)
    paused = cli("pause", f"INC-{inc_id}")
    assert paused["mitigated"] and {a["name"] for a in paused["actions"] if a["action"] == "stop_automation"} == {
        "automation_raw"}  # fmt: skip
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        assert before - running(instance, repo, origin) == {"automation_raw"}
    resumed = cli("resume", str(inc_id))
    assert [a["name"] for a in resumed if a["action"] == "start_automation"] == ["automation_raw"]
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        assert running(instance, repo, origin) == before  # automation_dbt stays stopped
    with IncidentStore(sqlite_url, clock=SteppingClock()) as store:
        assert {e.actor for e in store.timeline(inc_id) if e.kind == "action"} == {"dana"}


def test_pause_and_resume_jobs_take_the_incident_id_as_config(location, store) -> None:
    """The Launchpad jobs, run as a launched run is (from the code location, in a run worker process):
    run config `{ops: {pause_incident_op: {config: {incident_id: INC-n}}}}`."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    _, repo, origin = location
    recon = ReconstructableRepository.for_module(
        "reliability.definitions", "defs", working_directory=str(Path(__file__).resolve().parents[2])
    )

    def launch(job: str, instance: dg.DagsterInstance, config: dict, tags: dict | None = None) -> bool:
        with dg.execute_job(recon.get_reconstructable_job(job), instance, tags=tags,
                            run_config={"ops": {f"{job}_op": {"config": config}}}) as result:  # fmt: skip
            return result.success

    with dg.instance_for_test() as instance:
        hand_stop(instance, repo, origin, "kafka_lag_sensor")  # unrelated, stopped by hand: stays so
        before = running(instance, repo, origin)
        inc_id = bad_day(store, repo)
        config = {"incident_id": f"INC-{inc_id}"}
        assert launch("pause_incident", instance, config, tags={ACTOR_TAG: "erin"})
        assert before - running(instance, repo, origin) == {"automation_raw", "automation_dbt"}
        assert store.get(inc_id).status == Status.MITIGATED
        assert launch("resume_incident", instance, config)
        assert running(instance, repo, origin) == before
        actors = {e.data["action"]: e.actor for e in store.timeline(inc_id) if e.kind == "action"}
        assert actors["stop_automation"] == "erin" and actors["start_automation"] == "dagster-ui"

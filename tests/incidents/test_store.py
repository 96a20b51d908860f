"""Incident store on SQLite and on a real PostgreSQL: lifecycle, timeline, grouping, idempotency."""

from __future__ import annotations

from datetime import timedelta
from itertools import product
from pathlib import Path

import pytest
from sqlalchemy import text

from reliability.incidents.grouping import GroupingPolicy
from reliability.incidents.lifecycle import TRANSITIONS, PlannedAction
from reliability.incidents.model import Detection, FaultClass, Source, Status
from reliability.incidents.notify import Router
from reliability.incidents.store import IncidentStore, InvalidTransition
from tests.incidents.conftest import STEPS_TO, T0, SteppingClock, shop_graph


def det(key, asset, signal="check", at=T0, **kw) -> Detection:
    return Detection(key, asset, kw.pop("source", Source.ASSET_CHECK), signal, at, **kw)


def test_lifecycle_and_timeline(store_url):
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        res = store.ingest(
            [det("e1", "raw_orders", "soda_duplicate_order_id", fault_class=FaultClass.DUPLICATES,
                 impact_started_at=T0 - timedelta(minutes=30))],
            shop_graph(), now=T0,
        )  # fmt: skip
        (inc_id,) = res.opened
        inc = store.get(inc_id)
        assert inc.status == "open" and inc.root_asset == "raw_orders" and inc.severity == "SEV1"
        assert inc.impact_started_at == T0 - timedelta(minutes=30) and inc.detected_at == T0
        assert "revenue_dashboard" in inc.blast_radius["exposures"]
        store.acknowledge(inc_id, "alice@shop.example")
        with pytest.raises(InvalidTransition):
            store.reopen(inc_id, "alice@shop.example")
        store.mitigate(inc_id, "alice@shop.example", "paused the ingestion")
        store.add_note(inc_id, "bob@shop.example", "dedup job backfilled")
        done = store.resolve(inc_id, "alice@shop.example", "duplicates removed")
        assert done.status == "resolved"
        assert done.acknowledged_at <= done.mitigated_at <= done.resolved_at
        again = store.reopen(inc_id, "bob@shop.example", "came back")
        # a reopened incident is neither mitigated nor resolved; the first acknowledgement stays
        assert again.status == "reopened" and again.resolved_at is None and again.mitigated_at is None
        assert again.acknowledged_at == done.acknowledged_at
        timeline = store.timeline(inc_id)
        kinds = [e.kind for e in timeline]
        assert kinds[:2] == ["detection", "triage"]
        changes = [e for e in timeline if e.kind == "status_change"]
        assert [(e.data["from"], e.data["to"]) for e in changes] == [
            ("open", "acknowledged"),
            ("acknowledged", "mitigated"),
            ("mitigated", "resolved"),
            ("resolved", "reopened"),
        ]
        assert changes[-1].data["previous"] == {
            "resolved_at": done.resolved_at.isoformat(), "mitigated_at": done.mitigated_at.isoformat()
        }  # fmt: skip
        notes = [(e.actor, e.message) for e in timeline if e.kind == "note"]
        assert notes == [
            ("alice@shop.example", "paused the ingestion"), ("bob@shop.example", "dedup job backfilled"),
            ("alice@shop.example", "duplicates removed"), ("bob@shop.example", "came back"),
        ]  # fmt: skip
        for note in ("paused the ingestion", "duplicates removed", "came back"):  # each note once
            assert sum(note in e.message or note in str(e.data) for e in timeline) == 1, note
        assert [e.id for e in timeline] == sorted(e.id for e in timeline)


# What the store must persist for each move; the pure rules are tested pair by pair in test_lifecycle.py.
NOTIFIES = {Status.ACKNOWLEDGED: "acknowledge", Status.RESOLVED: "resolve", Status.REOPENED: "trigger"}


def test_every_transition_through_the_store(store_url):
    slack = {"RELIABILITY_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack"}  # queued in the outbox, never sent
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ=slack)) as store:

        def outbox_events(inc_id: int) -> list[str]:
            sql = "SELECT event FROM incident_outbox WHERE incident_id = :i AND channel = 'slack' ORDER BY id"
            with store.engine.connect() as conn:
                return list(conn.execute(text(sql), {"i": inc_id}).scalars())

        def open_key_owner(root: str) -> int | None:
            with store.engine.connect() as conn:
                return conn.execute(text("SELECT incident_id FROM incident_open_keys WHERE dedup_key = :k"),
                                    {"k": root}).scalar()  # fmt: skip

        for source, target in product(Status, Status):
            root = f"asset_{source}_{target}"
            (inc_id,) = store.ingest([det(f"{source}-{target}", root)], None, now=T0).opened
            for step in STEPS_TO[source]:
                store.transition(inc_id, step, "alice")
            before = store.get(inc_id)
            assert before.status == source
            sent_before = outbox_events(inc_id)
            if target not in TRANSITIONS[source]:
                with pytest.raises(InvalidTransition, match=f"is {source}; cannot move to {target}"):
                    store.transition(inc_id, target, "bob", "why not")
                after = store.get(inc_id)
                assert (after.version, len(after.timeline)) == (before.version, len(before.timeline))
                continue
            moved = store.transition(inc_id, target, "bob", f"{source} to {target}")
            assert moved.status == target and moved.version == before.version + 1
            assert open_key_owner(root) == (None if target == Status.RESOLVED else inc_id)
            if target == Status.REOPENED:
                assert moved.resolved_at is None and moved.mitigated_at is None
            elif target != Status.ACKNOWLEDGED:
                assert getattr(moved, f"{target}_at") == moved.updated_at
            added = store.get(inc_id).timeline[len(before.timeline) :]
            assert [(e.kind, e.actor) for e in added] == [("status_change", "bob"), ("note", "bob")]
            assert (added[0].data["from"], added[0].data["to"]) == (source, target)
            assert added[1].message == f"{source} to {target}"
            expected = [NOTIFIES[target]] if target in NOTIFIES else []
            assert outbox_events(inc_id) == sent_before + expected


def test_actions_are_recorded_with_their_move(store_url):
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        (inc_id,) = store.ingest([det("a", "raw_orders")], None, now=T0).opened
        pause = PlannedAction("pause_schedule", "paused schedule shop_daily", {"schedule": "shop_daily"})
        store.transition(inc_id, Status.MITIGATED, "reliability-policy", actions=[pause])
        *_, change, action = store.timeline(inc_id)
        assert (change.kind, change.data["to"]) == ("status_change", "mitigated")
        assert (action.kind, action.actor, action.message) == ("action", "reliability-policy", pause.description)
        assert action.data == {"action": "pause_schedule", "schedule": "shop_daily"}
        assert action.at == change.at


def test_timeline_and_detections_are_append_only_in_the_database(store_url):
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        store.ingest([det("e1", "raw_orders")], shop_graph(), now=T0)
        with store.engine.connect() as conn:
            for sql in (
                "UPDATE incident_timeline SET message = 'rewritten'",
                "DELETE FROM incident_timeline",
                "DELETE FROM incident_detections",
            ):
                with pytest.raises(Exception, match="append-only"), conn.begin():
                    conn.execute(text(sql))
        assert store.timeline(1)[0].message.startswith("incident opened")


def test_grouping_upstream_soda_then_downstream_dbt_is_one_incident(store_url):
    graph = shop_graph()
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        store.ingest([det("soda-1", "raw_orders", "soda_duplicate", fault_class=FaultClass.DUPLICATES)], graph, now=T0)
        store.ingest(
            [det("dbt-1", "fct_orders", "unique_fct_orders_order_id", at=T0 + timedelta(minutes=3))],
            graph, now=T0 + timedelta(minutes=3),
        )  # fmt: skip
        store.ingest(
            [det("dbt-2", "daily_revenue", "revenue_matches_orders", at=T0 + timedelta(minutes=4))],
            graph, now=T0 + timedelta(minutes=4),
        )  # fmt: skip
        incidents = store.list_incidents()
        assert len(incidents) == 1
        inc = store.get(incidents[0].id)
        roles = {a.asset_key: a.role for a in inc.assets}
        assert roles["raw_orders"] == "root"
        assert roles["fct_orders"] == "failing" and roles["daily_revenue"] == "failing"
        assert roles["stg_orders"] == "impacted" and roles["revenue_dashboard"] == "impacted"
        assert inc.detection_count == 3
        assert inc.last_detected_at == T0 + timedelta(minutes=4)


def test_downstream_first_then_upstream_moves_the_root_and_records_it(store_url):
    graph = shop_graph()
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        store.ingest([det("dbt-1", "fct_orders", "unique_order_id")], graph, now=T0)
        store.ingest([det("soda-1", "raw_orders", "soda_duplicate", at=T0 + timedelta(minutes=1))], graph,
                     now=T0 + timedelta(minutes=1))  # fmt: skip
        (inc,) = store.list_incidents()
        full = store.get(inc.id)
        assert full.root_asset == "raw_orders"
        assert "stg_orders" in {a.asset_key for a in full.assets}
        moved = [e for e in full.timeline if e.kind == "triage" and "root moved" in e.message]
        assert moved and moved[0].data["from"] == "fct_orders" and moved[0].data["previous_title"]
        # a new failure on the old root still joins
        store.ingest([det("dbt-2", "fct_orders", "other", at=T0 + timedelta(minutes=2))], graph,
                     now=T0 + timedelta(minutes=2))  # fmt: skip
        assert store.count() == 1


def test_outside_the_window_and_unrelated_failures_open_separate_incidents(store_url):
    graph = shop_graph()
    policy = GroupingPolicy(group_window=timedelta(minutes=10))
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={}), policy=policy) as store:
        store.ingest([det("a", "raw_orders")], graph, now=T0)
        store.ingest([det("b", "raw_customers", at=T0 + timedelta(minutes=1))], graph, now=T0)
        store.ingest([det("c", "daily_revenue", at=T0 + timedelta(hours=2))], graph, now=T0 + timedelta(hours=2))
        assert sorted(i.root_asset for i in store.list_incidents()) == [
            "daily_revenue", "raw_customers", "raw_orders"
        ]  # fmt: skip


def test_reprocessing_the_same_events_after_a_restart_changes_nothing(store_url):
    graph = shop_graph()
    events = [det(f"ev-{i}", "raw_orders" if i % 2 else "fct_orders", f"c{i}", at=T0 + timedelta(seconds=i))
              for i in range(20)]  # fmt: skip
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        first = store.ingest(events, graph, now=T0)
        before = [(i.id, i.version) for i in store.list_incidents()]
        timeline_len = len(store.timeline(first.opened[0]))
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:  # "restarted"
        second = store.ingest(events, graph, now=T0 + timedelta(minutes=1))
        assert second.duplicates == 20 and not second.opened and not second.joined
        assert [(i.id, i.version) for i in store.list_incidents()] == before
        assert len(store.timeline(first.opened[0])) == timeline_len
        # and a resolved incident is not reopened by replaying its old events
        store.resolve(first.opened[0], "alice")
        store.ingest(events, graph, now=T0 + timedelta(minutes=2))
        assert store.get(first.opened[0]).status == "resolved"


def test_new_failure_soon_after_resolution_reopens_later_opens_new(store_url):
    policy = GroupingPolicy(reopen_window=timedelta(minutes=30))
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={}), policy=policy) as store:
        (inc_id,) = store.ingest([det("a", "raw_orders")], shop_graph(), now=T0).opened
        store.resolve(inc_id, "alice")
        resolved_at = store.get(inc_id).resolved_at
        res = store.ingest([det("b", "raw_orders", at=resolved_at + timedelta(minutes=5))], shop_graph(),
                           now=resolved_at + timedelta(minutes=5))  # fmt: skip
        reopened = store.get(inc_id)
        assert res.reopened == [inc_id] and reopened.status == "reopened" and reopened.resolved_at is None
        change = [e for e in reopened.timeline if e.kind == "status_change"][-1]
        assert change.data["previous"] == {"resolved_at": resolved_at.isoformat()}
        assert change.message == "status resolved -> reopened: check failed again on raw_orders"
        store.resolve(inc_id, "alice")
        later = store.get(inc_id).resolved_at + timedelta(hours=2)
        res = store.ingest([det("c", "raw_orders", at=later)], shop_graph(), now=later)
        assert res.opened and res.opened[0] != inc_id


def test_checks_passing_again_mitigate_and_a_new_failure_reopens(store_url):
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        (inc_id,) = store.ingest([det("a", "raw_orders", "dup")], shop_graph(), now=T0).opened
        store.ingest([det("b", "fct_orders", "uniq", at=T0 + timedelta(seconds=1))], shop_graph(), now=T0)
        res = store.ingest([det("c", "raw_orders", "dup", at=T0 + timedelta(seconds=2), passed=True)],
                           shop_graph(), now=T0)  # fmt: skip
        assert not res.mitigated and store.get(inc_id).status == "open"
        res = store.ingest([det("d", "fct_orders", "uniq", at=T0 + timedelta(seconds=3), passed=True)],
                           shop_graph(), now=T0)  # fmt: skip
        assert res.mitigated == [inc_id] and store.get(inc_id).status == "mitigated"
        assert store.get(inc_id).mitigated_at == T0
        unrelated = store.ingest([det("e", "raw_customers", "x", passed=True)], shop_graph(), now=T0)
        assert unrelated.ignored_passes == 1
        store.ingest([det("f", "raw_orders", "dup", at=T0 + timedelta(seconds=4))], shop_graph(), now=T0)
        inc = store.get(inc_id)
        assert inc.status == "reopened" and inc.mitigated_at is None
        moves = [(e.data["from"], e.data["to"]) for e in inc.timeline if e.kind == "status_change"]
        assert moves == [("open", "mitigated"), ("mitigated", "reopened")]
        # and once reopened, a manual mitigate and reopen work again (the open key stays with the incident)
        store.mitigate(inc_id, "alice")
        assert store.reopen(inc_id, "alice", "still duplicated").status == "reopened"


def test_warn_then_error_escalates_severity_and_never_downgrades(store_url):
    graph = shop_graph()
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        (inc_id,) = store.ingest([det("a", "raw_customers", "row_count", check_severity="WARN")], graph,
                                 now=T0).opened  # fmt: skip
        assert store.get(inc_id).severity == "SEV4"  # reaches tier2 customer_lifetime_value, WARN
        store.ingest([det("b", "raw_customers", "schema", at=T0 + timedelta(seconds=1))], graph, now=T0)
        inc = store.get(inc_id)
        assert inc.severity == "SEV3"  # ERROR on tier2
        assert any("escalated SEV4 -> SEV3" in e.message for e in inc.timeline)
        warn = det("c", "raw_customers", "other", at=T0 + timedelta(seconds=2), check_severity="WARN")
        store.ingest([warn], graph, now=T0)
        assert store.get(inc_id).severity == "SEV3"


HOSTILE = [
    "raw'orders\"; DROP TABLE incidents; --",
    "<img src=x onerror=alert(1)>",
    "50% of_rows \\ back\\slash",
    "ünïcödé/ключ",
]


def test_hostile_asset_keys_and_notes_are_stored_and_found_verbatim(store_url):
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        for i, key in enumerate(HOSTILE):
            store.ingest([det(f"h{i}", key, key)], None, now=T0)
        assert sorted(i.root_asset for i in store.list_incidents()) == sorted(HOSTILE)
        first = store.list_incidents()[-1]
        store.add_note(first.id, "mallory'--", HOSTILE[0] + " " + HOSTILE[1])
        notes = [e for e in store.timeline(first.id) if e.kind == "note"]
        assert notes[0].message == HOSTILE[0] + " " + HOSTILE[1] and notes[0].actor == "mallory'--"
        for needle in HOSTILE:
            found = store.search(needle)
            assert any(inc.root_asset == needle for inc, _ in found), needle
        # LIKE wildcards in the needle are literal
        assert [inc.root_asset for inc, _ in store.search("50% of_")] == [HOSTILE[2]]
        assert store.search("%") and all("%" in inc.title or "%" in " ".join(w) for inc, w in store.search("%"))
        assert store.count() == len(HOSTILE)


def test_store_status_filters_and_search_over_notes(store_url):
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        a = store.ingest([det("a", "raw_orders")], None, now=T0).opened[0]
        b = store.ingest([det("b", "raw_customers")], None, now=T0).opened[0]
        store.resolve(b, "alice", "vendor file re-sent")
        assert [i.id for i in store.list_incidents(status="open")] == [a]
        assert [i.id for i in store.list_incidents(status="resolved")] == [b]
        assert [i.id for i in store.list_incidents(status="active")] == [a]
        hits = store.search("VENDOR FILE")
        assert [inc.id for inc, _ in hits] == [b] and any("vendor file" in w for w in hits[0][1])


def test_an_older_schema_is_migrated_on_open_and_keeps_its_data(store_url):
    from alembic import command
    from alembic.config import Config

    from reliability.incidents import schema
    from reliability.incidents.store import make_engine

    engine = make_engine(store_url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(Path(schema.__file__).parent / "migrations"))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_initial")
        conn.execute(text(
            "INSERT INTO incidents (title, status, severity, severity_reason, root_asset, fault_class, owners, "
            "error_level, detected_at, last_detected_at, updated_at, blast_radius, root_cause, version) VALUES "
            "('old', 'open', 'SEV3', '', 'raw_orders', 'data_quality', '[]', true, '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '{}', '{}', 1)"
        ))  # fmt: skip
        conn.execute(text("INSERT INTO incident_observation_marks (incident_id, version) VALUES (1, 1)"))
    engine.dispose()
    with IncidentStore(store_url, clock=SteppingClock(), router=Router(environ={})) as store:
        with store.engine.connect() as conn:
            assert conn.execute(text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).scalar() == (
                schema.HEAD_REVISION
            )
            assert conn.execute(text("SELECT signature FROM incident_observation_marks")).scalar() is None
        assert store.get(1).title == "old"

"""Notifications through the outbox to local receivers that validate the documented payloads."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

import pytest

from reliability.incidents.model import Detection, FaultClass, Source
from reliability.incidents.notify import (
    PAGERDUTY_URL_ENV,
    Route,
    Router,
    deliver_due,
    pagerduty_dedup_key,
    routes_from_config,
)
from reliability.incidents.store import IncidentStore
from tests.incidents.conftest import T0, SteppingClock, shop_graph
from tests.incidents.receivers import Receiver

SLACK_TOKEN = "T000SECRET/B000SECRET/XXXXslacksecretXXXX"
ROUTING_KEY = "R0UT1NGKEYsecret0000000000000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(base: str) -> dict[str, str]:
    return {
        "RELIABILITY_SLACK_WEBHOOK_URL": f"{base}/slack/{SLACK_TOKEN}",
        "RELIABILITY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        PAGERDUTY_URL_ENV: f"{base}/v2/enqueue",
        "RELIABILITY_ALERTMANAGER_URL": base,
    }


def _dup(key: str, asset: str = "raw_orders", at=T0) -> Detection:
    return Detection(key, asset, Source.ASSET_CHECK, "soda_duplicate <b>'x'</b>", at,
                     fault_class=FaultClass.DUPLICATES)  # fmt: skip


def test_receiver_down_then_up_delivers_everything_once_in_order(sqlite_url, caplog):
    caplog.set_level(logging.DEBUG)
    port = _free_port()  # nothing listens yet: connection refused
    env = env_for(f"http://127.0.0.1:{port}")
    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ=env)) as store:
        (inc_id,) = store.ingest([_dup("e1")], shop_graph(), now=T0).opened
        assert store.get(inc_id).severity == "SEV1"
        first = deliver_due(store, now=T0, environ=env, timeout=1)
        # one failed attempt per receiver, nothing lost
        assert first.delivered == 0 and first.retrying == 3 and store.outbox_counts() == {"pending": 3}
        store.acknowledge(inc_id, "alice")
        store.resolve(inc_id, "alice", "cleaned")
        receiver = Receiver(ROUTING_KEY, port=port)
        receiver.fail_with = 503  # up but failing
        try:
            second = deliver_due(store, now=T0 + timedelta(minutes=10), environ=env, timeout=1)
            assert second.delivered == 0 and second.retrying >= 1
            receiver.fail_with = None
            for minute in range(20, 80, 10):  # a few passes, as sensor ticks would
                deliver_due(store, now=T0 + timedelta(minutes=minute), environ=env, timeout=1)
            assert store.outbox_counts() == {"delivered": 8}
            assert receiver.errors == []
            pd = receiver.of("pagerduty")
            assert [b["event_action"] for b in pd] == ["trigger", "acknowledge", "resolve"]
            assert {b["dedup_key"] for b in pd} == {pagerduty_dedup_key(inc_id)}
            assert pd[0]["payload"]["severity"] == "critical"
            slack = receiver.of("slack")
            assert len(slack) == 3 and "opened" in slack[0]["text"] and "resolved" in slack[2]["text"]
            assert "&lt;b&gt;" in slack[0]["text"] and "<b>" not in slack[0]["text"]
            am = receiver.of("alertmanager")
            assert len(am) == 2  # firing, then resolved (Alertmanager has no "acknowledged")
            assert "endsAt" not in am[0][0] and am[1][0]["endsAt"]
            assert am[0][0]["labels"] == am[1][0]["labels"]
            # replaying delivery sends nothing twice
            again = deliver_due(store, now=T0 + timedelta(hours=2), environ=env, timeout=1)
            assert again.delivered == 0 and len(receiver.requests) == 8
            notes = [e.message for e in store.timeline(inc_id) if e.kind == "notification"]
            assert sum("delivered" in n for n in notes) == 8
        finally:
            receiver.stop()
        # secrets never reach logs, the outbox, the timeline or the incident
        dumped = [r.getMessage() for r in caplog.records]
        dumped += [str(i.payload) + i.target for i in store.due_outbox(now=T0 + timedelta(days=1))]
        full = store.get(inc_id)
        dumped += [str(full.to_dict(full=True))]
        with store.engine.connect() as conn:
            from sqlalchemy import text

            dumped += [str(r) for r in conn.execute(text("SELECT * FROM incident_outbox"))]
            dumped += [str(r) for r in conn.execute(text("SELECT * FROM incident_timeline"))]
        blob = "\n".join(dumped)
        assert "SECRET" not in blob and ROUTING_KEY not in blob and SLACK_TOKEN not in blob
        assert "RELIABILITY_SLACK_WEBHOOK_URL" in blob  # the env var NAME is what we store


def test_escalation_resends_trigger_and_rotates_the_alertmanager_identity(sqlite_url):
    receiver = Receiver(ROUTING_KEY)
    env = env_for(receiver.base)
    try:
        with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ=env)) as store:
            few = {"rows_failed": 1, "rows_tested": 1_000}  # narrow faults reaching the revenue dashboard
            warn = Detection("w", "raw_payments", Source.ASSET_CHECK, "amount", T0, check_severity="WARN", metadata=few)
            (inc_id,) = store.ingest([warn], shop_graph(), now=T0).opened
            assert store.get(inc_id).severity == "SEV3"
            later = T0 + timedelta(seconds=5)
            err = Detection("e", "raw_payments", Source.ASSET_CHECK, "currency", later, metadata=few)
            store.ingest([err], shop_graph(), now=T0)
            assert store.get(inc_id).severity == "SEV2"
            deliver_due(store, now=T0 + timedelta(seconds=10), environ=env)
        assert receiver.errors == []
        # SEV3 went to Slack+Alertmanager only; SEV2 escalation also pages
        assert [b["event_action"] for b in receiver.of("pagerduty")] == ["trigger"]
        am = receiver.of("alertmanager")
        assert am[0][0]["labels"]["severity"] == "sev3"
        escalated = {a["labels"]["severity"]: a for a in am[1]}
        assert "endsAt" not in escalated["sev2"] and escalated["sev3"]["endsAt"]
        assert "escalated SEV3 -&gt; SEV2" in receiver.of("slack")[1]["text"]
    finally:
        receiver.stop()


def test_permanent_rejection_is_dead_lettered_not_retried_forever(sqlite_url):
    receiver = Receiver("another-key")  # rejects our routing key with 400
    env = {"RELIABILITY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY, PAGERDUTY_URL_ENV: f"{receiver.base}/v2/enqueue"}
    try:
        with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ=env)) as store:
            store.ingest([_dup("e1")], shop_graph(), now=T0)
            report = deliver_due(store, now=T0, environ=env)
            assert report.dead == 1 and store.outbox_counts() == {"dead": 1}
            notes = [e.message for e in store.timeline(1) if e.kind == "notification"]
            assert notes == ["pagerduty trigger gave up: pagerduty: HTTP 400"]
    finally:
        receiver.stop()


def test_routing_by_severity_and_owner():
    routes = routes_from_config([
        {"severities": ["sev1"], "channels": ["pagerduty"]},
        {"owners": ["finance@shop.example"], "channels": ["slack"],
         "targets": {"slack": "RELIABILITY_SLACK_WEBHOOK_URL_FINANCE"}},
        {"channels": ["alertmanager"]},
    ])  # fmt: skip
    env = {
        "RELIABILITY_PAGERDUTY_ROUTING_KEY": "k",
        "RELIABILITY_SLACK_WEBHOOK_URL_FINANCE": "http://x",
        "RELIABILITY_ALERTMANAGER_URL": "http://am",
    }
    router = Router(routes, environ=env)
    from reliability.incidents.notify import IncidentSnapshot

    def snap(sev: str, owners: tuple[str, ...]) -> IncidentSnapshot:
        return IncidentSnapshot(1, 1, "t", "open", sev, "a", "data_quality", owners, T0, None, {})

    assert router.targets_for(snap("SEV1", ())) == [
        ("pagerduty", "RELIABILITY_PAGERDUTY_ROUTING_KEY"), ("alertmanager", "RELIABILITY_ALERTMANAGER_URL")
    ]  # fmt: skip
    assert ("slack", "RELIABILITY_SLACK_WEBHOOK_URL_FINANCE") in router.targets_for(
        snap("SEV3", ("finance@shop.example",))
    )
    assert [c for c, _ in router.targets_for(snap("SEV3", ("ops@x",)))] == ["alertmanager"]
    # a channel whose secret is not configured is not planned at all
    assert Router((Route(("slack",)),), environ={}).targets_for(snap("SEV1", ())) == []
    with pytest.raises(ValueError, match="unknown notification channel"):
        routes_from_config([{"channels": ["email"]}])


def test_firing_alerts_are_resent_to_alertmanager_until_resolved(sqlite_url):
    receiver = Receiver(ROUTING_KEY)
    env = {"RELIABILITY_ALERTMANAGER_URL": receiver.base}
    try:
        with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ=env)) as store:
            (inc_id,) = store.ingest([_dup("e1")], shop_graph(), now=T0).opened
            deliver_due(store, now=T0, environ=env)
            assert store.refresh_alertmanager(now=T0 + timedelta(seconds=30)) == 0  # too soon
            assert store.refresh_alertmanager(now=T0 + timedelta(seconds=61)) == 1
            assert store.refresh_alertmanager(now=T0 + timedelta(seconds=62)) == 0  # one is pending
            deliver_due(store, now=T0 + timedelta(seconds=62), environ=env)
            store.resolve(inc_id, "alice", "fixed")
            deliver_due(store, environ=env)
            assert store.refresh_alertmanager(now=T0 + timedelta(hours=1)) == 0  # resolved: no resend
        am = receiver.of("alertmanager")
        assert len(am) == 3 and "endsAt" not in am[1][0] and am[2][0]["endsAt"]
        assert am[0][0]["labels"] == am[1][0]["labels"] == am[2][0]["labels"]
        assert receiver.errors == []
    finally:
        receiver.stop()


def test_a_hanging_receiver_costs_one_timeout_per_pass_and_loses_nothing(sqlite_url):
    import time

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections, never answers
    env = env_for(f"http://127.0.0.1:{hang.getsockname()[1]}")
    try:
        with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ=env)) as store:
            for i in range(5):
                store.ingest([_dup(f"e{i}", asset=f"asset_{i}")], None, now=T0)
            assert store.count() == 5  # detection is done before any delivery is tried
            started = time.perf_counter()
            report = deliver_due(store, now=T0, environ=env, timeout=0.5, budget_s=5)
            elapsed = time.perf_counter() - started
            assert report.retrying == 2 and report.deferred == 8  # SEV3: Slack + Alertmanager, one timeout each
            assert elapsed < 3.0
            assert store.outbox_counts() == {"pending": 10}
    finally:
        hang.close()


def test_ack_from_a_shell_without_secrets_still_reaches_the_receivers_that_were_paged(sqlite_url):
    receiver = Receiver(ROUTING_KEY)
    env = env_for(receiver.base)  # the sensor's environment
    clock = SteppingClock()  # one timeline across the three processes
    try:
        with IncidentStore(sqlite_url, clock=clock, router=Router(environ=env)) as sensor_side:
            (inc_id,) = sensor_side.ingest([_dup("e1")], shop_graph(), now=T0).opened
            assert deliver_due(sensor_side, environ=env).delivered == 3
        with IncidentStore(sqlite_url, clock=clock, router=Router(environ={})) as cli_side:  # an engineer's shell
            cli_side.acknowledge(inc_id, "alice")
            report = deliver_due(cli_side, environ={})
            assert report.delivered == 0 and report.retrying == 0 and report.deferred == 2
        with IncidentStore(sqlite_url, clock=clock, router=Router(environ=env)) as sensor_side:
            assert deliver_due(sensor_side, environ=env).delivered == 2
        assert [b["event_action"] for b in receiver.of("pagerduty")] == ["trigger", "acknowledge"]
        assert len(receiver.of("slack")) == 2 and receiver.errors == []
    finally:
        receiver.stop()


def test_reopening_is_refused_when_another_incident_owns_the_root(sqlite_url):
    from reliability.incidents.store import InvalidTransition

    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ={})) as store:
        (first,) = store.ingest([_dup("e1")], None, now=T0).opened
        store.resolve(first, "alice", "fixed")
        later = T0 + timedelta(days=1)
        (second,) = store.ingest([_dup("e2", at=later)], None, now=later).opened
        with pytest.raises(InvalidTransition, match=f"INC-{second} is already the active incident"):
            store.reopen(first, "bob")


def test_huge_hostile_names_still_give_valid_payloads(sqlite_url):
    receiver = Receiver(ROUTING_KEY)
    env = env_for(receiver.base)
    huge = "<b>&" + "x" * 5000 + "'; DROP TABLE t;--"
    try:
        with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ=env)) as store:
            detection = Detection("h", huge, Source.ASSET_CHECK, huge, T0, fault_class=FaultClass.DUPLICATES)
            store.ingest([detection], None, now=T0)
            deliver_due(store, now=T0, environ=env)
        assert receiver.errors == []
        assert len(receiver.of("slack")) == 1 and len(receiver.of("alertmanager")) == 1
        assert receiver.of("alertmanager")[0][0]["annotations"]["root_asset"] == huge
    finally:
        receiver.stop()

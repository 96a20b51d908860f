"""Malformed or credential-bearing channel settings: never a secret in an error, a log or the store;
checked once at start-up by variable name; a failing channel never holds back the others."""

from __future__ import annotations

import base64
import logging
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import select

from reliability.cli import main
from reliability.errors import ConfigError
from reliability.incidents import defs as incidents_defs
from reliability.incidents import schema as t
from reliability.incidents.detection import Cursor, run_tick
from reliability.incidents.model import Detection, FaultClass, Source
from reliability.incidents.notify import (
    DEFAULT_ROUTES,
    PAGERDUTY_URL_ENV,
    Route,
    Router,
    channel_setting_errors,
    check_channel_settings,
    deliver_due,
    send,
    url_problem,
)
from reliability.incidents.store import IncidentStore
from reliability.incidents.triage import LineageGraph
from tests.incidents.conftest import T0, SteppingClock
from tests.incidents.receivers import Receiver

SLACK = "RELIABILITY_SLACK_WEBHOOK_URL"
ROUTING_KEY = "R0UT1NGKEYsecret0000000000000000"
TOKEN = "T0SECRET/B0SECRET/SUPERSECRETTOKEN"
# the two malformed values of issue 9: no scheme (urllib: "unknown url type"), a space (http.client.InvalidURL)
MALFORMED = {
    "no-scheme": f"hooks.slack.example/services/{TOKEN}",
    "space": "https://hooks.slack.example/services/T0SECRET B0SECRET/SUPERSECRETTOKEN",
}
SECRET_PARTS = ("SUPERSECRETTOKEN", "T0SECRET", "B0SECRET", ROUTING_KEY)


def _no_secret(*texts: object) -> None:
    blob = "\n".join(str(t) for t in texts)
    leaked = [part for part in SECRET_PARTS if part in blob]
    assert not leaked, f"secret fragment(s) {leaked} in output"


def _detections(n: int) -> list[Detection]:
    return [Detection(f"d{i}", f"asset_{i}", Source.ASSET_CHECK, "check", T0 + timedelta(seconds=i),
                      fault_class=FaultClass.DUPLICATES) for i in range(n)]  # fmt: skip


def _logs(caplog) -> str:
    return "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "") for r in caplog.records
    )


@pytest.fixture
def receiver():
    r = Receiver(ROUTING_KEY)
    yield r
    r.stop()


def test_url_problems_are_described_without_the_value():
    assert url_problem("https://hooks.slack.example/services/x") is None
    for value in (*MALFORMED.values(), "ftp://host/x", "https:///no-host", "http://host:port/x", "\x1b[31m"):
        problem = url_problem(value)
        assert problem and value not in problem and "SECRET" not in problem


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_webhook_is_redacted_and_does_not_starve_pagerduty(kind, sqlite_url, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    env = {SLACK: MALFORMED[kind], "RELIABILITY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
           PAGERDUTY_URL_ENV: f"{receiver.base}/v2/enqueue"}  # fmt: skip
    routes = (Route(("pagerduty", "slack")),)
    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(routes, environ=env)) as store:
        store.ingest(_detections(4), LineageGraph({}, {}), now=T0)
        # send() itself: a DeliveryError naming the variable, never a ValueError / InvalidURL with the URL
        with pytest.raises(Exception) as error:
            send("slack", SLACK, {"text": "x", "blocks": []}, environ=env, timeout=1)
        assert type(error.value).__name__ == "DeliveryError" and SLACK in str(error.value)
        _no_secret(error.value)
        # one pass: every PagerDuty message goes although Slack fails first for each incident
        report = deliver_due(store, now=T0, environ=env, timeout=1)
        assert len(receiver.of("pagerduty")) == 4 and receiver.errors == []
        assert report.delivered == 4 and report.retrying == 1 and report.dead == 0
        with store.engine.connect() as conn:
            query = select(t.outbox.c.last_error).where(t.outbox.c.last_error.is_not(None))
            errors = list(conn.execute(query).scalars())
        timelines = [e.message for i in range(1, 5) for e in store.timeline(i)]
    assert errors and all(SLACK in e for e in errors)
    _no_secret(*errors, *timelines, _logs(caplog))


def test_the_sensor_log_never_shows_a_malformed_webhook(sqlite_url, receiver, caplog, monkeypatch, tmp_path):
    """Through the real sensor evaluation (run_tick on a Dagster instance): no traceback, no secret."""
    caplog.set_level(logging.DEBUG)
    env = {SLACK: MALFORMED["space"], "RELIABILITY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
           PAGERDUTY_URL_ENV: f"{receiver.base}/v2/enqueue"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    routes = (Route(("slack", "pagerduty")),)
    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(routes, environ=env)) as store:
        store.ingest(_detections(2), LineageGraph({}, {}), now=T0)
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            outcome = run_tick(instance, store, LineageGraph({}, {}), Cursor.parse(None), delivery_timeout_s=1)
    assert outcome.delivery["retrying"] >= 1 and len(receiver.of("pagerduty")) == 2
    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the sensor log"
    assert "RELIABILITY_SLACK_WEBHOOK_URL contains whitespace" in _logs(caplog)
    _no_secret(_logs(caplog), outcome.summary())


def test_channel_settings_are_checked_at_start_up_by_variable_name(monkeypatch, sqlite_url, capsys):
    env = {SLACK: MALFORMED["no-scheme"], "RELIABILITY_PAGERDUTY_ROUTING_KEY": "has space " + ROUTING_KEY,
           PAGERDUTY_URL_ENV: "http://127.0.0.1:notaport/v2/enqueue"}  # fmt: skip
    errors = channel_setting_errors(DEFAULT_ROUTES, env)
    assert [e.split(" ")[0] for e in errors] == [
        "RELIABILITY_PAGERDUTY_ROUTING_KEY", SLACK, PAGERDUTY_URL_ENV
    ]  # fmt: skip
    _no_secret(*errors)
    assert channel_setting_errors(DEFAULT_ROUTES, {}) == []  # unset = channel not used, not an error
    with pytest.raises(ConfigError):
        check_channel_settings(DEFAULT_ROUTES, env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # code location load (`dagster definitions validate` loads this): fails naming the variables
    with pytest.raises(ConfigError) as error:
        incidents_defs.defs()
    assert SLACK in str(error.value)
    _no_secret(error.value)
    # the CLI's deliver: one line, exit 1, before any store or network access
    IncidentStore(sqlite_url).close()
    code = main(["incidents", "--store-url", sqlite_url, "deliver"])
    out, err = capsys.readouterr()
    assert code == 1 and err.startswith("error: notification settings: ") and err.count("\n") == 1
    assert SLACK in err and "Traceback" not in err
    _no_secret(out, err)


def test_a_url_with_user_and_password_is_sent_as_basic_auth_and_never_shown(receiver, sqlite_url, caplog):
    caplog.set_level(logging.DEBUG)
    am = "RELIABILITY_ALERTMANAGER_URL"
    env = {am: f"http://am-user:p%40ssB0SECRET@127.0.0.1:{receiver.port}/"}
    assert channel_setting_errors(DEFAULT_ROUTES, env) == []
    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router((Route(("alertmanager",)),), env)) as store:
        store.ingest(_detections(1), LineageGraph({}, {}), now=T0)
        assert deliver_due(store, now=T0, environ=env, timeout=1).delivered == 1
    assert receiver.errors == [] and len(receiver.of("alertmanager")) == 1
    assert receiver.authorizations == ["Basic " + base64.b64encode(b"am-user:p@ssB0SECRET").decode()]
    # the same credentials to a port where nothing listens: the failure names the channel, not them
    receiver.stop()
    with pytest.raises(Exception) as error:
        send("alertmanager", am, [], environ=env, timeout=1)
    assert type(error.value).__name__ == "DeliveryError" and "alertmanager" in str(error.value)
    _no_secret(error.value, _logs(caplog))

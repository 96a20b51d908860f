"""The circuit breaker's pure rules: policy, what to pause, what is in effect, what to resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reliability.errors import ConfigError
from reliability.incidents.config import load_incidents_config
from reliability.mitigation.plan import (
    LIFT,
    PAUSE_KAFKA,
    QUARANTINE,
    START,
    STOP,
    Automation,
    RadiusAsset,
    as_suggestions,
    blocking_quarantine,
    containment_state,
    needs_policy,
    override_ids,
    plan_containment,
    plan_resume,
    policy_marker,
    refusal_message,
)
from reliability.mitigation.policy import Mode, policy_from_config
from reliability.mitigation.visibility import check_states


@dataclass
class E:  # a timeline entry as the store returns it
    kind: str
    data: dict = field(default_factory=dict)


def actions_entries(actions) -> list[E]:
    return [E("action", {"action": a.kind, **a.data}) for a in actions]


RADIUS = [
    RadiusAsset("raw_payments", ("2026-11-20",)),
    RadiusAsset("stg_payments", ("2026-11-20",)),
    RadiusAsset("customer_lifetime_value", ()),
    RadiusAsset("revenue_dashboard", (), exposure=True),
]
AUTOMATIONS = [
    Automation("automation_raw", "automation", frozenset({"raw_payments", "raw_customers"}), True),
    Automation("automation_dbt", "automation", frozenset({"stg_payments", "customer_lifetime_value"}), True),
    Automation("automation_other", "automation", frozenset({"stg_customers"}), True),
    Automation("hand_stopped", "sensor", frozenset({"stg_payments"}), False),
    Automation("nightly", "schedule", frozenset({"customer_lifetime_value"}), True),
]


# ---------------------------------------------------------------------------------------------- policy
def test_policy_first_matching_rule_wins_with_optional_tiers() -> None:
    policy = policy_from_config(
        {"default": "suggest", "rules": [
            {"severities": ["SEV1", "SEV2"], "mode": "auto"},
            {"severities": ["SEV3"], "tiers": ["tier1"], "mode": "auto"},
            {"severities": ["SEV4"], "mode": False},  # YAML's bare `off`
        ]},
        "incidents.yaml",
    )  # fmt: skip
    assert policy.mode_for("SEV2") is Mode.AUTO
    assert policy.mode_for("SEV3", "tier1") is Mode.AUTO
    assert policy.mode_for("SEV3", "tier2") is Mode.SUGGEST
    assert policy.mode_for("SEV4", "tier1") is Mode.OFF
    assert policy_from_config(None, "x").mode_for("SEV1") is Mode.OFF
    # stale data or a lagging consumer: pausing would deepen them
    assert policy.mode_for("SEV1", "tier1", "freshness") is Mode.OFF
    assert policy.mode_for("SEV1", "tier1", "consumer_lag") is Mode.OFF
    assert policy.mode_for("SEV1", "tier1", "data_quality") is Mode.AUTO


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rules": [{"severities": ["SEV1"], "mode": "pause"}]}, "mitigation.rules[0].mode: mode 'pause'"),
        ({"rules": [{"severities": ["SEV9"], "mode": "auto"}]}, "mitigation.rules[0].severities"),
        ({"rules": [{"severities": ["SEV1"], "mode": "auto", "tier": "tier1"}]}, "unknown field(s) ['tier']"),
        ({"rules": [{"severities": ["SEV1"], "tiers": ["gold"], "mode": "auto"}]}, "mitigation.rules[0].tiers"),
        ({"rules": [{"mode": "auto"}]}, "needs 'severities'"),
        ({"default": "sometimes"}, "mitigation.default: mode 'sometimes'"),
        ({"defaults": "auto"}, "unknown field(s) ['defaults']"),
    ],
)
def test_bad_policy_names_file_and_field(section: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        policy_from_config(section, "incidents.yaml")
    assert str(err.value).startswith("incidents.yaml: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_shipped_incidents_config_has_a_valid_policy(tmp_path: Path) -> None:
    cfg = load_incidents_config()
    assert cfg.mitigation.mode_for("SEV1") is Mode.AUTO and cfg.mitigation.mode_for("SEV4") is Mode.OFF
    bad = tmp_path / "incidents.yaml"
    bad.write_text("mitigation:\n  rules:\n    - {severities: [SEV1], mode: maybe}\n")
    with pytest.raises(ConfigError, match=r"incidents.yaml: mitigation.rules\[0\].mode"):
        load_incidents_config(bad)


# ---------------------------------------------------------------------------------------------- containment
def test_containment_stops_exactly_the_running_automation_that_feeds_the_radius() -> None:
    actions = plan_containment(1, "raw_payments", RADIUS, AUTOMATIONS, set(), containment_state(1, []))
    stopped = [a.data["name"] for a in actions if a.kind == STOP]
    assert stopped == ["automation_dbt", "automation_raw", "nightly"]  # not other/hand-stopped/exposures
    quarantined = {a.data["asset"]: a.data["partitions"] for a in actions if a.kind == QUARANTINE}
    assert quarantined == {"raw_payments": ["2026-11-20"], "stg_payments": ["2026-11-20"],
                           "customer_lifetime_value": None}  # fmt: skip
    assert not [a for a in actions if a.kind == PAUSE_KAFKA]


def test_containment_is_idempotent_and_an_escalation_adds_only_what_is_new() -> None:
    first = plan_containment(1, "raw_payments", RADIUS, AUTOMATIONS, set(), containment_state(1, []))
    state = containment_state(1, actions_entries([*first, policy_marker(Mode.AUTO, "SEV3", len(first))]))
    assert plan_containment(1, "raw_payments", RADIUS, AUTOMATIONS, set(), state) == []
    assert not needs_policy("open", "SEV3", state) and needs_policy("open", "SEV2", state)
    assert not needs_policy("resolved", "SEV1", state)
    wider = [*RADIUS, RadiusAsset("stg_customers", ())]
    again = plan_containment(1, "raw_payments", wider, AUTOMATIONS, set(), state)
    assert [(a.kind, a.data.get("name") or a.data.get("asset")) for a in again] == [
        (STOP, "automation_other"), (QUARANTINE, "stg_customers")]  # fmt: skip


def test_reopen_after_the_policy_applies_it_again() -> None:
    state = containment_state(1, [E("action", {"action": "policy", "severity": "SEV2"}),
                                  E("status_change", {"to": "reopened"})])  # fmt: skip
    assert needs_policy("reopened", "SEV2", state)


def test_kafka_fed_root_is_paused_at_the_consumer_not_by_stopping_its_sensor() -> None:
    radius = [RadiusAsset("raw_orders", ()), RadiusAsset("stg_orders", ("2026-11-20",))]
    automations = [
        Automation("kafka_orders_sensor", "sensor", frozenset({"raw_orders"}), True),
        Automation("automation_dbt", "automation", frozenset({"stg_orders"}), True),
    ]
    actions = plan_containment(3, "raw_orders", radius, automations, {"raw_orders"}, containment_state(3, []))
    assert [(a.kind, a.data.get("name") or a.data.get("asset")) for a in actions] == [
        (STOP, "automation_dbt"),
        (PAUSE_KAFKA, "raw_orders"),
        (QUARANTINE, "raw_orders"),
        (QUARANTINE, "stg_orders"),
    ]
    state = containment_state(3, actions_entries(actions))
    assert state.kafka_paused == {"raw_orders"}


# ---------------------------------------------------------------------------------------------- resume
def test_resume_restarts_exactly_what_was_stopped_unless_another_incident_holds_it() -> None:
    first = plan_containment(1, "raw_payments", RADIUS, AUTOMATIONS, set(), containment_state(1, []))
    stopped_now = [a.data["name"] for a in first if a.kind == STOP]
    after = [Automation(a.name, a.kind, a.targets, a.running and a.name not in stopped_now) for a in AUTOMATIONS]
    second = plan_containment(2, "stg_payments", [RadiusAsset("stg_payments", ())], after, set(),
                              containment_state(2, []), {n: 1 for n in stopped_now})  # fmt: skip
    held = [a for a in second if a.kind == STOP]
    assert [a.data["name"] for a in held] == ["automation_dbt"] and held[0].data["held_with"] == "INC-1"
    state1 = containment_state(1, actions_entries(first))
    resume1 = plan_resume(1, state1, {"automation_dbt": 2}, running_now=[])
    restarted = [a.data["name"] for a in resume1 if a.kind == START and not a.data.get("skipped")]
    assert restarted == ["automation_raw", "nightly"]  # automation_dbt still held by INC-2
    assert "hand_stopped" not in {a.data.get("name") for a in resume1}
    assert resume1[-1].kind == LIFT
    after_resume = containment_state(1, actions_entries([*first, *resume1]))
    assert after_resume.stopped == {} and after_resume.quarantined == []


def test_suggestions_are_marked_and_recorded_once() -> None:
    actions = plan_containment(1, "raw_payments", RADIUS, AUTOMATIONS, set(), containment_state(1, []))
    suggested = as_suggestions([*actions, policy_marker(Mode.SUGGEST, "SEV3", len(actions))], containment_state(1, []))
    assert all(a.data["suggested"] and a.description.startswith("suggested (not done): ") for a in suggested)
    state = containment_state(1, actions_entries(suggested))
    assert not state.contained and state.applied_severity == "SEV3"
    assert [a.kind for a in as_suggestions(actions, state)] == []


# ---------------------------------------------------------------------------------------------- guard rules
def test_quarantine_blocks_only_its_partitions_and_names_the_incident() -> None:
    actions = plan_containment(7, "raw_payments", RADIUS, AUTOMATIONS, set(), containment_state(7, []))
    quarantines = containment_state(7, actions_entries(actions)).quarantined
    assert blocking_quarantine(quarantines, ["raw_payments"], ["2026-11-19"]) == []
    blocked = blocking_quarantine(quarantines, ["raw_payments", "raw_customers"], ["2026-11-19", "2026-11-20"])
    assert [q.asset for q in blocked] == ["raw_payments"]
    assert blocking_quarantine(quarantines, ["customer_lifetime_value"], [None])
    message = refusal_message(blocked, ["2026-11-19", "2026-11-20"])
    assert "quarantined by INC-7" in message and "reliability/quarantine_override=INC-7" in message
    assert override_ids({"reliability/quarantine_override": "INC-7, 9,bad"}) == {7, 9}
    # a reconciliation backfill rebuilds its own incident's quarantined partitions; a linked run does not
    assert override_ids({"reliability/reconcile": "true", "reliability/incident": "INC-7"}) == {7}
    assert override_ids({"reliability/incident": "INC-7"}) == set()


@dataclass
class A:
    asset_key: str
    role: str


@dataclass
class Inc:
    id: int
    status: str
    severity: str
    title: str
    root_asset: str
    assets: list


def test_open_incident_check_fails_while_open_and_passes_once_resolved() -> None:
    old = Inc(1, "resolved", "SEV2", "old", "raw_payments", [A("raw_payments", "root"), A("stg_payments", "impacted")])
    new = Inc(2, "open", "SEV3", "new", "stg_payments", [A("stg_payments", "root"), A("job:x", "failing")])
    states = check_states([old, new])
    assert states["raw_payments"].passed and states["raw_payments"].incident_id == "INC-1"
    assert not states["stg_payments"].passed and states["stg_payments"].incident_id == "INC-2"
    assert "job:x" not in states
    meta = states["stg_payments"].metadata("http://ui")
    assert meta["incident_severity"] == "SEV3" and meta["incident_link"].startswith("http://ui/runs?")
    assert states["stg_payments"].same_as(meta, False) and not states["stg_payments"].same_as(meta, True)


def test_the_breakers_own_signals_are_never_detections() -> None:
    """`open_incident` results and runs the quarantine refused would otherwise reopen the incident."""
    from reliability.incidents.mapping import CheckEvent, EventBatch, RunFailureEvent, detections_from_events

    def check(name: str) -> CheckEvent:
        return CheckEvent(storage_id=1, run_id=None, timestamp=1.0, asset_key="raw_payments", check_name=name,
                          passed=False, severity="ERROR")  # fmt: skip

    def failure(refused: str | None) -> RunFailureEvent:
        return RunFailureEvent(run_id="r", job_name="j", timestamp=1.0, message="m", asset_selection=("raw_payments",),
                               quarantine_refused=refused)  # fmt: skip

    batch = EventBatch(checks=(check("open_incident"), check("soda_row_count")),
                       run_failures=(failure("INC-1"), failure(None)))  # fmt: skip
    detections = detections_from_events(batch)
    assert sorted((str(d.source), d.run_id) for d in detections if d.source == "run_failure") == [("run_failure", "r")]
    assert [d.signal for d in detections if d.source == "asset_check"] == ["soda_row_count"]

"""Triage pure functions: blast radius, severity table, root-cause hint, grouping decisions."""

from __future__ import annotations

from datetime import timedelta

import networkx as nx
import pytest

from reliability.incidents.grouping import Action, GroupingPolicy, IncidentView, decide
from reliability.incidents.model import FaultClass, Severity
from reliability.incidents.triage import (
    ALL_PARTITIONS,
    SEVERITY_RULES,
    AssetChangeFacts,
    AssetInfo,
    LineageGraph,
    SeverityFacts,
    blast_radius,
    classify_severity,
    md_escape,
    merge_partition_keys,
    merge_radius_partitions,
    parse_tier,
    partitions_by_asset,
    root_cause_hint,
    severity_table_markdown,
    with_detected_partitions,
)
from tests.incidents.conftest import T0, shop_graph


def test_blast_radius_of_raw_orders_reaches_the_revenue_exposure_with_depths():
    radius = blast_radius(shop_graph(), ["raw_orders"], failed_partitions="2026-11-26")
    depths = {a.key: a.depth for a in radius.assets}
    assert depths == {
        "raw_orders": 0,
        "stg_orders": 1,
        "fct_orders": 2,
        "customer_lifetime_value": 3,
        "daily_revenue": 3,
        "revenue_dashboard": 4,
    }
    assert radius.exposures == ("revenue_dashboard",)
    assert radius.top_tier == 1
    assert radius.owners == (
        "analytics@shop.example",
        "finance@shop.example",
        "growth@shop.example",
        "ingest@shop.example",
    )
    parts = {a.key: a.partitions for a in radius.assets}
    assert parts["fct_orders"] == ("2026-11-26",)
    assert parts["customer_lifetime_value"] == ()
    unpartitioned = blast_radius(shop_graph(), ["raw_orders"])
    assert {a.key: a.partitions for a in unpartitioned.assets}["daily_revenue"] == (ALL_PARTITIONS,)


def test_blast_radius_takes_the_shortest_depth_over_diamonds_and_multiple_roots():
    g = LineageGraph({"a": ["b", "c"], "b": ["d"], "c": ["e"], "e": ["d"], "x": ["d"]})
    radius = blast_radius(g, ["a", "x"])
    assert {a.key: a.depth for a in radius.assets} == {"a": 0, "x": 0, "b": 1, "c": 1, "d": 1, "e": 2}
    assert blast_radius(g, ["unknown"]).assets[0].key == "unknown"
    assert len(blast_radius(g, ["d"]).downstream) == 0


def test_descendants_agree_with_networkx_on_a_random_dag():
    import random

    rng = random.Random(7)
    children: dict[str, list[str]] = {}
    for i in range(1, 400):
        for p in rng.sample(range(i), k=min(i, rng.randint(1, 3))):
            children.setdefault(f"n{p}", []).append(f"n{i}")
    g = LineageGraph(children)
    nxg = nx.DiGraph([(p, c) for p, cs in children.items() for c in cs])
    for node in ("n0", "n5", "n100", "n399"):
        assert g.descendants(node) == nx.descendants(nxg, node)
        assert g.ancestors(node) == nx.ancestors(nxg, node)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (SeverityFacts(top_tier=1, downstream_count=0, exposures=0, error=True), Severity.SEV1),
        (SeverityFacts(top_tier=1, downstream_count=0, exposures=0, error=False), Severity.SEV2),
        (SeverityFacts(top_tier=3, downstream_count=0, exposures=1, error=True), Severity.SEV2),
        (SeverityFacts(top_tier=2, downstream_count=0, exposures=0, error=True), Severity.SEV2),
        (SeverityFacts(top_tier=4, downstream_count=50, exposures=0, error=False), Severity.SEV2),
        (SeverityFacts(top_tier=2, downstream_count=0, exposures=0, error=False), Severity.SEV3),
        (SeverityFacts(top_tier=3, downstream_count=0, exposures=0, error=True), Severity.SEV3),
        (SeverityFacts(top_tier=4, downstream_count=10, exposures=0, error=False), Severity.SEV3),
        (SeverityFacts(top_tier=4, downstream_count=9, exposures=0, error=True), Severity.SEV4),
    ],
)
def test_severity_rule_table(facts, expected):
    severity, reason = classify_severity(facts)
    assert severity == expected
    assert reason in {r.reason for r in SEVERITY_RULES}


def test_severity_from_blast_radius_untiered_counts_as_tier3_and_table_renders():
    g = LineageGraph({"a": ["b"]})
    facts = SeverityFacts.of(blast_radius(g, ["a"]), "ERROR", FaultClass.DATA_QUALITY)
    assert facts.top_tier == 3 and facts.error
    assert classify_severity(facts)[0] == Severity.SEV3
    warn = SeverityFacts.of(blast_radius(g, ["a"]), "WARN", FaultClass.PIPELINE_FAILURE)
    assert warn.error  # a failed run is always ERROR-level
    table = severity_table_markdown()
    assert table.count("\n") == len(SEVERITY_RULES) + 1 and "| SEV1 |" in table


def test_parse_tier():
    assert [parse_tier(v) for v in ("tier1", "Tier 2", 3, "tier_4", None, "gold")] == [1, 2, 3, 4, None, None]


def test_root_cause_hint_names_the_most_upstream_failing_asset_and_its_changes():
    g = shop_graph()
    changes = {
        "raw_orders": AssetChangeFacts(
            "raw_orders",
            code_version="v2",
            previous_code_version="v1",
            columns={"order_id": "BIGINT", "amount": "VARCHAR"},
            previous_columns={"order_id": "BIGINT", "amount": "DECIMAL(12,2)", "status": "VARCHAR"},
            last_run_status="FAILURE",
            last_run_id="run-1",
        )
    }
    hint = root_cause_hint(g, ["fct_orders", "raw_orders", "daily_revenue"], changes)
    assert hint.asset_key == "raw_orders"
    assert hint.upstream_failing == ("raw_orders",)
    text = hint.text
    assert "code version changed v1 -> v2" in text
    assert "columns removed: status" in text and "column types changed: amount" in text
    assert "last run run-1 status FAILURE" in text
    # two independent failing roots are both reported, earliest first
    both = root_cause_hint(g, ["raw_customers", "raw_orders"])
    assert both.upstream_failing == ("raw_customers", "raw_orders")
    assert root_cause_hint(g, []).asset_key is None


def test_markdown_summary_escapes_hostile_keys():
    g = LineageGraph({"a": ["<script>x</script>|`"]}, {"a": AssetInfo(("o@x",), 1)})
    md = blast_radius(g, ["a"]).markdown()
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\|" in md
    assert md_escape("a|b") == "a\\|b"


def _view(i, root, assets=(), minutes_ago=0, active=True, resolved_minutes_ago=None):
    return IncidentView(
        incident_id=i,
        root_asset=root,
        assets=frozenset(assets) | {root},
        last_detected_at=T0 - timedelta(minutes=minutes_ago),
        active=active,
        resolved_at=None if resolved_minutes_ago is None else T0 - timedelta(minutes=resolved_minutes_ago),
        failing=frozenset({root}),
    )


def test_grouping_rules_in_order():
    g = shop_graph()
    policy = GroupingPolicy(group_window=timedelta(hours=1), reopen_window=timedelta(minutes=30))
    open_raw = _view(1, "raw_orders", ["stg_orders"], minutes_ago=5)
    assert decide("raw_orders", T0, [open_raw], g, policy).action == Action.JOIN
    assert decide("stg_orders", T0, [open_raw], g, policy).action == Action.JOIN_DOWNSTREAM
    d = decide("daily_revenue", T0, [open_raw], g, policy)
    assert (d.action, d.incident_id) == (Action.JOIN_DOWNSTREAM, 1)
    # outside the window a downstream failure is its own incident
    stale = _view(1, "raw_orders", minutes_ago=120)
    assert decide("daily_revenue", T0, [stale], g, policy).action == Action.OPEN
    # a failure upstream of an open incident's root takes over as root
    open_fct = _view(2, "fct_orders", minutes_ago=5)
    assert decide("raw_payments", T0, [open_fct], g, policy).action == Action.JOIN_UPSTREAM
    # unrelated lineage -> new incident
    assert decide("raw_customers", T0, [open_raw], g, policy).action == Action.OPEN
    # recently resolved same root -> reopen; long ago -> new
    resolved = _view(3, "raw_orders", active=False, resolved_minutes_ago=10)
    assert decide("raw_orders", T0, [resolved], g, policy).action == Action.REOPEN
    old = _view(3, "raw_orders", active=False, resolved_minutes_ago=90)
    assert decide("raw_orders", T0, [old], g, policy).action == Action.OPEN
    # without lineage only same-asset grouping applies
    assert decide("daily_revenue", T0, [open_raw], None, policy).action == Action.OPEN


def test_the_documented_severity_table_is_the_one_in_the_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "reliability/incidents/README.md").read_text()
    assert severity_table_markdown() in readme


def test_partitions_follow_the_partition_mapping_and_pass_through_unpartitioned_assets():
    # daily a -> daily b (identity), b -> weekly w (by mapper), b -> unpartitioned u -> daily v
    info = {k: AssetInfo(partitioned=k != "u") for k in ("a", "b", "w", "u", "v")}
    weeks = {"2026-11-20": ["2026-11-15"], "2026-11-21": ["2026-11-15"], "2026-11-23": ["2026-11-22"]}

    def mapper(parent: str, key: str, child: str) -> list[str]:
        return weeks[key] if child == "w" else [key]

    g = LineageGraph({"a": ["b"], "b": ["w", "u"], "u": ["v"]}, info, partition_mapper=mapper)
    radius = blast_radius(g, ["a"], ["2026-11-21", "2026-11-20", "2026-11-23"])
    parts = {a.key: a.partitions for a in radius.assets}
    assert parts == {
        "a": ("2026-11-20", "2026-11-21", "2026-11-23"),
        "b": ("2026-11-20", "2026-11-21", "2026-11-23"),
        "w": ("2026-11-15", "2026-11-22"),
        "u": (),
        "v": ("2026-11-20", "2026-11-21", "2026-11-23"),
    }
    everything = blast_radius(g, ["a"])
    assert {a.key: a.partitions for a in everything.assets}["w"] == (ALL_PARTITIONS,)


def test_incident_partitions_accumulate_and_all_absorbs_the_rest():
    g = shop_graph()
    first = with_detected_partitions(blast_radius(g, ["raw_orders"], "2026-11-20").to_dict(), "raw_orders",
                                     ["2026-11-20"])  # fmt: skip
    second = blast_radius(g, ["stg_orders"], "2026-11-21").to_dict()
    merged = merge_radius_partitions(second, first)
    by_asset = partitions_by_asset(merged)
    assert by_asset["fct_orders"] == ["2026-11-20", "2026-11-21"]
    assert by_asset["raw_orders"] == ["2026-11-20"]  # unpartitioned: the day its check named
    assert "customer_lifetime_value" not in by_asset
    assert merge_partition_keys(["2026-11-20"], [ALL_PARTITIONS]) == (ALL_PARTITIONS,)

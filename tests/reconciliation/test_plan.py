"""The reconciliation plan as a pure function: exact rebuild set, dependency order, clear refusals."""

from __future__ import annotations

import random
from datetime import date, timedelta

import networkx as nx
import pytest

from reliability.errors import UserFacingError
from reliability.incidents.triage import AssetInfo, LineageGraph
from reliability.reconciliation.plan import EdgeMapping, RebuildStep, naive_size, plan_reconciliation

DAYS = [(date(2026, 1, 1) + timedelta(days=i)).isoformat() for i in range(30)]


def shop_lineage() -> LineageGraph:
    """The real shop's lineage and partitioning (tests/snapshots/asset_graph.json) as plain data."""
    children = {
        "raw_orders": ["stg_orders"],
        "raw_customers": ["stg_customers"],
        "raw_payments": ["stg_payments"],
        "stg_customers": ["stg_orders", "customer_lifetime_value"],
        "stg_orders": ["stg_payments", "fct_orders"],
        "stg_payments": ["fct_orders"],
        "fct_orders": ["customer_lifetime_value", "daily_revenue"],
        "customer_lifetime_value": ["revenue_dashboard"],
        "daily_revenue": ["revenue_dashboard"],
    }
    daily = {"raw_customers", "raw_payments", "stg_customers", "stg_orders", "stg_payments", "fct_orders",
             "daily_revenue"}  # fmt: skip
    keys = set(children) | {"revenue_dashboard"}
    info = {k: AssetInfo(partitioned=k in daily, kind="dashboard" if k == "revenue_dashboard" else "asset")
            for k in keys}  # fmt: skip
    return LineageGraph(children, info)


def test_one_bad_day_of_raw_payments_rebuilds_that_day_downstream_and_the_unpartitioned_mart_once():
    plan = plan_reconciliation(shop_lineage(), "raw_payments", ["2026-01-05"], DAYS)
    assert plan.steps == (
        RebuildStep("raw_payments", ("2026-01-05",)),
        RebuildStep("stg_payments", ("2026-01-05",)),
        RebuildStep("fct_orders", ("2026-01-05",)),
        RebuildStep("customer_lifetime_value", ()),
        RebuildStep("daily_revenue", ("2026-01-05",)),
    )
    assert plan.not_rebuilt == ("revenue_dashboard",)
    assert plan.size == 5
    assert plan.pairs()[3] == ("customer_lifetime_value", None)
    assert "4. customer_lifetime_value: unpartitioned, once" in plan.lines()


def test_an_unpartitioned_asset_rebuilt_makes_every_partition_of_its_daily_children_stale():
    # raw_customers day -> stg_customers day -> (unpartitioned) dim -> daily report: all days of the report
    graph = LineageGraph(
        {"raw": ["stg"], "stg": ["dim"], "dim": ["report"]},
        {"raw": AssetInfo(partitioned=True), "stg": AssetInfo(partitioned=True), "dim": AssetInfo(),
         "report": AssetInfo(partitioned=True)},
    )  # fmt: skip
    plan = plan_reconciliation(graph, "raw", ["2026-01-02"], DAYS)
    assert plan.partitions_by_asset() == {"raw": ("2026-01-02",), "stg": ("2026-01-02",), "dim": (),
                                          "report": tuple(DAYS)}  # fmt: skip


def test_the_days_named_for_an_unpartitioned_root_reach_its_daily_children_only_for_those_days():
    plan = plan_reconciliation(shop_lineage(), "raw_orders", ["2026-01-03", "2026-01-04"], DAYS)
    parts = plan.partitions_by_asset()
    assert parts["raw_orders"] == ()
    assert parts["stg_orders"] == parts["daily_revenue"] == ("2026-01-03", "2026-01-04")
    assert "stg_customers" not in parts and "raw_payments" not in parts
    unknown_window = plan_reconciliation(shop_lineage(), "raw_orders", [], DAYS)
    assert unknown_window.partitions_by_asset()["fct_orders"] == tuple(DAYS)


def test_an_explicit_edge_mapping_overrides_the_default():
    graph = LineageGraph({"a": ["b"]}, {"a": AssetInfo(partitioned=True), "b": AssetInfo(partitioned=True)})
    plan = plan_reconciliation(graph, "a", ["2026-01-02"], DAYS)
    assert plan.partitions_by_asset()["b"] == ("2026-01-02",)
    mapped = {("a", "b"): EdgeMapping.ALL_TO_UNPARTITIONED}
    graph_b_once = LineageGraph({"a": ["b"]}, {"a": AssetInfo(partitioned=True), "b": AssetInfo()})
    assert plan_reconciliation(graph_b_once, "a", ["2026-01-02"], DAYS, mappings=mapped).size == 2


def test_non_materializable_assets_are_reported_not_rebuilt_and_their_children_still_are():
    graph = LineageGraph({"a": ["ext"], "ext": ["c"]}, {k: AssetInfo(partitioned=True) for k in ["a", "ext", "c"]})
    plan = plan_reconciliation(graph, "a", ["2026-01-02"], DAYS, not_materializable={"ext"})
    assert [s.asset for s in plan.steps] == ["a", "c"]
    assert plan.not_rebuilt == ("ext",)


@pytest.mark.parametrize(
    ("root", "partitions", "message"),
    [
        ("nope", ["2026-01-02"], "unknown root asset 'nope'"),
        ("raw_payments", [], "raw_payments is partitioned: name its affected partitions"),
        ("raw_payments", ["2031-01-01"], "partition '2031-01-01' of raw_payments is not a partition"),
    ],
)
def test_bad_input_is_refused_with_a_one_line_reason(root, partitions, message):
    with pytest.raises(UserFacingError, match=message):
        plan_reconciliation(shop_lineage(), root, partitions, DAYS)


def _random_dag(seed: int, n: int = 120) -> tuple[LineageGraph, dict[str, list[str]], set[str]]:
    rng = random.Random(seed)
    keys = [f"a{i:03d}" for i in range(n)]
    children: dict[str, list[str]] = {k: [] for k in keys}
    for i, k in enumerate(keys[1:], start=1):
        for parent in rng.sample(keys[:i], k=min(i, rng.choice((1, 1, 2, 3)))):
            children[parent].append(k)
    daily = {k for k in keys if rng.random() < 0.8}
    return LineageGraph(children, {k: AssetInfo(partitioned=k in daily) for k in keys}), children, daily


def _reference(children: dict[str, list[str]], daily: set[str], root: str, bad: set[str]) -> dict[str, tuple]:
    """The rule restated as a fixpoint over networkx: an independent check of the planner."""
    g = nx.DiGraph((p, c) for p, cs in children.items() for c in cs)
    g.add_nodes_from(children)
    reached = nx.descendants(g, root) | {root}
    window: dict[str, set[str] | None] = {root: set(bad) if root in daily or bad else None}
    for node in nx.topological_sort(g.subgraph(reached)):
        if node == root:
            continue
        acc: set[str] | None = set()
        for parent in g.predecessors(node):
            if parent not in reached:
                continue
            if parent not in daily and node in daily:
                got = window[parent] if parent == root and bad else None
            elif parent in daily and node not in daily:
                got = set()
            else:
                got = window[parent]
            acc = None if acc is None or got is None else acc | got
        window[node] = acc
    return {k: (tuple(DAYS) if window[k] is None else tuple(sorted(window[k]))) if k in daily else ()
            for k in reached}  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_the_plan_matches_an_independent_reference_and_lists_parents_before_children(seed):
    graph, children, daily = _random_dag(seed)
    root = "a000" if seed % 2 else "a001"
    bad = {DAYS[seed], DAYS[seed + 3]}
    plan = plan_reconciliation(graph, root, sorted(bad), DAYS)
    assert plan.partitions_by_asset() == _reference(children, daily, root, bad)
    position = {s.asset: i for i, s in enumerate(plan.steps)}
    for parent, kids in children.items():
        for kid in kids:
            if parent in position and kid in position:
                assert position[parent] < position[kid], (parent, kid)
    assert plan.size <= naive_size(graph, root, len(DAYS))

"""Reconciliation plan on a 10,000-asset graph with 365 daily partitions: plan time and rebuild scope.

Graph: domain 0 is one daily source (the root) and exactly 1,000 assets downstream of it in five
layers: staging (150 daily), intermediate (300 daily), marts (260 daily + 40 unpartitioned
aggregates), reports (200 daily, reading daily marts) and 50 dashboards (exposures, not
materializable). Nine more domains (8,999 assets, about 15% unpartitioned) feed extra parents into
domain 0, never the other way, so the root's blast radius stays 1,000 assets.

One bad day at the root. Row `reconcile_plan`:
- time: `plan_reconciliation` vs the floor, a plain BFS over the same blast radius (the least any
  planner must do), both warm, alternated, median of the runs; target plan <= 200 ms.
- scope: (asset, partition) pairs in the plan vs the naive rebuild (every partition of the root and of
  every materializable asset downstream); target at most 1/300 of naive.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import date, timedelta

DAYS = 365
ASSETS = 10_000
DOMAIN0 = (("staging", 150, 0), ("intermediate", 300, 0), ("mart", 300, 40), ("report", 200, 0))
DASHBOARDS = 50
TARGET_PLAN_S = 0.200
TARGET_SCOPE = 1 / 300


def build_graph(seed: int = 42):  # noqa: ANN201 - (LineageGraph, root, bad day, partition keys)
    from reliability.incidents.triage import AssetInfo, LineageGraph

    rng = random.Random(seed)
    children: dict[str, list[str]] = {}
    info: dict[str, AssetInfo] = {}

    def add(key: str, partitioned: bool, kind: str = "asset") -> str:
        children[key] = []
        info[key] = AssetInfo(partitioned=partitioned, kind=kind)
        return key

    def link(parent: str, child: str) -> None:
        if child not in children[parent]:
            children[parent].append(child)

    root = add("d0/source_0", True)
    above = [root]
    daily_marts: list[str] = []
    marts: list[str] = []
    reports: list[str] = []
    for name, size, unpartitioned in DOMAIN0:
        layer = [add(f"d0/{name}_{i}", i >= unpartitioned) for i in range(size)]
        for key in layer:
            parents = above if name != "report" else daily_marts
            for parent in rng.sample(parents, k=min(len(parents), rng.choice((1, 2, 2, 3)))):
                link(parent, key)
        if name == "mart":
            marts, daily_marts = layer, [k for k in layer if info[k].partitioned]
        if name == "report":
            reports = layer
        above = layer
    for i in range(DASHBOARDS):
        key = add(f"d0/dashboard_{i}", False, kind="dashboard")
        for parent in rng.sample(marts + reports, k=3):
            link(parent, key)

    domain0 = [k for k in children if k != root]
    others = ASSETS - len(children)
    per_domain = others // 9 + 1
    made = 0
    for d in range(1, 10):
        previous: list[str] = []
        for i in range(min(per_domain, others - made)):
            key = add(f"d{d}/asset_{i}", rng.random() >= 0.15)
            made += 1
            for parent in rng.sample(previous[-200:], k=min(len(previous), rng.choice((0, 1, 2)))):
                link(parent, key)
            if rng.random() < 0.05:  # a conformed dimension other domains' marts join: into domain 0 only
                link(key, rng.choice(domain0[150:]))
            previous.append(key)
    assert len(children) == ASSETS, len(children)
    days = [(date(2025, 1, 1) + timedelta(days=i)).isoformat() for i in range(DAYS)]
    return LineageGraph(children, info), root, days[200], days


def run(quick: bool = False) -> list[dict]:
    from reliability.reconciliation.plan import naive_size, plan_reconciliation

    graph, root, bad_day, days = build_graph()
    blast = sum(len(level) for level in graph.downstream_levels([root]))
    assert blast == 1000, blast
    rounds = 7 if quick else 25
    plan_reconciliation(graph, root, [bad_day], days)  # warm both sides
    graph.downstream_levels([root])
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(rounds):  # alternated, so machine load hits both sides alike
        t = time.perf_counter()
        plan = plan_reconciliation(graph, root, [bad_day], days)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        graph.downstream_levels([root])
        floor.append(time.perf_counter() - t)
    plan_s, floor_s = statistics.median(ours), statistics.median(floor)
    naive = naive_size(graph, root, len(days))
    scope_ratio = plan.size / naive
    return [{
        "name": "reconcile_plan",
        "ours_s": round(plan_s, 6),
        "baseline_s": round(floor_s, 6),
        "ratio": round(plan_s / floor_s, 2) if floor_s else None,
        "target": f"plan <= {TARGET_PLAN_S}s and scope <= 1/300 of naive (baseline: BFS of the radius)",
        "meets_target": plan_s <= TARGET_PLAN_S and scope_ratio <= TARGET_SCOPE,
        "assets": len(graph),
        "days": len(days),
        "blast_radius": blast,
        "scope_pairs": plan.size,
        "naive_pairs": naive,
        "scope_ratio": round(scope_ratio, 6),
        "scope_one_in": round(naive / plan.size, 1),
        "rebuilt_assets": len(plan.steps),
        "not_rebuilt": len(plan.not_rebuilt),
        "plan_max_s": round(max(ours), 6),
        "runs": rounds,
    }]  # fmt: skip

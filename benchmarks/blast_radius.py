"""Blast radius on a 100,000-asset synthetic lineage graph: p95 per query vs networkx.

Graph: 100 domains x 1,000 assets in six layers (sources, staging, intermediate, marts, reports,
dashboards). Each asset has 1-3 parents (fan-in) in the layer above in its own domain; 8% of edges
go to the shared core domain's marts (conformed dimensions), which gives a heavy-tailed fan-out:
most blast radii are tens to hundreds of assets, core tables reach thousands.

Rows:
- `blast_radius_descendants`: our compiled-int BFS with depths vs `networkx.descendants`.
- `blast_radius_full`: the full triage result (depth, owners, tier, partitions, exposures per asset)
  vs networkx `single_source_shortest_path_length` (descendants with depth, nothing else); target
  is the 20 ms p95 only, the ratio is informative (we build far more per asset).
"""

from __future__ import annotations

import random
import statistics
import time

LAYERS = (("source", 150), ("staging", 150), ("intermediate", 250), ("mart", 250), ("report", 150),
          ("dashboard", 50))  # fmt: skip
TARGET_P95_S = 0.020


def build_graph(domains: int, seed: int = 42) -> tuple[dict[str, list[str]], dict[str, object]]:
    from reliability.incidents.triage import AssetInfo

    rng = random.Random(seed)
    children: dict[str, list[str]] = {}
    info: dict[str, AssetInfo] = {}
    layers_by_domain: list[list[list[str]]] = []
    for d in range(domains):
        layers = []
        for li, (name, size) in enumerate(LAYERS):
            keys = [f"d{d}/{name}_{i}" for i in range(size)]
            for k in keys:
                children[k] = []
                info[k] = AssetInfo(
                    owners=(f"team{d}@corp.example",),
                    tier=1 if name == "dashboard" and rng.random() < 0.2 else rng.choice((2, 3, 3, 4)),
                    partitioned=li < 4,
                    kind="dashboard" if name == "dashboard" else "asset",
                )
            layers.append(keys)
        layers_by_domain.append(layers)
    core_marts = layers_by_domain[0][3]
    for d in range(domains):
        layers = layers_by_domain[d]
        for li in range(1, len(LAYERS)):
            above = layers[li - 1]
            for k in layers[li]:
                for _ in range(rng.choice((1, 2, 2, 3, 4))):
                    if d and li >= 2 and rng.random() < 0.10:
                        parent = rng.choice(core_marts[:40])  # conformed dimensions everyone joins
                    elif li >= 2 and rng.random() < 0.15:
                        parent = rng.choice(layers[li - 2])
                    else:
                        # locality: parents near the same position in the layer above
                        pos = int(len(above) * layers[li].index(k) / len(layers[li]))
                        parent = above[min(len(above) - 1, max(0, pos + rng.randint(-30, 30)))]
                    if k not in children[parent]:
                        children[parent].append(k)
    return children, info


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(quick: bool = False) -> list[dict]:
    import networkx as nx

    from reliability.incidents.triage import LineageGraph, blast_radius

    domains = 10 if quick else 100
    queries = 200 if quick else 1000
    children, info = build_graph(domains)
    t0 = time.perf_counter()
    graph = LineageGraph(children, info)
    build_s = time.perf_counter() - t0
    nxg = nx.DiGraph()
    nxg.add_nodes_from(children)
    nxg.add_edges_from((p, c) for p, cs in children.items() for c in cs)
    edges = nxg.number_of_edges()
    rng = random.Random(7)
    keys = list(children)
    sample = [rng.choice(keys) for _ in range(queries)]

    ours, base, sizes = [], [], []
    for key in sample:
        t = time.perf_counter()
        levels = graph.downstream_levels([key])
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        expected = nx.descendants(nxg, key)
        base.append(time.perf_counter() - t)
        got = sum(len(level) for level in levels)
        assert got == len(expected), (key, got, len(expected))
        sizes.append(got)

    full, full_base = [], []
    for key in sample:
        t = time.perf_counter()
        radius = blast_radius(graph, [key], failed_partitions="2026-11-26")
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        depths = nx.single_source_shortest_path_length(nxg, key)
        full_base.append(time.perf_counter() - t)
        assert len(radius.assets) == len(depths)

    # the tail: upstream of the conformed dimensions, where one failure reaches thousands of assets
    hubs = [k for k in keys if k.startswith("d0/")][:600:6]
    hub_ours, hub_base, hub_full, hub_sizes = [], [], [], []
    for key in hubs:
        t = time.perf_counter()
        levels = graph.downstream_levels([key])
        hub_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        nx.descendants(nxg, key)
        hub_base.append(time.perf_counter() - t)
        t = time.perf_counter()
        blast_radius(graph, [key])
        hub_full.append(time.perf_counter() - t)
        hub_sizes.append(sum(len(level) for level in levels))

    common = {
        "nodes": len(keys),
        "edges": edges,
        "queries": queries,
        "downstream_mean": round(statistics.mean(sizes), 1),
        "downstream_p95": _p([float(s) for s in sizes], 0.95),
        "downstream_max": max(sizes),
        "build_s": round(build_s, 3),
    }
    rows = []
    for name, a, b in (("blast_radius_descendants", ours, base), ("blast_radius_full", full, full_base)):
        p95, bp95 = _p(a, 0.95), _p(b, 0.95)
        target = f"p95 <= {TARGET_P95_S}s" + (" and ratio <= 1.0" if name.endswith("descendants") else "")
        rows.append({
            "name": name,
            "ours_s": round(p95, 6),
            "baseline_s": round(bp95, 6),
            "ratio": round(p95 / bp95, 3) if bp95 else None,
            "target": target,
            "ours_p50_s": round(_p(a, 0.5), 6),
            "baseline_p50_s": round(_p(b, 0.5), 6),
            "meets_target": p95 <= TARGET_P95_S and (p95 <= bp95 or not name.endswith("descendants")),
            **common,
        })  # fmt: skip
    p95, bp95, fp95 = _p(hub_ours, 0.95), _p(hub_base, 0.95), _p(hub_full, 0.95)
    rows.append({
        "name": "blast_radius_hubs",
        "ours_s": round(fp95, 6),
        "baseline_s": round(bp95, 6),
        "ratio": round(fp95 / bp95, 3) if bp95 else None,
        "target": f"p95 <= {TARGET_P95_S}s (full triage result)",
        "descendants_only_p95_s": round(p95, 6),
        "descendants_only_ratio": round(p95 / bp95, 3) if bp95 else None,
        "meets_target": fp95 <= TARGET_P95_S,
        **common,
        "queries": len(hubs),
        "downstream_mean": round(statistics.mean(hub_sizes), 1),
        "downstream_p95": _p([float(x) for x in hub_sizes], 0.95),
    })  # fmt: skip
    return rows

"""Snapshot of the whole asset graph: a change to keys, lineage, checks, owners or tiers shows in review.

Regenerate after an intended change with `UPDATE_SNAPSHOTS=1 pytest tests/test_asset_graph_snapshot.py`.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import dagster as dg

from reliability.definitions import build_definitions
from reliability.settings import load_settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        freshness = node.freshness_policy
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "owners": list(node.owners),
            "tier": node.tags.get("tier"),
            "materializable": node.is_materializable,
            "partitioned": node.partitions_def is not None,
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "freshness": None
            if freshness is None
            else {
                "fail_s": freshness.fail_window.to_timedelta().total_seconds(),
                "warn_s": freshness.warn_window.to_timedelta().total_seconds() if freshness.warn_window else None,
            },
            "checks": {
                check_key.name: {"blocking": graph.get_check_spec(check_key).blocking}
                for check_key in sorted(node.check_keys, key=lambda c: c.name)
            },
        }
    return {"assets": assets}


def test_asset_graph_matches_snapshot(tmp_path):
    defs = build_definitions(load_settings(environ={"RELIABILITY_WAREHOUSE": str(tmp_path / "w.duckdb")}))
    current = describe(defs)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected_text = SNAPSHOT.read_text()
    current_text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    diff = "".join(
        difflib.unified_diff(
            expected_text.splitlines(keepends=True), current_text.splitlines(keepends=True), "snapshot", "current"
        )
    )
    assert not diff, f"asset graph changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and review:\n{diff}"


def test_every_asset_has_owner_and_tier(tmp_path):
    defs = build_definitions(load_settings(environ={"RELIABILITY_WAREHOUSE": str(tmp_path / "w.duckdb")}))
    for name, asset in describe(defs)["assets"].items():
        assert asset["owners"] and asset["tier"] in {"tier1", "tier2", "tier3", "tier4"}, name

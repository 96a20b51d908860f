"""Write a post-mortem: read the incident, gather evidence, merge the reviewers' notes, render.

Shared by `reliability postmortem` and the Dagster glue. The notes file lives next to the incident
store (`<store dir>/postmortems/INC-<n>.notes.yaml` for SQLite); a fresh one is written with the
suggested action items, and an existing one is never overwritten: it is read and merged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reliability.errors import ConfigError
from reliability.incidents.model import format_incident_id
from reliability.review.gather import gather
from reliability.review.postmortem import PostMortem, build_postmortem, notes_skeleton
from reliability.review.render import render
from reliability.yamlfile import load_yaml_mapping

NOTES_FIELDS = ("summary", "contributing_factors", "action_items")
ACTOR = "reliability-review"


def notes_dir(store_url: str) -> Path:
    """Next to the store: the SQLite file's folder, else DAGSTER_HOME (or the repo's .dagster_home)."""
    if store_url.startswith("sqlite:///"):
        return Path(store_url[len("sqlite:///") :]).parent / "postmortems"
    home = os.environ.get("DAGSTER_HOME") or str(Path(__file__).resolve().parents[2] / ".dagster_home")
    return Path(home) / "postmortems"


def load_notes(path: Path) -> dict[str, Any]:
    """The notes file, checked: a bad field names the file and the field."""
    if not path.exists():
        return {}
    raw = load_yaml_mapping(path, "post-mortem notes file", NOTES_FIELDS)
    items = raw.get("action_items") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{path}: action_items must be a list of mappings (id, text, owner, status)")
    factors = raw.get("contributing_factors") or []
    if not isinstance(factors, list):
        raise ConfigError(f"{path}: contributing_factors must be a list of strings")
    return raw


@dataclass(frozen=True)
class Written:
    postmortem: PostMortem
    text: str
    notes_path: Path
    notes_created: bool


def lineage_edges(graph: Any) -> list[tuple[str, str]]:
    """(parent, child) pairs of a `LineageGraph`."""
    keys = graph.keys
    return [(keys[p], keys[c]) for p, children in enumerate(graph.children) for c in children]


def write_postmortem(
    store: Any,
    incident_id: int,
    fmt: str,
    now: datetime,
    warehouse: Path | None,
    topic: str | None,
    bootstrap: str | None = None,
    edges: Sequence[tuple[str, str]] = (),
    notes_path: Path | None = None,
    read_kafka: bool = True,
    record_impact: bool = False,
) -> Written:
    """`record_impact`: put the impact start estimated from the data on the incident's timeline, so the
    incident metrics measure MTTD from it too (once per distinct estimate)."""
    incident = store.get(incident_id)
    path = notes_path or notes_dir(store.url) / f"{format_incident_id(incident_id)}.notes.yaml"
    notes = load_notes(path)
    findings, rows = gather(incident, warehouse, topic, bootstrap, read_kafka=read_kafka)
    pm = build_postmortem(incident, findings, edges, notes, rows, generated_at=now, notes_path=str(path))
    if record_impact and pm.impact.at is not None and pm.impact.at != incident.impact_started_at:
        _record_impact(store, incident, pm, now)
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(notes_skeleton(pm), sort_keys=False, allow_unicode=True), encoding="utf-8")
        created = True
    return Written(pm, render(pm, fmt), path, created)


def _record_impact(store: Any, incident: Any, pm: PostMortem, now: datetime) -> None:
    from reliability.incidents.model import TimelineKind
    from reliability.review.metrics import IMPACT_ESTIMATE, impact_estimate

    if impact_estimate(incident.timeline) == pm.impact.at:
        return
    at = pm.impact.at.isoformat()  # type: ignore[union-attr]
    store.add_timeline(incident.id, ACTOR, TimelineKind.TRIAGE, f"impact start estimated at {at}: {pm.impact.method}",
                       {IMPACT_ESTIMATE: {"at": at, "method": pm.impact.method}}, now=now)  # fmt: skip

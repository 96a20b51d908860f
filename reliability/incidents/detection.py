"""Detection tick: event log -> `Detection`s -> incidents, observations, run tags, notifications.

`run_tick` is everything one sensor evaluation does, callable without a sensor context (tests, the
benchmark). Reading the event log lives in `eventlog` (its cursor holds one position per event type,
so a restart resumes where the last committed tick stopped), the meaning of each event in the pure
`mapping`; replayed events are no-ops in the store (unique detection keys).
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from reliability.incidents.eventlog import Cursor, read_events
from reliability.incidents.mapping import detections_from_events
from reliability.incidents.model import Detection, format_incident_id
from reliability.incidents.notify import deliver_due
from reliability.incidents.store import IncidentStore, IngestResult
from reliability.incidents.triage import (
    EXPOSURE_KINDS,
    AssetChangeFacts,
    LineageGraph,
    blast_radius,
    partitions_by_asset,
    root_cause_hint,
)

log = logging.getLogger(__name__)

RUN_TAG = "reliability/incident"
OBSERVATION_ASSET_LIMIT = 20  # per incident change: root and failing first, exposures, then nearest
INGEST_CHUNK = 5_000


def read_detections(instance: dg.DagsterInstance, cursor: Cursor) -> tuple[list[Detection], Cursor]:
    """New detections since `cursor`, in event order, and the cursor after them."""
    batch, new = read_events(instance, cursor)
    return detections_from_events(batch), new


# ------------------------------------------------------------------------------------------ side effects
def asset_change_facts(instance: dg.DagsterInstance, asset_key: str) -> AssetChangeFacts | None:
    """What changed recently on an asset: code version, column schema, last run status."""
    if asset_key.startswith("job:"):
        return None
    key = dg.AssetKey.from_user_string(asset_key)
    records = instance.fetch_materializations(key, limit=2, ascending=False).records
    if not records:
        return AssetChangeFacts(asset_key)

    def facts(rec: Any) -> tuple[str | None, dict[str, str] | None]:
        mat = rec.asset_materialization
        tags = (mat.tags or {}) if mat else {}
        schema = (mat.metadata or {}).get("dagster/column_schema") if mat else None
        schema = getattr(schema, "value", schema)
        cols = {c.name: c.type for c in schema.columns} if schema is not None and hasattr(schema, "columns") else None
        return tags.get("dagster/code_version"), cols

    code, cols = facts(records[0])
    prev_code, prev_cols = facts(records[1]) if len(records) > 1 else (None, None)
    run = instance.get_run_by_id(records[0].run_id) if records[0].run_id else None
    return AssetChangeFacts(
        asset_key=asset_key,
        last_materialized_at=datetime.fromtimestamp(records[0].timestamp, tz=UTC),
        code_version=code,
        previous_code_version=prev_code,
        columns=cols,
        previous_columns=prev_cols,
        last_run_status=run.status.value if run else None,
        last_run_id=records[0].run_id or None,
    )


def update_root_causes(instance: dg.DagsterInstance, store: IncidentStore, graph: LineageGraph,
                       incident_ids: Iterable[int], budget_s: float = 0.5) -> int:  # fmt: skip
    """Fill the root-cause hint (most upstream failing asset + what changed on it) of touched and
    not-yet-explained incidents, within `budget_s`; the rest is picked up next tick."""
    started = time.perf_counter()
    done = 0
    for inc_id in dict.fromkeys([*incident_ids, *store.unexplained()]):
        if time.perf_counter() - started > budget_s:
            break
        done += 1
        inc = store.get(inc_id)
        failing = [a.asset_key for a in sorted(inc.assets, key=lambda a: a.depth) if a.role in ("root", "failing")]
        if inc.root_cause.get("changes") is not None and inc.root_cause.get("asset_key") == failing[0]:
            continue  # already explained for this root
        upstream = root_cause_hint(graph, failing)
        facts = asset_change_facts(instance, upstream.asset_key) if upstream.asset_key else None
        hint = root_cause_hint(graph, failing, {upstream.asset_key: facts} if facts else None)
        store.record_root_cause(inc_id, hint.to_dict())
    return done


def observation_signature(inc: Any) -> str:
    """What the observations state; unchanged -> no new observations (joins alone bump versions)."""
    failing = sorted(a.asset_key for a in inc.assets if a.role in ("root", "failing"))
    partitions = partitions_by_asset(inc.blast_radius)
    return json.dumps([inc.status, inc.severity, inc.root_asset, failing, inc.root_cause.get("text"), partitions],
                      sort_keys=True)  # fmt: skip


def observed_assets(inc: Any) -> list[Any]:
    """Root and failing assets, exposures, then the nearest impacted assets; OBSERVATION_ASSET_LIMIT."""
    order = {"root": 0, "failing": 1}

    def rank(a: Any) -> tuple[int, int, str]:
        return (order.get(a.role, 2 if a.kind in EXPOSURE_KINDS or a.kind == "exposure" else 3), a.depth, a.asset_key)

    return [a for a in sorted(inc.assets, key=rank) if not a.asset_key.startswith("job:")][:OBSERVATION_ASSET_LIMIT]


def publish_observations(instance: dg.DagsterInstance, store: IncidentStore, budget_s: float = 0.5) -> int:
    """AssetObservations on the affected assets of every incident whose status, severity, root,
    failing assets or root-cause hint changed (shown on the asset pages in the Dagster UI).

    Bounded by `budget_s` per tick (checked between incidents): incidents not reached stay
    unpublished and go out next tick, so a burst of incidents never delays detection.
    """
    started = time.perf_counter()
    count = 0
    marks: dict[int, tuple[int, str]] = {}
    for inc, last_signature in store.unpublished():
        signature = observation_signature(inc)
        if signature == last_signature:
            marks[inc.id] = (inc.version, signature)
            continue
        if time.perf_counter() - started > budget_s:
            break
        summary = _summary_markdown(inc)
        for a in observed_assets(inc):
            instance.report_runless_asset_event(
                dg.AssetObservation(
                    asset_key=dg.AssetKey.from_user_string(a.asset_key),
                    description=f"{inc.display_id} [{inc.severity}, {inc.status}]: {inc.title}"[:500],
                    metadata={
                        "incident_id": inc.display_id,
                        "incident_severity": inc.severity,
                        "incident_status": inc.status,
                        "incident_role": a.role,
                        "incident_root_asset": inc.root_asset,
                        # the partitions of this asset the incident reached ("<all>": every one)
                        "incident_partitions": dg.MetadataValue.json(list(a.partitions)),
                        "incident_summary": dg.MetadataValue.md(summary),
                    },
                    tags={RUN_TAG: inc.display_id},
                )
            )
            count += 1
        marks[inc.id] = (inc.version, signature)
    store.mark_published(marks)
    return count


def _summary_markdown(inc: Any) -> str:
    from reliability.incidents.triage import md_escape

    br = inc.blast_radius
    lines = [
        f"### {inc.display_id} · {inc.severity} · {inc.status}",
        f"**{md_escape(inc.title)}**",
        "",
        f"- Root asset: `{md_escape(inc.root_asset)}`",
        f"- Detected: {inc.detected_at.isoformat()}",
        f"- Blast radius: {br.get('downstream_count', 0)} downstream asset(s), top tier {br.get('top_tier') or '-'}",
    ]
    by_asset = partitions_by_asset(br)
    if by_asset:
        shown = [f"`{md_escape(k)}`: {md_escape(', '.join(v[:10]))}{' ...' if len(v) > 10 else ''}"
                 for k, v in list(by_asset.items())[:10]]  # fmt: skip
        lines.append("- Partitions: " + "; ".join(shown))
    if br.get("exposures"):
        lines.append("- Exposures reached: " + ", ".join(f"`{md_escape(e)}`" for e in br["exposures"]))
    if inc.owners:
        lines.append("- Owners: " + ", ".join(md_escape(o) for o in inc.owners))
    if inc.root_cause.get("text"):
        lines.append(f"- Root-cause hint: {md_escape(str(inc.root_cause['text']))}")
    lines.append(f"\n`reliability incidents show {inc.display_id}`")
    return "\n".join(lines)


def tag_runs(instance: dg.DagsterInstance, runs: dict[str, set[int]]) -> None:
    """Link runs to incidents: tag `reliability/incident` = `INC-3` (comma-joined if several)."""
    for run_id, ids in runs.items():
        run = instance.get_run_by_id(run_id)
        if run is None:
            continue
        existing = [x for x in run.tags.get(RUN_TAG, "").split(",") if x]
        merged = list(dict.fromkeys(existing + [format_incident_id(i) for i in sorted(ids)]))
        if merged != existing:
            instance.add_run_tags(run_id, {RUN_TAG: ",".join(merged)})


# ------------------------------------------------------------------------------------------ the tick
@dataclass
class TickOutcome:
    cursor: Cursor
    detections: int = 0
    opened: list[int] = field(default_factory=list)
    joined: int = 0
    reopened: int = 0
    mitigated: int = 0
    duplicates: int = 0
    observations: int = 0
    delivery: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.detections - self.duplicates} new detection(s) ({self.duplicates} already seen): "
            f"opened {len(self.opened)} incident(s) {[format_incident_id(i) for i in self.opened][:10]}, "
            f"joined {self.joined}, reopened {self.reopened}, mitigated {self.mitigated}; "
            f"{self.observations} observation(s); notifications {self.delivery}; {self.seconds:.2f}s"
        )


def run_tick(
    instance: dg.DagsterInstance,
    store: IncidentStore,
    graph: LineageGraph,
    cursor: Cursor,
    *,
    deliver: bool = True,
    tick_budget_s: float = 1.0,
    delivery_budget_s: float = 5.0,
    delivery_timeout_s: float = 3.0,
) -> TickOutcome:
    """One sensor evaluation. Detection (read + ingest) always completes; the follow-ups (root-cause
    hints, observations) share what is left of `tick_budget_s` and resume next tick; delivery has
    its own budget. A failing follow-up is logged and retried next tick, never blocks detection."""
    started = time.perf_counter()
    # a code server holds a large heap: full GC passes triggered by the batch's many small objects
    # cost more than the batch itself, so collect once afterwards instead
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        detections, new_cursor = read_detections(instance, cursor)
        outcome = TickOutcome(cursor=new_cursor, detections=len(detections))
        touched: set[int] = set()
        runs: dict[str, set[int]] = {}
        for i in range(0, len(detections), INGEST_CHUNK):
            res: IngestResult = store.ingest(detections[i : i + INGEST_CHUNK], graph)
            outcome.opened += res.opened
            outcome.joined += len(res.joined)
            outcome.reopened += len(res.reopened)
            outcome.mitigated += len(res.mitigated)
            outcome.duplicates += res.duplicates
            touched |= res.incident_ids
            for run_id, ids in res.runs.items():
                runs.setdefault(run_id, set()).update(ids)
    finally:
        if gc_enabled:
            gc.enable()

    def left() -> float:
        return max(0.05, tick_budget_s - (time.perf_counter() - started))

    try:
        tag_runs(instance, runs)
    except Exception:  # noqa: BLE001
        log.exception("incident sensor: run tags failed (the incidents themselves are recorded)")
    try:
        update_root_causes(instance, store, graph, sorted(touched), budget_s=left() / 2)
    except Exception:  # noqa: BLE001
        log.exception("incident sensor: root-cause hints failed; will retry on the next tick")
    try:
        outcome.observations = publish_observations(instance, store, budget_s=left())
    except Exception:  # noqa: BLE001
        log.exception("incident sensor: observations failed; will retry on the next tick")
    if deliver:
        try:
            store.refresh_alertmanager()
            outcome.delivery = deliver_due(store, budget_s=delivery_budget_s, timeout=delivery_timeout_s).to_dict()
        except Exception:  # noqa: BLE001
            log.exception("incident sensor: delivery failed; the outbox keeps every message")
    outcome.seconds = time.perf_counter() - started
    return outcome


def radius_for(graph: LineageGraph, asset_key: str) -> dict[str, object]:
    return blast_radius(graph, [asset_key]).to_dict()

"""Dagster glue of the review area: the daily `incident_metrics` asset, and post-mortems recorded as
observations on their incident's root asset (so the asset page links to them).

The asset's owner and tier come with it (`policies()`), so a project's assets file need not know it;
an entry there still wins.
"""

from typing import Any

import dagster as dg

from reliability.config import AssetPolicy, SourcedPolicy
from reliability.review.metrics import DIMENSIONS, METRICS, overall, stats_by
from reliability.review.postmortem import PostMortem, human_seconds

ASSET = "incident_metrics"
DAILY_CRON = "0 6 * * *"
POLICY = AssetPolicy(owner="platform-team@reliability.example", tier="tier3")


def policies() -> dict[str, SourcedPolicy]:
    return {ASSET: SourcedPolicy.declared(POLICY, "reliability.review")}


def _table(times: list, dimension: str) -> str:
    head = "| " + dimension + " | count | open | " + " | ".join(f"{m.upper()} median / p90" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRICS))]
    for g in stats_by(times, dimension):
        cells = [f"{human_seconds(a)} / {human_seconds(b)}" for a, b in (g.figures[m] for m in METRICS)]
        lines.append(f"| {g.value} | {g.count} | {g.open} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_metadata(times: list[Any]) -> dict[str, Any]:
    """Numbers as float/int metadata (the UI plots them across materializations), tables as Markdown."""
    total = overall(times)
    metadata: dict[str, Any] = {
        "incidents": dg.MetadataValue.int(total.count),
        "open_incidents": dg.MetadataValue.int(total.open),
    }
    for metric in METRICS:
        med, p90 = total.figures[metric]
        # seconds; NaN-free: a figure that has no value yet is left out rather than plotted as 0
        if med is not None:
            metadata[f"{metric}_median_s"] = dg.MetadataValue.float(float(med))
        if p90 is not None:
            metadata[f"{metric}_p90_s"] = dg.MetadataValue.float(float(p90))
    for dimension in DIMENSIONS:
        metadata[f"by_{dimension}"] = dg.MetadataValue.md(_table(times, dimension))
    return metadata


@dg.asset(
    name=ASSET,
    group_name="review",
    kinds={"python"},
    automation_condition=dg.AutomationCondition.on_cron(DAILY_CRON),
    description="Incident counts and MTTD / MTTA / MTTM / MTTR (median and p90) by severity, fault class, "
    "owner and week, from the incident store; materialized daily.",
)
def incident_metrics(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from pathlib import Path

    from reliability.incidents.store import IncidentStore, safe_url, store_url_and_origin
    from reliability.review.metrics import load_figures

    url, origin = store_url_and_origin()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        times = []  # no incident was ever recorded: nothing to count, and no store is created for it
    else:
        with IncidentStore(url, create=False, url_origin=origin) as store:
            times = load_figures(store)[0]
    context.log.info(f"{len(times)} incident(s) in {safe_url(url)}")
    return dg.MaterializeResult(metadata=metrics_metadata(times))


def record_postmortem(pm: PostMortem, path: str | None, instance: dg.DagsterInstance | None = None) -> None:
    """An observation on the root asset: the hypothesis, the durations and where the document is."""
    instance = instance or dg.DagsterInstance.get()
    durations = ", ".join(f"{d.name} {human_seconds(d.seconds)}" for d in pm.durations)
    metadata: dict[str, Any] = {
        "incident_id": pm.incident_id,
        "postmortem_hypothesis": pm.hypothesis.cause,
        "postmortem_durations": durations,
        "postmortem_impact_start": pm.impact.method,
    }
    if path:
        metadata["postmortem"] = dg.MetadataValue.path(path)
    instance.report_runless_asset_event(
        dg.AssetObservation(asset_key=dg.AssetKey.from_user_string(pm.root_asset), metadata=metadata)
    )


def defs(settings: object = None) -> dg.Definitions:
    """The review area (`settings` for symmetry with the other areas)."""
    return dg.Definitions(assets=[incident_metrics])

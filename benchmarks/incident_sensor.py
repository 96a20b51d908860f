"""One detection-sensor tick over 10,000 new asset-check events on a real Dagster instance.

Setup (untimed): a temp DAGSTER_HOME (on /dev/shm) with Dagster's default SQLite storage, Definitions with a
1,000-asset lineage (one domain of the blast_radius benchmark graph), and 10,000 runless
`AssetCheckEvaluation` events: 95% passing, 5% failing on random assets (ERROR or WARN).

Timed: the real sensor (`build_incident_sensor()` evaluated with `build_sensor_context`): read the
events, ingest them (grouping, triage, outbox), then root-cause hints and AssetObservations within
what is left of the tick budget (1 s); what they could not finish is reported and drained by the
following ticks, which are timed too. No receivers are configured, so no HTTP delivery.

Baseline: the same detections ingested one transaction per event (the obvious implementation),
measured on a 2,000-event subset and scaled linearly to the full count.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

TARGET_S = 2.0
SECRET_VARS = ("RELIABILITY_SLACK_WEBHOOK_URL", "RELIABILITY_PAGERDUTY_ROUTING_KEY", "RELIABILITY_ALERTMANAGER_URL")


def _definitions(children: dict[str, list[str]]):  # noqa: ANN202
    import dagster as dg

    parents: dict[str, list[str]] = {k: [] for k in children}
    for p, cs in children.items():
        for c in cs:
            parents[c].append(p)
    specs = [
        dg.AssetSpec(
            dg.AssetKey.from_user_string(k),
            deps=[dg.AssetKey.from_user_string(p) for p in parents[k]],
            metadata={"tier": random.Random(k).choice(["tier1", "tier2", "tier3", "tier4"])},
            owners=["team@corp.example"],
        )
        for k in children
    ]
    return dg.Definitions(assets=specs)


def _events(instance, keys: list[str], n: int, seed: int = 3) -> int:  # noqa: ANN001
    import dagster as dg

    rng = random.Random(seed)
    failing = 0
    for i in range(n):
        passed = rng.random() >= 0.05
        failing += not passed
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey.from_user_string(rng.choice(keys)),
                check_name=rng.choice(["not_null_id", "unique_id", "row_count", "soda_amount_invalid"]),
                passed=passed,
                severity=rng.choice([dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN]),
                metadata={"i": i},
            )
        )
    return failing


def run(quick: bool = False) -> list[dict]:
    import dagster as dg
    from blast_radius import build_graph

    from reliability.incidents.defs import build_incident_sensor
    from reliability.incidents.detection import read_detections
    from reliability.incidents.eventlog import Cursor
    from reliability.incidents.lineage import graph_from_definitions
    from reliability.incidents.notify import Router
    from reliability.incidents.store import IncidentStore

    n = 2_000 if quick else 10_000
    children, _ = build_graph(1)
    defs = _definitions(children)
    keys = list(children)
    for var in SECRET_VARS:
        os.environ.pop(var, None)
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=shm) as dagster_tmp:
        # Dagster's SQLite event log commits (fsyncs) every event: on tmpfs the untimed setup of 10k
        # events takes ~1 min instead of ~9; the incident store stays on the ordinary disk.
        home = Path(dagster_tmp) / "dagster_home"
        home.mkdir()
        url = f"sqlite:///{Path(tmp) / 'incidents.db'}"
        os.environ["RELIABILITY_INCIDENT_STORE_URL"] = url
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            t = time.perf_counter()
            failing = _events(instance, keys, n)
            setup_s = time.perf_counter() - t
            sensor = build_incident_sensor(store_url=url)
            t = time.perf_counter()
            result = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
            tick_s = time.perf_counter() - t
            summary = result.skip_reason.skip_message
            with IncidentStore(url) as store:
                incidents = store.count()
                left_unpublished = len(store.unpublished(limit=100_000))
                left_unexplained = len(store.unexplained(limit=100_000))
            # following ticks: no new events; they finish the deferred follow-ups
            drain, cursor = [], result.cursor
            for _ in range(30):
                with IncidentStore(url) as store:
                    if not store.unpublished(limit=1) and not store.unexplained(limit=1):
                        break
                t = time.perf_counter()
                cursor = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)).cursor
                drain.append(round(time.perf_counter() - t, 3))
            t = time.perf_counter()
            sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
            idle_s = time.perf_counter() - t

            detections, _ = read_detections(instance, Cursor())
            graph = graph_from_definitions(defs)
            subset = detections[: min(len(detections), 2_000)]
            with IncidentStore(f"sqlite:///{Path(tmp) / 'baseline.db'}", router=Router(environ={})) as base:
                t = time.perf_counter()
                for d in subset:
                    base.ingest([d], graph)
                base_s = (time.perf_counter() - t) * len(detections) / len(subset)
    return [
        {
            "name": "incident_sensor_tick",
            "ours_s": round(tick_s, 3),
            "baseline_s": round(base_s, 3),
            "ratio": round(tick_s / base_s, 3),
            "target": f"<= {TARGET_S}s for {n} new check events",
            "meets_target": tick_s <= TARGET_S,
            "events": n,
            "failing_events": failing,
            "incidents": incidents,
            "events_per_s": round(n / tick_s),
            "deferred_after_tick1": {
                "incidents_without_observations": left_unpublished,
                "incidents_without_root_cause": left_unexplained,
            },  # fmt: skip
            "drain_ticks_s": drain,
            "idle_tick_s": round(idle_s, 3),
            "baseline": f"one transaction per detection, measured on {len(subset)} and scaled to {n}",
            "setup_s": round(setup_s, 1),
            "storage": "Dagster default run-sharded SQLite on tmpfs; incident store SQLite (WAL) on disk",
            "tick_summary": summary,
        }
    ]

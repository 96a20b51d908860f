"""Many processes reporting at once: exactly one incident per root, nothing lost."""

from __future__ import annotations

import multiprocessing as mp
from datetime import timedelta

import pytest

from reliability.incidents.model import Detection, Source
from reliability.incidents.notify import Router
from reliability.incidents.store import IncidentStore
from tests.incidents.conftest import T0

REPORTERS = 16


def _report(url: str, barrier, keys: list[str], asset_of: dict[str, str] | None, queue) -> None:
    try:
        store = IncidentStore(url, router=Router(environ={"RELIABILITY_SLACK_WEBHOOK_URL": "http://x"}))
        barrier.wait(timeout=60)
        opened = []
        for key in keys:
            asset = asset_of[key] if asset_of else "raw_orders"
            res = store.ingest([Detection(key, asset, Source.ASSET_CHECK, "dup", T0 + timedelta(seconds=1))], None)
            opened += res.opened
        store.close()
        queue.put(("ok", opened))
    except Exception as exc:  # pragma: no cover - reported to the parent
        queue.put(("error", repr(exc)))


def _run(url: str, jobs: list[tuple[list[str], dict[str, str] | None]]) -> list[int]:
    ctx = mp.get_context("fork")
    IncidentStore(url).close()  # schema first, as the Dagster daemon would
    barrier, queue = ctx.Barrier(len(jobs)), ctx.Queue()
    procs = [ctx.Process(target=_report, args=(url, barrier, keys, asset_of, queue)) for keys, asset_of in jobs]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r for r in results if r[0] != "ok"]
    assert not errors, errors
    return [i for _, opened in results for i in opened]


@pytest.mark.parametrize("same_event", [True, False], ids=["same-event", "own-event-each"])
def test_sixteen_processes_reporting_the_same_failure_open_exactly_one_incident(store_url, same_event):
    jobs = [([("evt-1" if same_event else f"evt-{n}")], None) for n in range(REPORTERS)]
    opened = _run(store_url, jobs)
    assert len(opened) == 1
    with IncidentStore(store_url) as store:
        assert store.count() == 1
        inc = store.get(opened[0])
        assert inc.detection_count == (1 if same_event else REPORTERS)
        detections = [e for e in inc.timeline if e.kind == "detection"]
        assert len(detections) == (1 if same_event else REPORTERS)
        # one trigger in the outbox, not sixteen
        assert store.outbox_counts() == {"pending": 1}


def test_thousand_distinct_failures_from_eight_processes_make_a_thousand_incidents(store_url):
    n, workers = 1000, 8
    keys = [f"f-{i}" for i in range(n)]
    asset_of = {k: f"asset_{i}" for i, k in enumerate(keys)}
    jobs = [(keys[w::workers], asset_of) for w in range(workers)]
    opened = _run(store_url, jobs)
    assert len(opened) == n and len(set(opened)) == n
    with IncidentStore(store_url) as store:
        incidents = store.list_incidents()
        assert len(incidents) == n
        assert {i.root_asset for i in incidents} == set(asset_of.values())

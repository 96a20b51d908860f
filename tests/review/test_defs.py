"""The review area in Dagster: `incident_metrics` materialized from the store with plottable metadata, and
a post-mortem recorded as an observation on its root asset."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from reliability.incidents.store import IncidentStore
from reliability.review.defs import incident_metrics, record_postmortem
from reliability.review.service import write_postmortem
from tests.incidents.conftest import T0
from tests.review.test_metrics import _incidents


def test_incident_metrics_asset_and_postmortem_observation(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    _incidents(url)
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.materialize([incident_metrics], instance=instance)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        md = event.materialization.metadata
        assert md["incidents"].value == 3 and md["open_incidents"].value == 1
        assert md["mttr_median_s"].value == 1200.0 and md["mttr_p90_s"].value == 1800.0
        assert md["mttd_median_s"].value == 240.0
        assert "| SEV" in md["by_severity"].value and "2026-W48" in md["by_week"].value

        with IncidentStore(url) as store:
            written = write_postmortem(store, 1, "md", T0 + timedelta(hours=4), None, None)
        (tmp_path / "INC-1.md").write_text(written.text)
        record_postmortem(written.postmortem, str(tmp_path / "INC-1.md"), instance)
        (obs,) = instance.fetch_observations(dg.AssetKey("raw_orders"), limit=1).records
        meta = obs.asset_observation.metadata
        assert meta["incident_id"].value == "INC-1" and meta["postmortem"].value == str(tmp_path / "INC-1.md")
        assert meta["postmortem_durations"].value.startswith("MTTD 2 min 0 s, MTTA 1 min 0 s")


def test_incident_metrics_is_requested_once_a_day_after_six_utc():
    from datetime import UTC, datetime

    t0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    requested = []
    with dg.instance_for_test() as instance:
        cursor = None
        for hours in (0, 1.1, 2, 25.1):
            result = dg.evaluate_automation_conditions(defs=[incident_metrics], instance=instance, cursor=cursor,
                                                       evaluation_time=t0 + timedelta(hours=hours))  # fmt: skip
            cursor = result.cursor
            requested.append(result.total_requested)
    assert requested == [0, 1, 0, 1]  # 05:00, 06:06, 07:00, next day 06:06

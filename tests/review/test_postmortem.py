"""Post-mortems from incidents in the real store (SQLite) and a real DuckDB warehouse, rendered to
Markdown and HTML; the HTML is opened in headless Chromium (screenshot kept as a test artifact)."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from reliability.incidents.model import FaultClass
from reliability.incidents.store import IncidentStore
from reliability.review.causes import MISSING_LOAD, PRODUCER_RETRIES
from reliability.review.render import render
from reliability.review.service import lineage_edges, write_postmortem
from tests.incidents.conftest import T0, shop_graph
from tests.review.helpers import open_incident, work_through

CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<script>console.error('pwned')</script>\"'&\x1b[31mred"


def test_durations_each_with_definition_and_notes_merged_on_regeneration(tmp_path):
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    with IncidentStore(url) as store:
        inc_id = open_incident(store, impact=T0 - timedelta(minutes=30))
        work_through(store, inc_id, T0, ack=120, mitigate=600, resolve=3600)
        first = write_postmortem(store, inc_id, "md", T0 + timedelta(hours=2), None, None,
                                 edges=lineage_edges(shop_graph()))  # fmt: skip
        assert first.notes_created and first.notes_path == tmp_path / "postmortems" / f"INC-{inc_id}.notes.yaml"
        by_name = {d.name: d for d in first.postmortem.durations}
        assert {n: d.seconds for n, d in by_name.items()} == {"MTTD": 1800, "MTTA": 120, "MTTM": 600, "MTTR": 3600}
        assert by_name["MTTD"].definition == "time to detect: impact start -> detection"
        assert "| MTTR | 1 h 0 min | time to resolve: detection -> resolution |" in first.text
        assert "recorded at detection" in first.postmortem.impact.method

        notes = yaml.safe_load(first.notes_path.read_text())
        notes["action_items"][0]["owner"] = "alice@shop.example"
        notes["action_items"].append({"id": "X1", "text": "review the orders runbook", "owner": "bob@shop.example"})
        notes["contributing_factors"] = ["the runbook did not mention the DLQ"]
        first.notes_path.write_text(yaml.safe_dump(notes))
        again = write_postmortem(store, inc_id, "md", T0 + timedelta(hours=3), None, None)
    assert not again.notes_created
    actions = {a.id: a for a in again.postmortem.actions}
    assert actions["A1"].owner == "alice@shop.example" and actions["A1"].source == "notes"
    assert actions["X1"].text == "review the orders runbook"
    assert "the runbook did not mention the DLQ" in again.text


def test_a_volume_incident_gets_the_missing_load_hypothesis_not_the_producer_one(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create table raw_orders (order_id bigint, order_date date)")
        for day, rows in (("2026-11-17", 1000), ("2026-11-18", 990), ("2026-11-19", 120), ("2026-11-20", 1010)):
            con.execute(f"insert into raw_orders select range, date '{day}' from range({rows})")
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    with IncidentStore(url) as store:
        inc_id = open_incident(store, signal="soda_row_count", fault=FaultClass.VOLUME)
        written = write_postmortem(store, inc_id, "md", T0, warehouse, "shop.orders", read_kafka=False)
    h = written.postmortem.hypothesis
    assert h.cause == MISSING_LOAD and h.cause != PRODUCER_RETRIES
    assert "only partition 2026-11-19 has fewer than 50% of the median row count" in h.observation
    assert PRODUCER_RETRIES not in written.text and "adjacent" not in written.text
    assert (
        '`select "order_date", count(*) from "main"."raw_orders" group by 1 order by 1`' in written.text
    )  # the query is the evidence


def _hostile_postmortem(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    with IncidentStore(url) as store:
        inc_id = open_incident(store, signal="soda_order_id_duplicate")
        store.add_note(inc_id, HOSTILE, HOSTILE, now=T0 + timedelta(seconds=5))
        notes = tmp_path / "notes.yaml"
        hostile_item = {"id": "A1", "owner": HOSTILE, "text": HOSTILE}
        notes.write_text(
            yaml.safe_dump({"summary": "**bold** <img src=x onerror=alert(1)>", "action_items": [hostile_item]})
        )
        written = write_postmortem(store, inc_id, "html", T0 + timedelta(minutes=5), None, None,
                                   edges=lineage_edges(shop_graph()), notes_path=notes)  # fmt: skip
        md = render(written.postmortem, "md")
    assert "<script>" not in md and "<img" not in md and "\x1b" not in md and "\\x1b\\[31mred" in md
    assert "**bold** &lt;img" in md  # the reviewers' summary stays Markdown, its HTML inert
    assert "```mermaid\nflowchart LR\n" in md and 'n0["raw_orders"]:::root' in md
    return written.text


def test_html_escapes_hostile_values_and_shows_the_blast_radius_svg(tmp_path):
    html = _hostile_postmortem(tmp_path)
    assert "<script>" not in html and "<img" not in html and "\x1b" not in html
    assert "&lt;script&gt;console.error(&#39;pwned&#39;)&lt;/script&gt;&#34;&#39;&amp;\\x1b[31mred" in html
    assert "<strong>bold</strong>" in html and "&lt;img src=x onerror=alert(1)&gt;" in html  # notes: Markdown, no HTML
    svg = re.search(r"<svg id=\"blast-radius\".*?</svg>", html, re.S)
    assert svg and svg.group().count("<rect") >= 5 and "marker-end" in svg.group()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_html_opens_in_headless_chromium_without_console_errors(tmp_path):
    page = tmp_path / "postmortem.html"
    page.write_text(_hostile_postmortem(tmp_path), encoding="utf-8")
    shot = tmp_path / "postmortem.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    shoot = subprocess.run([*flags, "--window-size=1200,2200", f"--screenshot={shot}", page.as_uri()],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 10_000, shoot.stderr[-2000:]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [line for line in (shoot.stderr + dom.stderr).splitlines() if "CONSOLE" in line]
    assert console == [], console  # the hostile <script> never ran, nothing else complained
    assert '<svg id="blast-radius"' in dom.stdout and "pwned" in dom.stdout  # shown as text, in the DOM
    assert "<script>" not in dom.stdout
    print(f"screenshot: {shot}")  # kept in pytest's tmp dir (the last 3 runs are kept)


def test_a_dlq_spike_of_one_error_class_is_a_schema_change_timed_by_its_first_reject(tmp_path):
    """The ingestion outbox (real DuckDB, the table `reliability.kafka.warehouse` creates) holds 30 rejects
    of one error class: schema change, impact from the first reject, never the producer hypothesis."""
    from reliability.kafka.warehouse import ensure_tables

    warehouse = tmp_path / "warehouse.duckdb"
    first = T0 - timedelta(minutes=20)
    with duckdb.connect(str(warehouse)) as con:
        ensure_tables(con)
        con.executemany(
            "insert into _kafka_dlq_outbox (source_topic, source_partition, source_offset, dlq_topic, error, "
            "rejected_at) values ('shop.orders', 0, ?, 'shop.orders.dlq', 'invalid_type:amount', ?)",
            [[i, (first + timedelta(seconds=i)).replace(tzinfo=None)] for i in range(30)],
        )
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    with IncidentStore(url) as store:
        inc_id = open_incident(store, signal="kafka_dlq_depth", fault=FaultClass.SCHEMA_CHANGE)
        written = write_postmortem(store, inc_id, "md", T0, warehouse, "shop.orders", read_kafka=False)
    pm = written.postmortem
    assert pm.hypothesis.cause == "upstream schema or contract change"
    assert "30 message(s) were dead-lettered in the incident window, all with one error class" in written.text
    assert pm.impact.at == first and pm.impact.method.startswith("the first message of the window dead-lettered")
    assert next(d.seconds for d in pm.durations if d.name == "MTTD") == 1200
    assert PRODUCER_RETRIES not in written.text


def test_mermaid_labels_of_hostile_asset_keys_are_quoted_and_escaped():
    from reliability.review.postmortem import GraphNode
    from reliability.review.render import mermaid

    class Fake:
        nodes = [GraphNode('a"] --> x[<b>', "root", 0), GraphNode("b\x1b[2J", "downstream", 1)]
        edges = [('a"] --> x[<b>', "b\x1b[2J")]

    text = mermaid(Fake())  # type: ignore[arg-type]
    assert 'n0["a#quot;] --#gt; x[#lt;b#gt;"]:::root' in text and 'n1["b\\x1b[2J"]:::downstream' in text
    assert "n0 --> n1" in text and "\x1b" not in text

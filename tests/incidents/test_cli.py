"""`reliability incidents ...` and `reliability blast-radius` end to end through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest

from reliability.cli import main
from reliability.incidents.lifecycle import TRANSITIONS
from reliability.incidents.model import Detection, FaultClass, Source, Status
from reliability.incidents.notify import Router
from reliability.incidents.store import IncidentStore
from tests.incidents.conftest import STEPS_TO, T0, SteppingClock, shop_graph

REPO = Path(__file__).resolve().parents[2]
HOSTILE_KEY = "[bold red]x[/bold red]<script>alert('x')</script>'; DROP TABLE incidents;--"
SECRET = "https://hooks.slack.example/services/T0/B0/SUPERSECRETTOKEN"


@pytest.fixture
def store_env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    monkeypatch.setenv("COLUMNS", "300")  # wide tables: no wrapping inside asserted phrases
    monkeypatch.setenv("RELIABILITY_SLACK_WEBHOOK_URL", SECRET)
    monkeypatch.setenv("RELIABILITY_PAGERDUTY_ROUTING_KEY", "PDSECRETKEY")
    monkeypatch.setenv("RELIABILITY_PAGERDUTY_URL", "http://127.0.0.1:9/v2/enqueue")  # nothing listens
    with IncidentStore(url, router=Router()) as store:
        store.ingest(
            [Detection("a", "raw_orders", Source.ASSET_CHECK, "soda_order_id_duplicate", T0,
                       fault_class=FaultClass.DUPLICATES)],
            shop_graph(), now=T0,
        )  # fmt: skip
        store.ingest([Detection("b", HOSTILE_KEY, Source.ASSET_CHECK, HOSTILE_KEY, T0)], None, now=T0)
    return url


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_ack_note_resolve_search_json(store_env, capsys):
    code, out, _ = run_cli(capsys, "incidents", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [i["id"] for i in listed] == ["INC-2", "INC-1"]
    assert set(listed[0]) >= {"id", "status", "severity", "title", "root_asset", "detected_at", "exposures"}
    code, out, _ = run_cli(capsys, "incidents", "show", "INC-1", "--json")
    shown = json.loads(out)
    assert shown["root_asset"] == "raw_orders" and shown["severity"] == "SEV1"
    assert "revenue_dashboard" in shown["exposures"] and shown["timeline"][0]["kind"] == "detection"
    assert run_cli(capsys, "incidents", "ack", "1", "--actor", "alice@shop.example")[0] == 0
    assert run_cli(capsys, "incidents", "note", "INC-1", "re-sent the vendor file", "--actor", "bob")[0] == 0
    code, out, err = run_cli(capsys, "incidents", "ack", "1")
    assert code == 1 and "cannot move to acknowledged" in err
    with pytest.raises(SystemExit):  # --note is required to resolve
        main(["incidents", "resolve", "1"])
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "incidents", "resolve", "INC-1", "--note", "deduplicated", "--json")
    assert json.loads(out)["status"] == "resolved"
    code, out, _ = run_cli(capsys, "incidents", "list", "--status", "resolved", "--json")
    assert [i["id"] for i in json.loads(out)] == ["INC-1"]
    code, out, _ = run_cli(capsys, "incidents", "search", "VENDOR file", "--json")
    hits = json.loads(out)
    assert [h["id"] for h in hits] == ["INC-1"] and any("vendor file" in m for m in hits[0]["matches"])
    code, out, _ = run_cli(capsys, "incidents", "show", "1")
    assert code == 0 and "re-sent the vendor file" in out and "acknowledged" in out
    code, _, err = run_cli(capsys, "incidents", "show", "INC-99")
    assert code == 1 and "no incident INC-99" in err
    code, _, err = run_cli(capsys, "incidents", "show", "abc")
    assert code == 1 and "not an incident id" in err


CLI_VERB = {Status.ACKNOWLEDGED: "ack", Status.MITIGATED: "mitigate", Status.RESOLVED: "resolve",
            Status.REOPENED: "reopen"}  # fmt: skip


def test_every_transition_through_the_real_cli(sqlite_url):
    """Each (status, command) pair in a fresh process: allowed moves succeed, refused ones print one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIABILITY_")}
    env.update(RELIABILITY_INCIDENT_STORE_URL=sqlite_url, COLUMNS="300")

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "reliability.cli", "incidents", *argv],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=120)  # fmt: skip

    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ={})) as store:
        cases = {}
        for source, target in product(Status, CLI_VERB):
            detection = Detection(f"{source}-{target}", f"asset_{source}_{target}", Source.ASSET_CHECK, "c", T0)
            (inc_id,) = store.ingest([detection], None, now=T0).opened
            for step in STEPS_TO[source]:
                store.transition(inc_id, step, "alice")
            cases[(source, target)] = inc_id
    for (source, target), inc_id in cases.items():
        note = f"note {source} -> {target}"
        proc = cli(CLI_VERB[target], f"INC-{inc_id}", "--note", note, "--actor", "bob", "--json")
        if target in TRANSITIONS[source]:
            assert proc.returncode == 0 and proc.stderr == "", (source, target, proc.stderr)
            assert json.loads(proc.stdout)["status"] == target
        else:
            assert proc.returncode == 1 and proc.stdout == "", (source, target)
            assert proc.stderr.startswith(f"error: INC-{inc_id} is {source}; cannot move to {target} (allowed: ")
            assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    # the move that used to crash (IntegrityError on incident_open_keys), as an engineer sees it afterwards
    reopened = cases[(Status.MITIGATED, Status.REOPENED)]
    shown = cli("show", f"INC-{reopened}")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"│ status +│ reopened", shown.stdout)
    assert re.search(r"│ mitigated +│ - ", shown.stdout) and re.search(r"│ resolved +│ - ", shown.stdout)
    assert shown.stdout.count("note mitigated -> reopened") == 1  # each note once
    acknowledged = cases[(Status.OPEN, Status.ACKNOWLEDGED)]
    blank = cli("resolve", f"INC-{acknowledged}", "--note", " ")
    assert blank.returncode == 1 and blank.stderr == "error: resolve needs a --note saying what fixed it\n"
    with IncidentStore(sqlite_url, clock=SteppingClock(), router=Router(environ={})) as store:
        assert store.get(acknowledged).status == "acknowledged"
        assert store.get(reopened).timeline[-1].actor == "bob"


def test_hostile_text_is_shown_verbatim_in_tables_and_json(store_env, capsys):
    code, out, _ = run_cli(capsys, "incidents", "note", "2", HOSTILE_KEY, "--actor", HOSTILE_KEY)
    assert code == 0
    _, out, _ = run_cli(capsys, "incidents", "show", "INC-2", "--json")
    shown = json.loads(out)
    assert shown["root_asset"] == HOSTILE_KEY
    assert shown["timeline"][-1]["message"] == HOSTILE_KEY and shown["timeline"][-1]["actor"] == HOSTILE_KEY
    wide = {"COLUMNS": "400"}
    proc = subprocess.run(
        [sys.executable, "-m", "reliability.cli", "incidents", "show", "INC-2"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, **wide}, check=True,
    )  # fmt: skip
    assert "[bold red]x[/bold red]" in proc.stdout  # rich markup not interpreted
    assert "<script>alert('x')</script>" in proc.stdout
    _, out, _ = run_cli(capsys, "incidents", "search", "drop table", "--json")
    assert [h["root_asset"] for h in json.loads(out)] == [HOSTILE_KEY]


def test_secrets_never_reach_cli_output(store_env, capsys, caplog):
    outputs = []
    for argv in (["incidents", "list"], ["incidents", "list", "--json"], ["incidents", "show", "1", "--json"],
                 ["incidents", "show", "1"], ["incidents", "deliver", "--json"]):  # fmt: skip
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        outputs += [out, err]
    delivered = json.loads(outputs[-2])
    assert delivered["outbox"]["pending"] >= 1  # PagerDuty unreachable: kept for retry
    blob = "\n".join(outputs + [r.getMessage() for r in caplog.records])
    assert "SUPERSECRETTOKEN" not in blob and "PDSECRETKEY" not in blob and SECRET not in blob


def test_store_commands_do_not_import_dagster(store_env):
    code = (
        "import sys, io, contextlib\n"
        "from reliability.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['incidents', 'list', '--json']); main(['incidents', 'show', '1', '--json'])\n"
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_blast_radius_of_raw_orders_reaches_the_revenue_dashboard(capsys):
    code, out, _ = run_cli(capsys, "blast-radius", "raw_orders", "--json")
    assert code == 0
    radius = json.loads(out)
    depths = {a["asset_key"]: a["depth"] for a in radius["assets"]}
    assert depths["raw_orders"] == 0 and depths["stg_orders"] == 1
    assert "revenue_dashboard" in radius["exposures"] and radius["severity_if_failing"] == "SEV1"
    code, _, err = run_cli(capsys, "blast-radius", "no_such_asset")
    assert code == 1 and "unknown asset key 'no_such_asset'" in err

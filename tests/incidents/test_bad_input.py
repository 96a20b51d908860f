"""Issue 9: bad input to the incident CLI, its config files and its store gives one `error: ...` line
naming the file, field or variable; no traceback; no secret in any output; nothing accepted silently."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability.cli import main
from reliability.errors import ConfigError
from reliability.incidents.config import load_incidents_config
from reliability.incidents.model import Detection, FaultClass, Source
from reliability.incidents.notify import Router
from reliability.incidents.store import IncidentStore
from reliability.settings import load_settings
from reliability.terminal import print_tables, printable
from tests.incidents.conftest import T0, SteppingClock, shop_graph

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3rSecretPassw0rd"
ANSI = "\x1b[31mRED\x1b[0m"


@pytest.fixture
def cli_store(tmp_path, monkeypatch) -> str:
    """A store holding one open (never acknowledged) incident; the CLI finds it through the variable."""
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    for name in ("RELIABILITY_SLACK_WEBHOOK_URL", "RELIABILITY_PAGERDUTY_ROUTING_KEY", "RELIABILITY_ALERTMANAGER_URL",
                 "RELIABILITY_INCIDENTS_CONFIG", "RELIABILITY_SETTINGS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    with IncidentStore(url, router=Router(environ={}), clock=SteppingClock()) as store:
        store.ingest([Detection("a", "raw_orders", Source.ASSET_CHECK, "soda_dup", T0,
                                fault_class=FaultClass.DUPLICATES)], shop_graph(), now=T0)  # fmt: skip
    return url


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the real CLI in-process: a traceback would be an exception escaping `main` and fail the test."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv: str, names: str, exit_code: int = 1) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == exit_code, (code, out, err)
    assert "Traceback" not in out + err and PASSWORD not in out + err
    last = err.rstrip("\n").splitlines()[-1]
    assert "error: " in last and names in last, err
    if exit_code == 1:  # our errors are exactly one line (argparse's add a usage line before theirs)
        assert err.count("\n") == 1 and err.startswith("error: "), err
    return last


# ------------------------------------------------------------------------------------------- ids, notes, limits
def test_an_id_too_large_for_the_store_is_refused(cli_store, capsys):
    one_line_error(capsys, "incidents", "show", "999999999999999999999999", names="'999999999999999999999999'")
    one_line_error(capsys, "incidents", "ack", "INC-99999999999999999999", names="INC-99999999999999999999")
    one_line_error(capsys, "incidents", "show", "²", names="not an incident id")  # isdigit() but not a number


@pytest.mark.parametrize("argv", [("resolve", "1", "--note", ""), ("resolve", "1", "--note", "  \t"),
                                  ("ack", "1", "--note", ""), ("note", "1", " ")])  # fmt: skip
def test_blank_notes_are_refused(cli_store, capsys, argv):
    names = "--note" if "--note" in argv else "the note"
    one_line_error(capsys, "incidents", *argv, names=names)
    assert json.loads(cli(capsys, "incidents", "show", "1", "--json")[1])["status"] == "open"


def test_arguments_that_are_not_utf8_are_refused(cli_store, capsys):
    """Bytes that are not UTF-8 reach Python as surrogates: they would fail deep in the database driver."""
    before = json.loads(cli(capsys, "incidents", "show", "1", "--json")[1])
    for argv in (("note", "1", "bad\udcffbyte"), ("search", "\udcff"), ("resolve", "1", "--note", "x\udcff")):
        one_line_error(capsys, "incidents", *argv, names="is not valid UTF-8 text", exit_code=2)
    assert json.loads(cli(capsys, "incidents", "show", "1", "--json")[1]) == before


@pytest.mark.parametrize("limit", ["0", "-1", "ten", "99999999999999999999999"])
def test_list_limit_must_be_at_least_one(cli_store, capsys, limit):
    one_line_error(capsys, "incidents", "list", "--limit", limit, names="argument --limit", exit_code=2)


def test_resolving_an_unacknowledged_incident_is_allowed_and_recorded(cli_store, capsys):
    """The documented lifecycle (reliability/incidents/README.md): resolve is allowed from open, as in PagerDuty."""
    code, out, _ = cli(capsys, "incidents", "resolve", "INC-1", "--note", "false alarm", "--json")
    assert code == 0 and json.loads(out)["status"] == "resolved"
    shown = json.loads(cli(capsys, "incidents", "show", "1", "--json")[1])
    assert shown["acknowledged_at"] is None and shown["resolved_at"] is not None
    assert any(e["kind"] == "status_change" and "resolved" in e["message"] for e in shown["timeline"])
    readme = (REPO / "reliability" / "incidents" / "README.md").read_text()
    assert "Resolving an incident that was never acknowledged is allowed" in readme


# ------------------------------------------------------------------------------------------- the store
def test_a_sqlite_store_in_a_missing_directory_is_an_error_not_an_empty_store(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no" / "such" / "dir"
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", f"sqlite:///{missing / 'incidents.db'}")
    for argv in (("list", "--json"), ("show", "1"), ("search", "x"), ("ack", "1")):
        last = one_line_error(capsys, "incidents", *argv, names="RELIABILITY_INCIDENT_STORE_URL")
        assert f"directory {missing} does not exist" in last
    one_line_error(capsys, "incidents", "--store-url", f"sqlite:///{missing}/x.db", "list", names="--store-url")
    one_line_error(capsys, "incidents", "--store-url", " ", "list", names="--store-url is blank")
    assert not (tmp_path / "no").exists()


def test_a_store_path_that_is_not_a_database_is_one_line(tmp_path, capsys):
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a database " * 20)
    last = one_line_error(capsys, "incidents", "--store-url", f"sqlite:///{garbage}", "list", names="--store-url")
    assert "file is not a database" in last
    last = one_line_error(capsys, "incidents", "--store-url", f"sqlite:///{tmp_path}", "list", names="--store-url")
    assert "unable to open database file" in last


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url at all", "not a database URL"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db", "not a database URL"),
        (f"postgresql+pg8000://u:{PASSWORD}@127.0.0.1/db", "driver 'pg8000' for postgresql+pg8000://u:***@"),
        (f"mysql://u:{PASSWORD}@127.0.0.1/db", "unsupported database 'mysql'"),
    ],
)
def test_unparseable_store_url_or_missing_driver(monkeypatch, capsys, url, expected):
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", url)
    last = one_line_error(capsys, "incidents", "list", names="RELIABILITY_INCIDENT_STORE_URL")
    assert expected in last


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_postgresql_store_fails_fast_in_one_line(monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", f"postgresql://u:{PASSWORD}@127.0.0.1:{_closed_port()}/db")
    started = time.monotonic()
    last = one_line_error(capsys, "incidents", "list", names="RELIABILITY_INCIDENT_STORE_URL")
    assert time.monotonic() - started < 5  # no retry loop on a refused connection
    assert "cannot open the incident store postgresql://u:***@127.0.0.1" in last and "refused" in last
    assert PASSWORD not in caplog.text


@pytest.fixture
def pg_password_url(postgres_server, pg_url) -> str:
    """A role that must log in with a password (scram) on the test server, which otherwise trusts everyone."""
    import sqlalchemy as sa

    hba = postgres_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all pwcheck 127.0.0.1/32 scram-sha-256\n" + original)
    admin = sa.create_engine(postgres_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DO $$ BEGIN CREATE ROLE pwcheck LOGIN PASSWORD 'right'; "
                             "EXCEPTION WHEN duplicate_object THEN NULL; END $$"))  # fmt: skip
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    time.sleep(0.3)
    yield pg_url.replace("postgres@", f"pwcheck:{PASSWORD}@")
    hba.write_text(original)
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    admin.dispose()


@pytest.mark.postgres
def test_a_wrong_postgresql_password_is_one_line_without_the_password(pg_password_url, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("RELIABILITY_INCIDENT_STORE_URL", pg_password_url)
    last = one_line_error(capsys, "incidents", "list", names="RELIABILITY_INCIDENT_STORE_URL")
    assert "password authentication failed" in last and "pwcheck:***@" in last
    assert PASSWORD not in caplog.text


# ------------------------------------------------------------------------------------------- config files
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("delivery: {budget_seconds: fast}\n", "delivery.budget_seconds"),
        ("delivery: [1, 2]\n", "delivery: expected a mapping"),
        ("grouping: 5\n", "grouping: expected a mapping"),
        ("grouping: {group_window_minutes: -5}\n", "grouping.group_window_minutes"),
        ("grouping: {group_window_minute: 5}\n", "unknown field(s) ['group_window_minute']"),
        ("routing:\n  - severities: [SEV9]\n    channels: [slack]\n", "routing[0].severities: unknown severity"),
        ("routing:\n  - channels: [slack]\n    targets: {pagerduty: X}\n", "routing[0].targets.pagerduty"),
        (b"routing: []\n# caf\xe9\n", "not UTF-8"),
    ],
)
def test_bad_incidents_config_names_file_and_field(tmp_path, monkeypatch, cli_store, capsys, text, field):
    config = tmp_path / "incidents.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as error:
        load_incidents_config(config)
    assert str(config) in str(error.value) and field in str(error.value)
    monkeypatch.setenv("RELIABILITY_INCIDENTS_CONFIG", str(config))
    last = one_line_error(capsys, "incidents", "ack", "1", names=str(config))
    assert field in last
    monkeypatch.delenv("RELIABILITY_INCIDENTS_CONFIG")
    assert json.loads(cli(capsys, "incidents", "show", "1", "--json")[1])["status"] == "open"


def test_settings_file_with_a_list_as_a_path_names_file_and_field(tmp_path, monkeypatch, capsys):
    settings = tmp_path / "reliability.yaml"
    settings.write_text("warehouse_path: [1, 2]\ndbt_project_dir: d\ncontracts_dir: c\nassets_file: a.yaml\n")
    with pytest.raises(ConfigError, match="warehouse_path: expected a path"):
        load_settings(settings, environ={})
    monkeypatch.delenv("RELIABILITY_INCIDENT_STORE_URL", raising=False)
    # an earlier dbt run in this process may have exported the warehouse, which would override the bad field
    monkeypatch.delenv("RELIABILITY_WAREHOUSE", raising=False)
    monkeypatch.setenv("RELIABILITY_SETTINGS", str(settings))
    from reliability.settings import get_settings

    get_settings.cache_clear()
    try:
        last = one_line_error(capsys, "incidents", "list", names=f"{settings}: warehouse_path")
    finally:
        get_settings.cache_clear()
    assert "expected a path" in last


def test_a_bad_override_names_the_variable(tmp_path):
    settings = tmp_path / "reliability.yaml"
    settings.write_text("warehouse_path: w.duckdb\ndbt_project_dir: d\ncontracts_dir: c\nassets_file: a.yaml\n")
    with pytest.raises(ConfigError) as error:
        load_settings(settings, environ={"RELIABILITY_PARTITIONS_START_DATE": "soon"})
    assert "partitions_start_date (from RELIABILITY_PARTITIONS_START_DATE)" in str(error.value)


def test_invalid_yaml_is_one_line_without_the_quoted_snippet(tmp_path):
    settings = tmp_path / "reliability.yaml"
    settings.write_text(f"incident_store_url: postgresql://u:{PASSWORD}@h/db\nwarehouse_path: [unclosed\n")
    with pytest.raises(ConfigError) as error:
        load_settings(settings, environ={})
    assert str(settings) in str(error.value) and "line 3" in str(error.value)
    assert "\n" not in str(error.value) and PASSWORD not in str(error.value)


# ------------------------------------------------------------------------------------------- terminal output
def test_control_characters_in_notes_are_escaped_in_tables_to_a_pipe_and_a_terminal(cli_store, capsys):
    assert cli(capsys, "incidents", "note", "1", f"note {ANSI}\u202eevil\x07", "--actor", ANSI)[0] == 0
    code, out, _ = cli(capsys, "incidents", "show", "1")  # capsys: stdout is not a terminal
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "note \\x1b[31mRED\\x1b[0m\\u202eevil\\x07" in out
    # to a terminal: the same escapes inside the rich table
    tty = _Tty()
    print_tables([("t", ("message",), [(f"note {ANSI}",)])], stream=tty)
    assert "\x1b[31mRED" not in tty.getvalue() and "\\x1b[31mRED" in tty.getvalue()
    code, out, _ = cli(capsys, "incidents", "show", "1", "--json")  # JSON escapes on its own, unchanged
    assert json.loads(out)["timeline"][-1]["message"] == f"note {ANSI}\u202eevil\x07"


def test_error_lines_escape_what_they_quote(cli_store, capsys):
    code, _, err = cli(capsys, "incidents", "search", " \n")
    assert code == 1 and err == "error: the search text is blank\n"
    last = one_line_error(capsys, "incidents", "show", "INC-\x1b[31m\n", names="not an incident id")
    assert "\x1b" not in last and "\\x1b[31m" in last


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_printable_and_piped_tables_are_one_row_per_line():
    assert printable("plain ümlaut 中文 <b>") == "plain ümlaut 中文 <b>"
    assert printable("a\tb\nc\x1b[0m\u200b") == "a\\x09b\\x0ac\\x1b[0m\\u200b"
    long_name = "kafka_dlq_depth_with_a_very_long_name" * 3
    pipe = io.StringIO()  # not a terminal: as wide as the content, whatever COLUMNS says
    print_tables([("title", ("asset", "check"), [(long_name, "x\ty"), ("short", "[bold]z[/bold]")])], pipe)
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 7  # title, top rule, header, rule, two rows, bottom rule: nothing wrapped
    assert long_name in lines[4] and "x\\x09y" in lines[4] and "[bold]z[/bold]" in lines[5]


# ------------------------------------------------------------------------------------------- deliver, startup
def test_deliver_with_no_channel_configured_says_so(cli_store, capsys):
    last = one_line_error(capsys, "incidents", "deliver", names="no notification channel is configured")
    assert "RELIABILITY_SLACK_WEBHOOK_URL" in last and "incidents.yaml" in last


def test_read_commands_do_not_import_alembic_or_yaml_on_a_current_store(cli_store):
    """Start-up cost of `incidents list --json` is SQLAlchemy and the query: alembic only when the schema is
    behind, no incidents config (YAML) for commands that change nothing, never Dagster, rich or pydantic."""
    code = (
        "import sys, io, contextlib\n"
        "from reliability.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['incidents', 'list', '--json']) == 0\n"
        "heavy = ('alembic', 'dagster', 'rich', 'pydantic', 'yaml')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {**os.environ, "RELIABILITY_INCIDENT_STORE_URL": cli_store}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


# ------------------------------------------------------------------------------------------- blast radius
def test_blast_radius_partition_is_checked_and_piped_tables_stay_whole(capsys):
    last = one_line_error(capsys, "blast-radius", "raw_orders", "--partition", "not-a-date", names="--partition")
    assert "'not-a-date' is not a partition of Daily" in last and "partition scheme" in last
    code, out, _ = cli(capsys, "blast-radius", "raw_orders", "--partition", "2026-01-02")
    assert code == 0
    rows = {}  # stdout is a pipe here: one whole line per asset, cells never split across lines
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│").split("│")]
        if len(cells) == 6:
            rows[cells[0]] = cells
    assert {"raw_orders", "stg_orders", "fct_orders", "customer_lifetime_value", "revenue_dashboard"} <= set(rows)
    assert rows["fct_orders"][4] == "2026-01-02" and rows["raw_orders"][1] == "0"

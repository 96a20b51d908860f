"""`reliability check` and `reliability ci` end to end on the small plain fixture project.

Real dbt, Soda, DuckDB and a real Dagster instance (DAGSTER_HOME). Production is built once with dbt;
its manifest is the `--state`. The pull request modifies `stg_customers` (harmless) and renames
`daily_revenue.revenue`, which the `daily_revenue` contract requires.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from junitparser import Failure, JUnitXml

from reliability.cli import main
from reliability.dbt.project import dbt_executable
from reliability.settings import get_settings

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "plain_project"
REVENUE_CONTRACT = """\
dataset: warehouse/main/daily_revenue
columns:
  - name: ordered_on
    checks:
      - missing:
  - name: revenue
    checks:
      - missing:
checks:
  - row_count:
      threshold:
        level: warn
        must_be_greater_than: 100
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Path]:
    """The fixture project with the revenue contract, built into `production.duckdb`, its manifest in state/."""
    root = tmp_path_factory.mktemp("ci")
    project = root / "plain_project"
    shutil.copytree(FIXTURE, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "contracts" / "daily_revenue.yml").write_text(REVENUE_CONTRACT)
    production = root / "production.duckdb"
    dbt = project / "dbt"
    env = {"RELIABILITY_WAREHOUSE": str(production), "DO_NOT_TRACK": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [dbt_executable(), "build", "--project-dir", str(dbt), "--profiles-dir", str(dbt), "--quiet"],
        env=env,
        check=True,
    )
    (root / "state").mkdir()
    shutil.copy(dbt / "target" / "manifest.json", root / "state" / "manifest.json")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RELIABILITY_SETTINGS", str(project / "reliability.yaml"))
        patch.setenv("RELIABILITY_WAREHOUSE", str(production))
        patch.setenv("DAGSTER_HOME", str(home))
        patch.delenv("GITHUB_STEP_SUMMARY", raising=False)
        get_settings.cache_clear()
        yield project
    get_settings.cache_clear()


def _cases(path: Path) -> dict[str, object]:
    return {f"{case.classname}:{case.name}": case for suite in JUnitXml.fromfile(str(path)) for case in suite}


def test_check_runs_only_checks_warn_fails_only_with_fail_on_warn(project, tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "check.xml"
    args = ["check", "--select", "key:daily_revenue", "--junit-xml", str(junit)]
    assert main(args) == 0  # the row count (3 days < 100) only warns
    cases = _cases(junit)
    assert set(cases) == {
        "daily_revenue:unique_daily_revenue_ordered_on",
        "daily_revenue:soda_ordered_on_missing",
        "daily_revenue:soda_revenue_missing",
        "daily_revenue:soda_row_count",
        # every table's anomaly monitors (whole-table snapshots here: no day column declared), learning
        "daily_revenue:anomaly_volume",
        "daily_revenue:anomaly_null_rate",
        "daily_revenue:anomaly_distribution",
    }
    assert all(case.is_passed for case in cases.values())
    assert "WARN" in capsys.readouterr().out and "soda_row_count" in summary.read_text()

    assert main([*args, "--fail-on", "warn", "--json"]) == 1
    body = json.loads(capsys.readouterr().out)  # stdout is the JSON alone: dbt's log went to stderr
    assert body["summary"] == {
        "total": 7,
        "passed": 6,
        "failed": 0,
        "warn": 1,
        "skipped": 0,
        "fail_on": "warn",
        "exit_code": 1,
    }
    (failure,) = [r for r in _cases(junit)["daily_revenue:soda_row_count"].result if isinstance(r, Failure)]
    assert "measured value: " in failure.text and "must be greater than: 100" in failure.text

    with dg.DagsterInstance.get() as instance:  # recorded in the instance; nothing materialized
        runs = instance.get_runs()
        assert len(runs) == 2
        events = [e for run in runs for e in instance.all_logs(run.run_id) if e.is_dagster_event]
        types = [e.dagster_event.event_type for e in events]
        assert types.count(dg.DagsterEventType.ASSET_CHECK_EVALUATION) == 14  # 7 checks, 2 runs
        assert dg.DagsterEventType.ASSET_MATERIALIZATION not in types


def test_usage_errors_exit_2(project, capsys, tmp_path):
    assert main(["check", "--select", "key:no_such_asset"]) == 2
    assert main(["check", "--select", "key:daily_revenue", "--partition-range", "2026-11-01"]) == 2
    assert main(["ci", "--state", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err.pop() == f"error: --state {tmp_path}: no manifest.json (the production dbt manifest) in it"
    assert err == [
        "error: --select 'key:no_such_asset' selects no asset",
        "error: --partition-range must look like 2026-11-01...2026-11-07, got '2026-11-01'",
    ]


@pytest.fixture(scope="module")
def change(project: Path, tmp_path_factory) -> dict[str, object]:
    """`reliability ci` on a change to stg_customers (harmless) and daily_revenue (breaks its contract and
    its unique test)."""
    out = tmp_path_factory.mktemp("ci_run")
    models = project / "dbt" / "models"
    staging = models / "staging" / "stg_customers.sql"
    staging.write_text(staging.read_text().replace("as name", "as name, 1 as version"))
    finance = models / "marts" / "finance" / "daily_revenue.sql"
    duplicate_day = "\nunion all select cast('2026-11-20' as date), 0"  # fails unique_daily_revenue_ordered_on
    finance.write_text(finance.read_text().replace("as revenue", "as revenue_total") + duplicate_day)
    production = Path(get_settings().warehouse_path)
    before = hashlib.sha256(production.read_bytes()).hexdigest()
    args = [
        "ci",
        "--state",
        str(project.parent / "state"),
        "--junit-xml",
        str(out / "ci.xml"),
        "--report-md",
        str(out / "impact.md"),
        "--workdir",
        str(out / "copy"),
        "--json",
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(args)
    after = hashlib.sha256(production.read_bytes()).hexdigest()
    return {
        "code": code,
        "body": json.loads(stdout.getvalue()),
        "junit": out / "ci.xml",
        "impact": (out / "impact.md").read_text(),
        "unchanged": before == after,
    }


def test_ci_builds_only_the_change_and_downstream_on_a_copy(change):
    body = change["body"]
    assert body["modified"] == ["daily_revenue", "stg_customers"]
    assert body["built"] == ["customer_orders", "daily_revenue", "stg_customers"]  # not stg_orders, not the seeds
    assert change["unchanged"]  # production byte-identical
    checks = {f"{c['asset']}:{c['check']}": c["status"] for c in body["checks"]}
    assert checks["code_location:definitions_valid"] == "passed"
    assert checks["stg_customers:unique_stg_customers_customer_id"] == "passed"
    assert not any(name.startswith(("stg_orders:", "raw_orders:")) for name in checks)
    # impact: tier-1 marts first, with the exposure and owners
    assert body["impact"][0]["model"] == "daily_revenue" and body["impact"][0]["exposures"] == ["revenue_report"]
    assert "finance@plain.example" in body["impact"][0]["owners"]
    assert "### `stg_customers`" in change["impact"] and "`revenue_report`" in change["impact"]


def test_ci_fails_on_a_broken_downstream_contract_naming_it(change):
    assert change["code"] == 1
    cases = _cases(change["junit"])
    failed = {name for name, case in cases.items() if not case.is_passed}
    assert failed == {
        "daily_revenue:soda_revenue_missing",
        "daily_revenue:contract_compatible",
        "daily_revenue:unique_daily_revenue_ordered_on",
    }
    (dbt_failure,) = [
        r for r in cases["daily_revenue:unique_daily_revenue_ordered_on"].result if isinstance(r, Failure)
    ]
    assert "measured value: 1" in dbt_failure.text  # one failing row, shown with dbt show
    assert '"n_records": 2' in dbt_failure.text and '"unique_field": "2026-11-20"' in dbt_failure.text
    (soda,) = [r for r in cases["daily_revenue:soda_revenue_missing"].result if isinstance(r, Failure)]
    assert "column 'revenue' declared in the contract is not in table 'daily_revenue'" in soda.message  # evaluated
    (failure,) = [r for r in cases["daily_revenue:contract_compatible"].result if isinstance(r, Failure)]
    assert "contracts/daily_revenue.yml requires daily_revenue.revenue: dropped" in failure.message
    assert "contracts/daily_revenue.yml" in change["impact"] and "soda_revenue_missing" in change["impact"]

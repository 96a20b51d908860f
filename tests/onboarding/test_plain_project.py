"""A dbt project with no `meta` at all, pointed at by its settings file alone (`tests/fixtures/plain_project`).

Real dbt, Soda, DuckDB and Dagster instance: the definitions load with owners and tiers from the settings'
policy rules and default, lineage and checks are there, a clean build passes, `reliability blast-radius`
works through `RELIABILITY_SETTINGS`, and a failing check opens one incident with the right root and owners.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from reliability.definitions import build_definitions
from reliability.errors import ConfigError
from reliability.incidents.defs import build_incident_sensor
from reliability.incidents.store import IncidentStore
from reliability.settings import REPO_ROOT, Settings, load_settings
from tests.shop_harness import failed_checks, materialized, passed_checks, run

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "plain_project"
MODELS = {"stg_orders", "stg_customers", "customer_orders", "daily_revenue"}
SEEDS = {"raw_orders", "raw_customers"}
PLATFORM_ASSETS = {"incident_metrics"}  # every code location has them (reliability.review)
SODA_CHECKS = {
    "raw_orders:soda_order_id_missing",
    "raw_orders:soda_order_id_duplicate",
    "raw_orders:soda_amount_missing",
    "raw_orders:soda_row_count",
}
# every table (seeds, views, tables) gets anomaly monitors with no configuration; no day column is declared
# anywhere here, so they judge whole-table snapshots (no freshness monitor)
ANOMALY_CHECKS = {f"{a}:anomaly_{c}" for a in MODELS | SEEDS for c in ("volume", "null_rate", "distribution")}
DBT_TESTS = {
    "stg_orders:unique_stg_orders_order_id",
    "stg_orders:not_null_stg_orders_order_id",
    "stg_customers:unique_stg_customers_customer_id",
    "daily_revenue:unique_daily_revenue_ordered_on",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the fixture (dbt writes target/ into it) with its settings file."""
    target = tmp_path_factory.mktemp("plain") / "plain_project"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns("target", "logs"))
    assert not (target / "assets.yaml").exists()
    return target


def _environ(project: Path) -> dict[str, str]:
    return {"RELIABILITY_SETTINGS": str(project / "reliability.yaml"),
            "RELIABILITY_WAREHOUSE": str(project / "warehouse.duckdb")}  # fmt: skip


@pytest.fixture(scope="module")
def settings(project: Path) -> Settings:
    return load_settings(environ=_environ(project))


@pytest.fixture(scope="module")
def defs(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


def _keys(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def test_no_meta_anywhere_in_the_fixture() -> None:
    """The point of the fixture: nothing in the dbt project says owner or tier (exposure owners have no email)."""
    yml_files = list((FIXTURE / "dbt").rglob("*.yml"))
    assert len(yml_files) == 4
    for path in yml_files:
        keys = set(_keys(yaml.safe_load(path.read_text())))
        assert not keys & {"meta", "+meta", "email", "tier"}, path


def test_loads_with_policy_from_rules_and_default(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    policy = {
        key.to_user_string(): (
            graph.get(key).owners,
            graph.get(key).tags["tier"],
            graph.get(key).metadata["policy_source"],
        )
        for key in graph.get_all_asset_keys()
    }
    assert policy == {
        "raw_orders": (["ingest@plain.example"], "tier2", "rule seeds/**"),
        "raw_customers": (["ingest@plain.example"], "tier2", "rule seeds/**"),
        "stg_orders": (["data-platform@plain.example"], "tier3", "default"),
        "stg_customers": (["data-platform@plain.example"], "tier3", "default"),
        "customer_orders": (["data-platform@plain.example"], "tier1", "owner: default; tier: rule models/marts/**"),
        "daily_revenue": (
            ["finance@plain.example"], "tier1",
            "owner: rule tag:finance; tier: rule models/marts/**; freshness: rule tag:finance",
        ),
        "revenue_report": (["data-platform@plain.example"], "tier1", "owner: default; tier: rule models/marts/**"),
        # the platform's own asset (reliability.review) brings its policy with it
        "incident_metrics": (["platform-team@reliability.example"], "tier3", "reliability.review"),
    }  # fmt: skip
    freshness = graph.get(dg.AssetKey("daily_revenue")).freshness_policy
    assert freshness is not None and freshness.fail_window.to_timedelta().total_seconds() == 26 * 3600


def test_lineage_and_checks(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    parents = {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    assert parents == {
        "raw_orders": [], "raw_customers": [],
        "stg_orders": ["raw_orders"], "stg_customers": ["raw_customers"],
        "customer_orders": ["stg_customers", "stg_orders"],
        "daily_revenue": ["stg_orders"],
        "revenue_report": ["daily_revenue"],
        "incident_metrics": [],
    }  # fmt: skip
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys}
    # plus the incident status check every asset carries (reliability.mitigation)
    assert checks == SODA_CHECKS | DBT_TESTS | ANOMALY_CHECKS | {f"{key}:open_incident" for key in parents}


def test_blast_radius_cli_from_the_settings_file(project: Path, defs: dg.Definitions) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reliability.cli", "blast-radius", "raw_orders", "--json"],
        capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, **_environ(project)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    radius = json.loads(proc.stdout)
    depth = {a["asset_key"]: a["depth"] for a in radius["assets"]}
    assert depth == {"raw_orders": 0, "stg_orders": 1, "customer_orders": 2, "daily_revenue": 2, "revenue_report": 3}
    assert radius["exposures"] == ["revenue_report"] and radius["top_tier"] == "tier1"
    assert {"finance@plain.example", "data-platform@plain.example"} <= set(radius["owners"])


def test_clean_build_then_a_failing_check_opens_one_incident(
    project: Path, defs: dg.Definitions, settings: Settings, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    sensor = build_incident_sensor(store_url=url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        clean = run(defs, dg.AssetSelection.all(), instance)
        assert clean.success
        assert materialized(clean) == MODELS | SEEDS | PLATFORM_ASSETS
        assert failed_checks(clean) == set() and passed_checks(clean) == SODA_CHECKS | DBT_TESTS | ANOMALY_CHECKS
        first = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        with IncidentStore(url) as store:
            assert store.count() == 0, [i.title for i in store.list_incidents()]

        # the same order arrives twice: the Soda duplicate check on the seed fails, run through Dagster
        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute("insert into raw_orders select * from raw_orders where order_id = 1")
        soda_keys = [k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == dg.AssetKey("raw_orders")]
        faulty = run(defs, dg.AssetSelection.checks(*soda_keys), instance)
        assert failed_checks(faulty) == {"raw_orders:soda_order_id_duplicate"}
        sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))

    with IncidentStore(url) as store:
        (incident,) = store.list_incidents()
        incident = store.get(incident.id)
    assert incident.root_asset == "raw_orders"
    assert "ingest@plain.example" in incident.owners
    roles = {a.asset_key: (a.role, a.owners, a.tier) for a in incident.assets}
    assert roles["raw_orders"] == ("root", ["ingest@plain.example"], "tier2")
    assert roles["daily_revenue"][1:] == (["finance@plain.example"], "tier1")
    assert "revenue_report" in incident.blast_radius["exposures"]


def _variant(project: Path, name: str, edit: dict) -> Settings:
    """The fixture's settings with `policy` edited, written beside it (same dbt project, same manifest)."""
    raw = yaml.safe_load((project / "reliability.yaml").read_text())
    raw["policy"] = {**raw["policy"], **edit}
    path = project / name
    path.write_text(yaml.safe_dump(raw))
    return load_settings(path, environ={"RELIABILITY_WAREHOUSE": str(project / "warehouse.duckdb")})


def test_without_default_the_model_file_field_and_settings_file_are_named(project: Path, defs) -> None:
    settings = _variant(project, "no_default.yaml", {"default": {}})
    with pytest.raises(ConfigError) as error:
        build_definitions(settings)
    message = str(error.value)
    # one model that no rule gives an owner (daily_revenue has one from tag:finance): its file, then its field
    models_dir = re.escape(str(project / "dbt" / "models"))
    match = re.match(rf"{models_dir}/\S+: models\.(\w+)\.config\.meta\.owner: ", message)
    assert match and match.group(1) in MODELS - {"daily_revenue"}, message
    assert message.endswith(f"no rule or default under 'policy:' in {settings.source_file} sets it")


def test_a_rule_selecting_nothing_is_named(project: Path, defs) -> None:
    rules = yaml.safe_load((project / "reliability.yaml").read_text())["policy"]["rules"]
    settings = _variant(project, "typo.yaml", {"rules": [*rules, {"match": "models/mart/**", "tier": "tier1"}]})
    with pytest.raises(ConfigError) as error:
        build_definitions(settings)
    assert str(error.value).startswith(f"{settings.source_file}: policy.rules.3.match: 'models/mart/**' selects no")

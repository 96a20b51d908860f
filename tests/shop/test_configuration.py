"""Bad configuration fails loading with the file and field named; another project is configuration only."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reliability.config import load_asset_policies, parse_duration
from reliability.definitions import build_definitions
from reliability.errors import ConfigError
from reliability.settings import load_settings
from tests.shop_harness import failed_checks, passed_checks, run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "other_project"


def _other_project(tmp_path: Path) -> Path:
    target = tmp_path / "other_project"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns("target", "logs"))
    return target


def _other_settings(project: Path, tmp_path: Path):
    return load_settings(
        project / "reliability.yaml", environ={"RELIABILITY_WAREHOUSE": str(tmp_path / "other.duckdb")}
    )


def test_asset_policy_file_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "assets.yaml"
    bad.write_text("assets:\n  raw_orders:\n    owner: nobody\n    tier: gold\n")
    with pytest.raises(ConfigError) as error:
        load_asset_policies(bad)
    message = str(error.value)
    assert str(bad) in message
    assert "assets.raw_orders.tier" in message and "'gold'" in message
    assert "assets.raw_orders.owner" in message and "'nobody'" in message


def test_asset_policy_file_that_is_not_yaml(tmp_path):
    bad = tmp_path / "assets.yaml"
    bad.write_text("assets: [unclosed\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_asset_policies(bad)


def test_freshness_windows_are_checked():
    assert parse_duration("26h").total_seconds() == 26 * 3600
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_settings_file_unknown_field_is_named(tmp_path):
    settings_file = tmp_path / "reliability.yaml"
    settings_file.write_text("warehouse_path: w.duckdb\ndbt_projekt_dir: x\n")
    with pytest.raises(ConfigError) as error:
        load_settings(settings_file, environ={})
    assert str(settings_file) in str(error.value) and "dbt_projekt_dir" in str(error.value)


def test_bad_dbt_meta_names_the_yaml_file_and_field(tmp_path):
    project = _other_project(tmp_path)
    models_yml = project / "dbt" / "models" / "_models.yml"
    models_yml.write_text(models_yml.read_text().replace("tier: tier2", "tier: gold"))
    with pytest.raises(ConfigError) as error:
        build_definitions(_other_settings(project, tmp_path))
    message = str(error.value)
    assert str(models_yml) in message
    assert "models.events.config.meta.tier" in message and "'gold'" in message


def test_asset_without_policy_is_named(tmp_path):
    project = _other_project(tmp_path)
    seeds_yml = project / "dbt" / "seeds" / "_seeds.yml"
    seeds_yml.unlink()
    with pytest.raises(ConfigError, match="raw_events"):
        build_definitions(_other_settings(project, tmp_path))


def test_another_dbt_project_and_contracts_by_configuration_only(tmp_path):
    project = _other_project(tmp_path)
    settings = _other_settings(project, tmp_path)
    assert settings.contracts_dir == project / "contracts"
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"raw_events", "events", "incident_metrics"}  # plus the platform's own (reliability.review)
    assert graph.get(dg.AssetKey("events")).owners == ["events-team@other.example"]
    assert graph.get(dg.AssetKey("events")).tags["tier"] == "tier2"
    assert graph.get(dg.AssetKey("events")).metadata["policy_source"] == "dbt meta"

    result = run(defs, dg.AssetSelection.all(), dg.DagsterInstance.ephemeral())
    assert result.success
    assert failed_checks(result) == set()
    assert "events:unique_events_event_id" in passed_checks(result)
    with duckdb.connect(str(tmp_path / "other.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from events").fetchone()[0] == 3

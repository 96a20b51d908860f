"""Policy rules and defaults from the settings: pure matching and resolution, no Dagster, no dbt."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from reliability.config import (
    PolicyFields,
    PolicyIncomplete,
    PolicySettings,
    default_policy,
    path_glob_regex,
    resolve_policy,
    rule_matches,
    unmatched_rules,
)
from reliability.errors import ConfigError
from reliability.settings import load_settings

SETTINGS = PolicySettings.model_validate(
    {
        "default": {"owner": "data@acme.example", "tier": "tier3"},
        "rules": [
            {"match": "tag:finance", "owner": "finance@acme.example", "freshness": {"fail_after": "26h"}},
            {"match": "models/marts/**", "tier": "tier1"},
            {"match": "models/**", "tier": "tier2", "owner": "analytics@acme.example"},
        ],
    }
)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("models/marts/**", "models/marts/revenue.sql", True),
        ("models/marts/**", "models/marts/finance/revenue.sql", True),
        ("models/marts/**", "models/staging/stg_orders.sql", False),
        ("models/marts/*", "models/marts/finance/revenue.sql", False),  # `*` stays in one folder
        ("models/marts/*.sql", "models/marts/revenue.sql", True),
        ("**/stg_*.sql", "models/staging/stg_orders.sql", True),
        ("**/stg_*.sql", "stg_orders.sql", True),
        ("models/marts/**", "models/marts_old/revenue.sql", False),
        ("models/mart?/x.sql", "models/marts/x.sql", True),
        ("models/marts.sql", "models/martsXsql", False),  # dots are literal
    ],
)
def test_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert (path_glob_regex(pattern).match(path) is not None) is matches


def test_tag_rules_match_tags_and_path_rules_need_a_path() -> None:
    assert rule_matches("tag:finance", "models/x.sql", ["daily", "finance"])
    assert not rule_matches("tag:finance", "models/x.sql", ["fin"])
    assert not rule_matches("models/**", None, ["finance"])
    assert rule_matches("./models/**", "models/x.sql", [])


def test_each_field_from_the_first_rule_that_sets_it_then_the_default() -> None:
    resolved = resolve_policy(PolicyFields(), "dbt meta", SETTINGS, "models/marts/finance/revenue.sql", ["finance"])
    assert resolved.policy.owner == "finance@acme.example"
    assert resolved.policy.tier == "tier1"  # rule 2, not rule 3: the first rule setting tier wins
    assert resolved.policy.freshness is not None and resolved.policy.freshness.fail_after == timedelta(hours=26)
    assert dict(resolved.sources) == {
        "owner": "rule tag:finance",
        "tier": "rule models/marts/**",
        "freshness": "rule tag:finance",
    }
    assert resolved.source == "owner: rule tag:finance; tier: rule models/marts/**; freshness: rule tag:finance"

    seed = resolve_policy(PolicyFields(), "dbt meta", SETTINGS, "seeds/raw.csv", [])
    assert (seed.policy.owner, seed.policy.tier, seed.policy.freshness) == ("data@acme.example", "tier3", None)
    assert seed.source == "default"


def test_what_the_asset_declares_itself_wins_over_rules() -> None:
    explicit = PolicyFields(tier="tier4")
    resolved = resolve_policy(explicit, "dbt meta", SETTINGS, "models/marts/revenue.sql", [])
    assert resolved.policy.tier == "tier4" and resolved.policy.owner == "analytics@acme.example"
    assert resolved.source == "owner: rule models/**; tier: dbt meta"


def test_without_default_a_field_nobody_sets_is_reported() -> None:
    rules_only = PolicySettings.model_validate({"rules": [{"match": "models/**", "tier": "tier2"}]})
    with pytest.raises(PolicyIncomplete) as error:
        resolve_policy(PolicyFields(), "dbt meta", rules_only, "models/a.sql", [])
    assert error.value.missing == ["owner"]
    assert default_policy(rules_only) is None
    assert default_policy(SETTINGS).source == "default"


def test_rules_that_select_nothing_are_found() -> None:
    assets = [("models/marts/revenue.sql", ["daily"]), ("models/staging/stg.sql", [])]
    assert unmatched_rules(SETTINGS, assets) == [0]  # no asset is tagged finance


def _settings_file(tmp_path: Path, policy_yaml: str) -> Path:
    path = tmp_path / "reliability.yaml"
    path.write_text("warehouse_path: w.duckdb\ndbt_project_dir: dbt\ncontracts_dir: contracts\npolicy:\n" + policy_yaml)
    return path


@pytest.mark.parametrize(
    ("policy_yaml", "field", "shown"),
    [
        ("  default: {owner: nobody, tier: tier3}\n", "policy.default.owner", "'nobody'"),
        ("  rules:\n    - {match: 'models/**', tier: gold}\n", "policy.rules.0.tier", "'gold'"),
        ("  rules:\n    - {tier: tier1}\n", "policy.rules.0.match", "Field required"),
        ("  rules:\n    - {match: 'tag:', tier: tier1}\n", "policy.rules.0.match", "tag:<name>"),
        ("  rules:\n    - {match: 'x/**', tier: tier1, freshness: {fail_after: soon}}\n",
         "policy.rules.0.freshness.fail_after", "'soon'"),
        ("  defaults: {tier: tier1}\n", "policy.defaults", "Extra inputs"),
    ],
)  # fmt: skip
def test_bad_policy_settings_name_the_file_and_field(tmp_path: Path, policy_yaml: str, field: str, shown: str) -> None:
    path = _settings_file(tmp_path, policy_yaml)
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    message = str(error.value)
    assert message.startswith(f"{path}: ") and field in message and shown in message
    assert "\n" not in message


def test_policy_settings_are_read_and_assets_file_is_optional(tmp_path: Path) -> None:
    path = _settings_file(tmp_path, "  default: {owner: data@acme.example, tier: tier2}\n")
    settings = load_settings(path, environ={})
    assert settings.assets_file is None
    assert settings.policy.default == PolicyFields(owner="data@acme.example", tier="tier2")

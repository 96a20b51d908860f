"""Where the platform finds its inputs: one settings file plus environment overrides.

Pointing the platform at another dbt project, contracts folder or warehouse is configuration only:
set `RELIABILITY_SETTINGS` to another settings file, or override single paths with the environment
variables named in `ENV_OVERRIDES`. Relative paths in a settings file are relative to that file.
Owners and tiers of assets that do not declare their own come from the `policy:` section (rules, then a
default): see `reliability.config.PolicySettings`.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reliability.config import PolicySettings, parse_policy_settings
from reliability.errors import ConfigError
from reliability.yamlfile import load_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = REPO_ROOT / "reliability.yaml"

# settings field -> environment variable that overrides it
ENV_OVERRIDES: dict[str, str] = {
    "warehouse_path": "RELIABILITY_WAREHOUSE",
    "dbt_project_dir": "RELIABILITY_DBT_PROJECT_DIR",
    "dbt_profiles_dir": "RELIABILITY_DBT_PROFILES_DIR",
    "contracts_dir": "RELIABILITY_CONTRACTS_DIR",
    "assets_file": "RELIABILITY_ASSETS_FILE",
    "incident_store_url": "RELIABILITY_INCIDENT_STORE_URL",
    "partitions_start_date": "RELIABILITY_PARTITIONS_START_DATE",
    "shop_demo": "RELIABILITY_SHOP_DEMO",
    "automation_interval_seconds": "RELIABILITY_AUTOMATION_INTERVAL_SECONDS",
}
_NOT_PATHS = {"incident_store_url", "partitions_start_date", "shop_demo", "automation_interval_seconds"}
# settings fields only the file sets (structured, no environment override)
FILE_ONLY_FIELDS = ("policy",)


class Settings(BaseModel):
    """Resolved, absolute locations of everything the platform reads or writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warehouse_path: Path
    dbt_project_dir: Path
    dbt_profiles_dir: Path | None = None
    contracts_dir: Path
    # owner/tier/freshness of non-dbt assets; without it they take the policy default
    assets_file: Path | None = None
    incident_store_url: str | None = None
    partitions_start_date: date = date(2026, 1, 1)
    # include the demo shop's generated raw tables (and its Kafka feed) as assets
    shop_demo: bool = False
    # how often the automation sensors evaluate which partitions to build
    automation_interval_seconds: int = Field(default=30, ge=5)
    # default owner/tier/freshness and ordered path/tag rules for assets that declare none themselves
    policy: PolicySettings = PolicySettings()
    source_file: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.warehouse_path.parent


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    return path if path.is_absolute() else (base / path).resolve()


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the settings file (default `reliability.yaml` at the repo root) and apply env overrides."""
    env = dict(os.environ if environ is None else environ)
    settings_file = Path(path or env.get("RELIABILITY_SETTINGS") or DEFAULT_SETTINGS_FILE).resolve()
    raw = load_yaml_mapping(settings_file, "settings file", [*ENV_OVERRIDES, *FILE_ONLY_FIELDS])
    base = settings_file.parent
    values: dict[str, object] = {}
    for field, env_name in ENV_OVERRIDES.items():
        if env.get(env_name):
            raw_value, origin = env[env_name], Path.cwd()
        else:
            raw_value, origin = raw.get(field), base
        if field in _NOT_PATHS:
            if raw_value is not None:
                values[field] = raw_value
        else:
            values[field] = _resolve(origin, raw_value)
    policy = parse_policy_settings(raw.get("policy"), str(settings_file))
    try:
        return Settings(**values, policy=policy, source_file=settings_file)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) + f": {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{settings_file}: {fields}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process (cached: read once per code location load)."""
    return load_settings()

"""Reliability policy per asset: owner, tier (criticality) and freshness expectation.

dbt models carry it in `meta`; every other asset gets it from one YAML file (`assets_file` in the
settings). Both go through `AssetPolicy`, so a bad value fails loading with the file and field named.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from reliability.errors import ConfigError
from reliability.yamlfile import load_yaml_mapping

Tier = Literal["tier1", "tier2", "tier3", "tier4"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def parse_duration(value: object) -> timedelta:
    """'90m', '26h', '2d', '30s' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like '26h', '90m', '2d' or seconds, got {value!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class FreshnessExpectation(BaseModel):
    """Data older than `fail_after` is an incident; older than `warn_after` a warning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_after: timedelta
    warn_after: timedelta | None = None

    @field_validator("fail_after", "warn_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta | None:
        return None if value is None else parse_duration(value)

    @field_validator("warn_after")
    @classmethod
    def _warn_before_fail(cls, value: timedelta | None, info) -> timedelta | None:
        fail_after = info.data.get("fail_after")
        if value is not None and fail_after is not None and value >= fail_after:
            raise ValueError("warn_after must be shorter than fail_after")
        return value


class AssetPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str
    tier: Tier
    freshness: FreshnessExpectation | None = None
    description: str | None = None

    @field_validator("owner")
    @classmethod
    def _owner_is_email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"owner must be an email address, got {value!r}")
        return value


def _format_errors(exc: ValidationError, prefix: str) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        parts.append(f"{loc}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)


def parse_policy(raw: object, source: str, field_prefix: str) -> AssetPolicy:
    """Validate one policy; errors read `<source>: <field_prefix>.<field>: <problem>`."""
    try:
        return AssetPolicy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc, field_prefix)}") from exc


def load_asset_policies(path: Path) -> dict[str, AssetPolicy]:
    """Policies of non-dbt assets, keyed by asset key string (e.g. 'raw_orders')."""
    assets = load_yaml_mapping(path, "asset policy file", {"assets"}).get("assets")
    if not isinstance(assets, dict):
        raise ConfigError(f"{path}: expected a top-level 'assets:' mapping of asset key -> policy")
    return {str(key): parse_policy(value, str(path), f"assets.{key}") for key, value in assets.items()}

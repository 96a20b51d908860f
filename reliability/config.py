"""Reliability policy per asset: owner, tier (criticality) and freshness expectation.

dbt models may carry it in `meta`; every other asset gets it from one YAML file (`assets_file` in the
settings). What neither says comes from the settings' `policy:` section: ordered path/tag rules, then a
default, so a dbt project without any `meta` loads as it is. Everything goes through `AssetPolicy`, so
a bad value fails loading with the file and field named. Rule matching here is pure (no Dagster, no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


def _owner_is_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.match(value):
        raise ValueError(f"owner must be an email address, got {value!r}")
    return value


class AssetPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str
    tier: Tier
    freshness: FreshnessExpectation | None = None
    description: str | None = None

    _owner = field_validator("owner")(_owner_is_email)


POLICY_FIELDS = ("owner", "tier", "freshness")


class PolicyFields(BaseModel):
    """Part of a policy: what a dbt `meta`, a settings rule or the settings default may set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str | None = None
    tier: Tier | None = None
    freshness: FreshnessExpectation | None = None

    _owner = field_validator("owner")(_owner_is_email)


TAG_PREFIX = "tag:"


class PolicyRule(PolicyFields):
    """`match` is `tag:<dbt tag>` or a path glob relative to the dbt project (`models/marts/**`)."""

    match: str

    @field_validator("match")
    @classmethod
    def _match_is_usable(cls, value: str) -> str:
        value = value.strip()
        if not value or value == TAG_PREFIX:
            raise ValueError("match must be a path glob like 'models/marts/**' or 'tag:<name>'")
        return value


class PolicySettings(BaseModel):
    """The settings' `policy:` section: rules are tried in order, the first one setting a field wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: PolicyFields = PolicyFields()
    rules: tuple[PolicyRule, ...] = ()


def path_glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: `**` spans folders, `*` and `?` stay inside one folder name.

    `fnmatch` lets `*` cross `/`, so `models/*` would catch nested folders too; users expect gitignore-like
    globs here.
    """
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


def rule_matches(match: str, path: str | None, tags: Iterable[str]) -> bool:
    """Does a rule's `match` (`tag:<name>` or a path glob) select an asset with this dbt path and tags?"""
    if match.startswith(TAG_PREFIX):
        return match[len(TAG_PREFIX) :] in set(tags)
    return path is not None and path_glob_regex(match.removeprefix("./")).match(path) is not None


@dataclass(frozen=True)
class SourcedPolicy:
    """A complete policy and, per field, where it came from ('dbt meta', 'rule models/marts/**', 'default')."""

    policy: AssetPolicy
    sources: Mapping[str, str]

    @classmethod
    def declared(cls, policy: AssetPolicy, source: str) -> SourcedPolicy:
        """A policy declared whole in one place (an entry of the assets file)."""
        return cls(policy, {field: source for field in POLICY_FIELDS if getattr(policy, field) is not None})

    @property
    def source(self) -> str:
        """One source when all fields share it, else `owner: …; tier: …` (shown as `policy_source`)."""
        distinct = list(dict.fromkeys(self.sources.values()))
        if len(distinct) == 1:
            return distinct[0]
        return "; ".join(f"{field}: {source}" for field, source in self.sources.items())


class PolicyIncomplete(ValueError):
    """No explicit value, rule or default sets these fields of an asset's policy."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"missing {', '.join(missing)}")
        self.missing = missing


def resolve_policy(
    explicit: PolicyFields,
    explicit_source: str,
    settings: PolicySettings,
    path: str | None = None,
    tags: Iterable[str] = (),
) -> SourcedPolicy:
    """Each field from the asset's own declaration, else the first matching rule, else the default."""
    tags = tuple(tags)
    layers: list[tuple[PolicyFields, str]] = [(explicit, explicit_source)]
    layers += [(rule, f"rule {rule.match}") for rule in settings.rules if rule_matches(rule.match, path, tags)]
    layers.append((settings.default, "default"))
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for field in POLICY_FIELDS:
        for layer, source in layers:
            value = getattr(layer, field)
            if value is not None:
                values[field], sources[field] = value, source
                break
    missing = [f for f in ("owner", "tier") if f not in values]
    if missing:
        raise PolicyIncomplete(missing)
    return SourcedPolicy(AssetPolicy(**values), sources)


def default_policy(settings: PolicySettings) -> SourcedPolicy | None:
    """The settings default for an asset with no declaration, path or tags; None when incomplete."""
    try:
        return resolve_policy(PolicyFields(), "", settings)
    except PolicyIncomplete:
        return None


def unmatched_rules(settings: PolicySettings, assets: Iterable[tuple[str | None, Iterable[str]]]) -> list[int]:
    """Indexes of rules that select none of the (path, tags) given: almost always a typo."""
    assets = [(path, tuple(tags)) for path, tags in assets]
    return [
        index
        for index, rule in enumerate(settings.rules)
        if not any(rule_matches(rule.match, path, tags) for path, tags in assets)
    ]


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


def parse_policy_fields(raw: Mapping[str, object], source: str, field_prefix: str) -> PolicyFields:
    """Validate the policy fields an asset declares itself (others in `raw` are ignored)."""
    try:
        return PolicyFields.model_validate({k: v for k, v in raw.items() if k in POLICY_FIELDS})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc, field_prefix)}") from exc


def parse_policy_settings(raw: object, source: str) -> PolicySettings:
    """The settings' `policy:` section; errors read `<settings file>: policy.rules.0.tier: <problem>`."""
    try:
        return PolicySettings.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc, 'policy')}") from exc


def load_asset_policies(path: Path | None) -> dict[str, AssetPolicy]:
    """Policies of non-dbt assets, keyed by asset key string (e.g. 'raw_orders'); no file, none."""
    if path is None:
        return {}
    assets = load_yaml_mapping(path, "asset policy file", {"assets", "anomaly"}).get("assets")
    if not isinstance(assets, dict):
        raise ConfigError(f"{path}: expected a top-level 'assets:' mapping of asset key -> policy")
    return {str(key): parse_policy(value, str(path), f"assets.{key}") for key, value in assets.items()}

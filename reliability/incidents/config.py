"""Incident policy: grouping windows and notification routing, from one small YAML file.

`RELIABILITY_INCIDENTS_CONFIG` points at the file; default `reliability/incidents/incidents.yaml`.
Secrets are never in this file: routes name the environment variables that hold them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from reliability.errors import ConfigError
from reliability.incidents.grouping import GroupingPolicy
from reliability.incidents.notify import Route, routes_from_config
from reliability.mitigation.policy import MitigationPolicy, policy_from_config
from reliability.yamlfile import load_yaml_mapping

CONFIG_ENV = "RELIABILITY_INCIDENTS_CONFIG"
DEFAULT_CONFIG = Path(__file__).with_name("incidents.yaml")
KNOWN_KEYS = {"grouping", "routing", "delivery", "mitigation"}


@dataclass(frozen=True)
class IncidentsConfig:
    grouping: GroupingPolicy
    routes: tuple[Route, ...]
    delivery_budget_s: float = 5.0
    delivery_timeout_s: float = 3.0
    source: Path | None = None
    mitigation: MitigationPolicy = MitigationPolicy()  # the circuit breaker (reliability.mitigation)


def _section(raw: dict, file: Path, name: str, fields: dict[str, float]) -> dict[str, float]:
    """One mapping of numbers (`grouping:`, `delivery:`): unknown fields, non-numbers and negative or
    non-finite values are refused by name; missing ones take their default."""
    section = raw.get(name)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{file}: {name}: expected a mapping with {sorted(fields)}, got {section!r}")
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise ConfigError(f"{file}: {name}: unknown field(s) {unknown}; known: {sorted(fields)}")
    values = {}
    for key, default in fields.items():
        value = section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{file}: {name}.{key}: expected a number >= 0, got {value!r}")
        values[key] = float(value)
    return values


def load_incidents_config(path: Path | None = None) -> IncidentsConfig:
    """The incident policy; any bad value fails with the file and field named (`delivery.budget_seconds`)."""
    file = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    raw = load_yaml_mapping(file, "incidents config", KNOWN_KEYS)
    grouping = _section(raw, file, "grouping", {"group_window_minutes": 360, "reopen_window_minutes": 60})
    delivery = _section(raw, file, "delivery", {"budget_seconds": 5.0, "timeout_seconds": 3.0})
    for key in ("budget_seconds", "timeout_seconds"):
        if delivery[key] <= 0:
            raise ConfigError(f"{file}: delivery.{key}: expected a number > 0, got {delivery[key]!r}")
    try:
        routes = routes_from_config(raw.get("routing") or [])
    except ValueError as exc:
        raise ConfigError(f"{file}: {exc}") from exc
    return IncidentsConfig(
        grouping=GroupingPolicy(
            group_window=timedelta(minutes=grouping["group_window_minutes"]),
            reopen_window=timedelta(minutes=grouping["reopen_window_minutes"]),
        ),
        routes=routes,
        delivery_budget_s=delivery["budget_seconds"],
        delivery_timeout_s=delivery["timeout_seconds"],
        source=file,
        mitigation=policy_from_config(raw.get("mitigation"), str(file)),
    )


def open_store(
    url: str | None = None, config: IncidentsConfig | None = None, *, create: bool = True, url_origin: str | None = None
):  # noqa: ANN201
    """An `IncidentStore` with this deployment's routing and grouping policy (see `IncidentStore` for
    `create` and `url_origin`)."""
    from reliability.incidents.notify import Router
    from reliability.incidents.store import IncidentStore

    cfg = config or load_incidents_config()
    return IncidentStore(url, router=Router(cfg.routes), policy=cfg.grouping, create=create, url_origin=url_origin)

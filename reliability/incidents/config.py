"""Incident policy: grouping windows and notification routing, from one small YAML file.

`RELIABILITY_INCIDENTS_CONFIG` points at the file; default `reliability/incidents/incidents.yaml`.
Secrets are never in this file: routes name the environment variables that hold them.
"""

from __future__ import annotations

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


def load_incidents_config(path: Path | None = None) -> IncidentsConfig:
    file = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    raw = load_yaml_mapping(file, "incidents config", KNOWN_KEYS)
    grouping = raw.get("grouping") or {}
    try:
        policy = GroupingPolicy(
            group_window=timedelta(minutes=float(grouping.get("group_window_minutes", 360))),
            reopen_window=timedelta(minutes=float(grouping.get("reopen_window_minutes", 60))),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{file}: grouping: {exc}") from exc
    try:
        routes = routes_from_config(raw.get("routing") or [])
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"{file}: routing: {exc}") from exc
    delivery = raw.get("delivery") or {}
    return IncidentsConfig(
        grouping=policy,
        routes=routes,
        delivery_budget_s=float(delivery.get("budget_seconds", 5.0)),
        delivery_timeout_s=float(delivery.get("timeout_seconds", 3.0)),
        source=file,
        mitigation=policy_from_config(raw.get("mitigation"), str(file)),
    )


def open_store(url: str | None = None, config: IncidentsConfig | None = None):  # noqa: ANN201
    """An `IncidentStore` with this deployment's routing and grouping policy."""
    from reliability.incidents.notify import Router
    from reliability.incidents.store import IncidentStore

    cfg = config or load_incidents_config()
    return IncidentStore(url, router=Router(cfg.routes), policy=cfg.grouping)

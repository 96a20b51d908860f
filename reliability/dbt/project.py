"""The dbt project the platform points at: manifest, policies (`meta`, else settings rules/default), exposures."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reliability.config import (
    PolicyFields,
    PolicyIncomplete,
    SourcedPolicy,
    parse_policy_fields,
    resolve_policy,
    unmatched_rules,
)
from reliability.errors import ConfigError
from reliability.settings import Settings

PROJECT_SOURCES = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
ASSET_RESOURCE_TYPES = ("model", "seed", "snapshot")
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "selectors.yml")


def dbt_env(settings: Settings) -> dict[str, str]:
    """Environment for dbt subprocesses: profiles read the warehouse path from RELIABILITY_WAREHOUSE."""
    return {**os.environ, "RELIABILITY_WAREHOUSE": str(settings.warehouse_path), "DO_NOT_TRACK": "1"}


def dbt_executable() -> str:
    """The dbt installed beside this Python (the venv's), else whatever `dbt` is on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def profiles_dir(settings: Settings) -> Path:
    return settings.dbt_profiles_dir or settings.dbt_project_dir


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for name in PROJECT_FILES:
        path = project_dir / name
        if path.exists():
            newest = max(newest, path.stat().st_mtime)
    for folder in PROJECT_SOURCES:
        for path in (project_dir / folder).rglob("*"):
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


def ensure_manifest(settings: Settings) -> Path:
    """Return target/manifest.json, running `dbt parse` first if it is missing or older than the project."""
    project_dir = settings.dbt_project_dir
    if not (project_dir / "dbt_project.yml").exists():
        raise ConfigError(f"{project_dir}: not a dbt project (no dbt_project.yml); check dbt_project_dir")
    manifest = project_dir / "target" / "manifest.json"
    if _is_current(manifest, project_dir):
        return manifest
    # The webserver, the daemon and runs load the location at the same time: one parses, the others wait
    # for its manifest instead of writing the same files at once.
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest.parent / ".reliability-parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(manifest, project_dir):
            return manifest
        result = subprocess.run(
            [dbt_executable(), "parse", "--project-dir", str(project_dir),
             "--profiles-dir", str(profiles_dir(settings)), "--quiet"],
            env=dbt_env(settings), capture_output=True, text=True,
        )  # fmt: skip
    if result.returncode != 0 or not manifest.exists():
        detail = (result.stdout + result.stderr).strip()[-2000:]
        raise ConfigError(f"{project_dir}: `dbt parse` failed:\n{detail}")
    return manifest


def _is_current(manifest: Path, project_dir: Path) -> bool:
    return manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(project_dir)


def load_manifest(settings: Settings) -> dict[str, Any]:
    return json.loads(ensure_manifest(settings).read_text())


def _node_file(node: Mapping[str, Any], project_dir: Path) -> str:
    """The YAML file that declared the node's properties (else its SQL file), for error messages."""
    patch = node.get("patch_path") or ""
    relative = patch.split("://", 1)[1] if "://" in patch else node.get("original_file_path", "")
    return str(project_dir / relative)


def _resolved(
    explicit: PolicyFields, explicit_source: str, settings: Settings, node: Mapping[str, Any], where: str, field: str
) -> SourcedPolicy:
    try:
        return resolve_policy(
            explicit, explicit_source, settings.policy, node.get("original_file_path"), node.get("tags") or ()
        )
    except PolicyIncomplete as exc:
        missing = ", ".join(f"{field}.{name}" for name in exc.missing)
        raise ConfigError(
            f"{where}: {missing}: not set, and no rule or default under 'policy:' in {settings.source_file} sets it"
        ) from exc


def _check_rules_match(manifest: Mapping[str, Any], settings: Settings) -> None:
    """A rule selecting no dbt node is a typo (a path not relative to the project, a tag misspelt)."""
    nodes = [
        (node.get("original_file_path"), node.get("tags") or ())
        for node in (*manifest["nodes"].values(), *manifest.get("exposures", {}).values())
        if node.get("resource_type") in (*ASSET_RESOURCE_TYPES, "exposure")
    ]
    for index in unmatched_rules(settings.policy, nodes):
        match = settings.policy.rules[index].match
        raise ConfigError(
            f"{settings.source_file}: policy.rules.{index}.match: {match!r} selects no dbt model, seed, snapshot "
            f"or exposure (paths are relative to {settings.dbt_project_dir}, e.g. 'models/marts/**')"
        )


def dbt_policies(manifest: Mapping[str, Any], settings: Settings) -> dict[str, SourcedPolicy]:
    """Policy of every dbt model, seed and snapshot (its `meta`) and exposure (owner email + `meta.tier`),
    by asset key; what a node does not declare comes from the settings' rules, then its default."""
    _check_rules_match(manifest, settings)
    project_dir = settings.dbt_project_dir
    policies: dict[str, SourcedPolicy] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] not in ASSET_RESOURCE_TYPES:
            continue
        where = _node_file(node, project_dir)
        field = f"{node['resource_type']}s.{node['name']}.config.meta"
        explicit = parse_policy_fields(node.get("meta") or {}, where, field)
        policies[node["name"]] = _resolved(explicit, "dbt meta", settings, node, where, field)
    for exposure in manifest.get("exposures", {}).values():
        where = str(project_dir / exposure["original_file_path"])
        field = f"exposures.{exposure['name']}"
        raw = {"owner": (exposure.get("owner") or {}).get("email"), "tier": (exposure.get("meta") or {}).get("tier")}
        explicit = parse_policy_fields(raw, where, field)
        policies[exposure["name"]] = _resolved(explicit, "dbt exposure", settings, exposure, where, field)
    return policies


@dataclass(frozen=True)
class DbtExposure:
    """A dashboard, notebook or application reading dbt models: the end of the lineage."""

    name: str
    type: str
    parents: tuple[str, ...]
    description: str | None
    url: str | None


def dbt_exposures(manifest: Mapping[str, Any]) -> list[DbtExposure]:
    exposures = []
    for exposure in manifest.get("exposures", {}).values():
        parents = []
        for unique_id in exposure.get("depends_on", {}).get("nodes", []):
            node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id)
            if node is not None:
                parents.append(node["name"])
        exposures.append(
            DbtExposure(
                name=exposure["name"],
                type=exposure.get("type") or "exposure",
                parents=tuple(parents),
                description=exposure.get("description") or None,
                url=exposure.get("url"),
            )
        )
    return exposures

"""Reading the platform's YAML files: every error names the file (and the unknown fields)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from reliability.errors import ConfigError


def load_yaml_mapping(path: Path, what: str, known_fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The top-level mapping of a YAML file; an empty file is an empty mapping.

    `what` says what the file is for ("settings file"); `known_fields`, when given, rejects any
    other top-level field by name.
    """
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top of the {what}, got {type(raw).__name__}")
    if known_fields is not None:
        known = sorted(known_fields)
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {unknown}; known: {known}")
    return raw

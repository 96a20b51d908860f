"""Reading the platform's YAML files: every error names the file (and the unknown fields)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from reliability.errors import ConfigError


def _where(exc: yaml.YAMLError) -> str:
    """Line, column and problem on one line; never PyYAML's quoted snippet (it could show a secret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {problem}" if problem else at


def load_yaml_mapping(path: Path, what: str, known_fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The top-level mapping of a YAML file; an empty file is an empty mapping.

    `what` says what the file is for ("settings file"); `known_fields`, when given, rejects any
    other top-level field by name.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (bad byte at offset {exc.start})") from exc
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or type(exc).__name__}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{_where(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top of the {what}, got {type(raw).__name__}")
    if known_fields is not None:
        known = sorted(known_fields)
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {unknown}; known: {known}")
    return raw

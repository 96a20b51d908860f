"""The README lists every environment variable the scripts, the Dagster instance files and the code read."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ENV_READ = re.compile(
    r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|_ENV\s*=\s*|setdefault\()\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def variables_read() -> dict[str, str]:
    """Variable -> a file that reads it."""
    found: dict[str, str] = {}
    for script in sorted((REPO / "scripts").glob("*.sh")):
        for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script.read_text()):
            found.setdefault(name, str(script.relative_to(REPO)))
    for yaml_file in sorted(REPO.glob("dagster*.yaml")):
        for name in re.findall(r"env:\s*([A-Z][A-Z0-9_]+)", yaml_file.read_text()):
            found.setdefault(name, yaml_file.name)
    for source in sorted((REPO / "reliability").rglob("*.py")):
        text = source.read_text()
        names = _ENV_READ.findall(text) + re.findall(r'"(RELIABILITY_[A-Z0-9_]+)"', text)
        for name in names:
            found.setdefault(name, str(source.relative_to(REPO)))
    found.pop("PWD", None)
    return found


def test_every_environment_variable_read_is_in_the_readme():
    found = variables_read()
    assert {"DAGSTER_PORT", "SHOP_DAYS", "RELIABILITY_SLACK_WEBHOOK_URL", "DAGSTER_PG_PASSWORD"} <= set(found)
    readme = (REPO / "README.md").read_text()
    missing = {name: where for name, where in found.items() if f"`{name}`" not in readme}
    assert missing == {}

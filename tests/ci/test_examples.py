"""The CI examples stay valid YAML and call the project's real commands with options that exist."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from reliability.cli import build_parser
from reliability.settings import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples" / "ci"


def _scripts(node: object) -> list[str]:
    """Every shell line of a workflow: GitHub `run:` blocks and GitLab `script:` lists."""
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                found += value.splitlines()
            elif key in ("script", "before_script") and isinstance(value, list):
                found += [str(line) for line in value]
            else:
                found += _scripts(value)
        return found
    if isinstance(node, list):
        return [line for item in node for line in _scripts(item)]
    return []


def _reliability_commands(path: Path) -> list[list[str]]:
    lines = _scripts(yaml.safe_load(path.read_text()))
    return [shlex.split(line)[1:] for line in lines if line.strip().startswith("reliability ")]


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_example_runs_ci_and_check_with_real_options(name):
    commands = _reliability_commands(EXAMPLES / name)
    assert sorted(argv[0] for argv in commands) == ["check", "ci"]
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # an unknown option or a missing required one exits here
        assert callable(args.handler)


def test_github_example_triggers_on_pull_requests_and_a_schedule():
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert "pull_request" in triggers and triggers["schedule"][0]["cron"]
    gitlab = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    rules = {job: gitlab[job]["rules"][0]["if"] for job in ("reliability-ci", "reliability-nightly-checks")}
    assert "merge_request_event" in rules["reliability-ci"] and "schedule" in rules["reliability-nightly-checks"]
    assert gitlab[".reliability"]["artifacts"]["reports"]["junit"] == "reports/*.xml"

"""Check results as a terminal table, JUnit XML, JSON and Markdown. Pure: strings in, strings out.

JUnit follows the schema CI systems read (Jenkins/GitLab/GitHub test reporters): `testsuites` >
`testsuite` > one `testcase` per check, `classname` the asset, `name` the check. A check that fails the
run (at or above `--fail-on`) is a `failure`; a warning below it passes and says so in `system-out`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from reliability.ci.results import MAX_FAILING_ROWS, CheckResult, counts
from reliability.incidents.triage import md_escape

TABLE_COLUMNS = ("status", "asset", "check", "source", "measured", "threshold", "description")
_ICONS = {"passed": "✅", "warn": "⚠️", "failed": "❌", "skipped": "⏭️"}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _ordered(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Failures first, then warnings, then passes; by name within each."""
    rank = {"failed": 0, "warn": 1, "skipped": 2, "passed": 3}
    return sorted(results, key=lambda r: (rank[r.status], r.name))


def table_rows(results: Sequence[CheckResult]) -> list[tuple[str, ...]]:
    return [
        (r.status.upper(), r.asset, r.check, r.source, _text(r.measured), _text(r.threshold), r.description[:160])
        for r in _ordered(results)
    ]


def summary_line(results: Sequence[CheckResult], fail_on: str) -> str:
    c = counts(results)
    skipped = f", {c['skipped']} skipped" if c["skipped"] else ""
    counted = f"{c['passed']} passed, {c['failed']} failed, {c['warn']} warn{skipped}"
    return f"{c['total']} checks: {counted} (fail on {fail_on})"


def failure_details(result: CheckResult) -> str:
    """Message, measured value, threshold and up to MAX_FAILING_ROWS failing rows, one per line."""
    lines = [result.description or f"{result.name} {result.status}"]
    if result.contract:
        lines.append(f"contract: {result.contract}")
    if result.measured is not None:
        lines.append(f"measured value: {result.measured}")
    if result.threshold is not None:
        lines.append(f"threshold: {result.threshold}")
    if result.partition:
        lines.append(f"partition: {result.partition}")
    if result.failing_rows:
        rows = result.failing_rows[:MAX_FAILING_ROWS]
        lines.append(f"failing rows (first {len(rows)}):")
        lines.extend(json.dumps(dict(row), default=str, sort_keys=True) for row in rows)
    return "\n".join(lines)


def junit_xml(
    results: Sequence[CheckResult], fail_on: str, suite: str = "reliability check", seconds: float = 0.0
) -> str:
    failing = [r for r in results if r.fails_run(fail_on)]
    root = ET.Element(
        "testsuites", name=suite, tests=str(len(results)), failures=str(len(failing)), errors="0", time=f"{seconds:.3f}"
    )
    testsuite = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(len(failing)),
        errors="0",
        skipped=str(sum(r.skipped is not None for r in results)),
        time=f"{seconds:.3f}",
    )
    for result in results:
        case = ET.SubElement(testsuite, "testcase", classname=result.asset, name=result.check, time="0")
        properties = ET.SubElement(case, "properties")
        for name, value in (
            ("source", result.source),
            ("severity", result.severity),
            ("status", result.status),
            ("measured_value", result.measured),
            ("threshold", result.threshold),
            ("contract", result.contract),
            ("partition", result.partition),
        ):
            if value is not None:
                ET.SubElement(properties, "property", name=name, value=_text(value))
        if result.fails_run(fail_on):
            failure = ET.SubElement(
                case, "failure", message=(result.description or result.status)[:500], type=result.severity
            )
            failure.text = failure_details(result)
        elif result.skipped:
            ET.SubElement(case, "skipped", message=result.skipped[:500])
        elif not result.passed:
            ET.SubElement(case, "system-out").text = f"WARN (below --fail-on {fail_on})\n{failure_details(result)}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def json_report(
    results: Sequence[CheckResult], fail_on: str, exit_code: int, extra: Mapping[str, Any] | None = None
) -> str:
    body = {
        "summary": {**counts(results), "fail_on": fail_on, "exit_code": exit_code},
        "checks": [r.to_dict() for r in _ordered(results)],
        **(extra or {}),
    }
    return json.dumps(body, default=str, indent=2)


def _md_cell(value: Any) -> str:
    return md_escape(_text(value).replace("\n", " ")[:200])


def markdown_summary(results: Sequence[CheckResult], fail_on: str, title: str = "Asset checks") -> str:
    """A GitHub-flavoured summary: counts, then every check that did not pass, then the passes folded."""
    lines = [f"### {title}", "", summary_line(results, fail_on), ""]
    ordered = _ordered(results)
    bad = [r for r in ordered if not r.passed and not r.skipped]
    if bad:
        lines += ["| | asset | check | measured | threshold | message |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {_ICONS[r.status]} | {_md_cell(r.asset)} | {_md_cell(r.check)} | {_md_cell(r.measured)} | "
            f"{_md_cell(r.threshold)} | {_md_cell(r.description)} |"
            for r in bad
        ]
        lines.append("")
    skipped = [r for r in ordered if r.skipped]
    if skipped:
        lines += [f"- ⏭️ `{md_escape(r.name)}` skipped: {md_escape(r.skipped or '')}" for r in skipped] + [""]
    passed = [r for r in ordered if r.passed and not r.skipped]
    if passed:
        lines += [f"<details><summary>{len(passed)} passed</summary>", ""]
        lines += [f"- `{md_escape(r.name)}`" for r in passed]
        lines += ["", "</details>", ""]
    return "\n".join(lines)

"""`reliability check` and `reliability ci`: the commands a CI pipeline calls.

Exit codes: 0 everything passed, 1 a failure at or above `--fail-on`, 2 a usage or configuration
error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

USAGE_ERROR = 2


def _common_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        choices=("error", "warn"),
        default="error",
        help="lowest failure severity that fails the command (default: error)",
    )
    parser.add_argument("--junit-xml", metavar="FILE", help="write a JUnit XML report (one test case per check)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document")
    parser.add_argument("--warehouse", metavar="PATH", help="DuckDB file to check (default: from settings)")


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser("check", help="run the asset checks of a selection without materializing")
    check.add_argument(
        "--select",
        required=True,
        metavar="SELECTION",
        help="Dagster asset selection, e.g. 'tag:tier=tier1', 'key:fct_orders+', 'owner:orders-team@shop.example'",
    )
    check.add_argument("--partition", metavar="KEY", help="partition of partitioned assets (default: the latest)")
    check.add_argument(
        "--partition-range", metavar="FIRST...LAST", help="partitions FIRST to LAST, e.g. 2026-11-01...2026-11-07"
    )
    _common_output_options(check)
    check.set_defaults(handler=_usage_errors_exit_2(_check))

    ci = subparsers.add_parser(
        "ci", help="slim CI for a change: validate, build state:modified+ on a copy, check, report the blast radius"
    )
    ci.add_argument("--state", required=True, metavar="DIR", help="folder with the production dbt manifest.json")
    ci.add_argument("--report-md", metavar="FILE", help="write the impact report as Markdown (a PR comment)")
    ci.add_argument("--workdir", metavar="DIR", help="where the throwaway warehouse copy goes (default: a temp dir)")
    ci.add_argument("--partition", metavar="KEY", help="partition to build of partitioned models (default: the latest)")
    ci.add_argument("--skip-validate", action="store_true", help="do not run `dagster definitions validate`")
    _common_output_options(ci)
    ci.set_defaults(handler=_usage_errors_exit_2(_ci))


def _usage_errors_exit_2(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Configuration and usage errors exit 2 with one line; check failures are exit 1."""

    def run(args: argparse.Namespace) -> int:
        from reliability.errors import UserFacingError
        from reliability.terminal import printable

        try:
            return handler(args)
        except UserFacingError as exc:
            print(f"error: {printable(str(exc).strip().splitlines()[0] if str(exc).strip() else exc)}", file=sys.stderr)
            return USAGE_ERROR

    return run


def report(
    results: list,
    args: argparse.Namespace,
    title: str,
    seconds: float,
    extra: dict[str, Any] | None = None,
    extra_failure: bool = False,
) -> int:
    """Print the table (or JSON), write JUnit and the GitHub step summary; return the exit code."""
    import os

    from reliability.ci.render import TABLE_COLUMNS, json_report, junit_xml, markdown_summary, summary_line, table_rows
    from reliability.ci.results import exit_code
    from reliability.terminal import print_line, print_tables

    code = max(exit_code(results, args.fail_on), 1 if extra_failure else 0)
    if args.junit_xml:
        Path(args.junit_xml).write_text(junit_xml(results, args.fail_on, suite=title, seconds=seconds))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(markdown_summary(results, args.fail_on, title=title) + "\n")
    if args.json:
        print(json_report(results, args.fail_on, code, extra))
    else:
        print_tables([(title, TABLE_COLUMNS, table_rows(results))])
        print_line(f"{summary_line(results, args.fail_on)} in {seconds:.1f}s -> exit {code}")
    return code


def _check(args: argparse.Namespace) -> int:
    from reliability.ci.runner import (
        PartitionScope,
        checks_of,
        open_instance,
        resolve_selection,
        run_checks,
        settings_with_warehouse,
    )
    from reliability.definitions import build_definitions
    from reliability.errors import ConfigError
    from reliability.settings import get_settings

    started = time.perf_counter()
    scope = PartitionScope.parse(args.partition, args.partition_range)
    warehouse = Path(args.warehouse) if args.warehouse else None
    if warehouse is not None and not warehouse.is_file():
        raise ConfigError(f"--warehouse {warehouse}: no such DuckDB file")
    settings = settings_with_warehouse(get_settings(), warehouse)
    defs = build_definitions(settings)
    keys = checks_of(defs, resolve_selection(defs, args.select))
    if not keys:
        raise ConfigError(f"--select {args.select!r}: the selected assets have no checks")
    with open_instance() as instance, contextlib.redirect_stdout(sys.stderr):  # dbt logs to stdout
        results = run_checks(defs, keys, instance, scope)
    return report(results, args, "reliability check", time.perf_counter() - started)


def _ci(args: argparse.Namespace) -> int:
    from reliability.ci.slim import run_ci

    return run_ci(args, report)

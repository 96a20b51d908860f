"""The `reliability` command.

Each area registers its subcommands through a light `register(subparsers)` function; heavy libraries
(dagster, dbt, soda, confluent_kafka) are imported inside the handlers only, so `reliability --help`
and store-only commands stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reliability.errors import UserFacingError

# Modules with `register(subparsers: argparse._SubParsersAction) -> None` and the top-level commands
# each registers (a test keeps them in step). Keep imports in them light.
AREA_CLI_COMMANDS: dict[str, tuple[str, ...]] = {
    "reliability.shop.cli": ("shop",),
    "reliability.kafka.cli": ("kafka", "lag"),
    "reliability.incidents.cli": ("incidents", "blast-radius"),
    "reliability.contracts.cli": ("contracts",),
    "reliability.review.cli": ("postmortem", "metrics"),
    "reliability.anomaly.cli": ("anomaly",),
    "reliability.ci.cli": ("check", "ci"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command tree; with a known top-level `command`, only the area that owns it (building
    every area's parsers costs more than the fastest commands themselves)."""
    parser = argparse.ArgumentParser(
        prog="reliability",
        description="Data reliability platform on Dagster: detect, triage, mitigate, resolve, review.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    owners = [m for m, commands in AREA_CLI_COMMANDS.items() if command in commands] or list(AREA_CLI_COMMANDS)
    for module_name in owners:
        importlib.import_module(module_name).register(subparsers)
    _describe_subcommands(parser)
    return parser


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """`X --help` opens with a description: a subcommand without one gets its one-line help, so every
    area writes each text once."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                sub = action.choices[choice.dest]
                if not sub.description and choice.help:
                    sub.description = choice.help[0].upper() + choice.help[1:] + "."
                _describe_subcommands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for position, arg in enumerate(argv, start=1):
        if not arg.isascii() and any("\udc80" <= ch <= "\udcff" for ch in arg):
            # bytes that are not UTF-8 (Python keeps them as surrogates): they could not be stored or shown
            print(f"error: argument {position} ({ascii(arg)}) is not valid UTF-8 text", file=sys.stderr)
            return 2
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except UserFacingError as exc:
        from reliability.terminal import printable

        print(f"error: {printable(exc)}", file=sys.stderr)  # one line, whatever the message quotes
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

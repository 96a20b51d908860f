"""What a newcomer sees in `--help`, for every area's commands (issue 9): every option explained, every
command described, one placeholder convention (`COMMAND`) for subcommands."""

from __future__ import annotations

import argparse

import pytest

from reliability.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: str = "reliability"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_has_help_and_every_command_a_description():
    missing = []
    for path, parser in _parsers(build_parser()):
        if not parser.description:
            missing.append(f"{path}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}: no help")
    assert missing == []
    assert len(list(_parsers(build_parser()))) > 15  # the walk really reaches the subcommands


def test_one_placeholder_for_subcommands():
    metavars = {
        path: action.metavar
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    }
    assert set(metavars) >= {"reliability", "reliability shop", "reliability kafka", "reliability incidents",
                             "reliability contracts"}  # fmt: skip
    assert set(metavars.values()) == {"COMMAND"}, metavars


def test_lag_help_opens_with_a_description(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lag", "--help"])
    out = capsys.readouterr().out
    assert out.splitlines()[3] == "Consumer lag per group (Burrow rules + time lag)."


def test_each_area_registers_exactly_the_commands_it_is_known_to_own():
    """`main` builds only the area owning the command it runs: the table must match what areas register."""
    import importlib

    from reliability.cli import AREA_CLI_COMMANDS

    for module_name, commands in AREA_CLI_COMMANDS.items():
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).register(subparsers)
        assert tuple(subparsers.choices) == commands, module_name


def test_a_command_parses_the_same_with_only_its_area_built():
    argv = ["incidents", "list", "--status", "open", "--limit", "3", "--json"]
    assert vars(build_parser("incidents").parse_args(argv)) == vars(build_parser().parse_args(argv))
    assert set(build_parser("lag")._subparsers._group_actions[0].choices) == {"kafka", "lag"}


def test_an_unknown_command_is_refused_with_every_command_listed(capsys):
    from reliability.cli import main

    with pytest.raises(SystemExit):
        main(["incidentz"])
    err = capsys.readouterr().err
    assert "invalid choice: 'incidentz'" in err and "postmortem" in err and "anomaly" in err

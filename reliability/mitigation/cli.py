"""`reliability incidents pause ID` and `reliability incidents resume ID`: the circuit breaker by hand.

They load the code location (to know what each sensor and schedule targets) and the Dagster instance
(DAGSTER_HOME) lazily; the daemon must have run the code location once so its sensors have states.
"""

from __future__ import annotations

import argparse
from typing import Any


def register_incident_commands(sub: Any) -> None:
    """Add `pause` and `resume` to `reliability incidents`."""
    from reliability.incidents.cli import _actor_arg

    id_help, json_help = "incident id: INC-<n> or <n>", "stable JSON for scripts instead of text"
    p = sub.add_parser(
        "pause", help="circuit breaker: stop the automation feeding the blast radius, quarantine, pause Kafka",
        description="Contain an incident now, whatever the policy says: stop the sensors, schedules and "
        "automation that can materialize its root or downstream assets, quarantine the partitions hit (runs "
        "that would build them fail naming the incident), pause a Kafka-fed root's consumer; record each "
        "action and move the incident to mitigated. Needs the Dagster instance (DAGSTER_HOME) the daemon uses.",
    )  # fmt: skip
    p.add_argument("id", help=id_help)
    p.add_argument("--suggest", action="store_true", help="only print and record what it would do")
    _actor_arg(p)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_pause)

    p = sub.add_parser(
        "resume", help="restart exactly what the circuit breaker stopped, resume Kafka, lift the quarantine",
        description="Undo an incident's circuit breaker: restart exactly the automation it stopped (not one "
        "an engineer had stopped, nor one another active incident still holds), resume its Kafka pauses and "
        "lift its quarantine. The incident's status does not change.",
    )  # fmt: skip
    p.add_argument("id", help=id_help)
    _actor_arg(p)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_resume)


def _location() -> tuple[Any, Any, Any]:
    import dagster as dg

    from reliability.definitions import defs  # heavy: the whole code location
    from reliability.mitigation.controls import find_repository_origin

    instance = dg.DagsterInstance.get()
    repo_def = defs.get_repository_def()
    return instance, repo_def, find_repository_origin(instance, repo_def)


def _print(lines: list[str], as_json: bool, payload: object) -> None:
    from reliability.incidents.cli import _print_json
    from reliability.terminal import print_line

    if as_json:
        _print_json(payload)
        return
    for line in lines:
        print_line(line)


def cmd_pause(args: argparse.Namespace) -> int:
    from reliability.incidents.cli import _actor, _id, _store
    from reliability.mitigation.policy import Mode
    from reliability.mitigation.service import pause_incident

    instance, repo_def, origin = _location()
    mode = Mode.SUGGEST if args.suggest else Mode.AUTO
    with _store(args) as store:
        outcome = pause_incident(instance, store, repo_def, origin, _id(args.id), mode=mode, actor=_actor(args))
    payload = {
        "incident": f"INC-{outcome.incident_id}",
        "mode": str(outcome.mode),
        "mitigated": outcome.mitigated,
        "actions": [{"action": a.kind, "description": a.description, **a.data} for a in outcome.actions],
    }
    _print(outcome.summary().splitlines(), args.json, payload)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from reliability.incidents.cli import _actor, _id, _store
    from reliability.mitigation.service import resume_incident

    instance, repo_def, origin = _location()
    with _store(args) as store:
        actions = resume_incident(instance, store, repo_def, origin, _id(args.id), actor=_actor(args))
    payload = [{"action": a.kind, "description": a.description, **a.data} for a in actions]
    _print([a.description for a in actions] or ["nothing was paused"], args.json, payload)
    return 0

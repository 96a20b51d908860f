"""`reliability incidents ...` and `reliability blast-radius`.

Store commands import SQLAlchemy and rich only (never Dagster), so they stay fast; `blast-radius`
loads the code location's Definitions. Every cell is rendered as plain `rich.text.Text`, so asset
keys or notes containing rich markup, HTML or SQL are shown verbatim.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from reliability.errors import UserFacingError
from reliability.reconciliation.cli import add_commands as add_reconcile_commands

STATUSES = ("open", "acknowledged", "mitigated", "resolved", "reopened", "active")


def register(subparsers: Any) -> None:
    inc = subparsers.add_parser("incidents", help="list, inspect and work incidents")
    inc.add_argument("--store-url", help="incident store URL (default: RELIABILITY_INCIDENT_STORE_URL, "
                     "else SQLite in DAGSTER_HOME)")  # fmt: skip
    sub = inc.add_subparsers(dest="incidents_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="incidents, newest first")
    p.add_argument("--status", choices=STATUSES, help="only this status ('active' = not resolved)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="stable JSON for scripts")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="one incident with blast radius and timeline")
    p.add_argument("id", help="INC-<n> or <n>")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_show)

    for name, help_text in (("ack", "acknowledge"), ("mitigate", "mark mitigated"), ("reopen", "reopen")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id")
        p.add_argument("--note", help="why (added to the timeline)")
        _actor_arg(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=cmd_transition, transition=name)

    p = sub.add_parser("resolve", help="resolve with a note")
    p.add_argument("id")
    p.add_argument("--note", required=True, help="what fixed it (required)")
    _actor_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_transition, transition="resolve")

    p = sub.add_parser("note", help="add a note to the timeline")
    p.add_argument("id")
    p.add_argument("text")
    _actor_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_note)

    p = sub.add_parser("search", help="full text over titles, notes and timelines")
    p.add_argument("text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("deliver", help="send due notifications from the outbox now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_deliver)

    add_reconcile_commands(sub)  # reliability incidents reconcile

    br = subparsers.add_parser("blast-radius", help="everything downstream of an asset (loads Dagster defs)")
    br.add_argument("asset_key", help="e.g. raw_orders or a/b for multi-part keys")
    br.add_argument("--partition", help="the failing partition, if any")
    br.add_argument("--json", action="store_true")
    br.set_defaults(handler=cmd_blast_radius)


def _actor_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", default=None, help="who (default: RELIABILITY_ACTOR or the OS user)")


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return args.actor
    try:
        return os.environ.get("RELIABILITY_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _store(args: argparse.Namespace):  # noqa: ANN202
    from reliability.incidents.config import open_store

    return open_store(getattr(args, "store_url", None))


def _id(text: str) -> int:
    from reliability.incidents.model import parse_incident_id

    try:
        return parse_incident_id(text)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _t(value: object):  # noqa: ANN202
    from rich.text import Text

    return Text("" if value is None else str(value))


def _ts(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _incident_table(incidents: list, title: str):  # noqa: ANN001, ANN202
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "sev", "status", "title", "root asset", "downstream", "detected"):
        table.add_column(col, overflow="fold")
    for inc in incidents:
        table.add_row(
            _t(inc.display_id), _t(inc.severity), _t(inc.status), _t(inc.title), _t(inc.root_asset),
            _t(inc.blast_radius.get("downstream_count", 0)), _t(_ts(inc.detected_at)),
        )  # fmt: skip
    return table


def cmd_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        incidents = store.list_incidents(status=args.status, limit=args.limit)
    if args.json:
        _print_json([i.to_dict() for i in incidents])
        return 0
    _console().print(_incident_table(incidents, f"{len(incidents)} incident(s)"))
    return 0


def _show(inc: Any) -> None:
    from rich.table import Table

    console = _console()
    head = Table(show_header=False, title=f"{inc.display_id}: {inc.title}")
    head.add_column("field")
    head.add_column("value", overflow="fold")
    for label, value in (
        ("status", inc.status), ("severity", f"{inc.severity} ({inc.severity_reason})"),
        ("root asset", inc.root_asset), ("fault class", inc.fault_class),
        ("owners", ", ".join(inc.owners) or "-"),
        ("impact started", _ts(inc.impact_started_at)), ("detected", _ts(inc.detected_at)),
        ("acknowledged", _ts(inc.acknowledged_at)), ("mitigated", _ts(inc.mitigated_at)),
        ("resolved", _ts(inc.resolved_at)), ("root-cause hint", inc.root_cause.get("text", "-")),
        ("exposures reached", ", ".join(inc.blast_radius.get("exposures", [])) or "-"),
        ("detections", inc.detection_count),
        ("durations (s)", ", ".join(f"{k.replace('_', ' ')} {v if v is not None else '-'}"
                                    for k, v in inc.durations().items())),
    ):  # fmt: skip
        head.add_row(_t(label), _t(value))
    console.print(head)
    assets = Table(title="affected assets")
    for col in ("asset", "role", "depth", "tier", "owners", "partitions", "kind"):
        assets.add_column(col, overflow="fold")
    for a in inc.assets:
        assets.add_row(_t(a.asset_key), _t(a.role), _t(a.depth), _t(a.tier or "-"), _t(", ".join(a.owners)),
                       _t(", ".join(a.partitions) or "-"), _t(a.kind))  # fmt: skip
    console.print(assets)
    timeline = Table(title="timeline (UTC)")
    for col in ("at", "kind", "actor", "message"):
        timeline.add_column(col, overflow="fold")
    for e in inc.timeline:
        timeline.add_row(_t(_ts(e.at)), _t(e.kind), _t(e.actor), _t(e.message))
    console.print(timeline)


def cmd_show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        inc = store.get(_id(args.id))
    if args.json:
        _print_json(inc.to_dict(full=True))
    else:
        _show(inc)
    return 0


def cmd_transition(args: argparse.Namespace) -> int:
    from reliability.incidents.model import Status

    to = {"ack": Status.ACKNOWLEDGED, "mitigate": Status.MITIGATED, "resolve": Status.RESOLVED,
          "reopen": Status.REOPENED}[args.transition]  # fmt: skip
    if to == Status.RESOLVED and not args.note.strip():
        raise UserFacingError("resolve needs a --note saying what fixed it")
    with _store(args) as store:
        inc = store.transition(_id(args.id), to, _actor(args), args.note)
    if args.json:
        _print_json(inc.to_dict())
    else:
        _console().print(_t(f"{inc.display_id} is now {inc.status}"))
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    with _store(args) as store:
        entry = store.add_note(_id(args.id), _actor(args), args.text)
    if args.json:
        _print_json(entry.to_dict())
    else:
        _console().print(_t(f"note added to INC-{entry.incident_id}"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _store(args) as store:
        hits = store.search(args.text)
    if args.json:
        _print_json([{**inc.to_dict(), "matches": where} for inc, where in hits])
        return 0
    from rich.table import Table

    table = Table(title=f"{len(hits)} incident(s) matching")
    for col in ("id", "sev", "status", "title", "matched"):
        table.add_column(col, overflow="fold")
    for inc, where in hits:
        table.add_row(_t(inc.display_id), _t(inc.severity), _t(inc.status), _t(inc.title), _t("\n".join(where[:3])))
    _console().print(table)
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from reliability.incidents.config import load_incidents_config
    from reliability.incidents.notify import deliver_due

    cfg = load_incidents_config()
    with _store(args) as store:
        report = deliver_due(store, budget_s=cfg.delivery_budget_s * 6, timeout=cfg.delivery_timeout_s)
        counts = store.outbox_counts()
    out = {**report.to_dict(), "outbox": counts}
    if args.json:
        _print_json(out)
    else:
        _console().print(_t(", ".join(f"{k}: {v}" for k, v in report.to_dict().items())
                            + f"; outbox {counts}"))  # fmt: skip
    return 0


def cmd_blast_radius(args: argparse.Namespace) -> int:
    from reliability.definitions import defs  # heavy: the whole code location
    from reliability.incidents.lineage import graph_from_definitions
    from reliability.incidents.triage import FaultClass, SeverityFacts, blast_radius, classify_severity

    graph = graph_from_definitions(defs)
    if args.asset_key not in graph:
        known = ", ".join(sorted(graph.keys)[:20])
        raise UserFacingError(f"unknown asset key {args.asset_key!r}; known keys include: {known}")
    radius = blast_radius(graph, [args.asset_key], args.partition)
    severity, reason = classify_severity(SeverityFacts.of(radius, "ERROR", FaultClass.DATA_QUALITY))
    if args.json:
        _print_json({**radius.to_dict(), "severity_if_failing": str(severity), "severity_reason": reason})
        return 0
    from rich.table import Table

    table = Table(title=f"blast radius of {args.asset_key}: {len(radius.downstream)} downstream, "
                        f"top tier {radius.top_tier or '-'}, an ERROR failure here would be {severity}")  # fmt: skip
    table.title = _t(table.title)
    for col in ("asset", "depth", "tier", "owners", "partitions", "kind"):
        table.add_column(col, overflow="fold")
    for a in radius.assets:
        table.add_row(_t(a.key), _t(a.depth), _t(f"tier{a.tier}" if a.tier else "-"), _t(", ".join(a.owners)),
                      _t(", ".join(a.partitions) or "-"), _t(a.kind))  # fmt: skip
    _console().print(table)
    return 0
